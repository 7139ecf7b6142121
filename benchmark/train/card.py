"""The adapter's README.md: a Hugging Face model card with YAML metadata and the recipe."""

from __future__ import annotations

import yaml

from benchmark.train.config import TrainConfig

DATASET_NAME = "marinebench-marine-qa"


def adapter_card(config: TrainConfig, metrics: dict, base_id: str) -> str:
    meta = {
        "base_model": base_id,
        "library_name": "peft",
        "pipeline_tag": "text-generation",
        "datasets": [DATASET_NAME],
        "language": ["en"],
        "license": "apache-2.0",
        "tags": [config.method, "peft", "marine-biology", "marinebench", "question-answering"],
    }
    val = metrics["val_loss_per_epoch"]
    last_loss = metrics["loss_per_step"][-1]["loss"] if metrics["loss_per_step"] else None
    rows = [
        (
            "base model",
            f"`{base_id}`" + (" (4-bit nf4, double quantisation)" if config.quantization else ""),
        ),
        ("method", config.method.upper()),
        ("LoRA", f"r={config.lora.r}, alpha={config.lora.alpha}, dropout={config.lora.dropout}"),
        ("target modules", ", ".join(config.lora.target_modules)),
        (
            "trainable params",
            f"{metrics['trainable_params']:,} of {metrics['total_params']:,} "
            f"({metrics['trainable_pct']:.2f}%)",
        ),
        ("epochs / steps", f"{config.epochs} / {metrics['steps']}"),
        (
            "learning rate",
            f"{config.learning_rate} ({config.lr_schedule}, warmup {config.warmup_ratio})",
        ),
        (
            "batch",
            f"{config.batch_size} x {config.grad_accumulation} accumulation, max length {config.max_length}",
        ),
        ("seed", str(config.seed)),
        ("tokens seen", f"{metrics['tokens_seen']:,}"),
        ("final train loss", f"{last_loss:.4f}" if last_loss is not None else "n/a"),
        ("validation loss per epoch", ", ".join(f"{v['loss']:.4f}" for v in val) or "n/a"),
        (
            "throughput",
            f"{metrics['tokens_per_s']:.0f} tokens/s, MFU {metrics['mfu']:.2f} "
            f"on {metrics['device']} ({metrics['dtype']})",
        ),
        ("dataset hash", f"`{metrics['dataset_hash'][:16]}`"),
        ("config hash", f"`{metrics['config_hash'][:16]}`"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (
        "---\n"
        + yaml.safe_dump(meta, sort_keys=False)
        + "---\n\n"
        + f"# {config.name}\n\n"
        + f"A {config.method.upper()} adapter for `{base_id}`, trained by MarineBench on marine-"
        "biology question answering (short, factual answers). Loss was computed on the "
        "assistant's tokens only, with the base model's own chat template.\n\n"
        + "| | |\n|---|---|\n"
        + table
        + "\n\n## Use\n\n```python\n"
        + "from peft import PeftModel\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        + f'base = AutoModelForCausalLM.from_pretrained("{base_id}")\n'
        + 'model = PeftModel.from_pretrained(base, "path/to/this/folder")\n'
        + f'tokenizer = AutoTokenizer.from_pretrained("{base_id}")\n```\n\n'
        + "Training metrics (loss per step, validation loss, throughput, library versions, "
        "hardware) are in `train_metrics.json`.\n"
    )
