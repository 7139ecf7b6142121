"""`marinebench evaluate`: base + adapters in one pass, outputs per contract, cache, bad input."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from eval_helpers import build_tiny_adapter, build_tiny_dataset, build_tiny_retention
from tiny_model import build_tiny_llama

from benchmark.cli import main as cli_main
from benchmark.contracts.results import metrics_of, task_names
from benchmark.errors import UserError
from benchmark.evaluation import runner
from benchmark.evaluation.stats import BootstrapSettings

GEN_METRICS = {m.name for m in metrics_of("marine_qa")}


def _settings(env, **overrides):
    base = dict(
        tasks=("marine",),
        limit=3,
        max_gen_toks=8,
        batch_size=4,
        dataset=str(env["dataset"]),
        retention=str(env["retention"]),
        dtype="fp32",
        bootstrap=BootstrapSettings(n_resamples=300, seed=0),
    )
    base.update(overrides)
    return runner.EvalSettings(**base)


@pytest.fixture(scope="module")
def env(tiny_model_dir, tmp_path_factory):
    """Tiny base + two adapters + tiny dataset, evaluated once for the whole module."""
    root = tmp_path_factory.mktemp("eval")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MARINEBENCH_BUILD", str(root / "build"))
        env = {
            "root": root,
            "model": tiny_model_dir,
            "dataset": build_tiny_dataset(root / "dataset"),
            "retention": build_tiny_retention(root / "retention.jsonl"),
            "adapters": [
                build_tiny_adapter(tiny_model_dir, root / "adapters" / "lora-a", seed=1),
                build_tiny_adapter(tiny_model_dir, root / "adapters" / "lora-b", seed=2),
            ],
        }
        loads = runner.MODEL_LOADS
        env["result"] = runner.evaluate(str(tiny_model_dir), env["adapters"], _settings(env))
        env["loads"] = runner.MODEL_LOADS - loads
        yield env


def _scores(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "scores.jsonl").read_text().splitlines()]


def test_base_loaded_once_for_all_models(env):
    assert env["loads"] == 1
    assert [m.name for m in env["result"].models] == ["base", "lora-a", "lora-b"]
    assert not any(m.cached for m in env["result"].models)


def test_results_folder_follows_the_contract(env):
    folder = env["result"].folder
    assert folder.name == Path(env["model"]).name
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["models"][0] == {**manifest["models"][0], "name": "base", "adapter": None}
    assert [m["name"] for m in manifest["models"]] == ["base", "lora-a", "lora-b"]
    assert all(len(m["adapter_hash"]) == 64 for m in manifest["models"][1:])
    assert manifest["tasks"] == sorted(task_names())  # the marine group: every registered task
    assert manifest["dataset_hash"] and manifest["generation"]["max_gen_toks"] == 8
    assert manifest["dtype_choice"] == {
        "device": "cpu",
        "dtype": "float32",
        "source": "requested",
        "probe": None,
    }
    for model in ("base", "lora-a", "lora-b"):
        results = json.loads((folder / "lm_eval" / model / "results.json").read_text())
        assert {"results", "configs", "versions", "n-samples", "config"} <= set(results)
        for task in manifest["tasks"]:
            lines = (folder / "lm_eval" / model / f"samples_{task}.jsonl").read_text().splitlines()
            assert len(lines) == 3 and "doc_hash" in json.loads(lines[0])

    rows = _scores(folder)
    assert len(rows) == 3 * len(task_names()) * 3  # models x tasks x docs
    keys = {"model", "task", "doc_id", "id", "topic", "question", "reference", "prediction"}
    assert all(keys <= set(r) for r in rows)
    by_task = {r["task"]: set(r["metrics"]) for r in rows}
    assert by_task["marine_qa"] == GEN_METRICS == by_task["retention_qa"]
    assert by_task["marine_recall"] == GEN_METRICS
    assert by_task["marine_mc"] == {"acc", "acc_norm"} == by_task["marine_recall_mc"]
    for task in ("marine_qa_ppl", "marine_recall_ppl"):
        assert {"bits_per_byte", "word_perplexity", "loglikelihood"} <= by_task[task]
    assert {r["id"] for r in rows if r["task"] == "marine_recall"} == {
        "recall-coral_reefs-0",
        "recall-coral_reefs-1",
        "recall-coral_reefs-2",
    }

    summary = json.loads((folder / "summary.json").read_text())
    stat = summary["models"]["base"]["marine_qa"]["rouge1"]
    assert set(stat) == {"mean", "ci_low", "ci_high", "n"} and stat["n"] == 3
    cmp = summary["comparisons"]["lora-a"]["marine_mc"]["acc"]
    assert {"delta", "ci_low", "ci_high", "p_value", "test"} <= set(cmp)
    assert summary["bootstrap"]["n_resamples"] == 300


def test_lm_eval_numbers_agree_with_our_scores(env):
    folder = env["result"].folder
    rows = _scores(folder)
    for model in ("base", "lora-a"):
        results = json.loads((folder / "lm_eval" / model / "results.json").read_text())["results"]
        for task, metric in [("marine_qa", "token_f1"), ("marine_qa", "bertscore_f1")]:
            ours = [r["metrics"][metric] for r in rows if r["model"] == model and r["task"] == task]
            assert results[task][f"{metric},none"] == pytest.approx(sum(ours) / len(ours))
        mc = [r["metrics"]["acc"] for r in rows if r["model"] == model and r["task"] == "marine_mc"]
        assert results["marine_mc"]["acc,none"] == pytest.approx(sum(mc) / len(mc))


def test_adapters_change_outputs_and_base_matches_a_plain_base_run(env, monkeypatch):
    rows = _scores(env["result"].folder)

    def ll(model):
        return [
            r["metrics"]["loglikelihood"]
            for r in rows
            if r["model"] == model and r["task"] == "marine_qa_ppl"
        ]

    assert ll("lora-a") != ll("base") and ll("lora-b") != ll("base")
    # the base measured with adapters disabled equals the base evaluated with no PEFT at all
    monkeypatch.setenv("MARINEBENCH_BUILD", str(env["root"] / "build-plain"))
    plain = runner.evaluate(
        str(env["model"]), [], _settings(env, tasks=("marine_qa_ppl",)), use_cache=False
    )
    plain_ll = [r["metrics"]["loglikelihood"] for r in _scores(plain.folder)]
    assert plain_ll == pytest.approx(ll("base"), abs=1e-3)


def test_rerun_with_nothing_changed_uses_the_cache(env, monkeypatch):
    monkeypatch.setenv("MARINEBENCH_BUILD", str(env["root"] / "build"))
    folder = env["result"].folder
    before = (folder / "scores.jsonl").read_text()
    loads = runner.MODEL_LOADS
    start = time.perf_counter()
    again = runner.evaluate(str(env["model"]), env["adapters"], _settings(env))
    elapsed = time.perf_counter() - start
    assert loads == runner.MODEL_LOADS  # no weights loaded
    assert all(m.cached for m in again.models)
    assert (folder / "scores.jsonl").read_text() == before
    assert elapsed < 20


def test_changed_adapter_recomputes_only_that_adapter(env, tmp_path, monkeypatch):
    monkeypatch.setenv("MARINEBENCH_BUILD", str(env["root"] / "build"))
    changed = build_tiny_adapter(env["model"], tmp_path / "lora-a", seed=7)
    loads = runner.MODEL_LOADS
    result = runner.evaluate(
        str(env["model"]), [changed, env["adapters"][1]], _settings(env), run="changed"
    )
    assert loads + 1 == runner.MODEL_LOADS
    assert {m.name: m.cached for m in result.models} == {
        "base": True,
        "lora-a": False,
        "lora-b": True,
    }


def test_adapter_from_another_base_is_a_clear_error(env, tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MARINEBENCH_BUILD", str(env["root"] / "build"))
    other_base = build_tiny_llama(tmp_path_factory.mktemp("other-base"), seed=5, hidden_size=48)
    foreign = build_tiny_adapter(other_base, env["root"] / "foreign" / "foreign-lora", seed=3)
    loads = runner.MODEL_LOADS
    with pytest.raises(UserError) as err:
        runner.evaluate(str(env["model"]), [foreign], _settings(env))
    assert str(other_base) in str(err.value) and str(env["model"]) in str(err.value)
    assert loads == runner.MODEL_LOADS  # refused before loading anything


def test_shape_mismatch_caught_even_when_names_agree(env, tmp_path_factory, monkeypatch):
    """An adapter claiming our base but shaped for another still fails cleanly, and the
    results folder of the earlier run stays whole."""
    monkeypatch.setenv("MARINEBENCH_BUILD", str(env["root"] / "build"))
    folder = env["result"].folder
    snapshot = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    other_base = build_tiny_llama(tmp_path_factory.mktemp("wide-base"), seed=6, hidden_size=64)
    liar = build_tiny_adapter(
        other_base, env["root"] / "liar" / "liar-lora", seed=4, base_name=str(env["model"])
    )
    with pytest.raises(UserError, match="does not fit the evaluated model"):
        runner.evaluate(str(env["model"]), [liar], _settings(env), use_cache=False)
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == snapshot
    assert not [p for p in folder.parent.iterdir() if ".tmp-" in p.name]


def test_cli_data_jsonl_and_bad_line(env, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MARINEBENCH_BUILD", str(env["root"] / "build"))
    bad = tmp_path / "mine.jsonl"
    bad.write_text('{"question": "What is kelp?", "answer": "A brown alga."}\n{"question": 3}\n')
    code = cli_main(["evaluate", "--model", str(env["model"]), "--data", str(bad)])
    assert code == 2
    assert f"{bad}:2" in capsys.readouterr().err

    good = tmp_path / "mine-good.jsonl"
    good.write_text(
        '{"question": "What is kelp?", "answer": "Kelp is a large brown alga."}\n'
        '{"question": "What do krill eat?", "answer": "Krill eat phytoplankton."}\n'
    )
    code = cli_main(
        [
            "evaluate",
            "--model",
            str(env["model"]),
            "--adapters",
            str(env["adapters"][0]),
            "--data",
            str(good),
            "--max-gen-toks",
            "4",
            "--n-resamples",
            "200",
            "--dtype",
            "fp32",
        ]
    )
    assert code == 0
    folder = env["root"] / "build" / "results" / f"{Path(env['model']).name}--mine-good"
    rows = _scores(folder)
    assert {(r["model"], r["task"]) for r in rows} == {
        ("base", "marine_qa"),
        ("lora-a", "marine_qa"),
    }
    assert [r["id"] for r in rows if r["model"] == "base"] == ["mine-good-1", "mine-good-2"]
    assert set(rows[0]["metrics"]) == GEN_METRICS


@pytest.mark.integration
def test_real_smollm2_with_an_adapter_named_by_hub_id(smollm2_dir, tmp_path, monkeypatch):
    """The default model and an adapter recording the preset's hub id (as training writes it)."""
    monkeypatch.setenv("MARINEBENCH_BUILD", str(tmp_path / "build"))
    adapter = build_tiny_adapter(
        smollm2_dir,
        tmp_path / "adapters" / "smol-lora",
        seed=0,
        base_name="HuggingFaceTB/SmolLM2-135M-Instruct",
        scale=1e-3,
    )
    settings = runner.EvalSettings(
        tasks=("marine_qa",),
        limit=2,
        max_gen_toks=8,
        batch_size=2,
        dataset=str(build_tiny_dataset(tmp_path / "dataset")),
        bootstrap=BootstrapSettings(n_resamples=100),
    )
    result = runner.evaluate("smollm2-135m-instruct", [adapter], settings)
    assert result.folder.name == "smollm2-135m-instruct"
    rows = _scores(result.folder)
    assert len(rows) == 4 and all(r["prediction"].strip() for r in rows)
    timing = result.models[0].entry.timing
    assert timing["generated_tokens"] > 0 and timing["gen_tok_s"] > 0


def test_merged_adapter_matches_peft_and_restores_the_base_exactly(env):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from benchmark.evaluation import merging
    from benchmark.evaluation.adapters import check_adapters

    def load():
        return AutoModelForCausalLM.from_pretrained(env["model"], dtype=torch.float32).eval()

    info = check_adapters([env["adapters"][0]], str(env["model"]), str(env["model"]))[0]
    ids = torch.tensor([[1, 5, 9, 23, 7, 42, 3, 11]])
    model = load()
    original = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        base_logits = model(ids).logits
        peft_logits = PeftModel.from_pretrained(load(), info.path).eval()(ids).logits
    saved = merging.SavedWeights(model)
    merging.check_fit(model, [info], "tiny")
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())
    with merging.merged_adapter(model, info, "tiny", saved), torch.no_grad():
        assert not any("lora" in name for name, _ in model.named_modules())
        merged_logits = model(ids).logits
    assert not torch.allclose(merged_logits, base_logits, atol=1e-4)
    assert torch.allclose(merged_logits, peft_logits, atol=1e-4)
    assert set(model.state_dict()) == set(original)
    assert all(torch.equal(v, original[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(model(ids).logits, base_logits)


def test_workers_share_the_models_out_and_agree_with_one_process(env, monkeypatch):
    from benchmark.evaluation.workers import shares

    assert shares(["base", "a", "b", "c"], 2) == [["base", "b"], ["a", "c"]]
    assert shares(["base"], 4) == [["base"]]
    monkeypatch.setenv("MARINEBENCH_BUILD", str(env["root"] / "build-workers"))
    result = runner.evaluate(str(env["model"]), env["adapters"], _settings(env, workers=2))
    assert [m.name for m in result.models] == ["base", "lora-a", "lora-b"]
    assert not any(m.cached for m in result.models)
    ours, theirs = _scores(result.folder), _scores(env["result"].folder)
    assert [(r["model"], r["task"], r["doc_id"]) for r in ours] == [
        (r["model"], r["task"], r["doc_id"]) for r in theirs
    ]
    for a, b in zip(ours, theirs, strict=True):
        assert a["metrics"] == pytest.approx(b["metrics"], abs=1e-3, nan_ok=True)
    again = runner.evaluate(str(env["model"]), env["adapters"], _settings(env, workers=2))
    assert all(m.cached for m in again.models)
