"""`marinebench data submit FILE --name NAME`, `marinebench data prepare NAME` (a pipeline
stage) and `marinebench datatrack` (the whole track: benchmark/datatrack/pipeline.py)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="data track: submit a training set, or prepare one")
    data_sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    s = data_sub.add_parser(
        "submit",
        help="check a training set (JSONL of question/answer) and enter it in the data track",
        description="Run the builder's checks and the decontamination against every frozen "
        "evaluation set on FILE, show what would be dropped and why, and copy it to "
        "submissions/NAME.jsonl, where `marinebench datatrack` (nox -s datatrack) picks it up.",
    )
    s.add_argument("file", type=Path, metavar="FILE.jsonl")
    s.add_argument("--name", required=True, help="the submission's name (a-z, 0-9, - and _)")
    s.add_argument(
        "--replace", action="store_true", help="replace a different submission of that name"
    )
    s.set_defaults(func=_submit)

    r = data_sub.add_parser(
        "prepare",
        help="make one submission ready to train: build/datatrack/data/NAME (a pipeline stage)",
    )
    r.add_argument("name", help="a reference (curated, half, noisy, ...) or a submission's name")
    r.add_argument(
        "--file", type=Path, default=None, help="its JSONL (default submissions/NAME.jsonl)"
    )
    r.add_argument("--dataset", type=Path, default=None, help="dataset folder (build/dataset)")
    recipe_argument(r)
    r.set_defaults(func=_prepare, stage_key=stage_key)

    from benchmark.datatrack import pipeline

    pipeline.register(sub)


def recipe_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--recipe",
        type=Path,
        default=None,
        help="the fixed training config (default configs/smollm2-lora-r16.yaml: the main "
        "benchmark's default adapter)",
    )


def check_name(name: str, submitted: bool) -> None:
    """A name that can be a folder and a model name, and clashes with no other model."""
    from benchmark.contracts import datatrack as contract
    from benchmark.contracts.protocol import PRIMARY_ADAPTER
    from benchmark.contracts.results import BASE
    from benchmark.dataset.records import DatasetError
    from benchmark.datatrack.references import BY_NAME

    if not contract.SUBMISSION_NAME.match(name):
        raise DatasetError(
            f"submission name {name!r}: use 1-40 lower-case letters, digits, - and _ "
            "(it names a folder and a model)"
        )
    if name in (BASE, PRIMARY_ADAPTER) or (submitted and name in BY_NAME):
        raise DatasetError(f"submission name {name!r} is taken (by a reference or a model)")


def _file_of(args: argparse.Namespace) -> Path | None:
    """The JSONL a `prepare NAME` reads: --file, else submissions/NAME.jsonl; None for a
    reference."""
    from benchmark.contracts import datatrack as contract
    from benchmark.datatrack.references import BY_NAME

    if args.file is not None:
        return args.file
    path = contract.submissions_dir() / f"{args.name}.jsonl"
    return path if path.is_file() or args.name not in BY_NAME else None


def stage_key(args: argparse.Namespace):
    """The prepared folder and everything that decides it: the submission (its file, or the
    reference's rule through the code and the curated split), every evaluation set it is
    checked against, the tokenizer (weights) that counts its tokens, and, for `self`, the
    machine the base model answers on."""
    import os

    from benchmark import paths
    from benchmark.contracts import datatrack as contract
    from benchmark.contracts.dataset import DATA_DIR
    from benchmark.datatrack.prepare import recipe_config
    from benchmark.evaluation.data import default_retention_file
    from benchmark.fingerprint import PLACEMENT_ENV, folder_digest, model_fingerprint, stage_key
    from benchmark.hashing import sha256_file
    from benchmark.models import weights_location

    file = _file_of(args)
    recipe = recipe_config(args.recipe)
    check_name(args.name, submitted=file is not None)
    dataset = args.dataset or paths.dataset_dir()
    inputs = {
        "name": args.name,
        "file": sha256_file(file) if file is not None and file.is_file() else None,
        "dataset": folder_digest(Path(dataset) / DATA_DIR),
        "retention": sha256_file(default_retention_file()),
        "model": model_fingerprint(weights_location(recipe.model)),
        "recipe": recipe.to_dict(),
    }
    if args.name == "self" and file is None:
        inputs["env"] = {k: os.environ.get(k) for k in PLACEMENT_ENV}
    if args.name == "gemini" and file is None:
        from benchmark.dataset.config import BuildConfig

        inputs["gemini_cache"] = folder_digest(BuildConfig().cache_root())
    out = contract.data_dir(paths.build_dir(), args.name)
    numeric = args.name == "self" and file is None
    return stage_key(out, ["benchmark.datatrack.prepare"], inputs, numeric=numeric)


def _prepare(args: argparse.Namespace) -> int:
    from benchmark import paths
    from benchmark.contracts import datatrack as contract
    from benchmark.datatrack.prepare import prepare
    from benchmark.evaluation.data import default_retention_file

    file = _file_of(args)
    check_name(args.name, submitted=file is not None)
    out = contract.data_dir(paths.build_dir(), args.name)
    record = prepare(
        args.name,
        file,
        args.dataset or paths.dataset_dir(),
        default_retention_file(),
        out,
        args.recipe,
    )
    _print_drops(record)
    print(
        f"{args.name}: {record['pairs']} of {record['pairs_in']} pairs kept, "
        f"{record['tokens_per_pass']:,} tokens a pass; the budget of {record['token_budget']:,} "
        f"tokens buys {record['epochs']:.2f} passes -> {out}"
    )
    return 0


def _print_drops(record: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    if not record["dropped"]:
        return
    table = Table(title=f"{record['name']}: pairs dropped")
    for col in ("where", "step", "reason", "detail"):
        table.add_column(col, overflow="fold")
    for item in record["dropped"][:50]:
        table.add_row(item["where"], item["step"], item["reason"], item.get("detail", ""))
    Console(stderr=True, width=140).print(table)
    if len(record["dropped"]) > 50:
        print(f"... and {len(record['dropped']) - 50} more (submission.json lists every one)")


def _submit(args: argparse.Namespace) -> int:
    from benchmark import paths
    from benchmark.atomic import atomic_write_bytes
    from benchmark.contracts import datatrack as contract
    from benchmark.datatrack.prepare import eval_sets
    from benchmark.datatrack.submission import check, read_submission, require_pairs
    from benchmark.errors import UserError
    from benchmark.evaluation.data import default_retention_file

    check_name(args.name, submitted=True)
    records, where_of = read_submission(args.file, args.name)
    checked = check(records, where_of, eval_sets(paths.dataset_dir(), default_retention_file()))
    _print_drops({"name": args.name, "dropped": checked.dropped})
    require_pairs(checked, str(args.file))
    dest = contract.submissions_dir() / f"{args.name}.jsonl"
    data = args.file.read_bytes()
    if dest.is_file() and dest.read_bytes() != data and not args.replace:
        raise UserError(f"{dest} already holds a different submission; pass --replace")
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest, data)
    print(
        f"{args.name}: {len(checked.records)} of {checked.pairs_in} pairs pass the checks; "
        f"entered as {dest}. Run `nox -s datatrack` to train and evaluate it."
    )
    return 0
