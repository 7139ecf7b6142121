"""Every knob of a dataset build in one place; the whole config goes into the build hash."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmark.paths import DATASETS_SRC, build_dir

SOURCES = ("curated", "gemini", "local")


@dataclass
class CleanConfig:
    min_question_chars: int = 10
    max_question_chars: int = 300
    min_answer_chars: int = 15
    max_answer_chars: int = 700
    max_answer_sentences: int = 3
    # An answer whose content words are (almost) all in the question says nothing new.
    min_new_answer_words: int = 1


@dataclass
class DedupConfig:
    shingle_chars: int = 5
    num_perm: int = 128
    # Jaccard of character 5-gram sets. Short questions built on one template ("Which species is
    # the largest living fish / sea turtle?") reach ~0.7 while asking different things.
    question_threshold: float = 0.8
    qa_threshold: float = 0.7
    # Stricter than dedup on purpose: a held-out question merely close to a train one is a leak.
    decontam_threshold: float = 0.7
    seed: int = 1


@dataclass
class GeminiConfig:
    model: str = "gemini-2.5-flash"
    temperature: float = 0.7
    pairs_per_topic: int = 20
    max_workers: int = 4
    retry_attempts: int = 6
    retry_initial_delay: float = 2.0  # seconds; doubles per retry (exponential backoff)
    retry_max_delay: float = 60.0
    retry_jitter: float = 1.0
    base_url: str | None = None  # tests point this at a loopback server
    timeout_ms: int = 120_000


@dataclass
class LocalConfig:
    model: str | None = None  # preset name, hub id or folder; None = the default preset
    pairs_per_topic: int = 10
    max_new_tokens: int = 1536
    batch_size: int = 4
    device: str | None = None
    dtype: str | None = None


@dataclass
class BuildConfig:
    sources: list[str] = field(default_factory=lambda: ["curated"])
    src: Path = DATASETS_SRC
    out: Path | None = None  # None = build/dataset
    seed: int = 1234
    splits: dict[str, float] = field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1}
    )
    topics: list[str] | None = None  # generation topics; None = every taxonomy topic
    # Recall selection rule (docs/protocol.md): per topic, this many train pairs with the smallest
    # sha256("recall-v1:" + id). The recall files must be written for exactly that selection.
    recall_per_topic: int = 12
    clean: CleanConfig = field(default_factory=CleanConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    gemini: GeminiConfig = field(default_factory=GeminiConfig)
    local: LocalConfig = field(default_factory=LocalConfig)
    cache_dir: Path | None = None  # None = build/cache

    def out_dir(self) -> Path:
        return Path(self.out) if self.out else build_dir() / "dataset"

    def cache_root(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else build_dir() / "cache"

    def hashed(self) -> dict:
        """The part of the config that decides the output (paths and transport excluded)."""
        data = asdict(self)
        for key in ("src", "out", "cache_dir"):
            data.pop(key)
        for key in ("base_url", "max_workers", "timeout_ms") + tuple(
            k for k in data["gemini"] if k.startswith("retry_")
        ):
            data["gemini"].pop(key)
        data["local"].pop("batch_size")
        data["local"].pop("device")
        for source in ("gemini", "local"):
            if source not in self.sources:
                data.pop(source)
        return data
