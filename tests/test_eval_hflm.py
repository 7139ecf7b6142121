"""The evaluation's HFLM (benchmark/evaluation/hflm.py): lm-eval's loglikelihoods with the LM
head run only where they are read, per-task seconds, and greedy answers that do not depend on
which other questions share their batch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from transformers import AutoModelForCausalLM, AutoTokenizer

from benchmark import paths
from benchmark.evaluation.hflm import EvalHFLM

QUESTIONS = [
    "Krill?",
    "Do whales breathe air?",
    "What is the capital of France?",
    "What symmetry do adult echinoderms have, and why does it matter?",
    "How do sea stars move with tube feet powered by a water vascular system, and how fast?",
]
GREEDY = {"until": [], "do_sample": False}


def _load(model_dir: Path, dtype=torch.float32, weight_std: float | None = None):
    """(model, tokenizer) with SmolLM2's padding: the pad token is the end-of-turn token, so a
    padding position the attention mask misses reads as a real `<|im_end|>`. `weight_std`
    redraws the matrices: the tiny model's default init (std 0.02) answers every prompt with
    the same token, larger weights make each answer depend on its prompt."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if weight_std is not None:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for param in model.parameters():
                if param.dim() == 2:
                    param.copy_(torch.randn(param.shape, generator=gen) * weight_std)
    return model, tokenizer


def _prompts(lm: HFLM, questions: list[str]) -> list[str]:
    return [lm.apply_chat_template([{"role": "user", "content": q}]) for q in questions]


def _generate(lm: HFLM, prompts: list[str], max_gen_toks: int) -> list[str]:
    kwargs = {**GREEDY, "max_gen_toks": max_gen_toks}
    requests = [
        Instance("generate_until", {}, (p, dict(kwargs)), i, ("task", i, 1))
        for i, p in enumerate(prompts)
    ]
    return lm.generate_until(requests, disable_tqdm=True)


def _alone_and_batched(model, tokenizer, prompts_of, max_gen_toks: int, batch_sizes=(8,)):
    alone_lm = EvalHFLM(pretrained=model, tokenizer=tokenizer, batch_size=1)
    prompts = prompts_of(alone_lm)
    alone = [_generate(alone_lm, [p], max_gen_toks)[0] for p in prompts]
    batched = {
        size: _generate(
            EvalHFLM(pretrained=model, tokenizer=tokenizer, batch_size=size), prompts, max_gen_toks
        )
        for size in batch_sizes
    }
    return prompts, alone, batched


# --- continuation-only loglikelihood ---------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return _load(tiny_model_dir, weight_std=0.5)


def _head_rows(model, fn):
    """Run fn() and count the positions the LM head was applied to."""
    rows = []
    hook = model.get_output_embeddings().register_forward_hook(
        lambda _m, args, _out: rows.append(args[0].shape[:-1].numel())
    )
    try:
        out = fn()
    finally:
        hook.remove()
    return out, sum(rows)


def _token_requests(lm, model) -> list[tuple]:
    """Per question: its greedy continuation, the same with the last token changed, and an
    unrelated text (lm-eval's (key, context tokens, continuation tokens) form)."""
    requests = []
    for question in QUESTIONS:
        context = lm.tok_encode(_prompts(lm, [question])[0])
        with torch.no_grad():
            out = model.generate(torch.tensor([context]), max_new_tokens=6, do_sample=False)
        greedy = out[0, len(context) :].tolist()
        other = lm.tok_encode(" the sea star answer")
        for continuation in (greedy, greedy[:-1] + [greedy[-1] ^ 1], other):
            requests.append(((question, "continuation"), context, continuation))
    return requests


@pytest.mark.parametrize("max_length", [None, 48])  # 48: the longest truncate from the left
def test_continuation_only_loglikelihood_equals_the_full_sequence_one(tiny, max_length):
    model, tokenizer = tiny
    kwargs = {"max_length": max_length} if max_length else {}
    ours = EvalHFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, **kwargs)
    plain = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, **kwargs)
    requests = _token_requests(ours, model)

    theirs, full_rows = _head_rows(model, lambda: plain._loglikelihood_tokens(requests, True))
    mine, kept_rows = _head_rows(model, lambda: ours._loglikelihood_tokens(requests, True))

    assert [g for _, g in mine] == [g for _, g in theirs]
    assert {g for _, g in mine} == {True, False}  # both flags occur, so their agreement counts
    assert [ll for ll, _ in mine] == pytest.approx([ll for ll, _ in theirs], rel=1e-5, abs=1e-5)
    if max_length is None:
        assert kept_rows < 0.5 * full_rows  # the LM head skipped the contexts


def test_loglikelihood_keeps_request_order_and_times_each_task(tiny):
    model, tokenizer = tiny
    ours = EvalHFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)
    plain = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)
    prompts = _prompts(ours, QUESTIONS)
    requests = [  # two tasks, interleaved: split per task, answers must come back in order
        Instance("loglikelihood", {}, (p, c), i, (task, i, 1))
        for i, (p, (task, c)) in enumerate(
            (p, tc) for p in prompts for tc in (("mc", " Sea stars."), ("ppl", " Whales do."))
        )
    ]
    mine = ours.loglikelihood(requests, disable_tqdm=True)
    theirs = plain.loglikelihood(requests, disable_tqdm=True)
    assert [ll for ll, _ in mine] == pytest.approx([ll for ll, _ in theirs], rel=1e-5)
    assert [g for _, g in mine] == [g for _, g in theirs]
    assert set(ours.task_s) == {"mc", "ppl"} and all(s > 0 for s in ours.task_s.values())
    ours.reset_timing()
    assert not ours.task_s and ours.generated_tokens == 0


def test_bf16_loglikelihoods_are_not_rounded_to_bf16(tiny_model_dir):
    model, tokenizer = _load(tiny_model_dir, dtype=torch.bfloat16, weight_std=0.5)
    ours = EvalHFLM(pretrained=model, tokenizer=tokenizer, batch_size=4)
    prompts = _prompts(ours, QUESTIONS)
    requests = [
        Instance("loglikelihood", {}, (p, " Sea stars move with tube feet."), i, ("ppl", i, 1))
        for i, p in enumerate(prompts)
    ]

    def lls(lm):
        return [ll for ll, _ in lm.loglikelihood(requests, disable_tqdm=True)]

    def bf16_exact(x: float) -> bool:
        return float(torch.tensor(x).bfloat16()) == x

    mine = lls(ours)
    lm_eval_default = lls(HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4))
    full_fp32 = lls(
        HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, softmax_dtype="float32")
    )
    assert all(map(bf16_exact, lm_eval_default))  # what the fp32 log-softmax fixes
    assert not any(map(bf16_exact, mine))
    # the LM head on fewer rows may round a bf16 logit differently, nothing more
    assert mine == pytest.approx(full_fp32, rel=1e-2)


# --- answers that do not depend on their batch -----------------------------------------------


def test_tiny_greedy_answers_are_the_same_alone_and_in_any_batch(tiny):
    model, tokenizer = tiny
    prompts, alone, batched = _alone_and_batched(
        model, tokenizer, lambda lm: _prompts(lm, QUESTIONS), 10, batch_sizes=(2, 8)
    )
    assert len({len(tokenizer(p)["input_ids"]) for p in prompts}) == len(prompts)
    assert all(alone) and len(set(alone)) == len(alone)  # real, prompt-dependent answers
    assert batched[8] == alone
    assert batched[2] == alone


@pytest.mark.integration
def test_real_smollm2_answers_alone_equal_answers_in_one_batch(smollm2_dir):
    """Four real questions, fp32 (bf16 would round differently with the batch's shape: the
    same prompt repeated 8 times, no padding at all, already moves SmolLM2's bf16 logits)."""
    from benchmark.evaluation.data import read_qa_jsonl

    files = sorted((paths.DATASETS_SRC / "curated").glob("*.jsonl"))[:4]
    questions = [read_qa_jsonl(f)[0]["question"] for f in files]
    model, tokenizer = _load(smollm2_dir)
    prompts, alone, batched = _alone_and_batched(
        model, tokenizer, lambda lm: _prompts(lm, questions), 48
    )
    assert len({len(tokenizer(p)["input_ids"]) for p in prompts}) > 1  # padding happens
    assert all(a.strip() for a in alone)
    assert batched[8] == alone, json.dumps({"alone": alone, "batched": batched[8]}, indent=1)
