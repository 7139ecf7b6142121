"""Find adapter folders and check, before any model loads, that each was trained on the base
model being evaluated (an adapter on another base fails with a message naming both)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from benchmark import paths
from benchmark.contracts.adapter import BASE_MODEL_KEYS, CONFIG_FILE, TRAIN_METRICS_FILE
from benchmark.contracts.results import BASE
from benchmark.errors import UserError
from benchmark.hashing import sha256_tree
from benchmark.models import PRESETS, converted_dir, resolve_model

#: excluded from the adapter hash: intermediate training checkpoints don't change the adapter
HASH_EXCLUDE = ("checkpoints",)


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    path: Path
    hash: str
    base_model: str | None


def discover_adapters(root: Path | None = None) -> list[Path]:
    """Every adapter folder (one holding PEFT's adapter config) directly under build/adapters/."""
    root = root or paths.adapters_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / CONFIG_FILE).is_file())


def _names_of(value: str | None) -> set[str]:
    """Comparable forms of a model reference: itself, and its last path / repo component."""
    if not value:
        return set()
    value = str(value).strip().rstrip("/")
    return {value.lower(), value.replace("\\", "/").rsplit("/", 1)[-1].lower()}


def model_identities(spec: str, path: str) -> set[str]:
    """Every name the evaluated model goes by: spec, path, preset name and hub id."""
    names = _names_of(spec) | _names_of(path)
    resolved = resolve_model(spec)
    presets = [resolved.preset] if resolved.preset else []
    local = Path(path)
    for preset in PRESETS.values():
        if local.is_dir() and converted_dir(preset).resolve() == local.resolve():
            presets.append(preset)
    for preset in presets:
        names |= _names_of(preset.name) | _names_of(preset.hub_id)
    return names


def adapter_base(adapter: Path) -> list[str]:
    """What the adapter says its base is (adapter_config.json and train_metrics.json)."""
    bases = []
    try:
        config = json.loads((adapter / CONFIG_FILE).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserError(f"{adapter / CONFIG_FILE}: not valid JSON ({exc})") from None
    if config.get("base_model_name_or_path"):
        bases.append(str(config["base_model_name_or_path"]))
    metrics_path = adapter / TRAIN_METRICS_FILE
    if metrics_path.is_file():
        try:
            metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
        except ValueError:
            metrics = {}
        for key in BASE_MODEL_KEYS:
            if metrics.get(key):
                bases.append(str(metrics[key]))
    return bases


def check_adapters(adapters: list[Path], spec: str, path: str) -> list[AdapterInfo]:
    """Validate every adapter folder against the evaluated model; return their infos."""
    identities = model_identities(spec, path)
    infos: list[AdapterInfo] = []
    seen: dict[str, Path] = {}
    for adapter in adapters:
        adapter = Path(adapter)
        if not (adapter / CONFIG_FILE).is_file():
            raise UserError(
                f"{adapter} is not an adapter folder (no {CONFIG_FILE}); "
                "train one with `marinebench train --config configs/NAME.yaml`"
            )
        name = adapter.resolve().name
        if name == BASE or name in seen:
            raise UserError(
                f"adapter name {name!r} ({adapter}) clashes with "
                f"{'the base model' if name == BASE else seen[name]}; rename one folder"
            )
        seen[name] = adapter
        bases = adapter_base(adapter)
        if bases and not any(_names_of(b) & identities for b in bases):
            raise UserError(
                f"adapter {adapter} was trained on base model {bases[0]!r}, but the model "
                f"being evaluated is {spec!r} ({path}); evaluate it with --model {bases[0]}"
            )
        infos.append(
            AdapterInfo(
                name=name,
                path=adapter.resolve(),
                hash=sha256_tree(adapter, exclude=HASH_EXCLUDE),
                base_model=bases[0] if bases else None,
            )
        )
    return infos
