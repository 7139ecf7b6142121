"""The LM head on `logits_to_keep` slices (benchmark/evaluation/lm_head.py): the same bits as
F.linear, without matmul's copy of the weight per batch row."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.evaluation import lm_head


def _head(vocab: int, hidden: int, dtype) -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(hidden, vocab, bias=False).to(dtype).requires_grad_(False)


@pytest.mark.parametrize(
    ("batch", "width", "keep"), [(3, 5, 1), (6, 9, 1), (5, 9, 3), (16, 40, 17), (32, 70, 30)]
)
def test_rowwise_head_gives_the_bits_of_f_linear_in_bf16(batch, width, keep):
    head = _head(4096, 64, torch.bfloat16)
    x = torch.randn(batch, width, 64).bfloat16()[:, -keep:, :]
    with torch.no_grad():
        assert lm_head.applies(head, x)
        assert torch.equal(lm_head.RowwiseHead()(x, head.weight), F.linear(x, head.weight))


def test_smollm2_sized_head_gives_the_same_bits():
    """SmolLM2's head (49,152 x 576, bf16) on a prompt pass's last position and on a context
    pass's last positions: the shapes the evaluation runs."""
    head = _head(49152, 576, torch.bfloat16)
    rowwise = lm_head.RowwiseHead()
    with torch.no_grad():
        for batch, width, keep in [(16, 53, 1), (8, 60, 12)]:
            x = torch.randn(batch, width, 576).bfloat16()[:, -keep:, :]
            assert torch.equal(rowwise(x, head.weight), F.linear(x, head.weight))


def test_applies_only_where_matmul_copies_the_weight():
    head = _head(512, 32, torch.float32)
    sliced = torch.randn(4, 6, 32)[:, -2:, :]
    with torch.no_grad():
        assert lm_head.applies(head, sliced)
        assert not lm_head.applies(head, sliced.contiguous())  # one matrix product already
        assert not lm_head.applies(head, torch.randn(1, 6, 32)[:, -2:, :])  # a single row
        head.weight.requires_grad_(True)  # matmul flattens the slice then (should_fold)
        assert not lm_head.applies(head, sliced)
    head.weight.requires_grad_(False)
    assert not lm_head.applies(head, sliced)  # grad mode: left to autograd


def test_rowwise_head_follows_writes_to_the_weight():
    """An adapter merged into the weights, then the base restored: no stale transposed copy."""
    head = _head(256, 16, torch.bfloat16)
    rowwise = lm_head.RowwiseHead()
    x = torch.randn(3, 5, 16).bfloat16()[:, -2:, :]
    with torch.no_grad():
        first = rowwise(x, head.weight)
        head.weight.mul_(2)
        assert torch.equal(rowwise(x, head.weight), F.linear(x, head.weight))
        head.weight.div_(2)
        assert torch.equal(rowwise(x, head.weight), first)


def test_fp32_models_keep_pytorchs_path(tiny_model_dir):
    """In fp32 the batched kernel rounds differently from a one-row bmm for many shapes."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert not lm_head.install(model.requires_grad_(False))
    assert not hasattr(model.get_output_embeddings(), "_marinebench_rowwise")


def test_installed_head_gives_the_model_the_same_logits(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).eval()
    model.requires_grad_(False)
    ids = torch.randint(0, model.config.vocab_size, (3, 12))
    with torch.no_grad():
        before = model(ids, logits_to_keep=4).logits
        assert lm_head.install(model)
        head = model.get_output_embeddings()
        calls = []
        head.register_forward_hook(
            lambda _m, args, _o: calls.append(lm_head.applies(head, args[0]))
        )
        assert torch.equal(model(ids, logits_to_keep=4).logits, before)
        assert calls == [True]
