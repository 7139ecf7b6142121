"""Share the models of one evaluation out to worker processes, which fill the cache.

Why: on a small CPU, generation with a 135M model scales poorly from 1 to 2 threads; two
single-thread processes side by side evaluate ~1.35x as many models per minute as one 2-thread
process (measured on this project's 2-core machine). Each worker loads the base once and
evaluates its share of the models exactly as the one-process path does (runner.compute), writing
cache entries; the parent then reads them back and assembles the results folder.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmark import paths
from benchmark.errors import UserError
from benchmark.evaluation.cache import EvalCache
from benchmark.evaluation.stats import BootstrapSettings


def shares(names: list[str], workers: int) -> list[list[str]]:
    """Round-robin the models over the workers (the base and the first adapter part ways)."""
    return [s for s in (names[i::workers] for i in range(workers)) if s]


def cpu_budget() -> int:
    """The cores this evaluation may use: OMP_NUM_THREADS when whoever started it set one (a
    Ray task gets it from the CPUs the cluster reserved for it, benchmark/cluster.py), else the
    cores this process may run on, which a container or `taskset` can make fewer than the
    machine's; never os.cpu_count() alone, which on a big cluster node would start more
    threads than the task was given."""
    given = os.environ.get("OMP_NUM_THREADS", "").strip()
    if given.isdigit() and int(given) > 0:
        return int(given)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def compute_in_workers(plan, todo, settings, cache: EvalCache) -> None:
    """Evaluate `todo` in `settings.workers` child processes; entries land in `cache`."""
    threads = max(1, cpu_budget() // settings.workers)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory(prefix="eval-workers-") as tmp:
        # With the cache disabled the workers still need somewhere to put their entries.
        root = cache.root if cache.enabled else Path(tmp) / "cache"
        procs = []
        for i, share in enumerate(shares([r.name for r in todo], settings.workers)):
            job = Path(tmp) / f"job{i}.json"
            job.write_text(
                json.dumps(
                    {
                        "model": plan.spec,
                        "adapters": [str(info.path) for info in plan.infos],
                        "models": share,
                        # The parent's placement, not "auto": a worker has fewer threads, so
                        # its own dtype probe could choose otherwise and miss the cache keys.
                        "settings": {
                            **dataclasses.asdict(settings),
                            "device": plan.placement.device,
                            "dtype": plan.placement.dtype_name,
                        },
                        "cache_root": str(root),
                    }
                ),
                encoding="utf-8",
            )
            cmd = [sys.executable, "-m", "benchmark.evaluation.workers", str(job)]
            procs.append((share, subprocess.Popen(cmd, cwd=paths.REPO_ROOT, env=env)))
        failed = [share for share, proc in procs if proc.wait() != 0]
        reader = EvalCache(root=root)
        for item in todo:
            item.entry = reader.get(item.key)
        missing = [r.name for r in todo if r.entry is None]
        if failed or missing:
            raise UserError(
                f"evaluation worker(s) for {failed or missing} failed (see the log above)"
            )


def _settings(raw: dict):
    from benchmark.evaluation.runner import EvalSettings

    raw = dict(raw)
    raw["tasks"] = tuple(raw["tasks"])
    raw["bootstrap"] = BootstrapSettings(**raw["bootstrap"])
    return EvalSettings(**raw)


def main(argv: list[str]) -> int:
    from benchmark.evaluation import runner

    job = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    settings = _settings(job["settings"])
    cache = EvalCache(root=Path(job["cache_root"]))
    plan = runner.plan(job["model"], [Path(a) for a in job["adapters"]], settings, cache)
    todo = [r for r in plan.runs if r.name in job["models"] and not r.cached]
    if todo:
        runner.compute(plan, todo, settings, cache)
    return 0


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    raise SystemExit(main(sys.argv[1:]))
