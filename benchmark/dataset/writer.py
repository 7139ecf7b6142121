"""Write the dataset folder in the Hub layout (benchmark/contracts/dataset.py): one parquet file
per split, the card and the build report."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.atomic import atomic_write_json, atomic_write_text
from benchmark.contracts.dataset import BUILD_REPORT_FILE, CARD_FILE, COLUMNS, parquet_name
from benchmark.dataset.records import QARecord

SCHEMA = pa.schema([(name, pa.string()) for name in COLUMNS])


def split_table(records: list[QARecord]) -> pa.Table:
    return pa.table({name: [getattr(r, name) for r in records] for name in COLUMNS}, schema=SCHEMA)


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
    atomic_write_text(out / CARD_FILE, card)
    atomic_write_json(out / BUILD_REPORT_FILE, report)
    return sizes
