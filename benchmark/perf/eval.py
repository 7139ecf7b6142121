"""Performance: base + 3 adapters evaluated in one process (`marinebench evaluate`) against four
separate plain `lm_eval` CLI runs (one per model) on the same task, limit and batch size; and
the same one-process run on the opt-in fast path (`--fast`), whose parity with the exact path
`marinebench perf parity` reports.

Both sides run as fresh subprocesses, so each pays its own interpreter start, imports and model
loads: the one-process run pays them once, the separate runs four times. Writes
build/perf/eval_adapters.json with one_process_s, separate_runs_s, ratio, gen_tok_s (the
batched generation throughput measured inside the one-process run), task_s (per task, the
seconds the four models spent on its requests inside the one-process run, scoring excluded),
and the same three for the fast path under `fast`.
The default tasks are one of each kind on the test split: generation, the answer's likelihood
and multiple choice.

Uses the adapters under build/adapters/ when three fit the model; otherwise makes three quick
random LoRA adapters in a temp folder. Uses build/dataset when built; otherwise a temp test
split from datasets_src/curated/*.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark import paths
from benchmark.atomic import atomic_write_json
from benchmark.device import choose_placement, describe_choice
from benchmark.errors import UserError

TARGET_RATIO = 4.0
TARGET_TOK_S = 600.0
DEFAULT_TASKS = "marine_qa,marine_qa_ppl,marine_mc"


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="marinebench perf eval", description=__doc__)
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--tasks", default=DEFAULT_TASKS, help="comma-separated lm-eval tasks")
    p.add_argument("--limit", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-gen-toks", type=int, default=64)
    p.add_argument("--out", type=Path, default=None, help="default: build/perf/eval_adapters.json")
    return p.parse_args(argv)


def _fitting_adapters(spec: str, path: str) -> list[Path]:
    from benchmark.evaluation.adapters import check_adapters, discover_adapters

    found = []
    for folder in discover_adapters():
        try:
            check_adapters([folder], spec, path)
        except UserError:
            continue
        found.append(folder)
    return found[:3]


def _random_adapters(model_dir: str, out: Path, n: int = 3) -> list[Path]:
    """n LoRA adapters with small random lora_B (outputs change, answers stay fluent)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folders = []
    for seed in range(n):
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0)
        peft_model = get_peft_model(model, config)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=gen) * 1e-3)
        folder = out / f"perf-lora-{seed}"
        peft_model.save_pretrained(folder)
        folders.append(folder)
    return folders


def _dataset(tmp: Path) -> str:
    """build/dataset if built, else a temp test split made from the curated JSONL files."""
    from benchmark.evaluation.data import split_file

    if split_file(paths.dataset_dir(), "test").is_file():
        return str(paths.dataset_dir())
    import pandas as pd

    from benchmark.evaluation.data import read_qa_jsonl

    rows = [
        r
        for f in sorted((paths.DATASETS_SRC / "curated").glob("*.jsonl"))
        for r in read_qa_jsonl(f)
    ]
    if not rows:
        raise UserError("no dataset: build one (`marinebench dataset build`) or add curated JSONL")
    folder = tmp / "dataset"
    split_file(folder, "test").parent.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(split_file(folder, "test"))
    return str(folder)


def _model_seconds(build: Path, tasks: list[str]) -> tuple[int, float, dict[str, float]]:
    """(generated tokens, generation seconds, seconds per task) summed over a run's models."""
    manifest = json.loads((build / "results" / "perf" / "manifest.json").read_text())
    models = manifest["models"]
    tokens = sum(m["timing"]["generated_tokens"] for m in models)
    gen_s = sum(m["timing"]["generate_s"] for m in models)
    task_s = {t: round(sum(m["timing"]["task_s"].get(t, 0.0) for m in models), 2) for t in tasks}
    return tokens, gen_s, task_s


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{proc.stderr[-3000:]}")
    return elapsed


def main(argv: list[str]) -> int:
    from benchmark.models import model_path

    args = _parse(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    path = model_path(args.model)
    placement = choose_placement()
    out_file = args.out or paths.perf_dir() / "eval_adapters.json"
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="perf-eval-") as tmp_name:
        tmp = Path(tmp_name)
        adapters = _fitting_adapters(args.model, path)
        adapter_kind = "trained"
        if len(adapters) < 3:
            adapters, adapter_kind = _random_adapters(path, tmp / "adapters"), "random"
        dataset = _dataset(tmp)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
        env["TRANSFORMERS_OFFLINE"] = "1"

        one_env = {**env, "MARINEBENCH_BUILD": str(tmp / "build")}
        one_cmd = [
            sys.executable, "-m", "benchmark", "evaluate",
            "--model", path, "--adapters", *map(str, adapters),
            "--dataset", dataset, "--tasks", *tasks, "--limit", str(args.limit),
            "--batch-size", str(args.batch_size), "--max-gen-toks", str(args.max_gen_toks),
            "--no-cache", "--run", "perf",
        ]  # fmt: skip
        print(f"dtype: {describe_choice(placement.record())}", flush=True)
        print(f"one process: base + {len(adapters)} adapters ({adapter_kind}) ...", flush=True)
        one_s = _timed(one_cmd, one_env)
        tokens, gen_s, task_s = _model_seconds(tmp / "build", tasks)
        print("one process, fast path ...", flush=True)
        fast_env = {**env, "MARINEBENCH_BUILD": str(tmp / "build-fast")}
        fast_s = _timed([*one_cmd, "--fast"], fast_env)
        fast_tokens, fast_gen_s, fast_task_s = _model_seconds(tmp / "build-fast", tasks)

        separate = []
        for adapter in [None, *adapters]:
            model_args = f"pretrained={path},dtype={placement.dtype_name}"
            if adapter is not None:
                model_args += f",peft={adapter}"
            cmd = [
                sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", model_args,
                "--include_path", str(paths.TASKS_DIR), "--tasks", ",".join(tasks),
                "--apply_chat_template", "--metadata", json.dumps({"dataset": dataset}),
                "--limit", str(args.limit), "--batch_size", str(args.batch_size),
                "--gen_kwargs", f"max_gen_toks={args.max_gen_toks}",
                "--device", placement.device,
            ]  # fmt: skip
            print(f"separate lm_eval run {len(separate) + 1}/{len(adapters) + 1} ...", flush=True)
            separate.append(_timed(cmd, env))

    separate_s = sum(separate)
    fast = {
        "one_process_s": round(fast_s, 2),
        "ratio": round(separate_s / fast_s, 3),
        "gen_tok_s": round(fast_tokens / fast_gen_s, 1) if fast_gen_s else 0.0,
        "task_s": fast_task_s,
        "generated_tokens": fast_tokens,
        "generate_s": round(fast_gen_s, 2),
    }
    fast["meets_targets"] = fast["ratio"] >= TARGET_RATIO and fast["gen_tok_s"] >= TARGET_TOK_S
    report = {
        "one_process_s": round(one_s, 2),
        "separate_runs_s": round(separate_s, 2),
        "separate_runs_each_s": [round(s, 2) for s in separate],
        "ratio": round(separate_s / one_s, 3),
        "gen_tok_s": round(tokens / gen_s, 1) if gen_s else 0.0,
        "task_s": task_s,
        "generated_tokens": tokens,
        "generate_s": round(gen_s, 2),
        "models": 1 + len(adapters),
        "adapters": adapter_kind,
        "tasks": tasks,
        "limit": args.limit,
        "batch_size": args.batch_size,
        "max_gen_toks": args.max_gen_toks,
        "model": args.model,
        "device": placement.device,
        "dtype": placement.dtype_name,
        "dtype_choice": placement.record(),
        "cpu_count": os.cpu_count(),
        # other jobs on the machine slow both sides unevenly: 1-minute load before and after
        "load_avg_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "targets": {"ratio": TARGET_RATIO, "gen_tok_s": TARGET_TOK_S},
        "fast": fast,
    }
    report["meets_targets"] = (
        report["ratio"] >= TARGET_RATIO and report["gen_tok_s"] >= TARGET_TOK_S
    )
    atomic_write_json(out_file, report)
    print(
        f"one process {one_s:.1f}s vs separate runs {separate_s:.1f}s: ratio {report['ratio']:.2f} "
        f"(target >= {TARGET_RATIO}); generation {report['gen_tok_s']:.0f} tok/s "
        f"(target >= {TARGET_TOK_S:.0f}); model seconds per task (4 models): {task_s}; "
        f"fast path (--fast): {fast_s:.1f}s, ratio {fast['ratio']:.2f}, generation "
        f"{fast['gen_tok_s']:.0f} tok/s, {fast_task_s}; wrote {out_file}"
    )
    return 0
