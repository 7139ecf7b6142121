"""`marinebench perf site`: site build time and index size for 50 synthetic runs x 500 samples.

"Runs" are evaluated adapters: one synthetic results folder holding the base model plus N
adapters (each with its adapter folder and train_metrics.json), 500 marine_qa samples per model
in scores.jsonl, plus a dataset folder. This is the shape `marinebench evaluate` produces when
build/adapters holds N adapters. Generation is not timed; only `build_site` is.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmark.atomic import atomic_write_json
from benchmark.paths import perf_dir

TARGET_SECONDS = 5.0
TARGET_INDEX_KB = 500.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="marinebench perf site", description=__doc__)
    parser.add_argument("--runs", type=int, default=50, help="evaluated adapters (default 50)")
    parser.add_argument("--samples", type=int, default=500, help="marine_qa samples per model")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed builds; the median is reported"
    )
    args = parser.parse_args(argv)

    from benchmark.leaderboard import ingest
    from benchmark.leaderboard.render import build_site
    from benchmark.leaderboard.synthetic import write_tree

    with tempfile.TemporaryDirectory(prefix="marinebench-perf-site-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        paths = write_tree(root, n_adapters=args.runs, n_samples=args.samples, seed=0)
        gen_s = time.perf_counter() - t0
        print(f"generated {args.runs} adapters + base x {args.samples} samples in {gen_s:.1f} s")
        t0 = time.perf_counter()
        ingest.load(paths["results"])
        ingest_s = time.perf_counter() - t0
        times, info = [], {}
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            info = build_site(paths["results"], root / "site", paths["dataset"])
            times.append(time.perf_counter() - t0)
        compare = sorted((root / "site" / "compare").glob("*.data.js"))
        compare_kb = [p.stat().st_size / 1024 for p in compare]

    seconds = statistics.median(times)
    index_kb = info["index_bytes"] / 1024
    result = {
        "runs": args.runs,
        "models": info["models"],
        "samples": args.samples,
        "seconds": round(seconds, 3),
        "seconds_all": [round(t, 3) for t in times],
        "ingest_seconds": round(ingest_s, 3),
        "index_kb": round(index_kb, 1),
        "site_mb": round(info["bytes"] / 1e6, 2),
        "files": info["files"],
        "compare_pages": info["compare_pages"],
        "compare_data_kb_max": round(max(compare_kb, default=0.0), 1),
        "target_seconds": TARGET_SECONDS,
        "target_index_kb": TARGET_INDEX_KB,
        "seconds_vs_target": round(seconds / TARGET_SECONDS, 3),
        "index_vs_target": round(index_kb / TARGET_INDEX_KB, 3),
    }
    atomic_write_json(perf_dir() / "site.json", result)
    print(
        f"site build: {seconds:.2f} s median of {len(times)} ({seconds / TARGET_SECONDS:.0%} of the "
        f"{TARGET_SECONDS:.0f} s target; ingest alone {ingest_s:.2f} s), index.html {index_kb:.0f} KB "
        f"({index_kb / TARGET_INDEX_KB:.0%} of {TARGET_INDEX_KB:.0f} KB), {info['files']} files, "
        f"{info['bytes'] / 1e6:.1f} MB, largest compare data {result['compare_data_kb_max']:.0f} KB"
    )
    print(f"wrote {perf_dir() / 'site.json'}")
    return 0
