"""Pick the device and dtype. On a GPU: CUDA bf16 (fp16 where bf16 is unsupported). On a CPU,
"auto" is decided by measurement, because the flags do not tell: bf16 matmuls ran ~2x faster
than fp32 on this project's AMD EPYC and ~2x slower on an Intel Xeon that lists avx512_bf16
(without AMX exposed). A short probe times both dtypes on the shapes a 135M Llama multiplies,
once per CPU identity, and caches its verdict under build/.probe/ so that every later process
(parallel trainings, evaluation workers) reuses it and agrees.

Precedence: an explicit value (a CLI flag, or a config's value other than auto) >
MARINEBENCH_DEVICE / MARINEBENCH_DTYPE > the rule above. `benchmark.train.config` puts the
environment above a config file's own value for training runs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import platform
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from benchmark import paths
from benchmark.atomic import atomic_write_json
from benchmark.hashing import sha256_json

log = logging.getLogger(__name__)

DEVICE_ENV = "MARINEBENCH_DEVICE"
DTYPE_ENV = "MARINEBENCH_DTYPE"
#: what "auto" means on this CPU, measured once by `marinebench benchmark` and handed to every
#: stage it runs, so trainings at 1 thread and evaluations at 2 agree (explicit values still win)
AUTO_DTYPE_ENV = "MARINEBENCH_AUTO_DTYPE"

_DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}

# Bump when the probe's shapes or rule change: older cache files then no longer match.
PROBE_VERSION = 1
# (rows, in_features, out_features) of an nn.Linear call, for SmolLM2-135M (hidden 576,
# intermediate 1536): a square matmul, a training micro-batch (8 x ~64 tokens) through the MLP
# projections, and a batched decoding step through the same projections.
PROBE_SHAPES: dict[str, tuple[int, int, int]] = {
    "square_1024": (1024, 1024, 1024),
    "train_up_512x576x1536": (512, 576, 1536),
    "train_down_512x1536x576": (512, 1536, 576),
    "decode_up_64x576x1536": (64, 576, 1536),
    "decode_down_64x1536x576": (64, 1536, 576),
}
PROBE_BUDGET_S = 0.8  # timing rounds stop after this; the whole probe takes ~1 s
# bf16 rounds every product; a near tie is not worth that, so fp32 keeps the place unless
# bf16 is more than this much faster.
BF16_MARGIN = 0.05
# Variables that cap the instruction set oneDNN/MKL/ATen use (ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16
# hides AMX): they change the verdict, so they are part of the CPU identity.
_ISA_ENV = (
    "ONEDNN_MAX_CPU_ISA",
    "DNNL_MAX_CPU_ISA",
    "MKL_ENABLE_INSTRUCTIONS",
    "ATEN_CPU_CAPABILITY",
)


@dataclass(frozen=True)
class Placement:
    """Where a model runs: `device` ("cpu", "cuda", "cuda:1", ...) and its compute dtype, with
    how the dtype was chosen (`source`) and, when measured, the probe record behind it."""

    device: str
    dtype: torch.dtype
    source: str = field(default="requested", compare=False)
    probe: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def record(self) -> dict[str, Any]:
        """The choice as artefacts record it (train_metrics.json, results manifests)."""
        return {
            "device": self.device,
            "dtype": self.dtype_name,
            "source": self.source,
            "probe": self.probe,
        }


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo (empty where there is none)."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    if info:
                        break
                    continue
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 dot-product instructions (AVX512-BF16 or AMX-BF16)."""
    flags = set(_cpuinfo().get("flags", "").split())
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_dtype_candidates() -> list[str]:
    """fp32 always; bf16 only where the CPU has native bf16 (emulated bf16 never wins)."""
    return ["fp32", "bf16"] if cpu_has_native_bf16() else ["fp32"]


def cpu_identity() -> dict[str, Any]:
    """What the probe's verdict depends on; a change in any of it means probing again."""
    info = _cpuinfo()
    flags = " ".join(sorted(info.get("flags", "").split()))
    return {
        "cpu_model": info.get("model name") or platform.processor() or platform.machine(),
        "cpu_family": info.get("cpu family"),
        "cpu_model_number": info.get("model"),
        "flags_sha256": sha256_json(flags),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "isa_limits": {k: os.environ[k] for k in _ISA_ENV if os.environ.get(k)},
        "probe_version": PROBE_VERSION,
    }


def probe_scores(gflops: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Geometric-mean GFLOP/s over the probe's shapes, per dtype (each shape counts equally)."""
    scores = {}
    for dtype, figures in gflops.items():
        values = list(figures.values())
        if not values or not all(isinstance(v, int | float) and v > 0 for v in values):
            raise ValueError(f"probe figures for {dtype!r} must be positive numbers: {figures!r}")
        if any(not math.isfinite(v) for v in values):
            raise ValueError(f"probe figures for {dtype!r} must be finite: {figures!r}")
        scores[dtype] = math.exp(sum(math.log(v) for v in values) / len(values))
    return scores


def pick_dtype(gflops: Mapping[str, Mapping[str, float]], margin: float = BF16_MARGIN) -> str:
    """The fastest candidate by `probe_scores`; fp32 keeps the place unless beaten by > margin."""
    scores = probe_scores(gflops)
    if not scores:
        raise ValueError("no probe figures to choose a dtype from")
    best = max(scores, key=scores.__getitem__)
    if "fp32" in scores and scores[best] <= scores["fp32"] * (1 + margin):
        return "fp32"
    return best


def measure_gflops(
    candidates: list[str], budget_s: float = PROBE_BUDGET_S
) -> dict[str, dict[str, float]]:
    """Best-of GFLOP/s of each PROBE_SHAPES linear in each dtype, at torch's current threads.

    Dtypes and shapes are timed in interleaved rounds, so a burst of load from another process
    hits every candidate alike; best-of keeps the figure the hardware can reach.
    """
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(0)
    cases = []
    for name in candidates:
        dtype = parse_dtype(name)
        for shape, (rows, d_in, d_out) in PROBE_SHAPES.items():
            x = torch.randn(rows, d_in, generator=gen).to(dtype)
            w = torch.randn(d_out, d_in, generator=gen).to(dtype)
            run = functools.partial(F.linear, x, w)
            run()  # warm-up: allocation, kernel selection
            start = time.perf_counter()
            run()
            once = time.perf_counter() - start
            reps = max(1, min(1000, math.ceil(0.002 / max(once, 1e-7))))  # batches of >= ~2 ms
            cases.append((name, shape, run, reps, 2.0 * rows * d_in * d_out))
    best: dict[tuple[str, str], float] = {}
    deadline = time.perf_counter() + budget_s
    rounds = 0
    while rounds < 3 or (rounds < 100 and time.perf_counter() < deadline):
        for name, shape, run, reps, _ in cases:
            start = time.perf_counter()
            for _ in range(reps):
                run()
            each = (time.perf_counter() - start) / reps
            best[name, shape] = min(best.get((name, shape), math.inf), each)
        rounds += 1
    out: dict[str, dict[str, float]] = {name: {} for name in candidates}
    for name, shape, _, _, flops in cases:
        out[name][shape] = round(flops / max(best[name, shape], 1e-9) / 1e9, 1)
    return out


def probe_dir() -> Path:
    return paths.build_dir() / ".probe"


def _probe_file(identity: dict[str, Any]) -> Path:
    return probe_dir() / f"cpu-dtype-{sha256_json(identity)[:16]}.json"


def _read_probe(path: Path, identity: dict[str, Any]) -> dict[str, Any] | None:
    """The cached record, or None when absent; a damaged or foreign file is ignored, not trusted."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("cannot read dtype probe cache %s (%s); probing again", path, exc)
        return None
    try:
        record = json.loads(text)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        if record.get("identity") != identity:
            raise ValueError("it is for another CPU, torch version or thread count")
        gflops = record.get("gflops")
        if not isinstance(gflops, dict) or sorted(gflops) != sorted(cpu_dtype_candidates()):
            raise ValueError(f"its figures are not for {cpu_dtype_candidates()}")
        for figures in gflops.values():
            if not isinstance(figures, dict) or sorted(figures) != sorted(PROBE_SHAPES):
                raise ValueError("its figures are not for the probe's shapes")
        if record.get("choice") != pick_dtype(gflops):
            raise ValueError(f"its choice {record.get('choice')!r} does not follow its figures")
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        log.warning("ignoring damaged dtype probe cache %s (%s); probing again", path, exc)
        return None
    return record


@contextlib.contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    """Hold an advisory lock so that processes starting together probe once, not all at once."""
    try:
        import fcntl

        lock.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock, "a")  # noqa: SIM115 (closed below, after the body)
    except (ImportError, OSError):
        yield  # no lock possible (read-only build dir, no fcntl): probe unshared
        return
    try:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()


def probe_cpu_dtype() -> dict[str, Any]:
    """The CPU's measured dtype record, from the cache when this CPU identity has one.

    Returns {"choice", "gflops": {dtype: {shape: GFLOP/s}}, "score_gflops", "identity" (CPU
    model, torch, threads, ...), "probe_s", "created", "file", "cached"}.
    """
    identity = cpu_identity()
    path = _probe_file(identity)
    record = _read_probe(path, identity)
    if record is None:
        with _exclusive(path.with_suffix(".lock")):
            record = _read_probe(path, identity)  # another process may have probed meanwhile
            if record is None:
                start = time.perf_counter()
                gflops = measure_gflops(cpu_dtype_candidates())
                record = {
                    "identity": identity,
                    "shapes": {k: list(v) for k, v in PROBE_SHAPES.items()},
                    "gflops": gflops,
                    "score_gflops": {k: round(v, 1) for k, v in probe_scores(gflops).items()},
                    "choice": pick_dtype(gflops),
                    "rule": f"best geometric-mean GFLOP/s; fp32 unless beaten by > {BF16_MARGIN:.0%}",
                    "probe_s": round(time.perf_counter() - start, 3),
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                }
                try:
                    atomic_write_json(path, record)
                except OSError as exc:
                    log.warning("cannot cache the dtype probe in %s (%s)", path, exc)
                log.info(
                    "dtype probe on %s (%d threads): %s GFLOP/s -> %s",
                    identity["cpu_model"],
                    identity["threads"],
                    record["score_gflops"],
                    record["choice"],
                )
                return {**record, "file": str(path), "cached": False}
    return {**record, "file": str(path), "cached": True}


def parse_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; choose one of {sorted(set(_DTYPES))}") from None


def _requested(value: str | None, env: str) -> tuple[str, str]:
    """(value, where it came from): an explicit value, else the environment variable, else auto."""
    if value and value != "auto":
        return value, "requested"
    from_env = os.environ.get(env)
    if from_env and from_env != "auto":
        return from_env, env
    return "auto", "auto"


def choose_placement(device: str | None = None, dtype: str | None = None) -> Placement:
    """Resolve `device`/`dtype`: an explicit value wins; "auto" or None defers to
    MARINEBENCH_DEVICE / MARINEBENCH_DTYPE, then to the GPU rule or the CPU probe."""
    device, _ = _requested(device, DEVICE_ENV)
    dtype, source = _requested(dtype, DTYPE_ENV)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but torch sees no CUDA GPU")
    if dtype != "auto":
        try:
            return Placement(device, parse_dtype(dtype), source)
        except ValueError as exc:
            raise ValueError(f"{source}: {exc}" if source == DTYPE_ENV else str(exc)) from None
    if device.startswith("cuda"):
        chosen = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return Placement(device, chosen, "cuda rule: bf16 where supported, else fp16")
    if cpu_dtype_candidates() == ["fp32"]:
        return Placement(device, torch.float32, "cpu without native bf16: fp32")
    if pinned := os.environ.get(AUTO_DTYPE_ENV):
        try:
            return Placement(
                device,
                parse_dtype(pinned),
                f"auto, as the pipeline measured it once ({AUTO_DTYPE_ENV})",
            )
        except ValueError as exc:
            raise ValueError(f"{AUTO_DTYPE_ENV}: {exc}") from None
    probe = probe_cpu_dtype()
    return Placement(device, parse_dtype(probe["choice"]), "measured by the cpu probe", probe)


def describe_choice(record: Mapping[str, Any]) -> str:
    """One line for logs and benchmark output, from a `Placement.record()`."""
    text = f"{record['dtype']} ({record['source']}"
    probe = record.get("probe")
    if probe:
        scores = ", ".join(f"{k} {v:g}" for k, v in probe["score_gflops"].items())
        model = probe["identity"]["cpu_model"]
        threads = probe["identity"]["threads"]
        cached = "cached" if probe.get("cached") else "just measured"
        text += f": {scores} GFLOP/s on {model}, {threads} thread(s), {cached}"
    return text + ")"
