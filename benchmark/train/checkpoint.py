"""Resumable checkpoints: LoRA weights, optimiser, scheduler, RNG states and the step reached.

They live in a hidden sibling of the adapter folder (build/adapters/.NAME.checkpoints/), only
the latest is kept, and the folder is removed once the adapter is written.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from benchmark.atomic import atomic_dir
from benchmark.errors import UserError

STATE = "state.json"


def checkpoints_dir(out_dir: Path) -> Path:
    return out_dir.parent / f".{out_dir.name}.checkpoints"


def rng_state() -> dict:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().clone() for n, p in model.named_parameters() if p.requires_grad}


def save(root: Path, step: int, model, optimizer, scheduler, state: dict) -> Path:
    """Write checkpoint `step` whole (atomic), then drop older ones."""
    target = root / f"step-{step:06d}"
    with atomic_dir(target) as tmp:
        torch.save(trainable_state(model), tmp / "trainable.pt")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_state(), tmp / "rng-rank0.pt")
        (tmp / STATE).write_text(json.dumps({**state, "step": step}, indent=2) + "\n")
    for old in root.glob("step-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def save_rank_rng(ckpt: Path, rank: int) -> None:
    torch.save(rng_state(), ckpt / f"rng-rank{rank}.pt")


def latest(root: Path) -> Path | None:
    done = sorted(p for p in root.glob("step-*") if (p / STATE).is_file())
    return done[-1] if done else None


def load(ckpt: Path, model, optimizer, scheduler, rank: int, expect: dict) -> dict:
    """Restore everything from `ckpt`; refuse when the config or the data changed."""
    state = json.loads((ckpt / STATE).read_text())
    for key, value in expect.items():
        if state.get(key) != value:
            raise UserError(
                f"checkpoint {ckpt} was made with a different {key} ({state.get(key)} != {value}); "
                f"delete {ckpt.parent} to start over, or run without --resume"
            )
    saved = torch.load(ckpt / "trainable.pt", weights_only=True)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value)
    optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=True))
    rng_file = ckpt / f"rng-rank{rank}.pt"
    if not rng_file.is_file():
        rng_file = ckpt / "rng-rank0.pt"
    set_rng_state(torch.load(rng_file, weights_only=False))
    return state
