"""One submission made ready to train: read or derived, checked (submission.py), and written as
a dataset folder whose train split is what survived and whose validation split is the curated
one, with submission.json saying what was dropped and how many passes the token budget buys.

The budget (docs/datatrack.md): every submission is trained on as many tokens as one pass over
the curated training split takes under the fixed recipe (configs/smollm2-lora-r16.yaml), counted
as the trainer counts them (its own chat-template encoding, cut at max_length).
"""

from __future__ import annotations

import logging
from pathlib import Path

from benchmark import paths
from benchmark.atomic import atomic_dir, atomic_write_json
from benchmark.contracts import datatrack as contract
from benchmark.contracts.dataset import RECALL_SPLIT
from benchmark.contracts.protocol import PRIMARY_ADAPTER
from benchmark.dataset.records import DatasetError, QARecord
from benchmark.dataset.writer import write_folder
from benchmark.datatrack import references as refs
from benchmark.datatrack.submission import (
    EvalSet,
    check,
    read_submission,
    renamed,
    require_pairs,
)
from benchmark.hashing import sha256_file, sha256_json

log = logging.getLogger(__name__)


#: the data track's fixed recipe: the main benchmark's default adapter config
DEFAULT_RECIPE = paths.CONFIGS_DIR / f"{PRIMARY_ADAPTER}.yaml"


def recipe_config(path: Path | None = None):
    """The recipe every submission is trained with (default DEFAULT_RECIPE; tests pass a tiny
    model's)."""
    from benchmark.train.config import load_config

    return load_config(path or DEFAULT_RECIPE)


def _split(dataset: Path, split: str) -> list[QARecord]:
    from benchmark.contracts.dataset import split_columns, split_file
    from benchmark.train.data import read_split

    if not split_file(dataset, split).is_file():
        raise DatasetError(
            f"{split_file(dataset, split)} is missing: the data track needs the built dataset "
            "(run `marinebench dataset build` or `nox -s dataset`)"
        )
    columns = [c for c in split_columns(split) if c != "train_id"]
    return [QARecord(**{c: str(row[c]) for c in columns}) for row in read_split(dataset, split)]


def eval_sets(dataset: Path, retention: Path) -> list[EvalSet]:
    """Every frozen evaluation set: test, recall, validation (the dataset folder) and retention."""
    from benchmark.evaluation.data import read_qa_jsonl

    out = []
    for split in ("test", RECALL_SPLIT, "validation"):
        rows = _split(dataset, split)
        answers = [] if split == RECALL_SPLIT else [r.answer for r in rows]
        out.append(EvalSet(split, [r.question for r in rows], answers))
    rows = read_qa_jsonl(retention)
    out.append(EvalSet("retention", [r["question"] for r in rows], [r["answer"] for r in rows]))
    return out


def tokens_per_pass(records: list[QARecord], config) -> int:
    """Tokens one pass over `records` feeds the trainer (train.data.encode, as it trains)."""
    from benchmark.models import load_tokenizer
    from benchmark.train.data import encode_records

    tokenizer = load_tokenizer(config.model)
    examples, _ = encode_records(tokenizer, [r.to_dict() for r in records], config.max_length)
    return sum(len(e.input_ids) for e in examples)


def base_answers(questions: list[str], model_spec: str, progress: bool = True) -> list[str]:
    """The base model's greedy answers (benchmark.chat.answer), shortest prompts batched
    together, with a progress bar."""
    from tqdm import tqdm

    from benchmark.chat import answer
    from benchmark.device import choose_placement
    from benchmark.models import load_model

    model, tokenizer = load_model(model_spec, choose_placement())
    order = sorted(range(len(questions)), key=lambda i: len(questions[i]))
    out: dict[int, str] = {}
    batch = 64  # the evaluation generates in batches of 80: larger batches, more tokens/s
    bar = tqdm(total=len(questions), desc="self: base model answers", disable=not progress)
    for start in range(0, len(order), batch):
        idx = order[start : start + batch]
        got = answer(
            model,
            tokenizer,
            [questions[i] for i in idx],
            max_new_tokens=refs.SELF_MAX_NEW_TOKENS,
            batch_size=batch,
        )
        out.update(zip(idx, got, strict=True))
        bar.update(len(idx))
    bar.close()
    return [out[i] for i in range(len(questions))]


def _gemini_records() -> list[QARecord]:
    from benchmark.dataset.config import BuildConfig
    from benchmark.dataset.gemini import generate
    from benchmark.dataset.records import load_taxonomy

    cfg = BuildConfig()
    taxonomy = load_taxonomy(Path(cfg.src) / "taxonomy.yaml")
    got = generate(cfg.src, taxonomy, sorted(taxonomy), cfg.gemini, cfg.cache_root())
    return got.records


def source_records(
    name: str, file: Path | None, train: list[QARecord], model_spec: str
) -> tuple[list[QARecord], dict[str, str], str, str]:
    """(records, {id: where}, rule, source) of a reference or a submission file."""
    if file is not None:
        records, where_of = read_submission(file, name)
        return records, where_of, "a submitted training set", str(file)
    ref = refs.BY_NAME.get(name)
    if ref is None:
        raise DatasetError(
            f"no submission {name!r}: put it in {contract.SUBMISSIONS_DIR}/{name}.jsonl or give "
            f"--file; references: {', '.join(refs.BY_NAME)}"
        )
    if ref.name == "curated":
        records = list(train)
    elif ref.fraction is not None:
        records = refs.subset(train, ref.fraction)
    elif ref.name == "noisy":
        records = refs.noisy(train)
    elif ref.name == "short":
        records = refs.short(train)
    elif ref.name == "self":
        records = refs.self_answers(train, base_answers([r.question for r in train], model_spec))
    else:
        records = _gemini_records()
    where_of = {r.id: f"{name}:{r.id}" for r in records}
    if ref.name != "curated":  # curated stays byte-identical to the main training split
        records = renamed(records, f"datatrack:{name}")
    return records, where_of, ref.rule, "curated training split"


def prepare(
    name: str, file: Path | None, dataset: Path, retention: Path, out: Path, recipe: Path
) -> dict:
    """Write the prepared dataset folder `out` and return its submission record."""
    config = recipe_config(recipe)
    train = _split(dataset, "train")
    validation = _split(dataset, "validation")
    records, where_of, rule, source = source_records(name, file, train, config.model)
    checked = check(records, where_of, eval_sets(dataset, retention))
    for item in checked.dropped:
        log.info("dropped %s (%s): %s", item["where"], item["step"], item["reason"])
    require_pairs(checked, source)
    kept = checked.records
    budget = tokens_per_pass(train, config)
    per_pass = tokens_per_pass(kept, config)
    if not per_pass:
        raise DatasetError(
            f"{source}: every kept pair's question alone fills max_length={config.max_length} "
            "tokens of the recipe; nothing would be learnt from it"
        )
    ref = refs.BY_NAME.get(name) if file is None else None
    record = {
        "name": name,
        "kind": "submission" if file is not None else "reference",
        "rule": rule,
        "source": source,
        "source_sha256": sha256_file(file) if file is not None else _records_hash(train),
        "pairs_in": checked.pairs_in,
        "pairs": len(kept),
        "drops": checked.drops,
        "dropped": checked.dropped,
        "fraction": ref.fraction if ref else None,
        "adapter": name,
        "token_budget": budget,
        "tokens_per_pass": per_pass,
        "epochs": round(budget / per_pass, 4),
    }
    card = (
        f"# MarineBench data track: `{name}`\n\n{rule}.\n\n"
        f"{len(kept)} of {checked.pairs_in} pairs kept after the builder's checks and "
        "decontamination against every evaluation set; the validation split is the curated one. "
        "See submission.json and docs/datatrack.md.\n"
    )
    splits = {"train": kept, "validation": validation}
    with atomic_dir(out) as tmp:
        write_folder(tmp, splits, card, {"submission": name, "drops": checked.drops})
        from benchmark.train.data import dataset_hash

        record["dataset_hash"] = dataset_hash(tmp)
        if name == contract.CURATED and record["dataset_hash"] == dataset_hash(dataset):
            # The same data under the same recipe: the main benchmark's adapter of the recipe
            # (build/adapters/<recipe>) is this submission's adapter, not trained twice.
            record["adapter"] = config.name
        atomic_write_json(tmp / contract.SUBMISSION_FILE, record)
    return record


def _records_hash(records: list[QARecord]) -> str:
    return sha256_json([r.to_dict() for r in records])
