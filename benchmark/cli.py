"""The `marinebench` command. Each stage module registers its own sub-commands."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that expose `register(subparsers)`; each adds its sub-commands.
COMMAND_MODULES = (
    "benchmark.models_cli",
    "benchmark.dataset.cli",
    "benchmark.train.cli",
    "benchmark.evaluation.cli",
    "benchmark.leaderboard.cli",
    "benchmark.datatrack.cli",
    "benchmark.perf.cli",
    "benchmark.pipeline",
    "benchmark.readme_results",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marinebench",
        description="Fine-tune small chat models on marine-biology Q&A and measure whether it helps.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--fingerprint",
        action="store_true",
        help="for a pipeline stage (dataset build, train, evaluate, site build): print, as JSON, "
        "the output folder and the fingerprint the stage would record, and run nothing",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from benchmark.errors import UserError

    try:
        return _run_stage(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _run_stage(args: argparse.Namespace) -> int:
    """Run the command; a pipeline stage (one that sets `stage_key`) records its fingerprint in
    its output folder once it succeeds, so a cache check is a comparison with that record."""
    import json
    import os

    from benchmark.errors import UserError
    from benchmark.fingerprint import record

    key_of = getattr(args, "stage_key", None)
    key = key_of(args) if key_of else None  # taken before the run: what the run started from
    if args.fingerprint:
        if key is None:
            raise UserError(f"`{args.command}` as given is not a pipeline stage: no fingerprint")
        print(json.dumps({"output": str(key.output), "digest": key.digest, "parts": key.parts}))
        return 0
    code = int(args.func(args) or 0)
    if code == 0 and key is not None and os.environ.get("RANK", "0") == "0":
        record(key)
    return code
