"""The dataset folder (`build/dataset/`): written by `marinebench dataset build`, read by
training, evaluation (tasks/utils.py through benchmark.evaluation.data) and the site.

It is a Hugging Face dataset folder, so `datasets.load_dataset(folder)` loads it too.
"""

from __future__ import annotations

from pathlib import Path

#: split names, in the order they are built and shown
SPLITS = ("train", "validation", "test")
#: every row's columns, all strings, in file order
COLUMNS = ("id", "topic", "difficulty", "question", "answer", "source")
#: the columns a reader cannot do without (a user's own JSONL needs only these)
QA_COLUMNS = ("question", "answer")
#: the dataset card (Hub YAML metadata + markdown)
CARD_FILE = "README.md"
#: what each build step kept and dropped, and why (JSON object with "steps" and "counts")
BUILD_REPORT_FILE = "build_report.json"
#: folder of the split files; its content alone is the data's hash
DATA_DIR = "data"


def parquet_name(split: str) -> str:
    """A split's file, relative to the dataset folder (one shard per split)."""
    return f"{DATA_DIR}/{split}-00000-of-00001.parquet"


def split_glob(split: str) -> str:
    """The pattern that matches every shard of a split (the card's `data_files` entry)."""
    return f"{DATA_DIR}/{split}-*"


def split_file(folder: Path | str, split: str) -> Path:
    """Where a split's parquet file is in a dataset folder."""
    return Path(folder) / parquet_name(split)
