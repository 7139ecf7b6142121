"""The data track's artefacts (`marinebench datatrack`, docs/datatrack.md): the recipe and the
evaluation are fixed and a *submission is a training set*. Written by the data-track stages,
read by the site's data leaderboard and the README report.

    build/datatrack/data/<name>/          the submission as a dataset folder (contracts/dataset.py:
                                          train = the submission after the checks, validation =
                                          the curated validation split), plus SUBMISSION_FILE
    build/datatrack/adapters/<name>/      its adapter (contracts/adapter.py), trained with the
                                          default recipe under the token budget
    build/datatrack/results/<RUN>/        one results folder (contracts/results.py) with the base,
                                          `curated` and every submission; its summary.json also
                                          holds REFERENCE_COMPARISONS_KEY (paired tests against
                                          `curated`)
    build/datatrack.json                  the data track's stage times and cache hits

SUBMISSION_FILE (one JSON object):
    name            the submission's name (SUBMISSION_NAME pattern)
    kind            "reference" (derived from the curated split by a rule) or "submission"
    rule            how it was made, one sentence
    source          the JSONL it was read from (submissions), or the rule's input
    source_sha256   that input's hash
    pairs_in        pairs read
    pairs           pairs kept (the train split)
    drops           {step: {reason: count}}; steps "clean", "dedupe", "decontaminate"
    dropped         [{where, id, step, reason, detail}] every dropped pair
    fraction        share of the curated split for the scaling curve's nested subsets, else null
    adapter         the model name its adapter has in the results folder
    token_budget    training tokens every submission gets (one pass over curated train)
    tokens_per_pass tokens of one pass over this submission's train split
    epochs          token_budget / tokens_per_pass: passes the budget buys (cut when < 1)
    dataset_hash    hash of the split files training reads (train.data.dataset_hash)
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from benchmark.contracts import results

#: the prepared submission's record, inside its dataset folder
SUBMISSION_FILE = "submission.json"
#: the results folder (run) name the data track evaluates into
RUN = "datatrack"
#: the submission every other is compared with: the whole curated training split
CURATED = "curated"
#: summary.json key of the paired tests against `curated` (declared with the results folder)
REFERENCE_COMPARISONS_KEY = results.REFERENCE_COMPARISONS_KEY
#: a submission's name: becomes a folder and a model name
SUBMISSION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
#: folder a user drops submission JSONL files into (NAME.jsonl), at the repository root
SUBMISSIONS_DIR = "submissions"
#: the stage record of the data track, beside build/benchmark.json
RECORD_FILE = "datatrack.json"


def submissions_dir() -> Path:
    """Where submissions are entered (NAME.jsonl); MARINEBENCH_SUBMISSIONS moves it."""
    from benchmark.paths import REPO_ROOT

    return Path(os.environ.get("MARINEBENCH_SUBMISSIONS", REPO_ROOT / SUBMISSIONS_DIR))


def root(build: Path) -> Path:
    return Path(build) / "datatrack"


def data_dir(build: Path, name: str) -> Path:
    return root(build) / "data" / name


def adapter_dir(build: Path, name: str) -> Path:
    return root(build) / "adapters" / name


def results_root(build: Path) -> Path:
    return root(build) / "results"


def results_dir(build: Path) -> Path:
    return results_root(build) / RUN
