"""The opt-in fast evaluation path (`--fast`, benchmark/evaluation/fast.py and multi_lora.py):
every model's answers in one batch, each row its own adapter, ended rows dropped; likelihoods
as on the exact path; the parity report's comparison (benchmark/perf/parity.py)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch
from eval_helpers import build_tiny_adapter, build_tiny_dataset, build_tiny_retention
from lm_eval.api.instance import Instance
from torch import nn

from benchmark.cli import main as cli_main
from benchmark.errors import UserError
from benchmark.evaluation import merging, multi_lora
from benchmark.evaluation.adapters import check_adapters
from benchmark.evaluation.fast import FastEvalHFLM
from benchmark.evaluation.hflm import EvalHFLM
from benchmark.perf.parity import compare

QUESTIONS = [
    "Krill?",
    "Do whales breathe air?",
    "What symmetry do adult echinoderms have, and why does it matter?",
    "How do sea stars move with tube feet powered by a water vascular system?",
]


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    """Tiny base with larger weights (answers that depend on the prompt), in fp32, and two
    adapters of different ranks and target modules."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("fast")
    folders = [
        build_tiny_adapter(tiny_model_dir, root / "lora-a", seed=1, scale=0.3),
        build_tiny_adapter(
            tiny_model_dir,
            root / "lora-b",
            seed=2,
            scale=0.3,
            r=2,
            target_modules=("o_proj", "up_proj", "v_proj"),
        ),
    ]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    model.requires_grad_(False)
    infos = check_adapters(folders, str(tiny_model_dir), str(tiny_model_dir))
    return {"model": model, "tokenizer": tokenizer, "infos": infos, "root": root}


def _peft_logits(model, info, ids) -> torch.Tensor:
    """The adapter's logits as PEFT computes them unmerged; the model is left as it was."""
    peft_model = merging.load_peft(model, info, "tiny")
    try:
        with torch.no_grad():
            return peft_model(input_ids=ids).logits
    finally:
        peft_model.unload()


def test_each_row_runs_its_own_adapter_and_the_model_is_left_as_it_was(setup):
    model, infos = setup["model"], setup["infos"]
    weights = [multi_lora.read_adapter(model, info, "tiny") for info in infos]
    assert [w.rank for w in weights] == [4, 2]
    assert {p.rsplit(".", 1)[-1] for p in weights[1].layers} == {"o_proj", "up_proj", "v_proj"}
    ids = torch.randint(
        0, model.config.vocab_size, (5, 7), generator=torch.Generator().manual_seed(1)
    )
    with torch.no_grad():
        base = model(ids).logits
    expected = [base, _peft_logits(model, infos[0], ids), _peft_logits(model, infos[1], ids)]
    owners = torch.tensor([0, 1, 2, 1, 0])
    with multi_lora.installed(model, weights) as rows, torch.no_grad():
        rows.rows(owners)
        mixed = model(ids).logits
    for r, owner in enumerate(owners.tolist()):
        torch.testing.assert_close(mixed[r], expected[owner][r], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(expected[1], base) and not torch.allclose(expected[2], base)
    assert all(type(m) is not multi_lora.MultiLoRALinear for m in model.modules()), (
        "modules restored"
    )
    with torch.no_grad():
        assert torch.equal(model(ids).logits, base)


def test_an_adapter_the_fast_path_cannot_run_unmerged_is_refused(setup, tiny_model_dir):
    folder = build_tiny_adapter(tiny_model_dir, setup["root"] / "lora-dora", seed=3, use_dora=True)
    info = check_adapters([folder], str(tiny_model_dir), str(tiny_model_dir))[0]
    with pytest.raises(UserError, match="use_dora"):
        multi_lora.read_adapter(setup["model"], info, "tiny")


def _requests(lm, gen_kwargs: dict) -> list[Instance]:
    prompts = [lm.apply_chat_template([{"role": "user", "content": q}]) for q in QUESTIONS]
    return [
        Instance("generate_until", {}, (p, dict(gen_kwargs)), i, ("task", i, 1))
        for i, p in enumerate(prompts)
    ]


@pytest.mark.parametrize(
    "gen_kwargs",
    [
        {"until": [], "do_sample": False, "max_gen_toks": 9},
        # stop strings end rows at different steps: the batch is compacted as they end
        {"until": ["e", "a"], "do_sample": False, "max_gen_toks": 12},
    ],
)
def test_every_model_answers_in_one_batch_as_the_exact_path_answers(setup, gen_kwargs):
    model, tokenizer, infos = setup["model"], setup["tokenizer"], setup["infos"]
    saved = merging.SavedWeights(model)
    by_name = {"base": None, "lora-a": infos[0], "lora-b": infos[1]}

    def merge(name):
        if by_name[name] is None:
            return contextlib.nullcontext()
        return merging.merged_adapter(model, by_name[name], "tiny", saved)

    exact = {}
    for name in by_name:
        with merge(name):
            lm = EvalHFLM(pretrained=model, tokenizer=tokenizer, batch_size=2)
            exact[name] = lm.generate_until(_requests(lm, gen_kwargs), disable_tqdm=True)
    assert len({tuple(v) for v in exact.values()}) == 3  # the adapters change the answers

    weights = [multi_lora.read_adapter(model, info, "tiny") for info in infos]
    fast = FastEvalHFLM(
        pretrained=model,
        tokenizer=tokenizer,
        batch_size=2,
        adapters=weights,
        models={"base": 0, "lora-a": 1, "lora-b": 2},
        merge=merge,
    )
    batches: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda _m, args, kwargs: batches.append(
            (kwargs.get("input_ids", args[0] if args else None)).shape[0]
        ),
        with_kwargs=True,
    )
    try:
        answers = {}
        for name in by_name:
            fast.select(name)
            before = len(batches)
            answers[name] = fast.generate_until(_requests(fast, gen_kwargs), disable_tqdm=True)
            if name != "base":
                assert len(batches) == before, f"{name}: answered again instead of from memory"
            timing = fast.timing()
            assert timing["generate_s"] > 0 and timing["task_s"]["task"] == timing["generate_s"]
    finally:
        hook.remove()
        fast.close()
    assert batches[0] == 2 * 3  # batch_size questions of each of the 3 models at once
    if gen_kwargs["until"]:
        assert min(batches) < max(batches)  # rows that ended left the batch
    assert answers == exact
    with torch.no_grad():  # the base weights are as loaded
        for name, tensor in saved.saved.items():
            assert torch.equal(model.state_dict()[name], tensor), name


def test_sampling_is_refused_on_the_fast_path(setup):
    model, tokenizer = setup["model"], setup["tokenizer"]
    fast = FastEvalHFLM(
        pretrained=model,
        tokenizer=tokenizer,
        batch_size=2,
        adapters=[],
        models={"base": 0},
        merge=lambda _name: contextlib.nullcontext(),
    )
    fast.select("base")
    with pytest.raises(UserError, match="greedily"):
        fast.generate_until(
            _requests(fast, {"until": [], "do_sample": True, "temperature": 0.7}),
            disable_tqdm=True,
        )


def test_cli_fast_run_keeps_the_exact_likelihoods_and_its_own_cache_key(
    tiny_model_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("MARINEBENCH_BUILD", str(tmp_path / "build"))
    dataset = build_tiny_dataset(tmp_path / "dataset")
    retention = build_tiny_retention(tmp_path / "retention.jsonl")
    adapter = build_tiny_adapter(tiny_model_dir, tmp_path / "lora-a", seed=1)
    common = [
        "evaluate", "--model", str(tiny_model_dir), "--adapters", str(adapter),
        "--dataset", str(dataset), "--retention", str(retention),
        "--tasks", "marine_qa", "marine_qa_ppl", "marine_mc", "--limit", "3",
        "--max-gen-toks", "6", "--batch-size", "4", "--n-resamples", "200", "--dtype", "fp32",
    ]  # fmt: skip
    assert cli_main([*common, "--run", "exact"]) == 0
    assert cli_main([*common, "--run", "fast", "--fast"]) == 0
    folders = {run: tmp_path / "build" / "results" / run for run in ("exact", "fast")}
    manifests = {r: json.loads((f / "manifest.json").read_text()) for r, f in folders.items()}
    assert manifests["fast"]["generation"]["path"] == "fast"
    assert manifests["exact"]["generation"]["path"] == "exact"
    assert not any(m["cached"] for m in manifests["fast"]["models"])  # not the exact entries
    keys = {r: {m["cache_key"] for m in man["models"]} for r, man in manifests.items()}
    assert not keys["fast"] & keys["exact"]
    rows = {r: _scores(f) for r, f in folders.items()}
    for a, b in zip(rows["exact"], rows["fast"], strict=True):
        assert (a["model"], a["task"], a["doc_id"]) == (b["model"], b["task"], b["doc_id"])
        if a["task"] != "marine_qa":
            assert a["metrics"] == b["metrics"]  # likelihoods: the exact path's own numbers
        else:
            assert b["prediction"] is not None
    summaries = {r: json.loads((f / "summary.json").read_text()) for r, f in folders.items()}
    assert all(r["within_ci"] for r in compare(summaries["exact"], summaries["exact"]))
    assert len(compare(summaries["exact"], summaries["fast"])) > 10


def _scores(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "scores.jsonl").read_text().splitlines()]


def test_parity_compares_each_mean_with_the_exact_ci():
    def summary(means: dict[str, float]) -> dict:
        return {
            "models": {
                "base": {
                    "marine_qa": {
                        m: {"mean": v, "ci_low": v - 0.1, "ci_high": v + 0.1}
                        for m, v in means.items()
                    }
                }
            }
        }

    exact = summary({"rougeL": 0.30, "token_f1": 0.40, "bertscore_f1": 0.80})
    fast = summary({"rougeL": 0.35, "token_f1": 0.55})
    rows = {r["metric"]: r for r in compare(exact, fast)}
    assert rows["rougeL"]["within_ci"] and rows["rougeL"]["exact_ci"] == pytest.approx([0.2, 0.4])
    assert not rows["token_f1"]["within_ci"]
    assert not rows["bertscore_f1"]["within_ci"] and rows["bertscore_f1"]["fast_mean"] is None


def test_multi_lora_linear_adds_nothing_for_base_rows():
    base = nn.Linear(8, 6, bias=False)
    adapter = multi_lora.AdapterWeights(
        "a", 2, {"proj": (torch.randn(2, 8), torch.randn(6, 2), 2.0)}
    )
    rows = multi_lora.RowAdapters([adapter])
    layer = multi_lora.MultiLoRALinear(
        base, "proj", adapter.layers["proj"][0], adapter.layers["proj"][1], rows
    )
    x = torch.randn(3, 4, 8)
    rows.rows(torch.tensor([0, 1, 0]))
    with torch.no_grad():
        out = layer(x)
        a, b, s = adapter.layers["proj"]
        assert torch.equal(out[0], base(x[0])) and torch.equal(out[2], base(x[2]))
        torch.testing.assert_close(out[1], base(x[1]) + s * (x[1] @ a.T @ b.T))
