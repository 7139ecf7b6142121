"""`marinebench perf NAME [args]`: run the performance measurement benchmark/perf/NAME.py.

Named `perf`, not `bench`: "benchmark" is the product (the package `benchmark/` and the
pipeline command `marinebench benchmark`), these scripts measure how fast its stages run."""

from __future__ import annotations

import argparse
import importlib

MEASUREMENTS = {
    "train": "training throughput and MFU vs a naive baseline",
    "eval": "base + 3 adapters in one process vs separate lm_eval runs (exact and fast path)",
    "parity": "the fast evaluation path's metric means against the exact path's 95% CIs",
    "site": "site build time and index size for 50 synthetic runs x 500 samples",
    "dedup": "near-duplicate detection on 100,000 synthetic pairs",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "perf",
        help="measure a stage's speed: " + ", ".join(MEASUREMENTS),
        description="\n".join(f"{k}: {v}" for k, v in MEASUREMENTS.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", choices=sorted(MEASUREMENTS))
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for that measurement")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"benchmark.perf.{args.name}")
    return int(module.main(args.rest) or 0)
