"""Synthetic but contract-exact stage outputs (results, adapter folders, dataset folder).

The site's tests and its benchmark must not depend on a real training or evaluation run, so this
module writes folders that follow COMMON.md's file contracts exactly: per-sample scores that
agree with the summary's bootstrap CIs and paired tests, lm-eval results JSON shaped like
EvaluationTracker's output, adapter train_metrics.json and a parquet dataset folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.scorers import GENERATION_METRICS

GEN_METRICS = GENERATION_METRICS
TOPICS = (
    "coral_reefs",
    "cetaceans",
    "sharks_rays",
    "plankton",
    "deep_sea_vents",
    "polar_seas",
    "kelp_seagrass",
    "ocean_chemistry",
)
_SUBJECTS = {
    "coral_reefs": ("zooxanthellae", "reef crest", "coral bleaching", "spur-and-groove formation"),
    "cetaceans": ("echolocation", "baleen plates", "humpback song", "the dive reflex"),
    "sharks_rays": ("ampullae of Lorenzini", "ovoviviparity", "dermal denticles", "spiracles"),
    "plankton": ("diel vertical migration", "diatom blooms", "copepod grazing", "the spring bloom"),
    "deep_sea_vents": ("chemosynthesis", "bioluminescence", "piezolytes", "black smokers"),
    "polar_seas": ("antifreeze glycoproteins", "sea-ice algae", "Antarctic krill", "polynyas"),
    "kelp_seagrass": ("sea otters", "holdfasts", "blue carbon", "urchin barrens"),
    "ocean_chemistry": (
        "the carbonate system",
        "oxygen minimum zones",
        "aragonite saturation",
        "salinity",
    ),
}
_VERBS = ("shape", "limit", "support", "change", "protect")
_HOSTILE = (
    "<script>alert(1)</script> Corals are animals.",
    '<img src=x onerror="alert(2)"> Krill are crustaceans.',
)
SECRET_LIKE = "hf_SyntheticSecretTokenDoNotLeak0123456789"


def _question(rng: np.random.Generator, topic: str, i: int) -> tuple[str, str]:
    subject = _SUBJECTS[topic][i % len(_SUBJECTS[topic])]
    verb = _VERBS[int(rng.integers(len(_VERBS)))]
    q = f"How does {subject} {verb} life in {topic.replace('_', ' ')} habitats? (item {i})"
    ref = (
        f"{subject[0].upper() + subject[1:]} {verb}s the ecology of {topic.replace('_', ' ')} "
        f"by altering energy flow, survival and behaviour of the resident species."
    )
    return q, ref


def _answer(rng: np.random.Generator, ref: str, quality: float) -> str:
    words = ref.split()
    keep = max(1, int(len(words) * min(1.0, max(0.05, quality))))
    start = int(rng.integers(0, len(words) - keep + 1))
    filler = ("Marine", "organisms", "often", "depend", "on", "currents", "and", "light.")
    return " ".join(words[start : start + keep] + list(filler[: int(rng.integers(2, 8))]))


def _bootstrap(x: np.ndarray, idx: np.ndarray) -> tuple[float, float]:
    means = x[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _sign_flip_p(diff: np.ndarray, flips: np.ndarray) -> float:
    observed = abs(diff.mean())
    null = np.abs((flips * diff).mean(axis=1))
    return float((1 + (null >= observed - 1e-12).sum()) / (1 + len(null)))


def _metric_block(rng: np.random.Generator, n: int, level: float) -> dict[str, np.ndarray]:
    """Per-sample generation metrics around a quality `level` (0..1)."""
    base = np.clip(rng.beta(2, 5, n) + level, 0, 1)
    out = {}
    for k, name in enumerate(GEN_METRICS):
        if name == "exact_match":
            out[name] = (rng.random(n) < base * 0.08).astype(float)
            continue
        jitter = rng.normal(0, 0.04, n)
        scale = (0.9, 0.45, 0.8, 1.0, 0.85, 0.0, 0.7, 0.95)[k]
        offset = (0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.05, 0.3)[k]
        out[name] = np.clip(base * scale * (1 - offset) + offset + jitter, 0, 1)
    return out


def write_adapter(adapters_root: Path, name: str, seed: int, steps: int = 60) -> Path:
    """An adapter folder with README.md card and train_metrics.json (no weights: the site needs none)."""
    rng = np.random.default_rng(seed)
    folder = Path(adapters_root) / name
    folder.mkdir(parents=True, exist_ok=True)
    r = int((4, 8, 16, 32)[seed % 4])
    quant = "nf4" if "qlora" in name else None
    loss = 2.6 * np.exp(-np.arange(steps) / (steps / 3)) + 1.1 + rng.normal(0, 0.05, steps)
    epochs = 3
    tokens_per_step = 4096
    wall = float(steps * (0.9 + 0.2 * rng.random()))
    trainable = r * 2 * 576 * 7 * 30 // 4
    total = 134_515_008 + trainable
    config = {
        "name": name,
        "base_model": "smollm2-135m-instruct",
        "lora": {"r": r, "alpha": 2 * r, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
        "quantization": quant,
        "epochs": epochs,
        "learning_rate": 2e-4,
        "batch_size": 8,
        "max_length": 256,
        "seed": seed,
        "hub": {"push": False, "hub_token": SECRET_LIKE},
    }
    metrics = {
        "config_name": name,
        "config": config,
        "config_hash": f"{seed:064x}",
        "base_model": "smollm2-135m-instruct",
        "base_model_hub_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "dataset_path": "build/dataset",
        "dataset_hash": "d" * 64,
        "seed": seed,
        "quantization": quant,
        "lora": config["lora"],
        "trainable_params": trainable,
        "total_params": total,
        "trainable_pct": 100.0 * trainable / total,
        "tokens_seen": steps * tokens_per_step,
        "wall_time_s": wall,
        "tokens_per_s": steps * tokens_per_step / wall,
        "flops_per_s": 2.1e11,
        "matmul_peak_flops": 1.2e12,
        "mfu": 0.175,
        "peak_memory_mb": float(900 + 40 * r + (0 if quant is None else -250)),
        "loss_per_step": [
            {"step": i + 1, "loss": round(float(loss[i]), 4), "lr": 2e-4, "tokens": tokens_per_step}
            for i in range(steps)
        ],
        "val_loss_per_epoch": [
            {
                "epoch": e + 1,
                "loss": round(float(loss[min(steps - 1, (e + 1) * steps // epochs - 1)] + 0.08), 4),
            }
            for e in range(epochs)
        ],
        "library_versions": {"torch": "2.13.0", "transformers": "5.0.0", "peft": "0.17.0"},
        "hardware": {"cpu": "synthetic CPU", "cores": 2},
        "device": "cpu",
        "dtype": "bfloat16",
        "epochs": epochs,
    }
    (folder / "train_metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    card = (
        "---\nlibrary_name: peft\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\n---\n"
        f"# {name}\n\nA LoRA adapter (r={r}) for SmolLM2-135M-Instruct trained on MarineBench.\n\n"
        "| setting | value |\n|---|---|\n"
        f"| rank | {r} |\n| epochs | {epochs} |\n\n"
        "<script>alert('card')</script> must render as text.\n"
    )
    (folder / "README.md").write_text(card, encoding="utf-8")
    return folder


def _lm_eval_results(
    model_args: str, name: str, n: int, summary_model: dict[str, Any], rng: np.random.Generator
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for task, metrics in summary_model.items():
        row: dict[str, Any] = {"alias": task}
        for metric, v in metrics.items():
            row[f"{metric},none"] = v["mean"]
            row[f"{metric}_stderr,none"] = (v["ci_high"] - v["ci_low"]) / 3.92
        results[task] = row
    ppl = float(rng.uniform(18, 40))
    results["marine_qa_ppl"].update(
        {
            "word_perplexity,none": ppl,
            "word_perplexity_stderr,none": "N/A",
            "byte_perplexity,none": float(np.exp(np.log(ppl) / 4.6)),
            "byte_perplexity_stderr,none": "N/A",
        }
    )
    tasks = sorted(results)
    hib = {
        t: {
            m.split(",")[0]: "perplexity" not in m and "bits" not in m
            for m in results[t]
            if "," in m and "_stderr" not in m
        }
        for t in tasks
    }
    return {
        "results": results,
        "groups": {},
        "group_subtasks": {t: [] for t in tasks},
        "configs": {
            t: {"task": t, "dataset_path": "build/dataset", "output_type": "generate_until"}
            for t in tasks
        },
        "versions": {t: 1.0 for t in tasks},
        "n-shot": {t: 0 for t in tasks},
        "higher_is_better": hib,
        "n-samples": {t: {"original": n, "effective": n} for t in tasks},
        "config": {
            "model": "hf",
            "model_args": model_args,
            "batch_size": 8,
            "batch_sizes": [],
            "device": "cpu",
            "use_cache": None,
            "limit": None,
            "bootstrap_iters": 0,
            "gen_kwargs": {"max_gen_toks": 128},
            "random_seed": 0,
            "numpy_seed": 1234,
            "torch_seed": 1234,
            "fewshot_seed": 1234,
        },
        "git_hash": None,
        "date": 1767225600.0,
        "model_source": "hf",
        "model_name": name,
        "model_name_sanitized": name.replace("/", "__"),
        "total_evaluation_time_seconds": "321.5",
    }


def write_results_run(
    results_root: Path,
    adapters: list[tuple[str, Path | None]],
    *,
    run: str = "smollm2-135m-instruct",
    n_samples: int = 40,
    seed: int = 0,
    hostile: bool = False,
    n_resamples: int = 200,
) -> Path:
    """One results folder: base + `adapters` [(name, adapter folder)], every contract file."""
    rng = np.random.default_rng(seed)
    out = Path(results_root) / run
    (out / "lm_eval").mkdir(parents=True, exist_ok=True)
    n = n_samples
    n_ret = max(8, n // 5)
    docs = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        q, ref = _question(rng, topic, i)
        docs.append({"id": f"mq-{i:05d}", "topic": topic, "question": q, "reference": ref})
    ret_docs = [
        {
            "id": f"ret-{i:04d}",
            "topic": "general",
            "question": f"What is the capital of country number {i}?",
            "reference": f"The capital of country number {i} is City {i}.",
        }
        for i in range(n_ret)
    ]
    idx = rng.integers(0, n, (n_resamples, n))
    ridx = rng.integers(0, n_ret, (n_resamples, n_ret))
    flips = rng.choice([-1.0, 1.0], (n_resamples, n))
    rflips = rng.choice([-1.0, 1.0], (n_resamples, n_ret))
    models = [("base", None)] + list(adapters)
    per_model: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    base_qa = _metric_block(rng, n, 0.05)
    base_ret = _metric_block(rng, n_ret, 0.25)
    base_mc = (rng.random(n) < 0.32).astype(float)
    base_bpb = rng.normal(1.25, 0.15, n)
    summary: dict[str, Any] = {"run": run, "base": "base", "models": {}, "comparisons": {}}
    scores_lines: list[str] = []
    for m_i, (name, _folder) in enumerate(models):
        if name == "base":
            qa, ret, mc, bpb = base_qa, base_ret, base_mc, base_bpb
        else:
            gain = float(rng.normal(0.04, 0.03))
            qa = {
                k: np.clip(v + (gain if k != "exact_match" else 0) + rng.normal(0, 0.03, n), 0, 1)
                for k, v in base_qa.items()
            }
            qa["exact_match"] = np.maximum(
                base_qa["exact_match"], (rng.random(n) < 0.02 + max(gain, 0)).astype(float)
            )
            ret = {
                k: np.clip(v - abs(gain) / 3 + rng.normal(0, 0.03, n_ret), 0, 1)
                for k, v in base_ret.items()
            }
            ret["exact_match"] = base_ret["exact_match"].copy()
            mc = np.where(rng.random(n) < 0.15 + gain, 1.0, base_mc)
            bpb = base_bpb - gain * 2 + rng.normal(0, 0.05, n)
        per_model[name] = {"marine_qa": qa, "retention_qa": ret}
        block: dict[str, dict[str, Any]] = {}
        for task, arrays, ix in (("marine_qa", qa, idx), ("retention_qa", ret, ridx)):
            block[task] = {}
            for metric, x in arrays.items():
                lo, hi = _bootstrap(x, ix)
                block[task][metric] = {
                    "mean": float(x.mean()),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": len(x),
                }
        lo, hi = _bootstrap(mc, idx)
        block["marine_mc"] = {
            "acc": {"mean": float(mc.mean()), "ci_low": lo, "ci_high": hi, "n": n},
            "acc_norm": {
                "mean": float(mc.mean()) + 0.01,
                "ci_low": lo + 0.01,
                "ci_high": hi + 0.01,
                "n": n,
            },
        }
        lo, hi = _bootstrap(bpb, idx)
        block["marine_qa_ppl"] = {
            "bits_per_byte": {"mean": float(bpb.mean()), "ci_low": lo, "ci_high": hi, "n": n}
        }
        summary["models"][name] = block
        if name != "base":
            comp: dict[str, dict[str, Any]] = {}
            pairs = [
                ("marine_qa", qa, base_qa, idx, flips),
                ("retention_qa", ret, base_ret, ridx, rflips),
                ("marine_mc", {"acc": mc}, {"acc": base_mc}, idx, flips),
                ("marine_qa_ppl", {"bits_per_byte": bpb}, {"bits_per_byte": base_bpb}, idx, flips),
            ]
            for task, arrays, base_arrays, ix, fl in pairs:
                comp[task] = {}
                for metric, x in arrays.items():
                    diff = x - base_arrays[metric]
                    lo, hi = _bootstrap(diff, ix)
                    comp[task][metric] = {
                        "delta": float(diff.mean()),
                        "ci_low": lo,
                        "ci_high": hi,
                        "p_value": _sign_flip_p(diff, fl),
                        "test": "paired sign-flip permutation",
                    }
            summary["comparisons"][name] = comp
        for task, task_docs, arrays in (("marine_qa", docs, qa), ("retention_qa", ret_docs, ret)):
            for d_i, doc in enumerate(task_docs):
                quality = float(arrays["rougeL"][d_i])
                pred = _answer(rng, doc["reference"], quality)
                if hostile and name != "base" and d_i < len(_HOSTILE):
                    pred = _HOSTILE[d_i]
                line = {
                    "model": name,
                    "task": task,
                    "doc_id": d_i,
                    "id": doc["id"],
                    "topic": doc["topic"],
                    "question": doc["question"],
                    "reference": doc["reference"],
                    "prediction": pred,
                    "metrics": {k: round(float(v[d_i]), 4) for k, v in arrays.items()},
                }
                scores_lines.append(json.dumps(line, ensure_ascii=False))
        folder = Path(models[m_i][1]) if models[m_i][1] else None
        model_args = "pretrained=build/models/smollm2-135m-instruct" + (
            f",peft=build/adapters/{name}" if folder else ""
        )
        lm = _lm_eval_results(model_args, name, n, block, rng)
        (out / "lm_eval" / name).mkdir(parents=True, exist_ok=True)
        (out / "lm_eval" / name / "results.json").write_text(
            json.dumps(lm, indent=2, ensure_ascii=False), encoding="utf-8"
        )
    summary["bootstrap"] = {"n_resamples": n_resamples, "seed": seed, "confidence": 0.95}
    manifest = {
        "run": run,
        "base_model": "smollm2-135m-instruct",
        "base_model_path": "build/models/smollm2-135m-instruct",
        "dataset_path": "build/dataset",
        "dataset_hash": "d" * 64,
        "created": "2026-01-01T00:00:00+00:00",
        "tasks": ["marine_qa", "marine_qa_ppl", "marine_mc", "retention_qa"],
        "generation": {"max_new_tokens": 128, "batch_size": 8, "do_sample": False},
        "models": [
            {
                "name": name,
                "adapter": str(folder) if folder else None,
                "adapter_hash": (f"{i:064x}" if folder else None),
            }
            for i, (name, folder) in enumerate(models)
        ],
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "scores.jsonl").write_text("\n".join(scores_lines) + "\n", encoding="utf-8")
    return out


def write_dataset(
    dataset_root: Path, per_split: tuple[int, int, int] = (80, 10, 10), seed: int = 0
) -> Path:
    """A dataset folder: data/{train,validation,test}-00000-of-00001.parquet, README.md, build_report.json."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    root = Path(dataset_root)
    (root / "data").mkdir(parents=True, exist_ok=True)
    counts = {}
    k = 0
    for split, size in zip(("train", "validation", "test"), per_split, strict=True):
        rows = {c: [] for c in ("id", "topic", "difficulty", "question", "answer", "source")}
        for _ in range(size):
            topic = TOPICS[int(rng.integers(len(TOPICS)))]
            q, a = _question(rng, topic, k)
            rows["id"].append(f"{topic}-{k:05d}")
            rows["topic"].append(topic)
            rows["difficulty"].append(("easy", "medium", "hard")[k % 3])
            rows["question"].append(q)
            rows["answer"].append(a)
            rows["source"].append("curated")
            k += 1
        pq.write_table(pa.table(rows), root / "data" / f"{split}-00000-of-00001.parquet")
        counts[split] = size
    report = {
        "build_hash": "b" * 64,
        "seed": seed,
        "steps": [
            {"step": "load_curated", "kept": k + 14, "dropped": 0},
            {
                "step": "validate",
                "kept": k + 9,
                "dropped": 5,
                "reasons": {"empty answer": 3, "bad topic": 2},
            },
            {"step": "exact_dedup", "kept": k + 4, "dropped": 5},
            {"step": "near_dedup_minhash", "kept": k + 1, "dropped": 3, "threshold": 0.8},
            {"step": "decontaminate_retention", "kept": k, "dropped": 1},
        ],
        "counts": counts,
    }
    (root / "build_report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (root / "README.md").write_text(
        "---\nlicense: cc-by-4.0\nlanguage: [en]\n---\n# MarineBench Q&A\n\n"
        "Curated marine-biology question/answer pairs.\n\n## Splits\n\n"
        "| split | rows |\n|---|---|\n"
        + "".join(f"| {s} | {c} |\n" for s, c in counts.items())
        + "\n<b>raw html</b> is shown as text.\n",
        encoding="utf-8",
    )
    return root


def write_tree(
    build_root: Path,
    *,
    n_adapters: int = 3,
    n_samples: int = 40,
    seed: int = 0,
    hostile: bool = False,
    dataset: bool = True,
    train_metrics: bool = True,
) -> dict[str, Path]:
    """A whole synthetic build/: adapters/, results/<run>/ and dataset/. Returns their paths."""
    build_root = Path(build_root)
    names = ["smollm2-lora-r8", "smollm2-lora-r16", "smollm2-qlora-r16"]
    names += [f"smollm2-lora-sweep-{i:02d}" for i in range(max(0, n_adapters - len(names)))]
    names = names[:n_adapters]
    adapters = []
    for i, name in enumerate(names):
        folder = build_root / "adapters" / name
        if train_metrics:
            write_adapter(build_root / "adapters", name, seed + i + 1)
        adapters.append((name, folder))
    results = write_results_run(
        build_root / "results", adapters, n_samples=n_samples, seed=seed, hostile=hostile
    )
    paths = {
        "build": build_root,
        "results": build_root / "results",
        "run": results,
        "adapters": build_root / "adapters",
    }
    if dataset:
        paths["dataset"] = write_dataset(build_root / "dataset", seed=seed)
    return paths
