"""The dataset folder read once, formatted with the model's own chat template, tokenised once,
with labels masked on every prompt token, and cut into length-grouped batches."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.contracts.dataset import (
    COLUMNS,  # noqa: F401 (perf/train.py imports it here)
    QA_COLUMNS,
    split_file,
)
from benchmark.errors import UserError
from benchmark.hashing import sha256_file, sha256_json

IGNORE = -100
#: the splits a training run reads; the evaluation-only splits (test, recall) are not its input
TRAINING_SPLITS = ("train", "validation")


class DatasetError(UserError):
    """The dataset folder is missing, malformed or has no training examples."""


def check_dataset(root: Path) -> None:
    """Fail early, with the fix, when the folder is not a built MarineBench dataset."""
    if not root.is_dir():
        raise DatasetError(
            f"dataset folder {root} not found; build it with `marinebench dataset build` "
            "(or `nox -s dataset`), or set `dataset:` in the config"
        )
    for split in TRAINING_SPLITS:
        if not split_file(root, split).is_file():
            raise DatasetError(f"{split_file(root, split)} is missing; rebuild the dataset")


def read_split(root: Path, split: str) -> list[dict]:
    import pandas as pd

    path = split_file(root, split)
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DatasetError(f"{path} is not a readable parquet file: {exc}") from exc
    missing = [c for c in QA_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path} lacks column(s) {', '.join(missing)}")
    return frame.to_dict("records")


def dataset_hash(root: Path) -> str:
    """Hash of the split files training reads (the data itself, not the card; a new test or
    recall question does not make a trained adapter stale)."""
    return sha256_json(
        {
            split: sha256_file(path) if (path := split_file(root, split)).is_file() else "missing"
            for split in TRAINING_SPLITS
        }
    )


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]

    @property
    def n_targets(self) -> int:
        """Tokens the loss predicts: labelled positions after the first (shifted by one)."""
        return sum(1 for x in self.labels[1:] if x != IGNORE)


def encode(tokenizer, question: str, answer: str, max_length: int) -> Example | None:
    """Render [user, assistant] with the tokenizer's chat template; mask the prompt's labels.

    The prompt is messages[:1] rendered with add_generation_prompt=True; it must tokenise to a
    prefix of the full conversation, so masking exactly its length masks every prompt token and
    nothing else. Trailing whitespace after the assistant's end-of-turn token is dropped, so the
    last supervised token is that end-of-turn token (<|im_end|> for ChatML, </s> for TinyLlama).
    Returns None when the prompt alone fills max_length (nothing left to learn from).
    """
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False).rstrip()
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    if full_ids[: len(prompt_ids)] != prompt_ids:
        raise UserError(
            "the chat template's generation prompt does not tokenise to a prefix of the full "
            f"conversation for question {question[:60]!r}; labels cannot be masked safely"
        )
    if len(prompt_ids) >= max_length:
        return None
    full_ids = full_ids[:max_length]
    labels = [IGNORE] * len(prompt_ids) + full_ids[len(prompt_ids) :]
    return Example(full_ids, labels)


def encode_records(tokenizer, records: list[dict], max_length: int) -> tuple[list[Example], int]:
    """Tokenise every record once; returns (examples, number dropped for length)."""
    out, dropped = [], 0
    for rec in records:
        ex = encode(tokenizer, str(rec["question"]), str(rec["answer"]), max_length)
        if ex is None:
            dropped += 1
        else:
            out.append(ex)
    return out, dropped


def epoch_batches(
    n_examples: int, lengths: list[int], batch_size: int, seed: int, epoch: int, grouped: bool
) -> list[list[int]]:
    """The epoch's batches of example indices, a pure function of (seed, epoch) so a resumed run
    replays the same order.

    Length grouping (as transformers' LengthGroupedSampler does, reimplemented here because it
    is tied to the Trainer's DataLoader): shuffle, cut into mega-batches of 50 batches, sort each
    by length, cut into batches, shuffle the batch order. Padding then stays a few tokens.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(n_examples))
    rng.shuffle(order)
    if grouped:
        mega = batch_size * 50
        order = [
            i
            for start in range(0, len(order), mega)
            for i in sorted(order[start : start + mega], key=lambda i: -lengths[i])
        ]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if grouped:
        rng.shuffle(batches)
    return batches


def collate(examples: list[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example in the batch (dynamic padding, never to max_length).

    No attention mask is returned on purpose: with right padding and causal attention no real
    token can attend to a later pad token, so the mask changes nothing for labelled positions
    and leaving it out keeps SDPA on its fast is_causal path. Pad positions have label -100.
    """
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, e in enumerate(examples):
        ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
        labels[row, : len(e.labels)] = torch.tensor(e.labels)
    return {"input_ids": ids, "labels": labels}
