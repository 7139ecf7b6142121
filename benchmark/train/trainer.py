"""The training loop: accelerate for device placement and data parallelism, a selective-logit
loss, length-grouped dynamic batches, resumable checkpoints, and the adapter folder at the end.

Why not transformers.Trainer: it computes logits over every position, pads through its
DataLoader collator, and its checkpoints and metrics do not match our contract; the loop here
is one function, `train`, read top to bottom, and every step of it is measured (see
benchmark/perf/train.py for the Trainer baseline it is compared with).
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import shutil
import time
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark import paths
from benchmark.atomic import atomic_dir, atomic_write_json
from benchmark.contracts import adapter as adapter_contract
from benchmark.device import Placement, choose_placement, cpu_has_native_bf16, cpu_identity
from benchmark.errors import UserError
from benchmark.models import architecture_config, load_tokenizer, resolve_model
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


def train(
    config: TrainConfig,
    *,
    out_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    prepared: Prepared | None = None,
) -> Path:
    """Train `config` into `out_dir` (default build/adapters/NAME) and return the folder.

    The order of the set-up steps is part of the recipe: LoRA's initialisation and then the
    matmul-peak probe draw from the seeded RNG before the dropout seed is set (or a checkpoint's
    RNG state restored), so moving one of them changes the adapter's bits.
    """
    from transformers import set_seed

    prepared = prepared or preflight(config)
    out_dir = Path(out_dir) if out_dir else paths.adapters_dir() / config.name
    ckpt_root = _checkpoint_root(out_dir, resume)
    rt = _runtime(config)

    set_seed(config.seed)
    peft_model = _model_with_adapter(config, rt)
    examples = _encode_examples(config, prepared, rt.world)
    total_steps = len(examples.steps)
    optimizer, scheduler = _optimiser(config, peft_model, total_steps)
    wrapped = rt.accelerator.prepare(SelectiveLoss(peft_model))
    peft_model.train()

    flops = flop_model(peft_model, architecture_config(config.model))
    peak_flops = measure_matmul_peak(rt.placement.dtype, str(rt.device))
    d_hash = data.dataset_hash(prepared.dataset_path)
    # What a checkpoint must have been made with to be resumed.
    expect = {"config_hash": config.config_hash, "dataset_hash": d_hash, "world_size": rt.world}
    if resume:
        state, start_step = _resume(ckpt_root, expect, peft_model, optimizer, scheduler, rt.rank)
    else:
        torch.manual_seed(config.seed + rt.rank)  # dropout differs per rank, same for a given rank
        state, start_step = _fresh_state(), 0

    kill_at = int(os.environ.get(KILL_ENV, "0") or 0)
    bar = _progress_bar(config, total_steps, start_step, show=progress and rt.main)
    segment_start, wall_before = time.perf_counter(), state["wall_time_s"]
    for step_index in range(start_step, total_steps):
        epoch, group = examples.steps[step_index]
        step_start = time.perf_counter()
        batches = [[examples.train[i] for i in batch] for batch in group]
        lr = scheduler.get_last_lr()[0]
        loss = _optimizer_step(rt, wrapped, optimizer, scheduler, batches, examples.pad_id, config)
        step = step_index + 1
        _record_step(state, flops, step, epoch, loss, lr, batches, time.perf_counter() - step_start)
        bar.update(1)
        tok_s = state["tokens_seen"] / state["train_time_s"]
        bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tok_s:.0f}")

        if config.eval_each_epoch and _ends_epoch(examples.steps, step):
            val = _validation_loss(rt, wrapped, peft_model, examples, config.batch_size)
            if val is not None:
                state["val_loss_per_epoch"].append(
                    {"epoch": epoch + 1, "step": step, "loss": round(val, 6)}
                )
                if rt.main:
                    bar.write(f"epoch {epoch + 1}: validation loss {val:.4f}")
        state["wall_time_s"] = wall_before + time.perf_counter() - segment_start

        if step % config.save_every_steps == 0 and step < total_steps:
            ckpt_state = {**state, **expect}
            _save_checkpoint(rt, ckpt_root, step, peft_model, optimizer, scheduler, ckpt_state)
            if kill_at and step == kill_at:
                os._exit(1)
    bar.close()

    metrics = _metrics(
        config, prepared, examples, peft_model, rt, state, d_hash, peak_flops, resume
    )
    if rt.main:
        _write_adapter(out_dir, peft_model, config, metrics)
        shutil.rmtree(ckpt_root, ignore_errors=True)
    rt.accelerator.wait_for_everyone()
    return out_dir


# --- set-up: placement, model + adapter, data, optimiser ---------------------------------------


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: accelerate's process group, the device and the dtype."""

    accelerator: Any
    placement: Placement

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def world(self) -> int:
        return self.accelerator.num_processes

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    def autocast(self):
        """bf16/fp16 matmuls with fp32 LoRA weights; nothing to do in fp32."""
        if self.placement.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.placement.dtype)

    def sum_over_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(tensor, "sum") if self.world > 1 else tensor


def _checkpoint_root(out_dir: Path, resume: bool) -> Path:
    """Where checkpoints go; refuses to silently start over a run that was interrupted."""
    root = checkpoint.checkpoints_dir(out_dir)
    if not resume and root.exists():
        raise UserError(
            f"{root} holds checkpoints of an interrupted run; continue it with --resume, "
            "or delete that folder to start over"
        )
    return root


def _runtime(config: TrainConfig) -> Runtime:
    from accelerate import Accelerator, DistributedDataParallelKwargs

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
    return Runtime(accelerator, placement)


def _model_with_adapter(config: TrainConfig, rt: Runtime):
    peft_model = build_model(config, str(rt.device), rt.placement.dtype)
    if config.neftune_alpha:
        from transformers.integrations.neftune import activate_neftune

        # Uniform noise on the input embeddings in training mode only (the hook checks
        # module.training): validation loss sees clean embeddings, and the hook is not saved.
        activate_neftune(peft_model, config.neftune_alpha)
    return peft_model


@dataclass(frozen=True)
class Examples:
    """The tokenised splits and the whole run's batches of them, fixed before the first step."""

    train: list[data.Example]
    val: list[data.Example]
    dropped: int  # training examples longer than max_length
    pad_id: int
    steps: list[tuple[int, list[list[int]]]]  # [(epoch, micro-batches of the step, all ranks)]


def _encode_examples(config: TrainConfig, prepared: Prepared, world: int) -> Examples:
    """Tokenise once per run (never per epoch), and fail before the loop if nothing fits."""
    tokenizer = load_tokenizer(config.model)
    train_ex, dropped = data.encode_records(tokenizer, prepared.train_records, config.max_length)
    val_ex, _ = data.encode_records(tokenizer, prepared.val_records, config.max_length)
    if not train_ex:
        raise UserError(f"every training example is longer than max_length={config.max_length}")
    steps = _step_batches(len(train_ex), [len(e.input_ids) for e in train_ex], config, world)
    if not steps:
        raise UserError(
            f"{len(train_ex)} examples make no full step for {world} process(es); lower batch_size"
        )
    return Examples(train_ex, val_ex, dropped, tokenizer.pad_token_id, steps)


def _step_batches(n_train: int, lengths: list[int], config: TrainConfig, world: int):
    """[(epoch, [micro-batches of the whole step, all ranks])] for the full run: `epochs` passes,
    or with a token budget as many reshuffled passes as it takes, up to the step that reaches it
    (a set smaller than the budget is seen more times, a larger one is cut)."""
    per_step = world * config.grad_accumulation
    budget = config.token_budget
    steps, tokens, epoch = [], 0, 0
    while budget is not None or epoch < config.epochs:
        batches = data.epoch_batches(
            n_train,
            lengths,
            config.batch_size,
            config.seed,
            epoch,
            grouped=config.batching == "length_grouped",
        )
        before = len(steps)
        for start in range(0, len(batches), per_step):
            group = batches[start : start + per_step]
            group = group[: len(group) // world * world]  # every rank needs a micro-batch
            if not group:
                continue
            steps.append((epoch, group))
            tokens += sum(lengths[i] for batch in group for i in batch)
            if budget is not None and tokens >= budget:
                return steps[: config.max_steps] if config.max_steps else steps
        if len(steps) == before:  # a pass makes no full step: no budget can ever be reached
            break
        epoch += 1
    if config.max_steps is not None:
        steps = steps[: config.max_steps]
    return steps


def _optimiser(config: TrainConfig, peft_model, total_steps: int):
    """AdamW on the LoRA weights and the warm-up + decay learning-rate schedule."""
    from transformers import get_scheduler

    trainable = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=config.learning_rate, weight_decay=config.weight_decay
    )
    name = {"constant": "constant_with_warmup"}.get(config.lr_schedule, config.lr_schedule)
    scheduler = get_scheduler(
        name,
        optimizer,
        num_warmup_steps=math.ceil(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    return optimizer, scheduler


# --- start or resume ---------------------------------------------------------------------------


def _fresh_state() -> dict:
    """The counters a checkpoint saves and the metrics report."""
    return {
        "loss_per_step": [],
        "val_loss_per_epoch": [],
        "tokens_seen": 0,
        "labels_seen": 0,
        "train_time_s": 0.0,
        "wall_time_s": 0.0,
        "flops": 0.0,
    }


def _resume(ckpt_root: Path, expect: dict, peft_model, optimizer, scheduler, rank: int):
    """(state, first step) from the latest checkpoint: weights, optimiser, schedule, RNGs."""
    latest = checkpoint.latest(ckpt_root)
    if latest is None:
        raise UserError(f"--resume: no checkpoint under {ckpt_root}; run without --resume")
    state = checkpoint.load(latest, peft_model, optimizer, scheduler, rank, expect)
    start_step = state.pop("step")
    for key in expect:
        state.pop(key, None)
    return state, start_step


def _progress_bar(config: TrainConfig, total_steps: int, start_step: int, show: bool):
    from tqdm.auto import tqdm

    return tqdm(
        total=total_steps,
        initial=start_step,
        desc=f"train {config.name}",
        disable=not show,
        unit="step",
        dynamic_ncols=True,
    )


# --- the loop's steps --------------------------------------------------------------------------


def _optimizer_step(rt: Runtime, wrapped, optimizer, scheduler, batches, pad_id, config) -> float:
    """Forward/backward over this rank's share of the step's micro-batches, clip, step; returns
    the step's loss per labelled token over all ranks.

    The loss is normalised by the labelled tokens of the whole step (all ranks, all
    micro-batches), so N processes with k micro-batches each train the same recipe as one.
    """
    labels_in_step = sum(e.n_targets for b in batches for e in b)
    mine = batches[rt.rank :: rt.world]
    local_loss = torch.zeros((), dtype=torch.float64, device=rt.device)
    for micro, batch in enumerate(mine):
        enc = data.collate(batch, pad_id)
        sync = micro == len(mine) - 1
        ctx = rt.accelerator.no_sync(wrapped) if not sync and rt.world > 1 else nullcontext()
        with ctx:
            with rt.autocast():
                loss_sum, _ = wrapped(enc["input_ids"].to(rt.device), enc["labels"].to(rt.device))
            # x world because DDP averages gradients over ranks.
            rt.accelerator.backward(loss_sum * rt.world / labels_in_step)
        local_loss += loss_sum.detach().double()
    if config.max_grad_norm > 0:
        params = optimizer.param_groups[0]["params"]  # the trainable (LoRA) weights
        rt.accelerator.clip_grad_norm_(params, config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(rt.sum_over_ranks(local_loss)) / labels_in_step


def _record_step(state: dict, flops, step, epoch, loss, lr, batches, seconds: float) -> None:
    """Add the step to the counters and to loss_per_step (all ranks' tokens)."""
    lengths = [len(e.input_ids) for b in batches for e in b]
    labels = sum(e.n_targets for b in batches for e in b)
    step_flops = flops.batch_flops(lengths, labels)
    state["train_time_s"] += seconds
    state["tokens_seen"] += sum(lengths)
    state["labels_seen"] += labels
    state["flops"] += step_flops
    state["loss_per_step"].append(
        {
            "step": step,
            "epoch": epoch,
            "loss": round(loss, 6),
            "lr": lr,
            "tokens": sum(lengths),
            "seconds": round(seconds, 4),
            "flops": step_flops,
        }
    )


def _ends_epoch(steps: list, step: int) -> bool:
    """Whether the step just done (1-based) is its epoch's last."""
    return step == len(steps) or steps[step][0] != steps[step - 1][0]


def _validation_loss(rt: Runtime, wrapped, peft_model, examples: Examples, batch_size: int):
    """Mean loss per labelled token on the validation split (None without one), all ranks."""
    val = examples.val
    if not val:
        return None
    order = sorted(range(len(val)), key=lambda i: len(val[i].input_ids))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    total = torch.zeros(2, dtype=torch.float64, device=rt.device)
    with evaluating(peft_model), torch.no_grad():
        for batch in batches[rt.rank :: rt.world]:
            enc = data.collate([val[i] for i in batch], examples.pad_id)
            with rt.autocast():  # the unwrapped module: no DDP collectives, ranks may differ
                loss_sum, n = rt.accelerator.unwrap_model(wrapped)(
                    enc["input_ids"].to(rt.device), enc["labels"].to(rt.device)
                )
            total += torch.stack([loss_sum.double(), n.double()])
    total = rt.sum_over_ranks(total)
    return float(total[0] / total[1]) if total[1] > 0 else None


def _save_checkpoint(rt: Runtime, root, step, peft_model, optimizer, scheduler, state) -> None:
    """Rank 0 writes the checkpoint; every other rank adds its own RNG state to it."""
    if rt.main:
        checkpoint.save(root, step, peft_model, optimizer, scheduler, state)
    rt.accelerator.wait_for_everyone()
    if not rt.main:
        checkpoint.save_rank_rng(root / f"step-{step:06d}", rt.rank)
    rt.accelerator.wait_for_everyone()


# --- the end: metrics and the adapter folder ---------------------------------------------------


def _metrics(
    config, prepared, examples: Examples, peft_model, rt, state, d_hash, peak_flops, resume
):
    """train_metrics.json: the contract in docs/train.md."""
    trainable_n, total_n = count_params(peft_model)
    flops_per_s = state["flops"] / state["train_time_s"]
    return {
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
        "train_examples": len(examples.train),
        "train_examples_dropped_too_long": examples.dropped,
        "steps": len(examples.steps),
        "tokens_seen": state["tokens_seen"],
        "labelled_tokens_seen": state["labels_seen"],
        "wall_time_s": round(state["wall_time_s"], 3),
        "train_time_s": round(state["train_time_s"], 3),
        "tokens_per_s": round(state["tokens_seen"] / state["train_time_s"], 2),
        "flops_per_s": flops_per_s,
        "matmul_peak_flops": peak_flops * rt.world,
        "mfu": round(flops_per_s / (peak_flops * rt.world), 4),
        "flops_formula": "4*N_frozen_linear + 6*N_lora per token + 12*L*d_attn*ctx attention "
        "+ 4*V*d LM head per labelled token (see benchmark/train/flops.py)",
        "peak_memory_mb": round(_peak_memory_mb(rt.device), 1),
        "loss_per_step": state["loss_per_step"],
        "val_loss_per_epoch": state["val_loss_per_epoch"],
        "library_versions": _library_versions(),
        "hardware": _hardware(rt.device, rt.world),
        "device": str(rt.device),
        "dtype": rt.placement.dtype_name,
        # How auto chose: the CPU probe's figures, or a request.
        "dtype_choice": rt.placement.record(),
        "epochs": config.epochs,
        "token_budget": config.token_budget,
        # passes over the training split the run made (fractional when a budget cut the last)
        "epochs_seen": round(
            sum(len(b) for _, group in examples.steps for b in group) / len(examples.train), 4
        ),
        "resumed": resume,
    }


def _library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "datasets"):
        with suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def _hardware(device: torch.device, world: int) -> dict:
    hw = {
        "cpu": cpu_identity()["cpu_model"],
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


def _sort_module_lists(config_file: Path) -> None:
    """PEFT keeps `target_modules` (and `exclude_modules`) as sets and writes them in set order,
    which follows the process's string-hash seed: two identical trainings would write different
    adapter_config.json bytes, so a retrained adapter's digest (and every cache keyed on it)
    would change. Written sorted, as PEFT writes the rest of the file (indent 2, sorted keys)."""
    data = json.loads(config_file.read_text(encoding="utf-8"))
    for key in ("target_modules", "exclude_modules"):
        if isinstance(data.get(key), list):
            data[key] = sorted(data[key])
    config_file.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")


def _write_adapter(out_dir: Path, peft_model, config: TrainConfig, metrics: dict) -> None:
    resolved = resolve_model(config.model)
    base_id = resolved.hub_id or str(resolved.local_path)
    peft_model.peft_config["default"].base_model_name_or_path = base_id
    with atomic_dir(out_dir) as tmp:
        peft_model.save_pretrained(tmp, save_embedding_layers=False)  # no Hub lookup
        _sort_module_lists(tmp / adapter_contract.CONFIG_FILE)
        atomic_write_json(tmp / "train_metrics.json", metrics)
        (tmp / "README.md").write_text(adapter_card(config, metrics, base_id), encoding="utf-8")
