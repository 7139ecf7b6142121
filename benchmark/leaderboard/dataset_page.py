"""The dataset page's content, read from the dataset folder (benchmark/contracts/dataset.py):
card, split sizes (every split the folder has, the recall split included), topic counts,
builder steps and sample rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from benchmark.contracts.dataset import (
    ALL_SPLITS,
    BUILD_REPORT_FILE,
    CARD_FILE,
    COLUMNS,
    split_glob,
)
from benchmark.errors import UserError
from benchmark.leaderboard import svg
from benchmark.leaderboard.ingest import read_json
from benchmark.leaderboard.markdown import render_markdown

SAMPLE_ROWS = 12


def _step_view(i: int, step: Any) -> dict[str, Any]:
    """One builder step, whatever its exact keys: a name, a dropped count and the other facts."""
    if not isinstance(step, dict):
        return {"name": str(step), "dropped": None, "kept": None, "details": []}
    name = next((str(step[k]) for k in ("step", "name", "stage") if k in step), f"step {i + 1}")
    dropped = next((step[k] for k in ("dropped", "removed", "n_dropped") if k in step), None)
    kept = next((step[k] for k in ("kept", "out", "n_out", "remaining") if k in step), None)
    skip = {
        "step",
        "name",
        "stage",
        "dropped",
        "removed",
        "n_dropped",
        "kept",
        "out",
        "n_out",
        "remaining",
    }
    details = [(k, v) for k, v in step.items() if k not in skip]
    return {"name": name, "dropped": dropped, "kept": kept, "details": details}


def dataset_page_view(root: Path) -> dict[str, Any] | None:
    """None when there is no dataset folder; each missing part is reported on the page instead."""
    import pyarrow.parquet as pq

    root = Path(root)
    if not root.is_dir():
        return None
    view: dict[str, Any] = {"card": None, "report": None, "splits": [], "topics": [], "sample": []}
    if (root / CARD_FILE).is_file():
        view["card"] = render_markdown(
            (root / CARD_FILE).read_text(encoding="utf-8", errors="replace")
        )
    if (root / BUILD_REPORT_FILE).is_file():
        report = read_json(root / BUILD_REPORT_FILE)
        if not isinstance(report, dict):
            raise UserError(f"{root / BUILD_REPORT_FILE}: expected a JSON object")
        steps = report.get("steps") if isinstance(report.get("steps"), list) else []
        counts = report.get("counts") if isinstance(report.get("counts"), dict) else {}
        view["report"] = {
            "build_hash": report.get("build_hash"),
            "seed": report.get("seed"),
            "steps": [_step_view(i, s) for i, s in enumerate(steps)],
            "counts": sorted(counts.items(), key=lambda kv: str(kv[0])),
        }
    topics: Counter[str] = Counter()
    per_split_topics: dict[str, Counter[str]] = {}
    for split in ALL_SPLITS:
        files = sorted(root.glob(f"{split_glob(split)}.parquet"))
        if not files:
            continue
        rows = 0
        split_topics: Counter[str] = Counter()
        for f in files:
            try:
                table = pq.read_table(f)
            except Exception as exc:  # pyarrow raises several types for a corrupt file
                raise UserError(
                    f"{f}: unreadable parquet file ({exc}); rebuild the dataset"
                ) from exc
            rows += table.num_rows
            if "topic" in table.column_names:
                split_topics.update(str(t) for t in table.column("topic").to_pylist())
            if split == "train" and not view["sample"] and table.num_rows:
                step = max(1, table.num_rows // SAMPLE_ROWS)
                cols = [c for c in COLUMNS if c in table.column_names]
                picked = table.select(cols).take(list(range(0, table.num_rows, step))[:SAMPLE_ROWS])
                view["sample_columns"] = cols
                view["sample"] = picked.to_pylist()
        view["splits"].append((split, rows))
        topics.update(split_topics)
        per_split_topics[split] = split_topics
    if not view["sample"]:
        view["sample_columns"] = []
    ordered = sorted(topics.items(), key=lambda kv: (-kv[1], kv[0]))
    view["topics"] = [
        (t, n, [per_split_topics.get(s, Counter()).get(t, 0) for s, _ in view["splits"]])
        for t, n in ordered
    ]
    view["topic_chart"] = (
        svg.hbar_chart("Rows per topic, all splits", [(t, n) for t, n in ordered])
        if ordered
        else None
    )
    view["total"] = sum(n for _, n in view["splits"])
    return view
