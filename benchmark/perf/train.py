"""`marinebench perf train`: training throughput of our loop vs a naive transformers.Trainer
baseline, on the same examples, in one run; writes build/perf/train_throughput.json.

Optimised: the default config (dtype auto: the faster of fp32 and bf16 by benchmark/device.py's
probe, length-grouped dynamic padding, LM head only on labelled positions, tokenised once).
Naive: transformers.Trainer, fp32, every example padded to max_length, logits over every
position. Both count only real (non-padding) tokens, and both skip their first step
(allocation warm-up).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import tempfile
import time
from pathlib import Path

from benchmark import paths
from benchmark.atomic import atomic_write_json


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="marinebench perf train", description=__doc__)
    p.add_argument("--config", default="smollm2-lora-r16")
    p.add_argument("--steps", type=int, default=10, help="optimised steps (first is warm-up)")
    p.add_argument("--naive-steps", type=int, default=3, help="baseline steps (first is warm-up)")
    p.add_argument("--dataset", default=None, help="dataset folder (default build/dataset)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads for both runs")
    return p.parse_args(argv)


def _dataset_from_curated(out: Path) -> Path:
    """A stand-in dataset folder from datasets_src/curated/*.jsonl when build/dataset is absent."""
    import pandas as pd

    from benchmark.train.data import COLUMNS

    rows = []
    for path in sorted((paths.DATASETS_SRC / "curated").glob("*.jsonl")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit("no build/dataset and no datasets_src/curated/*.jsonl to build one from")
    random.Random(0).shuffle(rows)
    cut = max(1, len(rows) // 10)
    splits = {"validation": rows[:cut], "test": rows[cut : 2 * cut], "train": rows[2 * cut :]}
    for split, part in splits.items():
        target = out / "data" / f"{split}-00000-of-00001.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([{c: str(r.get(c, "")) for c in COLUMNS} for r in part]).to_parquet(target)
    return out


def _steady(steps: list[dict]) -> tuple[float, float, float]:
    """(tokens, seconds, flops) over all steps but the first."""
    rest = steps[1:] or steps
    return (
        sum(s["tokens"] for s in rest),
        sum(s["seconds"] for s in rest),
        sum(s.get("flops", 0.0) for s in rest),
    )


def _naive(config, train_records, n_steps: int) -> dict:
    """transformers.Trainer, fp32, padded to max_length, full logits; per-step timing."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    from benchmark.models import load_tokenizer, model_path
    from benchmark.train.data import IGNORE, encode_records
    from benchmark.train.modeling import lora_config

    tokenizer = load_tokenizer(config.model)
    examples, _ = encode_records(tokenizer, train_records, config.max_length)
    examples = examples[: n_steps * config.batch_size]
    pad = tokenizer.pad_token_id

    class Padded(torch.utils.data.Dataset):
        def __len__(self):
            return len(examples)

        def __getitem__(self, i):
            e = examples[i]
            n = config.max_length - len(e.input_ids)
            return {
                "input_ids": torch.tensor(e.input_ids + [pad] * n),
                "attention_mask": torch.tensor([1] * len(e.input_ids) + [0] * n),
                "labels": torch.tensor(e.labels + [IGNORE] * n),
            }

    steps: list[dict] = []

    class Timed(Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            start = time.perf_counter()
            loss = super().training_step(model, inputs, num_items_in_batch)
            steps.append(
                {
                    "tokens": int(inputs["attention_mask"].sum()),
                    "seconds": time.perf_counter() - start,
                }
            )
            return loss

    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_pretrained(model_path(config.model), dtype=torch.float32)
    model = get_peft_model(model, lora_config(config))
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=config.batch_size,
            max_steps=n_steps,
            learning_rate=config.learning_rate,
            lr_scheduler_type=config.lr_schedule,
            warmup_steps=config.warmup_ratio,  # a float < 1 is a fraction of the steps
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            seed=config.seed,
            disable_tqdm=False,
        )
        Timed(model=model, args=args, train_dataset=Padded()).train()
    return {"steps": steps}


def main(argv: list[str]) -> int:
    import torch

    from benchmark.device import describe_choice
    from benchmark.train.config import (
        load_config,
        resolve_config_arg,
        with_env_overrides,
        with_overrides,
    )
    from benchmark.train.trainer import preflight, train

    args = _parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="perf-train-")))
        dataset = Path(args.dataset) if args.dataset else paths.dataset_dir()
        source = "build/dataset"
        if not (dataset / "data").is_dir():
            dataset, source = _dataset_from_curated(tmp / "dataset"), "datasets_src/curated (temp)"
        config = with_overrides(
            with_env_overrides(load_config(resolve_config_arg(args.config))),
            dataset=str(dataset),
            max_steps=args.steps,
            eval_each_epoch=False,
            save_every_steps=10**9,
        )
        prepared = preflight(config)
        out = train(config, out_dir=tmp / "adapter", prepared=prepared, progress=True)
        fast = json.loads((out / "train_metrics.json").read_text())
        naive = _naive(config, prepared.train_records, args.naive_steps)

    f_tokens, f_seconds, f_flops = _steady(fast["loss_per_step"])
    n_tokens, n_seconds, _ = _steady(naive["steps"])
    optimized = f_tokens / f_seconds
    baseline = n_tokens / n_seconds
    peak = fast["matmul_peak_flops"]
    result = {
        "config": config.name,
        "dataset": source,
        "optimized_tok_s": round(optimized, 2),
        "naive_tok_s": round(baseline, 2),
        "ratio": round(optimized / baseline, 3),
        "matmul_peak_gflops": round(peak / 1e9, 2),
        "matmul_peak_dtype": fast["dtype"],
        "dtype_choice": fast["dtype_choice"],
        "achieved_gflops": round(f_flops / f_seconds / 1e9, 2),
        "mfu": round(f_flops / f_seconds / peak, 4),
        "optimized_steps": len(fast["loss_per_step"]),
        "naive_steps": len(naive["steps"]),
        "batch_size": config.batch_size,
        "max_length": config.max_length,
        "torch_threads": torch.get_num_threads(),
        "flops_formula": fast["flops_formula"],
        "hardware": fast["hardware"],
        "library_versions": fast["library_versions"],
        "note": "non-padding tokens only; first step of each run excluded as warm-up",
    }
    atomic_write_json(paths.perf_dir() / "train_throughput.json", result)
    for key in (
        "optimized_tok_s",
        "naive_tok_s",
        "ratio",
        "matmul_peak_gflops",
        "achieved_gflops",
        "mfu",
    ):
        print(f"{key:20s} {result[key]}")
    print(f"{'dtype':20s} {describe_choice(fast['dtype_choice'])}")
    print(f"written {paths.perf_dir() / 'train_throughput.json'}")
    return 0
