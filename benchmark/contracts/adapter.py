"""An adapter folder (`build/adapters/<name>/`): written by `marinebench train`, read by the
evaluation (which copies its training record into the results folder, see results.py).

It is a complete PEFT repository: `PeftModel.from_pretrained(base, folder)` loads it.
"""

from __future__ import annotations

#: PEFT's LoRA weights
WEIGHTS_FILE = "adapter_model.safetensors"
#: PEFT's adapter config; its presence is what makes a folder an adapter folder
CONFIG_FILE = "adapter_config.json"
#: the model card (Hub YAML metadata: base_model, library_name: peft; the recipe)
CARD_FILE = "README.md"
#: the training record: config and its hash, parameter counts, tokens, wall time, tok/s, MFU,
#: peak memory, loss per step, validation loss per epoch, hashes, versions, hardware
TRAIN_METRICS_FILE = "train_metrics.json"
#: train_metrics.json keys that name the base model the adapter was trained on
BASE_MODEL_KEYS = ("base_model", "base_model_hub_id")
#: what the evaluation copies into the results folder, so the site never reads adapter folders
TRAINING_RECORD_FILES = (TRAIN_METRICS_FILE, CARD_FILE)
