"""The training loop: accelerate for device placement and data parallelism, a selective-logit
loss, length-grouped dynamic batches, resumable checkpoints, and the adapter folder at the end.

Why not transformers.Trainer: it computes logits over every position, pads through its
DataLoader collator, and its checkpoints and metrics do not match our contract; the loop here
is ~200 lines and every step of it is measured (see benchmark/bench/train.py for the Trainer
baseline it is compared with).
"""

from __future__ import annotations

import math
import os
import platform
import resource
import time
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark import paths
from benchmark.atomic import atomic_dir, atomic_write_json
from benchmark.device import choose_placement, cpu_has_native_bf16
from benchmark.errors import UserError
from benchmark.models import resolve_model
from benchmark.train import checkpoint, data
from benchmark.train.card import adapter_card
from benchmark.train.config import TrainConfig
from benchmark.train.flops import flop_model, measure_matmul_peak
from benchmark.train.loss import SelectiveLoss
from benchmark.train.modeling import ParamPlan, build_model, count_params, evaluating, plan

KILL_ENV = "MARINEBENCH_TRAIN_KILL_AT_STEP"  # test hook: exit hard after checkpointing step k


@dataclass(frozen=True)
class Prepared:
    """What the pre-flight checks found, before any weight is loaded."""

    config: TrainConfig
    dataset_path: Path
    train_records: list[dict]
    val_records: list[dict]
    param_plan: ParamPlan


def dataset_path(config: TrainConfig) -> Path:
    return Path(config.dataset).expanduser() if config.dataset else paths.dataset_dir()


def preflight(config: TrainConfig) -> Prepared:
    """Every check that can fail on bad input, done before loading weights or tokenising."""
    root = dataset_path(config)
    data.check_dataset(root)
    train_records = data.read_split(root, "train")
    if not train_records:
        raise data.DatasetError(
            f"{data.split_file(root, 'train')} has no rows: nothing to train on"
        )
    val_records = data.read_split(root, "validation")
    param_plan = plan(config)  # unknown model, missing target modules
    return Prepared(config, root, train_records, val_records, param_plan)


def _schedule(n_train: int, lengths: list[int], config: TrainConfig, world: int):
    """[(epoch, [micro-batches of the whole step, all ranks])] for the full run."""
    per_step = world * config.grad_accumulation
    steps = []
    for epoch in range(config.epochs):
        batches = data.epoch_batches(
            n_train,
            lengths,
            config.batch_size,
            config.seed,
            epoch,
            grouped=config.batching == "length_grouped",
        )
        for start in range(0, len(batches), per_step):
            group = batches[start : start + per_step]
            group = group[: len(group) // world * world]  # every rank needs a micro-batch
            if group:
                steps.append((epoch, group))
    if config.max_steps is not None:
        steps = steps[: config.max_steps]
    return steps


def _make_scheduler(optimizer, config: TrainConfig, total_steps: int):
    from transformers import get_scheduler

    name = {"constant": "constant_with_warmup"}.get(config.lr_schedule, config.lr_schedule)
    return get_scheduler(
        name,
        optimizer,
        num_warmup_steps=math.ceil(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )


def _validation_loss(
    accelerator, wrapped, peft_model, examples, config, pad_id, autocast
) -> float | None:
    if not examples:
        return None
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    mine = batches[accelerator.process_index :: accelerator.num_processes]
    total = torch.zeros(2, dtype=torch.float64, device=accelerator.device)
    with evaluating(peft_model), torch.no_grad():
        for batch in mine:
            enc = data.collate([examples[i] for i in batch], pad_id)
            with autocast():  # the unwrapped module: no DDP collectives, ranks may differ
                loss_sum, n = accelerator.unwrap_model(wrapped)(
                    enc["input_ids"].to(accelerator.device), enc["labels"].to(accelerator.device)
                )
            total += torch.stack([loss_sum.double(), n.double()])
    total = accelerator.reduce(total, "sum") if accelerator.num_processes > 1 else total
    return float(total[0] / total[1]) if total[1] > 0 else None


def _library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "datasets"):
        with suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def _hardware(device: torch.device, world: int) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    hw = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        "world_size": world,
        "device_type": device.type,
    }
    if device.type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(device)
        hw["gpu_count"] = torch.cuda.device_count()
    return hw


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def train(
    config: TrainConfig,
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    prepared: Prepared | None = None,
) -> Path:
    """Train `config` into `out_dir` (default build/adapters/NAME) and return the folder."""
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from tqdm.auto import tqdm
    from transformers import set_seed

    prepared = prepared or preflight(config)
    out_dir = Path(out_dir) if out_dir else paths.adapters_dir() / config.name
    ckpt_root = checkpoint.checkpoints_dir(out_dir)
    if not resume and ckpt_root.exists():
        raise UserError(
            f"{ckpt_root} holds checkpoints of an interrupted run; continue it with --resume, "
            "or delete that folder to start over"
        )

    # Rotary inv_freq is the model's only buffer and is constant: no per-forward broadcast.
    ddp = DistributedDataParallelKwargs(broadcast_buffers=False)
    accelerator = Accelerator(cpu=config.device == "cpu", kwargs_handlers=[ddp])
    device = accelerator.device
    if config.device.startswith("cuda") and device.type != "cuda":
        raise UserError(
            f"config {config.name!r}: device {config.device!r} but no CUDA GPU is visible"
        )
    placement = choose_placement(device.type, config.dtype)
    if device.type == "cpu" and config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    world, rank, main = (
        accelerator.num_processes,
        accelerator.process_index,
        accelerator.is_main_process,
    )

    set_seed(config.seed)
    peft_model = build_model(config, str(device), placement.dtype)
    if config.neftune_alpha:
        from transformers.integrations.neftune import activate_neftune

        # Uniform noise on the input embeddings in training mode only (the hook checks
        # module.training): validation loss sees clean embeddings, and the hook is not saved.
        activate_neftune(peft_model, config.neftune_alpha)
    from benchmark.models import architecture_config, load_tokenizer

    tokenizer = load_tokenizer(config.model)
    pad_id = tokenizer.pad_token_id
    train_ex, dropped = data.encode_records(tokenizer, prepared.train_records, config.max_length)
    val_ex, _ = data.encode_records(tokenizer, prepared.val_records, config.max_length)
    if not train_ex:
        raise UserError(f"every training example is longer than max_length={config.max_length}")
    lengths = [len(e.input_ids) for e in train_ex]
    steps = _schedule(len(train_ex), lengths, config, world)
    total_steps = len(steps)
    if total_steps == 0:
        raise UserError(
            f"{len(train_ex)} examples make no full step for {world} process(es); lower batch_size"
        )

    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = _make_scheduler(optimizer, config, total_steps)
    wrapped = accelerator.prepare(SelectiveLoss(peft_model))
    peft_model.train()

    flops = flop_model(peft_model, architecture_config(config.model))
    peak_flops = measure_matmul_peak(placement.dtype, str(device))
    d_hash = data.dataset_hash(prepared.dataset_path)
    expect = {"config_hash": config.config_hash, "dataset_hash": d_hash, "world_size": world}

    state = {
        "loss_per_step": [],
        "val_loss_per_epoch": [],
        "tokens_seen": 0,
        "labels_seen": 0,
        "train_time_s": 0.0,
        "wall_time_s": 0.0,
        "flops": 0.0,
    }
    start_step = 0
    if resume:
        latest = checkpoint.latest(ckpt_root)
        if latest is None:
            raise UserError(f"--resume: no checkpoint under {ckpt_root}; run without --resume")
        state = checkpoint.load(latest, peft_model, optimizer, scheduler, rank, expect)
        start_step = state.pop("step")
        for key in expect:
            state.pop(key, None)
    else:
        torch.manual_seed(config.seed + rank)  # dropout differs per rank, same for a given rank

    def autocast():
        if placement.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device.type, dtype=placement.dtype)

    kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
    bar = tqdm(
        total=total_steps,
        initial=start_step,
        desc=f"train {config.name}",
        disable=not (progress and main),
        unit="step",
        dynamic_ncols=True,
    )
    segment_start = time.perf_counter()
    wall_before = state["wall_time_s"]
    for step_index in range(start_step, total_steps):
        epoch, group = steps[step_index]
        step_start = time.perf_counter()
        examples = [[train_ex[i] for i in batch] for batch in group]
        labels_in_step = sum(e.n_targets for b in examples for e in b)
        tokens_in_step = sum(len(e.input_ids) for b in examples for e in b)
        mine = examples[rank::world]
        local_loss = torch.zeros((), dtype=torch.float64, device=device)
        for micro, batch in enumerate(mine):
            enc = data.collate(batch, pad_id)
            sync = micro == len(mine) - 1
            ctx = accelerator.no_sync(wrapped) if not sync and world > 1 else nullcontext()
            with ctx:
                with autocast():
                    loss_sum, _ = wrapped(enc["input_ids"].to(device), enc["labels"].to(device))
                # Normalise by the labelled tokens of the whole step (all ranks, all micro-
                # batches); x world because DDP averages gradients over ranks.
                accelerator.backward(loss_sum * world / labels_in_step)
            local_loss += loss_sum.detach().double()
        if config.max_grad_norm > 0:
            accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step_loss = accelerator.reduce(local_loss, "sum") if world > 1 else local_loss
        step_loss = float(step_loss) / labels_in_step
        seconds = time.perf_counter() - step_start
        state["train_time_s"] += seconds
        state["tokens_seen"] += tokens_in_step
        state["labels_seen"] += labels_in_step
        step_flops = flops.batch_flops(
            [len(e.input_ids) for b in examples for e in b], labels_in_step
        )
        state["flops"] += step_flops
        step = step_index + 1
        state["loss_per_step"].append(
            {
                "step": step,
                "epoch": epoch,
                "loss": round(step_loss, 6),
                "lr": lr,
                "tokens": tokens_in_step,
                "seconds": round(seconds, 4),
                "flops": step_flops,
            }
        )
        bar.update(1)
        bar.set_postfix(
            loss=f"{step_loss:.3f}", tok_s=f"{state['tokens_seen'] / state['train_time_s']:.0f}"
        )
        epoch_done = step == total_steps or steps[step][0] != epoch
        if epoch_done and config.eval_each_epoch:
            val = _validation_loss(
                accelerator, wrapped, peft_model, val_ex, config, pad_id, autocast
            )
            if val is not None:
                state["val_loss_per_epoch"].append(
                    {"epoch": epoch + 1, "step": step, "loss": round(val, 6)}
                )
                if main:
                    bar.write(f"epoch {epoch + 1}: validation loss {val:.4f}")
        state["wall_time_s"] = wall_before + time.perf_counter() - segment_start
        if step % config.save_every_steps == 0 and step < total_steps:
            _save_checkpoint(
                accelerator, ckpt_root, step, peft_model, optimizer, scheduler, {**state, **expect}
            )
            if kill_at and step == kill_at:
                os._exit(1)
    bar.close()

    trainable_n, total_n = count_params(peft_model)
    metrics = {
        "config_name": config.name,
        "config": config.to_dict(),
        "config_hash": config.config_hash,
        "base_model": config.model,
        "base_model_hub_id": resolve_model(config.model).hub_id,
        "dataset_path": str(prepared.dataset_path),
        "dataset_hash": d_hash,
        "seed": config.seed,
        "quantization": config.quantization,
        "lora": config.to_dict()["lora"],
        "trainable_params": trainable_n,
        "total_params": total_n,
        "trainable_pct": round(100.0 * trainable_n / total_n, 4),
        "total_params_4bit_reported": prepared.param_plan.total_params_4bit_reported,
        "train_examples": len(train_ex),
        "train_examples_dropped_too_long": dropped,
        "steps": total_steps,
        "tokens_seen": state["tokens_seen"],
        "labelled_tokens_seen": state["labels_seen"],
        "wall_time_s": round(state["wall_time_s"], 3),
        "train_time_s": round(state["train_time_s"], 3),
        "tokens_per_s": round(state["tokens_seen"] / state["train_time_s"], 2),
        "flops_per_s": state["flops"] / state["train_time_s"],
        "matmul_peak_flops": peak_flops * world,
        "mfu": round(state["flops"] / state["train_time_s"] / (peak_flops * world), 4),
        "flops_formula": "4*N_frozen_linear + 6*N_lora per token + 12*L*d_attn*ctx attention "
        "+ 4*V*d LM head per labelled token (see benchmark/train/flops.py)",
        "peak_memory_mb": round(_peak_memory_mb(device), 1),
        "loss_per_step": state["loss_per_step"],
        "val_loss_per_epoch": state["val_loss_per_epoch"],
        "library_versions": _library_versions(),
        "hardware": _hardware(device, world),
        "device": str(device),
        "dtype": placement.dtype_name,
        "epochs": config.epochs,
        "resumed": resume,
    }
    if main:
        _write_adapter(out_dir, peft_model, config, metrics)
        import shutil

        shutil.rmtree(ckpt_root, ignore_errors=True)
    accelerator.wait_for_everyone()
    return out_dir


def _save_checkpoint(accelerator, root, step, peft_model, optimizer, scheduler, state) -> None:
    if accelerator.is_main_process:
        checkpoint.save(root, step, peft_model, optimizer, scheduler, state)
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        checkpoint.save_rank_rng(root / f"step-{step:06d}", accelerator.process_index)
    accelerator.wait_for_everyone()


def _write_adapter(out_dir: Path, peft_model, config: TrainConfig, metrics: dict) -> None:
    resolved = resolve_model(config.model)
    base_id = resolved.hub_id or str(resolved.local_path)
    peft_model.peft_config["default"].base_model_name_or_path = base_id
    with atomic_dir(out_dir) as tmp:
        peft_model.save_pretrained(tmp, save_embedding_layers=False)  # no Hub lookup
        atomic_write_json(tmp / "train_metrics.json", metrics)
        (tmp / "README.md").write_text(adapter_card(config, metrics, base_id), encoding="utf-8")
