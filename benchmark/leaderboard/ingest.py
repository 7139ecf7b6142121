"""Read results folders and any other lm-eval results JSON into rows (the site's inputs:
benchmark/contracts/site.py; the folder's layout: benchmark/contracts/results.py).

A *results folder* is a directory holding manifest.json or summary.json; its models come from
the manifest, summary and lm_eval/<model>/ folders, and each adapter's training record from its
training/<adapter>/ folder. Any other *.json anywhere under the results root whose top level has
a "results" dict is an lm-eval results file from some other run: it becomes a row of its own
(files with the same model_args merge into one row).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.contracts import adapter as adapter_contract
from benchmark.contracts import results as contract
from benchmark.contracts.site import FOREIGN_RESULTS_KEY, HIDDEN_PREFIX, RUN_MARKERS
from benchmark.errors import UserError

Key = tuple[str, str]  # (task, metric)


class ResultsError(UserError):
    """A results file is unreadable or breaks the results contract."""


@dataclass
class Stat:
    mean: float
    low: float | None = None
    high: float | None = None
    n: int | None = None
    ci: str = "none"  # "bootstrap", "stderr" or "none"


@dataclass
class Delta:
    delta: float
    low: float | None = None
    high: float | None = None
    p: float | None = None
    test: str | None = None
    mde: float | None = None  # minimum detectable effect at 80% power (summary comparisons)
    n: int | None = None  # paired questions


@dataclass
class RawFile:
    label: str
    source: Path
    dest: str  # path under the site root, posix


@dataclass
class RunFolder:
    name: str
    path: Path
    manifest: dict[str, Any] | None
    summary: dict[str, Any] | None
    base: str
    scores_path: Path | None
    eval_set: Any = None  # the evalsets.EvalSet its models were scored on (set by load)


@dataclass
class Entry:
    """One leaderboard row: a model (base or adapter) evaluated in one run, or a foreign file."""

    model: str
    run: str
    origin: str  # "marinebench" or "lm-eval"
    is_base: bool = False
    slug: str = ""
    label: str = ""
    stats: dict[Key, Stat] = field(default_factory=dict)
    deltas: dict[Key, Delta] = field(default_factory=dict)
    adapter: str | None = None  # the adapter folder as the manifest records it (display only)
    train: dict[str, Any] | None = None  # the training record's train_metrics.json
    card_path: Path | None = None
    raw: list[RawFile] = field(default_factory=list)
    folder: RunFolder | None = None
    model_args: str | None = None
    lm_eval_config: dict[str, Any] | None = None
    set_label: str = ""  # the label within its evaluation set (the model's name where unique)


@dataclass
class Leaderboard:
    entries: list[Entry]
    columns: list[Key]
    higher_is_better: dict[Key, bool | None]
    runs: list[RunFolder]
    results_root: Path
    sets: list[Any] = field(default_factory=list)
    """The evaluation sets (evalsets.EvalSet), in display order: every table, chart and delta
    compares only the entries of one set, the models scored on the same questions."""


def read_json(path: Path) -> Any:
    """Parse a JSON file or raise a UserError that names it and the position of the fault."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsError(
            f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}; "
            "fix or remove the file and rebuild"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ResultsError(f"{path}: not UTF-8 text ({exc.reason}); fix or remove it") from exc


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _expect_dict(obj: Any, path: Path, key: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise ResultsError(f"{path}: key {key!r} must be an object, got {type(obj).__name__}")
    return obj


def higher_is_better(declared: dict[Key, bool], key: Key) -> bool | None:
    """A column's direction: as an lm-eval results file declares it, else the registry's (for a
    metric that is not ours, the one its name suggests). None for a metric that describes the
    answers (their length): its change is shown and tested, never coloured as a gain or loss."""
    if key in declared:
        return declared[key]
    return contract.higher_is_better(key[1].split(" [")[0])


def parse_lm_eval(doc: dict[str, Any], path: Path) -> tuple[dict[Key, Stat], dict[Key, bool]]:
    """Metrics of an lm-eval results dict ("acc,none" and "acc_stderr,none" keys per task).

    The CI is ±1.96·stderr (normal approximation) where lm-eval reports a numeric stderr.
    """
    results = _expect_dict(doc.get("results"), path, "results")
    n_samples = doc.get("n-samples") if isinstance(doc.get("n-samples"), dict) else {}
    hib_doc = doc.get("higher_is_better") if isinstance(doc.get("higher_is_better"), dict) else {}
    stats: dict[Key, Stat] = {}
    hib: dict[Key, bool] = {}
    for task, row in results.items():
        row = _expect_dict(row, path, f"results.{task}")
        n = None
        ns = n_samples.get(task)
        if isinstance(ns, dict):
            n = ns.get("effective", ns.get("original"))
            n = int(n) if isinstance(n, int) else None
        task_hib = hib_doc.get(task) if isinstance(hib_doc.get(task), dict) else {}
        for key, value in row.items():
            if "," not in key:
                continue
            metric, filt = key.split(",", 1)
            if metric.endswith("_stderr"):
                continue
            mean = _num(value)
            if mean is None:
                continue
            name = metric if filt == "none" else f"{metric} [{filt}]"
            se = _num(row.get(f"{metric}_stderr,{filt}"))
            if se is not None:
                stats[(task, name)] = Stat(mean, mean - 1.96 * se, mean + 1.96 * se, n, "stderr")
            else:
                stats[(task, name)] = Stat(mean, None, None, n, "none")
            if isinstance(task_hib.get(metric), bool):
                hib[(task, name)] = task_hib[metric]
    return stats, hib


def _summary_stats(summary: dict[str, Any], path: Path, model: str) -> dict[Key, Stat]:
    stats: dict[Key, Stat] = {}
    tasks = _expect_dict(summary["models"].get(model, {}), path, f"models.{model}")
    for task, metrics in tasks.items():
        for metric, v in _expect_dict(metrics, path, f"models.{model}.{task}").items():
            v = _expect_dict(v, path, f"models.{model}.{task}.{metric}")
            mean = _num(v.get("mean"))
            if mean is None:
                continue
            n = v.get("n") if isinstance(v.get("n"), int) else None
            low, high = _num(v.get("ci_low")), _num(v.get("ci_high"))
            kind = "bootstrap" if low is not None and high is not None else "none"
            stats[(task, metric)] = Stat(mean, low, high, n, kind)
    return stats


def _summary_deltas(summary: dict[str, Any], path: Path, model: str) -> dict[Key, Delta]:
    comps = summary.get("comparisons") or {}
    comps = _expect_dict(comps, path, "comparisons")
    out: dict[Key, Delta] = {}
    tasks = _expect_dict(comps.get(model, {}), path, f"comparisons.{model}")
    for task, metrics in tasks.items():
        for metric, v in _expect_dict(metrics, path, f"comparisons.{model}.{task}").items():
            v = _expect_dict(v, path, f"comparisons.{model}.{task}.{metric}")
            delta = _num(v.get("delta"))
            if delta is None:
                continue
            test = v.get("test") if isinstance(v.get("test"), str) else None
            n = v.get("n") if isinstance(v.get("n"), int) and not isinstance(v["n"], bool) else None
            out[(task, metric)] = Delta(
                delta,
                _num(v.get("ci_low")),
                _num(v.get("ci_high")),
                _num(v.get("p_value")),
                test,
                _num(v.get("mde")),
                n,
            )
    return out


def _read_training_record(entry: Entry, run_folder: Path) -> None:
    """The adapter's training record, as the evaluation copied it into the run folder."""
    folder = contract.training_dir(run_folder, entry.model)
    metrics = folder / adapter_contract.TRAIN_METRICS_FILE
    if metrics.is_file():
        entry.train = _expect_dict(read_json(metrics), metrics, "(top level)")
    card = folder / adapter_contract.CARD_FILE
    entry.card_path = card if card.is_file() else None


def _parse_model_args(model_args: Any) -> dict[str, str]:
    if isinstance(model_args, dict):
        return {str(k): str(v) for k, v in model_args.items()}
    out = {}
    if isinstance(model_args, str):
        for part in model_args.split(","):
            if "=" in part:
                k, v = part.split("=", 1)
                out[k.strip()] = v.strip()
    return out


def _foreign_label(doc: dict[str, Any], path: Path) -> tuple[str, str]:
    """(label, merge key) for an lm-eval results file from another run."""
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    args = _parse_model_args(config.get("model_args"))
    pretrained = args.get("pretrained") or doc.get("model_name") or config.get("model")
    label = str(pretrained) if pretrained else path.stem
    if args.get("peft"):
        label = f"{label} + {Path(args['peft']).name}"
    key = (
        json.dumps([str(config.get("model")), sorted(args.items())], sort_keys=True)
        if args
        else str(path)
    )
    return label, key


def _run_folder(
    path: Path, results_root: Path, hib: dict[Key, bool]
) -> tuple[RunFolder, list[Entry]]:
    manifest_path, summary_path = path / contract.MANIFEST_FILE, path / contract.SUMMARY_FILE
    manifest = read_json(manifest_path) if manifest_path.is_file() else None
    summary = read_json(summary_path) if summary_path.is_file() else None
    if manifest is not None:
        _expect_dict(manifest, manifest_path, "(top level)")
    if summary is not None:
        _expect_dict(summary, summary_path, "(top level)")
        summary.setdefault("models", {})
        _expect_dict(summary["models"], summary_path, "models")
    rel = path.relative_to(results_root).as_posix()
    name = str((manifest or {}).get("run") or (summary or {}).get("run") or path.name)
    base = str((summary or {}).get("base") or contract.BASE)
    scores = path / contract.SCORES_FILE
    folder = RunFolder(name, path, manifest, summary, base, scores if scores.is_file() else None)

    models: list[str] = []
    adapters: dict[str, str | None] = {}
    for m in (manifest or {}).get("models") or []:
        if isinstance(m, dict) and m.get("name"):
            models.append(str(m["name"]))
            adapters[str(m["name"])] = m.get("adapter")
    models += [m for m in (summary or {}).get("models", {}) if m not in models]
    lm_dir = path / contract.LM_EVAL_DIR
    if lm_dir.is_dir():
        models += sorted(p.name for p in lm_dir.iterdir() if p.is_dir() and p.name not in models)
    order = {m: i for i, m in enumerate(models)}
    models.sort(key=lambda m: (m != base, order[m]))

    entries = []
    site_dir = f"files/{rel}" if rel != "." else "files/results"
    for model in models:
        e = Entry(model=model, run=name, origin="marinebench", is_base=model == base, folder=folder)
        for json_path in sorted((lm_dir / model).glob("*.json")) if lm_dir.is_dir() else []:
            doc = read_json(json_path)
            if isinstance(doc, dict) and isinstance(doc.get("results"), dict):
                stats, file_hib = parse_lm_eval(doc, json_path)
                hib.update(file_hib)
                for k, v in stats.items():
                    e.stats.setdefault(k, v)
                if isinstance(doc.get("config"), dict):
                    e.lm_eval_config = doc["config"]
                    e.model_args = str(doc["config"].get("model_args") or "") or None
                e.raw.append(
                    RawFile(
                        f"lm-eval {json_path.name}",
                        json_path,
                        f"{site_dir}/{contract.LM_EVAL_DIR}/{model}/{json_path.name}",
                    )
                )
        if summary is not None:
            e.stats.update(_summary_stats(summary, summary_path, model))
            if not e.is_base:
                e.deltas = _summary_deltas(summary, summary_path, model)
        if not e.is_base:
            spec = adapters.get(model)
            e.adapter = str(spec) if spec else None
            _read_training_record(e, path)
        entries.append(e)
    for doc, doc_path in ((summary, summary_path), (manifest, manifest_path)):
        if doc is not None:
            raw = RawFile(doc_path.name, doc_path, f"{site_dir}/{doc_path.name}")
            for e in entries:
                e.raw.append(raw)
    return folder, entries


def _fill_plain_deltas(entries: list[Entry]) -> None:
    """Where no paired comparison exists, show the plain difference against the run's base."""
    bases = {id(e.folder): e for e in entries if e.is_base and e.folder is not None}
    for e in entries:
        base = bases.get(id(e.folder))
        if e.is_base or base is None:
            continue
        for key, stat in e.stats.items():
            if key not in e.deltas and key in base.stats:
                e.deltas[key] = Delta(stat.mean - base.stats[key].mean)


def _sort_key(key: Key) -> tuple:
    task, metric = key  # a metric of a filter other than "none" reads "name [filter]"
    return (*contract.task_sort_key(task), *contract.metric_sort_key(metric.split(" [")[0]), metric)


def _slugify(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "model"


def _hidden(path: Path, root: Path) -> bool:
    """Dot-folders (the evaluator's .cache/, atomic writes' temp dirs) hold no results to show."""
    return any(part.startswith(HIDDEN_PREFIX) for part in path.relative_to(root).parts)


def load(results_root: Path) -> Leaderboard:
    """Every row and column found under `results_root`."""
    results_root = Path(results_root)
    if not results_root.is_dir():
        raise UserError(
            f"no results folder at {results_root}; run `marinebench evaluate` first or pass --results DIR"
        )
    run_dirs = sorted(
        {
            p.parent
            for pat in RUN_MARKERS
            for p in results_root.rglob(pat)
            if not _hidden(p, results_root)
        }
    )
    runs, entries = [], []
    hib: dict[Key, bool] = {}
    for d in run_dirs:
        folder, rows = _run_folder(d, results_root, hib)
        runs.append(folder)
        entries += rows
    owned = {d / contract.LM_EVAL_DIR for d in run_dirs} | {
        d / contract.TRAINING_DIR for d in run_dirs
    }
    run_set = set(run_dirs)
    foreign: dict[str, Entry] = {}
    for path in sorted(results_root.rglob("*.json")):
        if _hidden(path, results_root):
            continue
        if path.parent in run_set and path.name in RUN_MARKERS:
            continue
        if any(o in path.parents for o in owned):
            continue  # a run folder's own lm-eval files and training records, read with that run
        doc = read_json(path)
        if not (isinstance(doc, dict) and isinstance(doc.get(FOREIGN_RESULTS_KEY), dict)):
            continue
        stats, file_hib = parse_lm_eval(doc, path)
        hib.update(file_hib)
        label, merge = _foreign_label(doc, path)
        e = foreign.get(merge)
        if e is None:
            config = doc.get("config") if isinstance(doc.get("config"), dict) else None
            e = foreign[merge] = Entry(model=label, run="lm-eval", origin="lm-eval", label=label)
            e.lm_eval_config = config
            e.model_args = str((config or {}).get("model_args") or "") or None
        e.stats.update(stats)
        rel = path.relative_to(results_root).as_posix()
        e.raw.append(RawFile(f"lm-eval {path.name}", path, f"files/external/{rel}"))
    entries += list(foreign.values())
    _fill_plain_deltas(entries)

    names = [e.model for e in entries if e.origin == "marinebench"]
    used: set[str] = set()
    for e in entries:
        if e.origin == "marinebench":
            e.label = e.model if names.count(e.model) == 1 else f"{e.run} / {e.model}"
        slug = _slugify(e.label)
        cand, i = slug, 2
        while cand.lower() in used:
            cand, i = f"{slug}-{i}", i + 1
        used.add(cand.lower())
        e.slug = cand

    from benchmark.leaderboard.evalsets import group

    columns = sorted({k for e in entries for k in e.stats}, key=_sort_key)
    higher = {k: higher_is_better(hib, k) for k in columns}
    return Leaderboard(entries, columns, higher, runs, results_root, group(runs, entries, columns))


def iter_scores(path: Path) -> list[dict[str, Any]]:
    """Per-sample score records of scores.jsonl; a bad line is a UserError naming file and line."""
    lines = [ln for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    try:
        # One parse of the whole file as an array: ~3x faster than a json.loads per line.
        records = json.loads("[" + ",".join(lines) + "]")
    except json.JSONDecodeError:
        records = None
    if records is None or len(records) != len(lines):
        records = []
        for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ResultsError(
                    f"{path}:{lineno}: malformed JSON ({exc.msg}); fix the line"
                ) from exc
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or "model" not in rec or "task" not in rec:
            raise ResultsError(
                f"{path}: record {i + 1}: a score record needs 'model' and 'task' keys"
            )
    return records
