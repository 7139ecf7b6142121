"""Builders for the evaluation tests: a tiny dataset folder and tiny LoRA adapters, in code."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.contracts.dataset import (
    RECALL_COLUMNS,
    RECALL_SOURCE,
    RECALL_SPLIT,
    SPLITS,
    split_file,
)

TOPICS = {
    "coral_reefs": [
        ("What do corals host?", "Corals host zooxanthellae, symbiotic algae."),
        ("What feeds the coral?", "The algae photosynthesise and feed the coral."),
        ("Are corals animals?", "Yes, corals are animals related to jellyfish."),
        ("Where do reef corals live?", "Reef corals live in warm shallow sunlit seas."),
        ("What bleaches corals?", "Heat stress makes corals expel their algae."),
    ],
    "cetaceans": [
        ("What are cetaceans?", "Whales, dolphins and porpoises are cetaceans."),
        ("How do toothed whales find prey?", "Toothed whales find prey by echolocation."),
        ("Do whales breathe air?", "Yes, whales breathe air through a blowhole."),
        ("What do baleen whales eat?", "Baleen whales filter krill and small fish."),
        ("How do dolphins sleep?", "Dolphins rest one brain half at a time."),
    ],
    "echinoderms": [
        ("How do sea stars move?", "Sea stars move with tube feet."),
        ("What powers tube feet?", "A water vascular system powers the tube feet."),
        ("What eats sea urchins?", "Sea otters and some fish eat sea urchins."),
        ("Can sea stars regrow arms?", "Yes, sea stars can regenerate lost arms."),
        ("What symmetry do adult echinoderms have?", "Adults have five-part radial symmetry."),
    ],
}


#: per topic, new questions about training pairs 0..3 (their answers are the trained answers)
RECALL_QUESTIONS = {
    "coral_reefs": (
        "Which partners live inside coral tissue?",
        "Where does a coral get its food?",
        "Is a coral an animal or a plant?",
        "In what kind of sea do reef corals grow?",
    ),
    "cetaceans": (
        "Which animals count as cetaceans?",
        "How do toothed whales locate their prey?",
        "How do whales get air?",
        "What is the diet of baleen whales?",
    ),
    "echinoderms": (
        "What do sea stars use to move?",
        "What drives the tube feet?",
        "Which animals prey on sea urchins?",
        "Can a sea star grow back an arm?",
    ),
}


def records(prefix: str = "q") -> list[dict[str, str]]:
    rows = []
    for topic, pairs in TOPICS.items():
        for i, (question, answer) in enumerate(pairs):
            rows.append(
                {
                    "id": f"{prefix}-{topic}-{i}",
                    "topic": topic,
                    "difficulty": "easy",
                    "question": question,
                    "answer": answer,
                    "source": "test",
                }
            )
    return rows


def recall_records() -> list[dict[str, str]]:
    """The recall split: a new question about each of the first four training pairs per topic,
    with the trained answer (RECALL_COLUMNS: the dataset's columns plus train_id)."""
    train = {r["id"]: r for r in records("train")}
    rows = []
    for topic, questions in RECALL_QUESTIONS.items():
        for i, question in enumerate(questions):
            pair = train[f"train-{topic}-{i}"]
            rows.append(
                {
                    "id": f"recall-{topic}-{i}",
                    "topic": topic,
                    "difficulty": pair["difficulty"],
                    "question": question,
                    "answer": pair["answer"],
                    "source": RECALL_SOURCE,
                    "train_id": pair["id"],
                }
            )
    return rows


def build_tiny_dataset(folder: Path, recall: bool = True) -> Path:
    """A dataset folder per the contract: data/<split>-00000-of-00001.parquet for the seeded
    splits and (unless `recall` is False) the recall split."""
    import pandas as pd

    for split in SPLITS:
        path = split_file(folder, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(records(split)).to_parquet(path)
    if recall:
        frame = pd.DataFrame(recall_records(), columns=list(RECALL_COLUMNS))
        frame.to_parquet(split_file(folder, RECALL_SPLIT))
    (Path(folder) / "build_report.json").write_text(
        json.dumps({"build_hash": "test", "seed": 0, "steps": [], "counts": {}})
    )
    return Path(folder)


def build_tiny_retention(path: Path, n: int = 6) -> Path:
    rows = [
        {
            "id": f"ret-{i}",
            "topic": "geography",
            "difficulty": "easy",
            "question": f"What is the capital of country {i}?",
            "answer": f"The capital of country {i} is city {i}.",
            "source": "test",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def build_tiny_adapter(
    base_dir: Path,
    out_dir: Path,
    seed: int,
    base_name: str | None = None,
    scale: float = 0.5,
    r: int = 4,
    target_modules: tuple[str, ...] = ("q_proj", "v_proj"),
    **lora_options,
) -> Path:
    """A LoRA adapter on the tiny model whose lora_B weights are random (so it changes outputs)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        target_modules=list(target_modules),
        lora_dropout=0.0,
        **lora_options,
    )
    peft_model = get_peft_model(model, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * scale)
    peft_model.save_pretrained(out_dir)
    if base_name is not None:
        cfg_path = Path(out_dir) / "adapter_config.json"
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = base_name
        cfg_path.write_text(json.dumps(cfg))
    return Path(out_dir)
