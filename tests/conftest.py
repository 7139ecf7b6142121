"""Shared fixtures: a tiny random Llama folder, an isolated build dir, the real default model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from tiny_model import build_tiny_llama  # noqa: E402

REAL_BUILD = Path(__file__).resolve().parent.parent / "build"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny random Llama (2 layers, hidden 32, ~400-token BPE vocab, ChatML template)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def build_root(tmp_path, monkeypatch) -> Path:
    """A fresh build/ for one test (MARINEBENCH_BUILD points at it)."""
    root = tmp_path / "build"
    monkeypatch.setenv("MARINEBENCH_BUILD", str(root))
    return root


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real converted SmolLM2 checkpoint, converted once into the project's build/models."""
    os.environ.pop("MARINEBENCH_BUILD", None)
    from benchmark.models import model_path

    return Path(model_path("smollm2-135m-instruct"))
