"""Train PEFT (LoRA / QLoRA) adapters on the marine Q&A dataset: configs, data, loop, outputs."""
