"""Write the Hub-layout folder: data/<split>-00000-of-00001.parquet, README.md, build_report.json."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.atomic import atomic_write_json, atomic_write_text
from benchmark.dataset.records import FIELDS, QARecord

SCHEMA = pa.schema([(name, pa.string()) for name in FIELDS])


def split_table(records: list[QARecord]) -> pa.Table:
    return pa.table({name: [getattr(r, name) for r in records] for name in FIELDS}, schema=SCHEMA)


def parquet_name(split: str) -> str:
    return f"data/{split}-00000-of-00001.parquet"


def write_parquet(table: pa.Table, path: Path) -> None:
    """Plain pyarrow, no pandas/datasets metadata and no timestamps: same rows, same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd", compression_level=9, write_statistics=True)


def write_folder(
    out: Path, splits: dict[str, list[QARecord]], card: str, report: dict
) -> dict[str, int]:
    """Fill `out` (a fresh temp folder); returns each split's in-memory size in bytes."""
    sizes = {}
    for name, records in splits.items():
        table = split_table(records)
        write_parquet(table, out / parquet_name(name))
        sizes[name] = table.nbytes
    atomic_write_text(out / "README.md", card)
    atomic_write_json(out / "build_report.json", report)
    return sizes
