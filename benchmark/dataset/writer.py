"""Write the dataset folder in the Hub layout (benchmark/contracts/dataset.py): one parquet file
per split (the recall split with its extra column), the card and the build report."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from benchmark.atomic import atomic_write_json, atomic_write_text
from benchmark.contracts.dataset import (
    BUILD_REPORT_FILE,
    CARD_FILE,
    parquet_name,
    split_columns,
)
from benchmark.dataset.records import QARecord


def schema(split: str) -> pa.Schema:
    """A split's parquet schema: every column a string, in the contract's order."""
    return pa.schema([(name, pa.string()) for name in split_columns(split)])


def split_table(records: list[QARecord], split: str) -> pa.Table:
    cols = split_columns(split)
    return pa.table(
        {name: [getattr(r, name) for r in records] for name in cols}, schema=schema(split)
    )


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
        table = split_table(records, name)
        write_parquet(table, out / parquet_name(name))
        sizes[name] = table.nbytes
    atomic_write_text(out / CARD_FILE, card)
    atomic_write_json(out / BUILD_REPORT_FILE, report)
    return sizes
