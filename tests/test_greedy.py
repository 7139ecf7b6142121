"""The compacting greedy loop must produce what transformers' greedy generate produces."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmark.evaluation.greedy import greedy_generate


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    # A freshly initialised model attends almost uniformly and barely reacts to its input; scaled
    # up, attending a pad token or not changes its greedy answers (checked below).
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.mul_(6.0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.padding_side = "left"
    return model, tokenizer


def _batch(tokenizer):
    prompts = ["the sea", "a whale shark swims in warm water near the reef", "kelp", "coral reefs"]
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    return enc["input_ids"], enc["attention_mask"]


def _reference(model, ids, mask, new_tokens, eos):
    return model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=new_tokens,
        min_new_tokens=0,
        do_sample=False,
        eos_token_id=eos,
        pad_token_id=model.config.pad_token_id,
    )


def test_matches_generate_when_no_row_stops(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    ids, mask = _batch(tokenizer)
    model.generation_config.eos_token_id = None
    tokenizer_eos = tokenizer.eos_token_id
    tokenizer.eos_token_id = None
    try:
        ours = greedy_generate(model, tokenizer, ids, mask, 12, pad_token_id=0)
        ref = _reference(model, ids, mask, 12, None)
    finally:
        tokenizer.eos_token_id = tokenizer_eos
    assert ours.shape == (4, ids.shape[1] + 12)
    assert torch.equal(ours, ref)
    unmasked = _reference(model, ids, torch.ones_like(mask), 12, None)
    assert not torch.equal(unmasked, ref), "the model must be sensitive to the padding mask"


def test_finished_rows_leave_the_batch_and_the_rest_match_generate(model_and_tokenizer):
    """Make a token the model really emits mid-answer the end token: rows stop at different
    steps, leave the batch, and every row still equals generate's (padding after the stop)."""
    model, tokenizer = model_and_tokenizer
    ids, mask = _batch(tokenizer)
    model.generation_config.eos_token_id = None
    free = _reference(model, ids, mask, 16, None)[:, ids.shape[1] :]
    eos = int(free[1, 3])  # the 4th token of row 1: row 1 stops at step 4 at the latest
    model.generation_config.eos_token_id = eos
    model.config.pad_token_id = model.config.pad_token_id or 0
    tokenizer_eos = tokenizer.eos_token_id
    tokenizer.eos_token_id = None
    try:
        ours = greedy_generate(
            model, tokenizer, ids, mask, 16, pad_token_id=model.config.pad_token_id
        )
        ref = _reference(model, ids, mask, 16, eos)
    finally:
        tokenizer.eos_token_id = tokenizer_eos
        model.generation_config.eos_token_id = None
    answers = ours[:, ids.shape[1] :]
    assert (answers == eos).any(dim=1).sum() >= 1
    stopped_row = answers[1].tolist()
    assert stopped_row.index(eos) <= 3
    assert all(t == model.config.pad_token_id for t in stopped_row[stopped_row.index(eos) + 1 :])
    ref = torch.nn.functional.pad(
        ref, (0, ours.shape[1] - ref.shape[1]), value=model.config.pad_token_id
    )
    assert torch.equal(ours, ref)


def test_a_stop_string_ends_only_its_row(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    ids, mask = _batch(tokenizer)
    model.generation_config.eos_token_id = None
    tokenizer_eos = tokenizer.eos_token_id
    tokenizer.eos_token_id = None
    try:
        free = greedy_generate(model, tokenizer, ids, mask, 10, pad_token_id=0)[:, ids.shape[1] :]
        stop = tokenizer.decode(free[2, :2])
        stopped = greedy_generate(model, tokenizer, ids, mask, 10, stop=[stop], pad_token_id=0)
    finally:
        tokenizer.eos_token_id = tokenizer_eos
    answers = stopped[:, ids.shape[1] :]
    text = tokenizer.decode(answers[2], skip_special_tokens=False)
    assert stop in text
    for row in range(4):
        decoded = tokenizer.decode(free[row], skip_special_tokens=False)
        if stop not in decoded:  # rows that never produce the stop string run to the cap
            assert torch.equal(answers[row], free[row])
