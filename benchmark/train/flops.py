"""Achieved FLOP/s and MFU: work counted per batch, peak measured on the same machine.

FLOPs of one training step, counted over the real (non-padding) tokens only:
  per token, every frozen linear layer of the decoder (N_lin weights in total):
      forward 2*N_lin  +  backward to the inputs 2*N_lin  (frozen weights need no weight
      gradient, so the usual 6N becomes 4N)
  per token, attention scores and weighted sum (causal, average context (T+1)/2 for a
      sequence of T tokens): forward 4*L*d_attn*ctx, backward 8*L*d_attn*ctx
  per token, every LoRA pair (r x d_in, d_out x r): forward 2*r*(d_in+d_out), backward
      4*r*(d_in+d_out) (input and weight gradients)
  per *labelled* token only, the LM head (V x d): forward 2*V*d + backward 2*V*d
The embedding lookup is free. This is the "about 4N per token" rule, made exact for LoRA.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn


def measure_matmul_peak(
    dtype: torch.dtype, device: str = "cpu", n: int = 2048, reps: int = 6
) -> float:
    """Best-of FLOP/s of an n x n x n matmul in `dtype` on `device` (the MFU denominator)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(2):
        a @ b
    sync()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


@dataclass(frozen=True)
class FlopModel:
    """Per-token FLOP coefficients of one model + LoRA setup."""

    per_token: float  # frozen linears + LoRA, forward + backward
    attn_per_token_ctx: float  # multiply by the token's average context length
    head_per_label: float  # LM head forward + input-gradient, per labelled token

    def batch_flops(self, seq_lengths: list[int], n_labels: int) -> float:
        tokens = sum(seq_lengths)
        # sum over tokens of context length = T(T+1)/2 per sequence
        ctx_sum = sum(t * (t + 1) / 2 for t in seq_lengths)
        return (
            self.per_token * tokens
            + self.attn_per_token_ctx * ctx_sum
            + self.head_per_label * n_labels
        )


def flop_model(peft_model: nn.Module, arch) -> FlopModel:
    """Coefficients from the model's actual layers (LoRA A/B and frozen base linears)."""
    head = peft_model.get_output_embeddings()
    frozen, lora = 0, 0
    for name, module in peft_model.named_modules():
        if module is head or not (isinstance(module, nn.Linear) or _is_linear4bit(module)):
            continue
        in_f, out_f = module.in_features, module.out_features
        if ".lora_A." in name or ".lora_B." in name:
            lora += in_f * out_f  # r*d_in for A, d_out*r for B
        else:
            frozen += in_f * out_f
    layers = arch.num_hidden_layers
    head_dim = getattr(arch, "head_dim", None) or arch.hidden_size // arch.num_attention_heads
    d_attn = arch.num_attention_heads * head_dim
    vocab, hidden = arch.vocab_size, arch.hidden_size
    return FlopModel(
        per_token=4 * frozen + 6 * lora,
        attn_per_token_ctx=(4 + 8) * layers * d_attn,
        head_per_label=4 * vocab * hidden,
    )


def _is_linear4bit(module: nn.Module) -> bool:
    return type(module).__module__.startswith("bitsandbytes") and hasattr(module, "in_features")
