"""Build the trainable model: base (optionally 4-bit nf4) + LoRA, and the same on the meta
device for `--plan` (parameter counts without loading a single weight)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models import ModelError, architecture_config, model_path, resolve_model
from benchmark.train.config import TrainConfig


def lora_config(config: TrainConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(config.lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def base_architecture(config: TrainConfig):
    """The base model's config, offline for presets; a clear error for an unknown model."""
    resolve_model(config.model)  # raises ModelError listing the presets
    try:
        return architecture_config(config.model)
    except ModelError:
        raise
    except Exception as exc:  # OSError / ValueError from transformers when not found offline
        raise ModelError(
            f"model {config.model!r}: cannot read its architecture ({exc}); "
            "use a preset, a local model folder, or a Hub id with a network"
        ) from exc


def meta_model(config: TrainConfig):
    """The base architecture instantiated on the meta device (no memory, no weights)."""
    from transformers import AutoModelForCausalLM

    arch = base_architecture(config)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(arch)


def check_target_modules(model: nn.Module, config: TrainConfig) -> None:
    """Every target module name must match at least one Linear layer of the model."""
    linear_names = {
        name.rsplit(".", 1)[-1] for name, mod in model.named_modules() if isinstance(mod, nn.Linear)
    }
    missing = [m for m in config.lora.target_modules if m not in linear_names]
    if missing:
        raise UserError(
            f"config {config.name!r}: key 'lora.target_modules': {', '.join(missing)} not in "
            f"model {config.model!r}; its linear layers are: {', '.join(sorted(linear_names))}"
        )


@dataclass(frozen=True)
class ParamPlan:
    """Parameter counts. `total_params` counts every weight element (base + LoRA);
    `total_params_4bit_reported` is what summing numel() gives on a bitsandbytes 4-bit model,
    where each Params4bit tensor stores two 4-bit weights per uint8 element."""

    trainable_params: int
    total_params: int
    total_params_4bit_reported: int | None

    @property
    def trainable_pct(self) -> float:
        return 100.0 * self.trainable_params / self.total_params


def plan(config: TrainConfig) -> ParamPlan:
    """Count trainable and total parameters on the meta device (fast, offline, no weights)."""
    from peft import get_peft_model

    model = meta_model(config)
    check_target_modules(model, config)
    # Which linear layers bitsandbytes would quantise: all but the output head (transformers
    # keeps lm_head in full precision, see get_keys_to_not_convert).
    head = model.get_output_embeddings()
    quantised = [
        m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear) and m is not head
    ]
    peft_model = get_peft_model(model, lora_config(config))
    trainable, total = 0, 0
    for p in peft_model.parameters():  # tied embeddings are yielded once
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    reported = total - sum(quantised) // 2 if config.quantization else None
    return ParamPlan(trainable, total, reported)


def count_params(peft_model) -> tuple[int, int]:
    """(trainable, total) of a built model, with 4-bit weights counted as their true element
    count (the same rule as PEFT's print_trainable_parameters)."""
    trainable, total = 0, 0
    for p in peft_model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n *= 2 * (p.element_size() if hasattr(p, "element_size") else 1)
        total += n
        trainable += n if p.requires_grad else 0
    return trainable, total


def build_model(config: TrainConfig, device: str, dtype: torch.dtype):
    """Load the base in `dtype` (4-bit nf4 when asked) and wrap it with fresh LoRA layers.

    LoRA weights stay fp32 (PEFT's autocast_adapter_dtype) on a bf16 base: the frozen matmuls
    run at bf16 speed while the optimiser updates fp32 parameters.
    """
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    path = model_path(config.model)
    # Short sequences on CPU: eager attention (bmm + softmax) trains faster than SDPA's CPU
    # flash kernel, whose bf16 backward is slow at these lengths (measured ~5x on SmolLM2).
    attn = "eager" if device.startswith("cpu") else "sdpa"
    kwargs: dict = {"dtype": dtype, "attn_implementation": attn}
    if config.quantization == "nf4":
        from transformers import BitsAndBytesConfig

        compute = dtype if dtype != torch.float32 else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        kwargs["device_map"] = {"": device}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise ModelError(f"could not load {path!r}: {exc}") from exc
    if config.quantization is None:
        model.to(device)
    model.config.use_cache = False
    if config.quantization == "nf4":
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=config.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    check_target_modules(model, config)
    peft_model = get_peft_model(model, lora_config(config))
    if device.startswith("cpu"):
        from benchmark.train.dropout import use_fast_dropout

        use_fast_dropout(peft_model)
    if dtype != torch.float32:
        # The loop runs under torch.autocast(dtype): LoRA's fp32 weights are cast to bf16 per
        # matmul (r x d, cheap) instead of PEFT casting every activation to fp32 (n x d, slow).
        for module in peft_model.modules():
            if hasattr(module, "cast_input_dtype_enabled"):
                module.cast_input_dtype_enabled = False
    return peft_model


@contextlib.contextmanager
def evaluating(model: nn.Module):
    """Eval mode (no dropout) for validation, except bitsandbytes 4-bit layers: in eval mode on
    CPU they repack their weights in place into an inference-only layout that has no backward,
    which would break training after the first validation pass."""
    was_training = model.training
    model.eval()
    for module in model.modules():
        if type(module).__module__.startswith("bitsandbytes"):
            module.training = True
    try:
        yield
    finally:
        model.train(was_training)
