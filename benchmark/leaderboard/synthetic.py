"""Synthetic but contract-exact stage outputs (results, adapter folders, dataset folder).

The site's tests and its benchmark must not depend on a real training or evaluation run, so this
module writes folders that follow benchmark/contracts/ exactly (docs/contracts.md): one score
record per model, registered task and document, with a value for every registered metric; a
summary built from those records by the evaluation's own build_summary; lm-eval results JSON
shaped like EvaluationTracker's output; adapter folders with train_metrics.json and a card, and
their training records copied into the run as the evaluation copies them; a parquet dataset
folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.contracts import adapter as adapter_contract
from benchmark.contracts import dataset as dataset_contract
from benchmark.contracts import results as contract
from benchmark.contracts.base_model import DEFAULT_MODEL
from benchmark.evaluation.stats import BootstrapSettings
from benchmark.evaluation.summary import build_summary
from benchmark.evaluation.training import copy_training_records

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


_PADDING_TEXT = (
    "This is a fascinating question that marine biologists continue to study in many oceans, "
    "and the answer depends on temperature, nutrients, light, currents and the species involved."
)
_PADDING = _PADDING_TEXT.split(" ")


def _answer(rng: np.random.Generator, ref: str, quality: float, verbose: bool = False) -> str:
    """A synthetic answer: part of the reference (more of it for a better model) and filler; a
    verbose model (the base) pads it with general words, as real base models do."""
    words = ref.split()
    keep = max(1, int(len(words) * min(1.0, max(0.05, quality))))
    start = int(rng.integers(0, len(words) - keep + 1))
    filler = ("Marine", "organisms", "often", "depend", "on", "currents", "and", "light.")
    out = words[start : start + keep] + list(filler[: int(rng.integers(2, 8))])
    if verbose:
        out = _PADDING[: int(rng.integers(12, len(_PADDING) + 1))] + out
    return " ".join(out)


def _length_scores(prediction: str, reference: str) -> dict[str, float]:
    """answer_words and length_ratio of one answer, as the scorers define them (whitespace
    words; the ratio to the reference's words)."""
    words = len(prediction.split())
    return {"answer_words": float(words), "length_ratio": words / max(len(reference.split()), 1)}


#: how a metric's synthetic value follows answer quality q in [0, 1]: ("score", scale, offset)
#: -> q * scale * (1 - offset) + offset + noise, clipped to [0, 1]; ("rate", r) -> 1 with
#: probability q * r, else 0; ("cost", typical) -> a positive value that falls as q rises;
#: ("loglikelihood",) -> a negative sum. A metric not listed here is a [0, 1] score, or a cost
#: where the registry says lower is better.
_SHAPES: dict[str, tuple] = {
    "rouge1": ("score", 0.9, 0.0),
    "rouge2": ("score", 0.45, 0.0),
    "rougeL": ("score", 0.8, 0.0),
    "bertscore_f1": ("score", 1.0, 0.5),
    "token_f1": ("score", 0.85, 0.0),
    "exact_match": ("rate", 0.08),
    "tfidf_cosine": ("score", 0.7, 0.05),
    "embedding_cosine": ("score", 0.95, 0.3),
    "acc": ("rate", 0.9),
    "acc_norm": ("rate", 1.0),
    "bits_per_byte": ("cost", 1.25),
    "word_perplexity": ("cost", 28.0),
    "byte_perplexity": ("cost", 2.2),
    "loglikelihood": ("loglikelihood",),
}
#: tasks on general knowledge, where adapters lose a little instead of gaining
_FORGETTING_TASKS = ("retention_qa",)
#: tasks on the recall split (trained facts in new words)
_RECALL_TASKS = ("marine_recall", "marine_recall_ppl", "marine_recall_mc")


def _shape(metric: contract.Metric) -> tuple:
    default = ("cost", 1.0) if metric.lower_is_better else ("score", 0.8, 0.0)
    return _SHAPES.get(metric.name, default)


def _metric_values(rng: np.random.Generator, metric: contract.Metric, q: np.ndarray) -> np.ndarray:
    """Per-sample values of one metric for per-sample answer qualities `q`."""
    kind, *args = _shape(metric)
    if kind == "rate":
        return (rng.random(len(q)) < q * args[0]).astype(float)
    if kind == "cost":
        return args[0] * np.exp(0.6 * (0.5 - q)) * rng.lognormal(0, 0.05, len(q))
    if kind == "loglikelihood":
        return -(40.0 + 60.0 * (1 - q)) + rng.normal(0, 3, len(q))
    scale, offset = args
    return np.clip(q * scale * (1 - offset) + offset + rng.normal(0, 0.04, len(q)), 0, 1)


def _docs(rng: np.random.Generator, n: int) -> tuple[list[dict], list[dict], list[dict]]:
    """Marine documents (the transfer tasks), recall documents (trained facts asked in new words,
    three quarters as many) and general-knowledge documents (retention)."""
    marine = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        q, ref = _question(rng, topic, i)
        marine.append({"id": f"mq-{i:05d}", "topic": topic, "question": q, "reference": ref})
    recall = []
    for i in range(max(8, 3 * n // 4)):
        topic = TOPICS[i % len(TOPICS)]
        q, ref = _question(rng, topic, 1000 + i)
        q = "In other words: " + q.replace("How does", "in what way does", 1)
        recall.append({"id": f"rc-{i:05d}", "topic": topic, "question": q, "reference": ref})
    general = [
        {
            "id": f"ret-{i:04d}",
            "topic": "general",
            "question": f"What is the capital of country number {i}?",
            "reference": f"The capital of country number {i} is City {i}.",
        }
        for i in range(max(8, n // 5))
    ]
    return marine, recall, general


def _model_records(
    rng: np.random.Generator,
    name: str,
    gain: float | None,
    task_docs: dict[str, list[dict]],
    base_quality: dict[str, np.ndarray],
    hostile: bool,
) -> list[dict[str, Any]]:
    """One score record per registered task and document: the base's answer quality, shifted
    for an adapter by its `gain` (a loss on forgetting tasks; None: the base itself), paired
    document by document."""
    records = []
    for task, docs in task_docs.items():
        q = base_quality[task]
        if gain is not None:
            shift = -abs(gain) / 3 if task in _FORGETTING_TASKS else gain
            shift *= 1.5 if task in _RECALL_TASKS else 1.0  # trained facts are learnt best
            q = np.clip(q + shift + rng.normal(0, 0.03, len(docs)), 0, 1)
        values = {m.name: _metric_values(rng, m, q) for m in contract.metrics_of(task)}
        for d_i, doc in enumerate(docs):
            prediction = None
            if task in contract.GENERATION_TASKS:
                prediction = _answer(rng, doc["reference"], float(q[d_i]), verbose=gain is None)
                if hostile and gain is not None and d_i < len(_HOSTILE):
                    prediction = _HOSTILE[d_i]
                for metric, value in _length_scores(prediction, doc["reference"]).items():
                    if metric in values:
                        values[metric][d_i] = value
            record = contract.ScoreRecord(
                model=name,
                task=task,
                doc_id=d_i,
                id=doc["id"],
                topic=doc["topic"],
                question=doc["question"],
                reference=doc["reference"],
                prediction=prediction,
                metrics={k: round(float(v[d_i]), 4) for k, v in values.items()},
            )
            records.append(record.to_json())
    return records


def write_adapter(adapters_root: Path, name: str, seed: int, steps: int = 60) -> Path:
    """An adapter folder with its card and train_metrics.json (no weights: the site needs none)."""
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
        "base_model": DEFAULT_MODEL,
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
        "base_model": DEFAULT_MODEL,
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
    (folder / adapter_contract.TRAIN_METRICS_FILE).write_text(
        json.dumps(metrics, indent=2), encoding="utf-8"
    )
    card = (
        "---\nlibrary_name: peft\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\n---\n"
        f"# {name}\n\nA LoRA adapter (r={r}) for SmolLM2-135M-Instruct trained on MarineBench.\n\n"
        "| setting | value |\n|---|---|\n"
        f"| rank | {r} |\n| epochs | {epochs} |\n\n"
        "<script>alert('card')</script> must render as text.\n"
    )
    (folder / adapter_contract.CARD_FILE).write_text(card, encoding="utf-8")
    return folder


def _lm_eval_results(
    model_args: str, name: str, n_samples: dict[str, int], summary_model: dict[str, Any]
) -> dict[str, Any]:
    """results.json as lm-eval's tracker writes it, its means and stderrs from the summary."""
    results: dict[str, Any] = {}
    for task, metrics in summary_model.items():
        row: dict[str, Any] = {"alias": task}
        for metric, v in metrics.items():
            row[f"{metric},none"] = v["mean"]
            row[f"{metric}_stderr,none"] = (v["ci_high"] - v["ci_low"]) / 3.92
        results[task] = row
    tasks = sorted(results)
    hib = {t: {m: contract.higher_is_better(m) for m in summary_model[t]} for t in tasks}
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
        "n-samples": {t: {"original": n_samples[t], "effective": n_samples[t]} for t in tasks},
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
    run: str = DEFAULT_MODEL,
    n_samples: int = 40,
    seed: int = 0,
    hostile: bool = False,
    n_resamples: int = 200,
    tasks: tuple[str, ...] | None = None,
    dataset_hash: str = "d" * 64,
    dataset_source: str = "folder:build/dataset",
    limit: int | None = None,
) -> Path:
    """One results folder: base + `adapters` [(name, adapter folder)], every contract file.

    `tasks` (default: every registered task) leaves the others out, as an older run or one with
    `--tasks` has them; `dataset_hash` and `dataset_source` are what the manifest records of the
    questions (a run of `marinebench evaluate --data my.jsonl` records "jsonl:<path>")."""
    rng = np.random.default_rng(seed)
    out = Path(results_root) / run
    marine, recall, general = _docs(rng, n_samples)
    task_docs = {
        t: general if t in _FORGETTING_TASKS else recall if t in _RECALL_TASKS else marine
        for t in (tasks or contract.task_names())
    }
    base_quality = {
        t: np.clip(rng.beta(2, 5, len(docs)) + (0.25 if t in _FORGETTING_TASKS else 0.05), 0, 1)
        for t, docs in task_docs.items()
    }
    models = [(contract.BASE, None), *adapters]
    scores: dict[str, list[dict[str, Any]]] = {}
    for name, _folder in models:
        gain = None if name == contract.BASE else float(rng.normal(0.04, 0.03))
        scores[name] = _model_records(rng, name, gain, task_docs, base_quality, hostile)
    summary = build_summary(run, scores, BootstrapSettings(n_resamples=n_resamples, seed=seed))
    n_docs = {t: len(docs) for t, docs in task_docs.items()}
    for name, folder in models:
        model_args = f"pretrained=build/models/{DEFAULT_MODEL}" + (
            f",peft=build/adapters/{name}" if folder else ""
        )
        lm = _lm_eval_results(model_args, name, n_docs, summary["models"][name])
        lm_dir = contract.lm_eval_dir(out, name)
        lm_dir.mkdir(parents=True, exist_ok=True)
        (lm_dir / contract.LM_EVAL_RESULTS_FILE).write_text(
            json.dumps(lm, indent=2, ensure_ascii=False), encoding="utf-8"
        )
    manifest = {
        "run": run,
        "base_model": DEFAULT_MODEL,
        "base_model_path": f"build/models/{DEFAULT_MODEL}",
        "dataset_path": dataset_source.partition(":")[2],
        "dataset_source": dataset_source,
        "dataset_hash": dataset_hash,
        "retention_path": "datasets_src/retention_qa.jsonl",
        "retention_hash": "r" * 64,
        "created": "2026-01-01T00:00:00+00:00",
        "tasks": sorted(task_docs),
        "limit": limit,
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
    (out / contract.MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    (out / contract.SUMMARY_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    lines = [json.dumps(r, ensure_ascii=False) for rows in scores.values() for r in rows]
    (out / contract.SCORES_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    copy_training_records(out, {name: Path(folder) for name, folder in adapters if folder})
    return out


def write_dataset(
    dataset_root: Path, per_split: tuple[int, int, int] = (80, 10, 10), seed: int = 0
) -> Path:
    """A dataset folder: one parquet file per split, the card and the build report."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    root = Path(dataset_root)
    (root / dataset_contract.DATA_DIR).mkdir(parents=True, exist_ok=True)
    counts = {}
    k = 0
    for split, size in zip(dataset_contract.SPLITS, per_split, strict=True):
        rows = {c: [] for c in dataset_contract.COLUMNS}
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
        pq.write_table(pa.table(rows), dataset_contract.split_file(root, split))
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
    (root / dataset_contract.BUILD_REPORT_FILE).write_text(
        json.dumps(report, indent=2), encoding="utf-8"
    )
    (root / dataset_contract.CARD_FILE).write_text(
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
    tasks: tuple[str, ...] | None = None,
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
        build_root / "results",
        adapters,
        n_samples=n_samples,
        seed=seed,
        hostile=hostile,
        tasks=tasks,
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
