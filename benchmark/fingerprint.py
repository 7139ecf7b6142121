"""Stage fingerprints: everything that decides a stage's output, as one JSON record.

A stage's output is a function of its inputs, of the project code it runs, of the packages that
code runs on and, for numeric stages, of the machine's arithmetic. Listing code files by hand
goes stale the day a stage starts importing a new module (that is how a dtype change in
device.py once left every cached number in place), so the code is found by following the
stage's imports statically, and the packages by following the distributions those imports
belong to through their declared requirements. Each stage records its fingerprint in its
output folder (`FINGERPRINT_FILE`); the pipeline only compares a fresh one with the recorded one.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata as metadata
import json
import platform
import re
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark import paths
from benchmark.atomic import atomic_write_json
from benchmark.hashing import sha256_file, sha256_json, sha256_tree

#: the file every stage writes into its output folder after it succeeds
FINGERPRINT_FILE = "fingerprint.json"
#: top-level names of the project's own importable code, followed through the import graph
PROJECT_PACKAGES = ("benchmark",)
#: environment variables that decide a numeric stage's device and dtype (device.py reads them;
#: named here as text so that computing a fingerprint never imports torch)
PLACEMENT_ENV = ("MARINEBENCH_DEVICE", "MARINEBENCH_DTYPE", "MARINEBENCH_AUTO_DTYPE")
_DIGESTS_FILE = ".file_digests.json"
_LOCK = threading.Lock()


@dataclass(frozen=True)
class StageKey:
    """What a stage would record if it ran now, and where its output goes."""

    #: the stage's output folder; FINGERPRINT_FILE inside it holds the recorded fingerprint
    output: Path
    #: JSON-able record of everything that decides the output
    parts: dict[str, Any]

    @property
    def digest(self) -> str:
        return sha256_json(self.parts)


# ---------------------------------------------------------------------------------------------
# Project code: the files a stage's entry modules import, followed statically.


def _module_file(name: str, root: Path) -> Path | None:
    base = root.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, root: Path) -> tuple[set[str], set[str]]:
    """(project module names, other top-level names) imported anywhere in `path`, function-level
    imports included: the project imports its heavy modules lazily, inside functions."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    is_package = path.name == "__init__.py"
    package = (
        _module_name(path, root) if is_package else _module_name(path, root).rpartition(".")[0]
    )
    project, other = set(), set()

    def add(name: str) -> None:
        (project if name.split(".")[0] in PROJECT_PACKAGES else other).add(name)

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".") if package else []
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, node.module] if node.module else anchor)
            else:
                base = node.module or ""
            add(base)
            for alias in node.names:  # `from benchmark import paths` imports a module
                add(f"{base}.{alias.name}")
        elif (  # importlib.import_module("benchmark.x") with a literal name
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            add(node.args[0].value)
    return project, {name.split(".")[0] for name in other}


def code_closure(
    entries: Iterable[str | Path], root: Path = paths.REPO_ROOT
) -> tuple[dict[str, str], set[str]]:
    """({repo-relative file: sha256} of the project code `entries` run, third-party top-level
    module names that code imports). An entry is a dotted module name or a file (tasks/utils.py,
    which lm-eval loads by path). Parent packages' __init__ files count (importing runs them),
    and so do the data folders inside them (e.g. benchmark/model_configs/)."""
    files: dict[Path, None] = {}
    third_party: set[str] = set()
    queue: list[Path] = []
    for entry in entries:
        path = Path(entry) if isinstance(entry, Path) else _module_file(entry, root)
        if path is None or not path.is_file():
            raise ValueError(f"fingerprint: no module or file {entry!r} under {root}")
        queue.append(path.resolve())
    root = root.resolve()
    while queue:
        path = queue.pop()
        if path in files:
            continue
        files[path] = None
        project, other = _imports(path, root)
        third_party |= other
        for name in project:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # the module and every parent package
                found = _module_file(".".join(parts[:i]), root)
                if found is not None and found.resolve() not in files:
                    queue.append(found.resolve())
    data = {
        p
        for f in files
        if f.name == "__init__.py"
        for d in f.parent.iterdir()
        if d.is_dir() and not (d / "__init__.py").exists() and not d.name.startswith((".", "__"))
        for p in d.rglob("*")
        if p.is_file()
    }
    digests = {}
    for path in sorted({*files, *data}):
        rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)
        digests[rel] = sha256_file(path)
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    return digests, {name for name in third_party if name and name not in stdlib}


# ---------------------------------------------------------------------------------------------
# Packages: the installed distributions the stage's imports come from, and what they require.


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _top_level_map() -> dict[str, tuple[str, ...]]:
    return {k: tuple(v) for k, v in metadata.packages_distributions().items()}


def package_versions(modules: Iterable[str]) -> dict[str, str]:
    """{distribution: version} for the distributions providing `modules` (top-level import
    names) and, transitively, every distribution they require (extras not asked for are left
    out). A module that no installed distribution provides is recorded as "not installed"."""
    from packaging.requirements import InvalidRequirement, Requirement

    top = _top_level_map()
    queue, missing = [], {}
    for module in modules:
        dists = top.get(module)
        if dists:
            queue.extend(dists)
        else:
            missing[f"module:{module}"] = "not installed"
    versions: dict[str, str] = {}
    while queue:
        name = _canonical(queue.pop())
        if name in versions:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
            continue
        versions[name] = dist.version
        for spec in dist.requires or []:
            try:
                req = Requirement(spec)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                queue.append(req.name)
    return dict(sorted({**versions, **missing}.items()))


# ---------------------------------------------------------------------------------------------
# Data and weights.


def file_digest(path: Path | str) -> str:
    """sha256 of a (possibly large) file, memoised on disk by (path, size, mtime).

    Model weights are hundreds of MB; hashing them on every rerun would cost seconds, so the
    digest is recomputed only when the file's size or modification time changes.
    """
    path = Path(path).resolve()
    st = path.stat()
    stamp = f"{st.st_size}:{st.st_mtime_ns}"
    memo_path = paths.build_dir() / _DIGESTS_FILE
    with _LOCK:
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, ValueError):
            memo = {}
        hit = memo.get(str(path))
        if hit and hit.get("stamp") == stamp:
            return hit["sha256"]
        digest = sha256_file(path)
        memo[str(path)] = {"stamp": stamp, "sha256": digest}
        atomic_write_json(memo_path, memo)
    return digest


_WEIGHT_SUFFIXES = {".json", ".safetensors", ".bin", ".model", ".jinja", ".gguf", ".txt"}


def model_fingerprint(model_path: str | Path | None) -> dict[str, Any]:
    """What identifies a base model's weights: file digests of a local folder, else the hub id.

    `None` means the model is not on disk yet (a preset converted on first use): the stage that
    converts it records the digests, so a fingerprint taken before differs and the stage runs.
    """
    if model_path is None:
        return {"files": "not on disk yet"}
    folder = Path(model_path)
    if not folder.is_dir():
        return {"hub_id": str(model_path)}
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _WEIGHT_SUFFIXES)
    return {"files": {p.name: file_digest(p) for p in files}}


def folder_digest(folder: Path, exclude: tuple[str, ...] = ()) -> str:
    """Digest of a folder's files (missing folder: "missing"); the stage's own fingerprint file
    is left out, so a folder's digest depends on its content alone."""
    folder = Path(folder)
    if not folder.exists():
        return "missing"
    if folder.is_file():
        return sha256_file(folder)
    return sha256_tree(folder, exclude=(*exclude, FINGERPRINT_FILE, "__pycache__"))


@functools.cache
def machine() -> dict[str, str]:
    """The arithmetic a numeric stage runs on: CPU model and flags, Python, platform. Two CPUs
    round bf16 sums differently, so their numbers are not interchangeable."""
    model, flags = platform.processor() or platform.machine(), ""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    info: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    model = info.get("model name", model)
    flags = " ".join(sorted(info.get("flags", info.get("Features", "")).split()))
    return {
        "cpu": model,
        "cpu_flags": sha256_json(flags)[:16],
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
    }


# ---------------------------------------------------------------------------------------------
# The record.


def stage_key(
    output: Path,
    entries: Iterable[str | Path],
    inputs: dict[str, Any],
    *,
    numeric: bool = False,
    root: Path = paths.REPO_ROOT,
) -> StageKey:
    """The fingerprint a stage records: its `inputs`, the code its `entries` import, the
    versions of the packages that code runs on, and (for `numeric` stages) the machine."""
    code, modules = code_closure(entries, root)
    parts = {
        "inputs": inputs,
        "code": code,
        "packages": package_versions(modules),
        "python": platform.python_version(),
    }
    if numeric:
        parts["machine"] = machine()
    # The JSON form is what gets recorded (tuples become lists), so compare in that form.
    return StageKey(Path(output), json.loads(json.dumps(parts, sort_keys=True, default=str)))


def recorded(output: Path) -> dict[str, Any] | None:
    """The fingerprint a stage recorded in `output`, or None (never ran, or damaged)."""
    try:
        return json.loads((Path(output) / FINGERPRINT_FILE).read_text(encoding="utf-8"))["parts"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record(key: StageKey) -> None:
    """Write the fingerprint into the stage's output folder, after the stage succeeded."""
    atomic_write_json(key.output / FINGERPRINT_FILE, {"digest": key.digest, "parts": key.parts})


def changed(key: StageKey) -> list[str]:
    """Why the recorded fingerprint differs from `key` (empty when it matches): the top-level
    parts that differ and, for code and packages, the files and distributions."""
    old = recorded(key.output)
    if old is None:
        return ["no recorded fingerprint"]
    reasons = []
    for part in sorted(set(old) | set(key.parts)):
        a, b = old.get(part), key.parts.get(part)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            names = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            reasons.append(f"{part}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}")
        else:
            reasons.append(part)
    return reasons
