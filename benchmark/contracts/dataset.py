"""The dataset folder (`build/dataset/`): written by `marinebench dataset build`, read by
training, evaluation (tasks/utils.py through benchmark.evaluation.data) and the site.

It is a Hugging Face dataset folder, so `datasets.load_dataset(folder)` loads it too: the
`default` config holds the seeded splits (SPLITS); the recall split, whose rows have one more
column, is a config of its own (`datasets.load_dataset(folder, RECALL_CONFIG)`), because one
config's splits must share their columns.
"""

from __future__ import annotations

from pathlib import Path

#: the seeded splits, in the order they are built and shown (every dataset folder has them;
#: the test split also holds the hand-written transfer additions, docs/protocol.md)
SPLITS = ("train", "validation", "test")
#: hand-written paraphrases of selected training questions (docs/protocol.md); present only when
#: the build had a recall source (datasets_src/recall/)
RECALL_SPLIT = "recall"
#: every split a dataset folder can hold, in display order
ALL_SPLITS = (*SPLITS, RECALL_SPLIT)
#: the splits the final evaluation reads (never trained on, never used to choose anything)
EVAL_SPLITS = ("test", RECALL_SPLIT)
#: the Hub config (in the card's YAML) that holds the recall split
RECALL_CONFIG = "recall"
#: every row's columns, all strings, in file order
COLUMNS = ("id", "topic", "difficulty", "question", "answer", "source")
#: a recall row's columns: COLUMNS plus the id of the training pair it asks about
RECALL_COLUMNS = (*COLUMNS, "train_id")
#: the `source` of every recall row
RECALL_SOURCE = "recall-paraphrase"
#: the columns a reader cannot do without (a user's own JSONL needs only these)
QA_COLUMNS = ("question", "answer")
#: the dataset card (Hub YAML metadata + markdown)
CARD_FILE = "README.md"
#: what each build step kept and dropped, and why (JSON object with "steps" and "counts")
BUILD_REPORT_FILE = "build_report.json"
#: folder of the split files; its content alone is the data's hash
DATA_DIR = "data"


def split_columns(split: str) -> tuple[str, ...]:
    """A split's columns, in file order."""
    return RECALL_COLUMNS if split == RECALL_SPLIT else COLUMNS


def parquet_name(split: str) -> str:
    """A split's file, relative to the dataset folder (one shard per split)."""
    return f"{DATA_DIR}/{split}-00000-of-00001.parquet"


def split_glob(split: str) -> str:
    """The pattern that matches every shard of a split (the card's `data_files` entry)."""
    return f"{DATA_DIR}/{split}-*"


def split_file(folder: Path | str, split: str) -> Path:
    """Where a split's parquet file is in a dataset folder."""
    return Path(folder) / parquet_name(split)
