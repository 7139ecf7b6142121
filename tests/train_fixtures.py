"""A tiny marine Q&A dataset folder (contract 1 layout), written in code for trainer tests."""

from __future__ import annotations

from pathlib import Path

FACTS = [
    ("What do corals host?", "Symbiotic algae called zooxanthellae."),
    ("How do toothed whales find prey?", "By echolocation."),
    ("How do sea stars move?", "With tube feet."),
    ("What do krill eat?", "Phytoplankton."),
    ("What does ocean acidification harm?", "Calcifying organisms."),
    ("Are dolphins cetaceans?", "Yes, dolphins are cetaceans."),
    ("Where do krill live?", "In the Southern Ocean."),
    ("What powers tube feet?", "A water vascular system."),
    ("What lowers carbonate ion concentration?", "Ocean acidification."),
    ("What are porpoises?", "Toothed whales, which are cetaceans."),
    ("What are krill?", "Small crustaceans."),
    ("What do zooxanthellae do?", "They photosynthesise and feed the coral."),
]


def write_split(path: Path, rows: list[tuple[str, str]], split: str) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(
        {
            "id": [f"{split}-{i}" for i in range(len(rows))],
            "topic": ["test"] * len(rows),
            "difficulty": ["easy"] * len(rows),
            "question": [q for q, _ in rows],
            "answer": [a for _, a in rows],
            "source": ["test"] * len(rows),
        }
    )
    frame.to_parquet(path, index=False)


def make_dataset(root: Path, n_train: int = 12, n_val: int = 4) -> Path:
    """build/dataset-like folder: data/{train,validation,test}-00000-of-00001.parquet."""
    train = [FACTS[i % len(FACTS)] for i in range(n_train)]
    val = [FACTS[(i * 5) % len(FACTS)] for i in range(n_val)]
    for split, rows in (("train", train), ("validation", val), ("test", val)):
        write_split(root / "data" / f"{split}-00000-of-00001.parquet", rows, split)
    return root


# The LoRA settings of write_config's configs, as train_metrics.json records them.
TINY_LORA = {
    "r": 4,
    "alpha": 8,
    "dropout": 0.1,
    "target_modules": ["q_proj", "v_proj", "down_proj"],
}


def write_config(path: Path, model_dir: Path, dataset_dir: Path, **extra) -> Path:
    """A small training config for the tiny model; `extra` overrides top-level keys."""
    import yaml

    config = {
        "model": str(model_dir),
        "dataset": str(dataset_dir),
        "lora": TINY_LORA,
        "epochs": 2,
        "learning_rate": 5e-3,
        "batch_size": 4,
        "max_length": 64,
        "seed": 7,
        "device": "cpu",
        "save_every_steps": 2,
    }
    config.update(extra)
    path.write_text(yaml.safe_dump(config))
    return path
