"""Helpers for the site tests: a realistic foreign lm-eval results file (hellaswag-style)."""

from __future__ import annotations

import json
from pathlib import Path

HELLASWAG_ACC = 0.2891
HELLASWAG_ACC_STDERR = 0.0045


def write_hellaswag_results(path: Path, pretrained: str = "EleutherAI/pythia-160m") -> Path:
    """A results JSON as lm-eval 0.4's EvaluationTracker writes it for `--tasks hellaswag,arc_easy`."""
    doc = {
        "results": {
            "hellaswag": {
                "alias": "hellaswag",
                "acc,none": HELLASWAG_ACC,
                "acc_stderr,none": HELLASWAG_ACC_STDERR,
                "acc_norm,none": 0.3035,
                "acc_norm_stderr,none": 0.0046,
            },
            "arc_easy": {
                "alias": "arc_easy",
                "acc,none": 0.4377,
                "acc_stderr,none": 0.0102,
                "acc_norm,none": 0.4015,
                "acc_norm_stderr,none": 0.0101,
            },
        },
        "group_subtasks": {"arc_easy": [], "hellaswag": []},
        "configs": {
            "hellaswag": {
                "task": "hellaswag",
                "tag": ["multiple_choice"],
                "dataset_path": "hellaswag",
                "output_type": "multiple_choice",
                "metric_list": [
                    {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                    {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
                ],
            }
        },
        "versions": {"arc_easy": 1.0, "hellaswag": 1.0},
        "n-shot": {"arc_easy": 0, "hellaswag": 0},
        "higher_is_better": {
            "arc_easy": {"acc": True, "acc_norm": True},
            "hellaswag": {"acc": True, "acc_norm": True},
        },
        "n-samples": {
            "arc_easy": {"original": 2376, "effective": 2376},
            "hellaswag": {"original": 10042, "effective": 10042},
        },
        "config": {
            "model": "hf",
            "model_args": f"pretrained={pretrained},dtype=float32,token=hf_ThisIsAFakeTokenValue1234567890",
            "model_num_parameters": 162322944,
            "model_dtype": "torch.float32",
            "model_revision": "main",
            "model_sha": "",
            "batch_size": "16",
            "batch_sizes": [],
            "device": "cpu",
            "use_cache": None,
            "limit": None,
            "bootstrap_iters": 100000,
            "gen_kwargs": None,
            "random_seed": 0,
            "numpy_seed": 1234,
            "torch_seed": 1234,
            "fewshot_seed": 1234,
        },
        "git_hash": "a1b2c3d",
        "date": 1735689600.0,
        "pretty_env_info": "PyTorch version: 2.5.1\nIs debug build: False",
        "transformers_version": "4.47.0",
        "upper_git_hash": None,
        "tokenizer_pad_token": ["<|endoftext|>", "0"],
        "tokenizer_eos_token": ["<|endoftext|>", "0"],
        "tokenizer_bos_token": ["<|endoftext|>", "0"],
        "eot_token_id": 0,
        "max_length": 2048,
        "task_hashes": {},
        "model_source": "hf",
        "model_name": pretrained,
        "model_name_sanitized": pretrained.replace("/", "__"),
        "system_instruction": None,
        "system_instruction_sha": None,
        "fewshot_as_multiturn": False,
        "chat_template": None,
        "chat_template_sha": None,
        "start_time": 1234.5,
        "end_time": 1534.5,
        "total_evaluation_time_seconds": "300.0",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    return path
