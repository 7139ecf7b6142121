"""Training configs: YAML files in configs/, validated on load so a typo fails before any work.

Every knob has a default; unknown keys and bad values raise UserError naming the key and file.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmark.contracts.base_model import DEFAULT_MODEL
from benchmark.errors import UserError
from benchmark.hashing import sha256_json

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SCHEDULES = ("cosine", "linear", "constant")
DTYPES = ("auto", "bf16", "fp16", "fp32")
QUANTIZATIONS = (None, "nf4")
BATCHING = ("length_grouped", "shuffled")


class ConfigError(UserError):
    """A training config file is missing, malformed, or holds an unknown key or a bad value."""


@dataclass(frozen=True)
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ALL_LINEAR


@dataclass(frozen=True)
class TrainConfig:
    """One adapter's recipe. `name` names the output folder build/adapters/<name>/."""

    name: str
    model: str = DEFAULT_MODEL
    dataset: str | None = None  # None: build/dataset (moved by MARINEBENCH_BUILD)
    quantization: str | None = None
    lora: LoraSettings = field(default_factory=LoraSettings)
    epochs: int = 3
    max_steps: int | None = None  # stop early (benchmarks, tests); None: all epochs
    # Train on this many tokens (sum of sequence lengths) instead of `epochs` passes: passes over
    # the data, each reshuffled, until the step that reaches it (the data track's equal budget).
    token_budget: int | None = None
    learning_rate: float = 5e-4
    lr_schedule: str = "cosine"
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    neftune_alpha: float | None = None  # NEFTune embedding noise (arXiv 2310.05914); None: off
    batch_size: int = 8
    grad_accumulation: int = 1
    max_length: int = 256
    batching: str = "length_grouped"
    seed: int = 42
    dtype: str = "auto"
    device: str = "auto"
    gradient_checkpointing: bool = False
    cpu_threads: int | None = None  # torch CPU threads; None leaves torch's default
    eval_each_epoch: bool = True
    save_every_steps: int = 25
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["lora"]["target_modules"] = list(self.lora.target_modules)
        return data

    @property
    def config_hash(self) -> str:
        """Hash of everything that changes the trained adapter (not the free-text description)."""
        data = self.to_dict()
        data.pop("description")
        return sha256_json(data)

    @property
    def method(self) -> str:
        return "qlora" if self.quantization else "lora"


def _fail(source: str, key: str, msg: str) -> ConfigError:
    return ConfigError(f"{source}: key {key!r}: {msg}")


def _check_type(source: str, key: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    # bool is an int subclass in Python; `epochs: true` must not pass as 1.
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise _fail(source, key, f"expected {_kind_name(kinds)}, got {value!r}")
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kinds):
        raise _fail(source, key, f"expected {_kind_name(kinds)}, got {value!r}")
    return value


def _kind_name(kinds: tuple[type, ...]) -> str:
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)


_TOP_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "model": (str,),
    "dataset": (str, type(None)),
    "quantization": (str, type(None)),
    "epochs": (int,),
    "max_steps": (int, type(None)),
    "token_budget": (int, type(None)),
    "learning_rate": (float,),
    "lr_schedule": (str,),
    "warmup_ratio": (float,),
    "weight_decay": (float,),
    "max_grad_norm": (float,),
    "neftune_alpha": (float, type(None)),
    "batch_size": (int,),
    "grad_accumulation": (int,),
    "max_length": (int,),
    "batching": (str,),
    "seed": (int,),
    "dtype": (str,),
    "device": (str,),
    "gradient_checkpointing": (bool,),
    "cpu_threads": (int, type(None)),
    "eval_each_epoch": (bool,),
    "save_every_steps": (int,),
    "description": (str,),
}
_LORA_TYPES: dict[str, tuple[type, ...]] = {
    "r": (int,),
    "alpha": (int, float),
    "dropout": (float,),
    "target_modules": (list,),
}


def config_from_dict(raw: Any, source: str, default_name: str) -> TrainConfig:
    """Validate a parsed YAML mapping into a TrainConfig (errors name `source` and the key)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "lora":
            continue
        if key not in _TOP_TYPES:
            raise _fail(
                source, key, f"unknown key; known keys: {', '.join(sorted(_TOP_TYPES))}, lora"
            )
        values[key] = _check_type(source, key, value, _TOP_TYPES[key])
    lora_raw = raw.get("lora") or {}
    if not isinstance(lora_raw, dict):
        raise _fail(source, "lora", "expected a mapping with r, alpha, dropout, target_modules")
    lora_values: dict[str, Any] = {}
    for key, value in lora_raw.items():
        if key not in _LORA_TYPES:
            raise _fail(source, f"lora.{key}", f"unknown key; known keys: {', '.join(_LORA_TYPES)}")
        lora_values[key] = _check_type(source, f"lora.{key}", value, _LORA_TYPES[key])
    if "target_modules" in lora_values:
        mods = lora_values["target_modules"]
        if not mods or not all(isinstance(m, str) and m for m in mods):
            raise _fail(source, "lora.target_modules", "expected a non-empty list of module names")
        lora_values["target_modules"] = tuple(mods)
    lora = LoraSettings(**lora_values)
    config = TrainConfig(name=values.pop("name", default_name), lora=lora, **values)
    _check_values(config, source)
    return config


def _check_values(c: TrainConfig, source: str) -> None:
    def need(ok: bool, key: str, msg: str) -> None:
        if not ok:
            raise _fail(source, key, msg)

    need(
        bool(c.name) and "/" not in c.name and not c.name.startswith("."),
        "name",
        f"{c.name!r} is not a usable folder name",
    )
    need(c.quantization in QUANTIZATIONS, "quantization", f"{c.quantization!r}; use null or nf4")
    need(c.lora.r > 0, "lora.r", f"rank must be > 0, got {c.lora.r}")
    need(c.lora.alpha > 0, "lora.alpha", f"must be > 0, got {c.lora.alpha}")
    need(0.0 <= c.lora.dropout < 1.0, "lora.dropout", f"must be in [0, 1), got {c.lora.dropout}")
    need(c.epochs > 0, "epochs", f"must be > 0, got {c.epochs}")
    need(c.max_steps is None or c.max_steps > 0, "max_steps", f"must be > 0, got {c.max_steps}")
    need(
        c.token_budget is None or c.token_budget > 0,
        "token_budget",
        f"must be > 0, or null to train `epochs` passes, got {c.token_budget}",
    )
    need(c.learning_rate > 0, "learning_rate", f"must be > 0, got {c.learning_rate}")
    need(c.lr_schedule in SCHEDULES, "lr_schedule", f"{c.lr_schedule!r}; use one of {SCHEDULES}")
    need(0.0 <= c.warmup_ratio < 1.0, "warmup_ratio", f"must be in [0, 1), got {c.warmup_ratio}")
    need(c.weight_decay >= 0, "weight_decay", f"must be >= 0, got {c.weight_decay}")
    need(
        c.max_grad_norm >= 0,
        "max_grad_norm",
        f"must be >= 0 (0 = no clipping), got {c.max_grad_norm}",
    )
    need(
        c.neftune_alpha is None or c.neftune_alpha > 0,
        "neftune_alpha",
        f"must be > 0, or null for no noise, got {c.neftune_alpha}",
    )
    need(c.batch_size > 0, "batch_size", f"must be > 0, got {c.batch_size}")
    need(c.grad_accumulation > 0, "grad_accumulation", f"must be > 0, got {c.grad_accumulation}")
    need(c.max_length >= 8, "max_length", f"must be >= 8, got {c.max_length}")
    need(c.batching in BATCHING, "batching", f"{c.batching!r}; use one of {BATCHING}")
    need(c.dtype in DTYPES, "dtype", f"{c.dtype!r}; use one of {DTYPES}")
    need(
        c.device == "auto" or c.device == "cpu" or c.device.startswith("cuda"),
        "device",
        f"{c.device!r}; use auto, cpu, cuda or cuda:N",
    )
    need(
        c.cpu_threads is None or c.cpu_threads > 0,
        "cpu_threads",
        f"must be > 0, got {c.cpu_threads}",
    )
    need(c.save_every_steps > 0, "save_every_steps", f"must be > 0, got {c.save_every_steps}")


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate configs/NAME.yaml; `name` defaults to the file's stem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return config_from_dict(raw, str(path), path.stem)


def resolve_config_arg(value: str) -> Path:
    """`--config NAME` means configs/NAME.yaml; a path is taken as given."""
    from benchmark.paths import CONFIGS_DIR

    path = Path(value)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return CONFIGS_DIR / f"{value}.yaml"


# Environment variables that set a run's placement (see benchmark/device.py).
ENV_OVERRIDES = {"device": "MARINEBENCH_DEVICE", "dtype": "MARINEBENCH_DTYPE"}
_DTYPE_ALIASES = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}  # device.py takes both


def with_env_overrides(config: TrainConfig) -> TrainConfig:
    """A copy with MARINEBENCH_DEVICE / MARINEBENCH_DTYPE in place of the file's values.

    Precedence for a run: CLI flag (with_overrides, applied after this) > environment variable >
    the config's value > "auto" (benchmark.device measures). Unset or "auto" variables change
    nothing, so a config's `dtype: auto` never hides the environment's choice.
    """
    for key, var in ENV_OVERRIDES.items():
        value = os.environ.get(var)
        if value and value != "auto":
            value = _DTYPE_ALIASES.get(value, value) if key == "dtype" else value
            config = dataclasses.replace(config, **{key: value})
            _check_values(config, f"environment variable {var}")
    return config


def with_overrides(config: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy with some top-level settings replaced (CLI flags), re-validated."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return config
    new = dataclasses.replace(config, **changes)
    _check_values(new, "command line")
    return new
