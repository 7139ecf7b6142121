"""Where the project's sources live and where every generated artefact goes (under build/)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATASETS_SRC = REPO_ROOT / "datasets_src"
TASKS_DIR = REPO_ROOT / "tasks"
SITE_SRC = REPO_ROOT / "site"
CONFIGS_DIR = REPO_ROOT / "configs"


def build_dir() -> Path:
    """The build root; MARINEBENCH_BUILD moves it (tests point it at a temp dir)."""
    return Path(os.environ.get("MARINEBENCH_BUILD", REPO_ROOT / "build"))


def models_dir() -> Path:
    return build_dir() / "models"


def dataset_dir() -> Path:
    return build_dir() / "dataset"


def adapters_dir() -> Path:
    return build_dir() / "adapters"


def results_dir() -> Path:
    return build_dir() / "results"


def site_dir() -> Path:
    return build_dir() / "site"


def perf_dir() -> Path:
    return build_dir() / "perf"
