"""Causal-LM loss computed only where labels exist.

The stock `model(input_ids, labels=...)` applies the LM head (49k x 576 for SmolLM2) to every
position, prompt and padding included, then throws most logits away. Here the decoder runs
once, the hidden states of positions that predict a labelled token are gathered, and only
those go through the head and the cross-entropy (in fp32 for a stable log-softmax).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.train.data import IGNORE


def decoder_and_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The transformer body and output head of a (PEFT-wrapped) causal LM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = base.get_decoder() if hasattr(base, "get_decoder") else base.model
    return decoder, base.get_output_embeddings()


class SelectiveLoss(nn.Module):
    """Wraps the PEFT model so DDP (accelerate) sees one module whose forward returns
    (sum of token losses, number of labelled tokens)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor):
        decoder, head = decoder_and_head(self.model)
        hidden = decoder(input_ids=input_ids, use_cache=False).last_hidden_state
        targets = labels[:, 1:]
        keep = targets != IGNORE
        picked = hidden[:, :-1][keep]  # (n_labelled, hidden)
        logits = head(picked).float()
        loss_sum = F.cross_entropy(logits, targets[keep], reduction="sum")
        return loss_sum, keep.sum()


def full_logits_loss(model: nn.Module, input_ids: torch.Tensor, labels: torch.Tensor):
    """The stock path (head over every position), used by tests to check SelectiveLoss."""
    logits = model(input_ids=input_ids).logits[:, :-1].float()
    targets = labels[:, 1:]
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        targets.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    ), (targets != IGNORE).sum()
