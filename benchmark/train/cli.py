"""`marinebench train --config configs/NAME.yaml`: train one adapter (or --plan: count params)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a LoRA/QLoRA adapter from a config into build/adapters/NAME",
        description="Train a PEFT adapter. Runs data-parallel under `accelerate launch -m "
        "benchmark train --config ...`.",
    )
    p.add_argument("--config", required=True, help="configs/NAME.yaml, or just NAME")
    p.add_argument(
        "--plan",
        action="store_true",
        help="print trainable/total parameters without loading weights, then exit",
    )
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--output", default=None, help="adapter folder (default build/adapters/NAME)")
    p.add_argument("--dataset", default=None, help="dataset folder (overrides the config)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    p.add_argument("--epochs", type=int, default=None, help="override the config's epochs")
    p.add_argument(
        "--token-budget",
        type=int,
        default=None,
        help="train on this many tokens (passes over the data until reached) instead of epochs",
    )
    p.add_argument("--device", default=None, help="auto, cpu, cuda (overrides the config)")
    p.add_argument("--dtype", default=None, help="auto, bf16, fp16, fp32 (overrides the config)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run, stage_key=stage_key)


def _config(args: argparse.Namespace):
    from benchmark.train.config import (
        load_config,
        resolve_config_arg,
        with_env_overrides,
        with_overrides,
    )

    return with_overrides(  # flags > MARINEBENCH_DEVICE/_DTYPE > the file
        with_env_overrides(load_config(resolve_config_arg(args.config))),
        dataset=args.dataset,
        max_steps=args.max_steps,
        epochs=args.epochs,
        token_budget=args.token_budget,
        device=args.device,
        dtype=args.dtype,
    )


def stage_key(args: argparse.Namespace):
    """The adapter folder and everything that decides it: the recipe (config with overrides),
    the training split's content, the base weights, the placement asked for, and the code and
    packages the trainer runs on."""
    import os
    from pathlib import Path

    from benchmark import paths
    from benchmark.fingerprint import PLACEMENT_ENV, model_fingerprint, stage_key
    from benchmark.models import weights_location
    from benchmark.train.data import dataset_hash

    if args.plan:
        return None  # --plan writes nothing: not a stage run
    config = _config(args)
    out = Path(args.output) if args.output else paths.adapters_dir() / config.name
    dataset = Path(config.dataset).expanduser() if config.dataset else paths.dataset_dir()
    inputs = {
        "config": config.to_dict(),
        "dataset": dataset_hash(dataset),
        "model": model_fingerprint(weights_location(config.model)),
        "resume": args.resume,
        "env": {k: os.environ.get(k) for k in PLACEMENT_ENV},
    }
    return stage_key(out, ["benchmark.train.cli"], inputs, numeric=True)


def _run(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    # bitsandbytes warns on import that an optional CPU kernel package is absent; its own
    # nf4 CPU path works without it, so the warning only alarms users.
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

    config = _config(args)
    if args.plan:
        return _plan(config)
    from benchmark.train.trainer import train

    out = train(
        config,
        out_dir=Path(args.output) if args.output else None,
        resume=args.resume,
        progress=not args.no_progress,
    )
    import json
    import os

    if int(os.environ.get("RANK", "0")) != 0:
        return 0  # under accelerate launch only rank 0 writes and reports
    metrics = json.loads((out / "train_metrics.json").read_text())
    print(
        f"adapter written to {out}: {metrics['steps']} steps, {metrics['tokens_seen']:,} tokens, "
        f"{metrics['tokens_per_s']:.0f} tok/s, MFU {metrics['mfu']:.2f}, "
        f"final val loss {metrics['val_loss_per_epoch'][-1]['loss'] if metrics['val_loss_per_epoch'] else 'n/a'}"
    )
    return 0


def _plan(config) -> int:
    from benchmark.train.modeling import plan

    result = plan(config)
    print(
        f"config:            {config.name} ({config.method}, r={config.lora.r}, model {config.model})"
    )
    print(f"trainable params:  {result.trainable_params:,}")
    print(f"total params:      {result.total_params:,} (every weight, base + LoRA)")
    print(f"trainable %:       {result.trainable_pct:.2f}%")
    if result.total_params_4bit_reported is not None:
        pct4 = 100.0 * result.trainable_params / result.total_params_4bit_reported
        print(
            f"4-bit numel total: {result.total_params_4bit_reported:,} (sum of numel() on the "
            f"bitsandbytes model, 2 weights per uint8; trainable would read {pct4:.2f}%)"
        )
    return 0
