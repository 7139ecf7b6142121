"""`marinebench bench NAME [args]`: run the benchmark script benchmark/bench/NAME.py."""

from __future__ import annotations

import argparse
import importlib

BENCHES = {
    "train": "training throughput and MFU vs a naive baseline",
    "eval": "base + 3 adapters in one process vs separate lm_eval runs",
    "site": "site build time and index size for 50 synthetic runs x 500 samples",
    "dedup": "near-duplicate detection on 100,000 synthetic pairs",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="run a benchmark script: " + ", ".join(BENCHES),
        description="\n".join(f"{k}: {v}" for k, v in BENCHES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("name", choices=sorted(BENCHES))
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for that benchmark")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"benchmark.bench.{args.name}")
    return int(module.main(args.rest) or 0)
