"""What a results folder keeps of each evaluated adapter's training: a copy of its training
record (contracts.adapter.TRAINING_RECORD_FILES), taken when it is evaluated, so that the site
and the README report read one results folder and never go looking for adapter folders."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from benchmark.contracts.adapter import TRAINING_RECORD_FILES
from benchmark.contracts.results import training_dir


def copy_training_records(run_folder: Path, adapters: Mapping[str, Path]) -> None:
    """Copy each adapter folder's training record into `run_folder` (by adapter name); a file
    the adapter folder lacks is left out, and the site says so."""
    for name, folder in adapters.items():
        for file in TRAINING_RECORD_FILES:
            source = Path(folder) / file
            if source.is_file():
                dest = training_dir(run_folder, name) / file
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, dest)
