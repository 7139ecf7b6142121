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
    "benchmark.bench.cli",
    "benchmark.pipeline",
    "benchmark.report",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="marinebench",
        description="Fine-tune small chat models on marine-biology Q&A and measure whether it helps.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
