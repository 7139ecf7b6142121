"""`--cluster ADDRESS`: the pipeline's stages run as tasks on a Ray cluster.

The driver (benchmark/pipeline.py's StageRunner) still orders the stages, decides from their
fingerprints which are cached and keeps the record; only *running* a stage that is not cached
moves here. Each such stage becomes one Ray task that asks for what it needs: the CPUs the local
waves would give it as threads (`num_cpus`, and OMP_NUM_THREADS/MKL_NUM_THREADS set to match, so
it computes exactly what it would compute locally), one GPU for a training or evaluation of the
GPU profile (one at a time per GPU), and a memory hint. The task runs `python -m benchmark ARGS`
as a child process with the node's own Python and checkout of the project, and returns its exit
code and the tail of its log.

Artefacts land in the driver's build/ tree. At its first task the driver writes a random token
under build/ and asks every node whether it reads it at the same path: if every node does (a
shared filesystem), tasks write there directly. Otherwise each task also gets the stage's inputs
under build/ (the folders and files named in its arguments, plus the dataset, evaluation cache or
results the stage reads implicitly; never build/models: a node converts its own copy of a
packaged model), runs against a temporary build folder on its node and sends its output folder
back as a tar, which the driver writes atomically; the recorded fingerprint's paths are mapped
back to the driver's build/. A node's record that still differs from the driver's fingerprint (a
different CPU, other package versions) is written as it is, with a warning: the next run here
redoes that stage.

Nothing imports Ray until a stage that is not cached has to run.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmark import paths
from benchmark.atomic import atomic_dir, atomic_write_bytes
from benchmark.errors import UserError
from benchmark.pipeline import Stage, _last_progress, _StageDisplay, read_log_tail

#: "0": tasks always run against a temporary build and ship their outputs back (what a cluster
#: without a shared filesystem does; the tests force it on one machine); "1": assume shared
SHARED_ENV = "MARINEBENCH_CLUSTER_SHARED"
#: driver environment variables a task's process gets (a Ray worker has its node's environment)
PASS_ENV = ("PYTHONPATH", "PYTHONHASHSEED", "GOOGLE_API_KEY")
PASS_ENV_PREFIXES = ("MARINEBENCH_", "HF_", "TRANSFORMERS_", "TOKENIZERS_", "GEMINI_")
#: how much of a task's log comes back to the driver
LOG_TAIL_BYTES = 64 * 1024
#: a failed task's last log lines shown on the console
FAILED_LINES = 25
GIB = 1024**3
#: memory hint per stage command, in bytes: Ray only uses it to place tasks (a QLoRA training of
#: SmolLM2-135M on CPU was seen at ~4.2 GB resident). Capped at the node's memory per CPU times
#: the task's CPUs, so a hint never lets fewer tasks run at once than the CPUs would.
MEMORY_HINTS = {"train": 4 * GIB, "evaluate": 4 * GIB, "data": 3 * GIB}
DEFAULT_MEMORY_HINT = 1 * GIB
#: commands that use the base model (a node without the driver's build/ converts its own copy)
MODEL_COMMANDS = ("train", "evaluate", "data")
#: commands that compute on the GPU in the GPU profile
GPU_COMMANDS = ("train", "evaluate")
TOKEN_DIR = ".cluster"
#: where a node without the shared build/ keeps its converted models between tasks
NODE_CACHE = Path(tempfile.gettempdir()) / f"marinebench-cluster-{getattr(os, 'getuid', int)()}"


class Cluster:
    """Runs stages as Ray tasks on the cluster at `address`; connects on the first `run`."""

    def __init__(self, address: str, models: list[str], gpu: bool = False) -> None:
        self.address = address
        self.models = models
        self.gpu = gpu
        self.build = paths.build_dir().resolve()
        self.connected = False
        self.shared: bool | None = None
        self.token: tuple[str, str] | None = None

    # -- connecting ----------------------------------------------------------------------------

    def _connect(self) -> None:
        if self.connected:
            return
        try:
            import ray
        except ImportError:
            raise UserError(
                "--cluster needs Ray: pip install 'marinebench[cluster]' (or -e '.[cluster]')"
            ) from None
        print(f"[benchmark] connecting to the Ray cluster at {self.address}", flush=True)
        try:
            ray.init(
                address=self.address,
                logging_level=logging.WARNING,
                log_to_driver=False,
                configure_logging=True,
            )
        except Exception as exc:  # ConnectionError, ValueError, grpc errors, ...
            raise UserError(f"cannot connect to the Ray cluster at {self.address}: {exc}") from None
        self.connected = True
        atexit.register(self.close)
        self.nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.max_cpus = max((int(n["Resources"].get("CPU", 0)) for n in self.nodes), default=0)
        self.max_gpus = max((int(n["Resources"].get("GPU", 0)) for n in self.nodes), default=0)
        if self.max_cpus < 1:
            raise UserError(f"the Ray cluster at {self.address} has no node with a CPU")
        if self.gpu and self.max_gpus < 1:
            raise UserError(f"the GPU profile needs a GPU; no node of {self.address} has one")
        self.memory_per_cpu = max(
            n["Resources"].get("memory", 0) / max(1, n["Resources"].get("CPU", 1))
            for n in self.nodes
        )
        self._task = ray.remote(run_stage_task)
        self.board = ray.remote(num_cpus=0)(_Board).remote()
        token_file = self.build / TOKEN_DIR / f"token-{os.getpid()}-{secrets.token_hex(4)}"
        self.token = (str(token_file), secrets.token_hex(16))
        atomic_write_bytes(token_file, self.token[1].encode())
        forced = os.environ.get(SHARED_ENV, "").strip()
        if forced in ("0", "1"):
            # "0": every task gets its own build folder, even on a node that reads this one
            self.shared = forced == "1"
            how = f"{SHARED_ENV}={forced}"
        else:
            # True: every node reads build/; None: some do, each task checks for itself
            self.shared = True if self._probe_shared(ray) else None
            how = "every node reads it" if self.shared else "not every node reads it"
        cpus = sum(int(n["Resources"].get("CPU", 0)) for n in self.nodes)
        gpus = sum(int(n["Resources"].get("GPU", 0)) for n in self.nodes)
        where = (
            "tasks write there directly"
            if self.shared
            else "tasks get their inputs and send their outputs back"
        )
        print(
            f"[benchmark] cluster: {len(self.nodes)} node(s), {cpus} CPUs, {gpus} GPUs; "
            f"{self.build} ({how}): {where}",
            flush=True,
        )

    def _probe_shared(self, ray) -> bool:
        """Whether every node reads the token at the driver's path (a shared build/)."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        probe = ray.remote(num_cpus=0)(token_visible)
        refs = [
            probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
            ).remote(self.token)
            for n in self.nodes
        ]
        try:
            return all(ray.get(refs, timeout=120))
        except Exception:  # a node that cannot answer: let each task check for itself
            return False

    def close(self) -> None:
        if self.token is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.token[0])
            self.token = None
        if self.connected:
            import ray

            with contextlib.suppress(Exception):
                ray.kill(self.board)
            ray.shutdown()
            self.connected = False

    # -- running -------------------------------------------------------------------------------

    def resources(self, stage: Stage, threads: int) -> dict[str, Any]:
        """The Ray task options of a stage that the local waves would give `threads` threads."""
        cpus = max(1, min(threads, self.max_cpus))
        command = stage.args[0]
        memory = min(
            MEMORY_HINTS.get(command, DEFAULT_MEMORY_HINT), int(self.memory_per_cpu * cpus)
        )
        options = {
            "num_cpus": cpus,
            "memory": max(memory, 1),
            "name": stage.name,
            "max_retries": 0,  # a failed stage is recorded as failed; a rerun redoes it
        }
        if self.gpu and command in GPU_COMMANDS:
            options["num_gpus"] = 1
        return options

    def run(self, stages: list[Stage], threads: dict[str, int], log_dir: Path):
        """Run `stages` as Ray tasks at once (Ray schedules them as resources allow); return
        [(stage, exit code)] in the order they ended. Ctrl-C cancels every task still queued or
        running before it propagates."""
        self._connect()
        import ray

        log_dir.mkdir(parents=True, exist_ok=True)
        pending: dict[Any, tuple[Stage, Path]] = {}
        done: list[tuple[Stage, int]] = []
        failures: list[tuple[Stage, Path, dict]] = []
        with _StageDisplay() as display:
            try:
                for stage in stages:
                    options = self.resources(stage, threads[stage.name])
                    log = log_dir / f"{stage.name.replace(':', '-')}.log"
                    spec = self._spec(stage, options["num_cpus"], log)
                    ref = self._task.options(**options).remote(spec)
                    pending[ref] = (stage, log)
                    gpu = ", 1 GPU" if options.get("num_gpus") else ""
                    display.add(
                        stage.name,
                        f"queued on the cluster, {options['num_cpus']} CPU(s){gpu}, log {log}",
                    )
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=1.0)
                    with contextlib.suppress(Exception):
                        board = ray.get(self.board.snapshot.remote(), timeout=5)
                        for name, text in board.items():
                            if any(s.name == name for s, _ in pending.values()):
                                display.update(name, text)
                    for ref in ready:
                        stage, log = pending.pop(ref)
                        result = self._result(ref, stage)
                        code = self._land(stage, result, log)
                        stage.seconds = round(result.get("seconds", 0.0), 2)
                        node = result.get("node", "?")
                        if code == 0:
                            display.finish(stage.name, f"done in {stage.seconds:.0f}s on {node}")
                        else:
                            display.finish(
                                stage.name, f"FAILED on {node} (exit {code}, log: {log})"
                            )
                            failures.append((stage, log, result))
                        done.append((stage, code))
            except BaseException:
                self.cancel(list(pending))
                raise
        for stage, log, result in failures:
            tail = result.get("log", "").splitlines()[-FAILED_LINES:]
            print(
                f"[benchmark] {stage.name} failed on {result.get('node', '?')} "
                f"(exit {result['returncode']}); the end of its log ({log}):",
                file=sys.stderr,
            )
            for line in tail:
                print(f"    {line}", file=sys.stderr)
            sys.stderr.flush()
        return done

    def cancel(self, refs: list) -> None:
        """Cancel tasks: first politely (the task kills its process group), then by force."""
        import ray

        if not refs:
            return
        print(f"[benchmark] cancelling {len(refs)} task(s) on the cluster", flush=True)
        try:
            for ref in refs:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=False)
            _, rest = ray.wait(refs, num_returns=len(refs), timeout=5.0)
        except BaseException:
            rest = refs
            raise
        finally:
            for ref in rest:
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)

    def _spec(self, stage: Stage, cpus: int, log: Path) -> dict[str, Any]:
        import ray

        env = {
            k: v for k, v in os.environ.items() if k in PASS_ENV or k.startswith(PASS_ENV_PREFIXES)
        }
        env["MARINEBENCH_BUILD"] = str(self.build)
        spec: dict[str, Any] = {
            "name": stage.name,
            "args": list(stage.args),
            "env": env,
            "threads": cpus,
            "build": str(self.build),
            "log": str(log.resolve()),
            "token": self.token,
            "shared": self.shared,
            "inputs": [],
            "board": self.board,
        }
        if self.shared is not True:
            portable, blob, output = ship(stage, self.build)
            spec.update(portable=portable, output=output, models=self._models(stage))
            spec["inputs"] = [ray.put(blob)]  # nested: a node that reads build/ never fetches it
        return spec

    def _models(self, stage: Stage) -> list[str]:
        """Models a node converts (or downloads) for itself: presets and Hub ids; a local model
        folder is read where it is (every node needs it at the same path)."""
        if stage.args[0] not in MODEL_COMMANDS:
            return []
        return [m for m in self.models if not Path(m).expanduser().exists()]

    def _result(self, ref, stage: Stage) -> dict[str, Any]:
        import ray

        try:
            return ray.get(ref)
        except Exception as exc:  # the task raised, its worker or node died, or it was cancelled
            return {"returncode": -1, "log": f"{type(exc).__name__}: {exc}", "seconds": 0.0}

    def _land(self, stage: Stage, result: dict[str, Any], log: Path) -> int:
        """Write what came back (the log, a non-shared task's outputs); returns the exit code."""
        code = int(result.get("returncode", -1))
        if not result.get("shared") or (code != 0 and not log.is_file()):
            with contextlib.suppress(OSError):
                atomic_write_bytes(log, result.get("log", "").encode())
        if code != 0:
            return code
        try:
            if result.get("folders"):
                install_outputs(result, self.build)
        except (OSError, tarfile.TarError, ValueError) as exc:
            result["log"] = f"{result.get('log', '')}\ncould not write its outputs: {exc}"
            return -1
        check_fingerprint(stage, result.get("node", "?"))
        return code


class _Board:
    """The latest progress line of every running task (a Ray actor the driver polls)."""

    def __init__(self) -> None:
        self.lines: dict[str, str] = {}

    def set(self, name: str, text: str) -> None:
        self.lines[name] = text

    def snapshot(self) -> dict[str, str]:
        return dict(self.lines)


# -----------------------------------------------------------------------------------------------
# Shipping a stage to a node without the driver's build/, and its outputs back.


def _under(path: str, prefixes: list[str]) -> tuple[str, str] | None:
    """(prefix, relative part) when `path` is one of `prefixes` or below one."""
    for prefix in prefixes:
        if path == prefix:
            return prefix, ""
        if path.startswith(prefix.rstrip(os.sep) + os.sep):
            return prefix, path[len(prefix.rstrip(os.sep)) + 1 :]
    return None


def ship(stage: Stage, build: Path) -> tuple[list, bytes, str]:
    """(portable args, inputs tar, output folder relative to build/) for a node without the
    driver's build/. Portable args: plain strings, ["build", REL] for a path under build/ and
    ["file", REL] for a file elsewhere (a config, a submission) shipped with the inputs."""
    build = build.resolve()
    prefixes = sorted({str(build), str(paths.build_dir())}, key=len, reverse=True)
    if stage.output is None:
        raise UserError(f"stage {stage.name}: no output folder known")
    under = _under(str(Path(stage.output).resolve()), [str(build)])
    if under is None:
        raise UserError(
            f"stage {stage.name} writes {stage.output}, outside build/ ({build}): a cluster "
            "without a shared filesystem can only send back outputs under build/"
        )
    output = under[1]
    portable: list = []
    folders: set[str] = set()
    files: dict[str, Path] = {}
    for arg in stage.args:
        hit = _under(arg, prefixes)
        if hit is not None:
            rel = hit[1]
            portable.append(["build", rel])
            related = _related(rel, output)
            if not related and not rel.startswith("models") and (build / rel).exists():
                folders.add(rel)
        elif os.path.isabs(arg) and Path(arg).is_file():
            rel = f"{len(files)}/{Path(arg).name}"
            files[rel] = Path(arg)
            portable.append(["file", rel])
        else:
            portable.append(arg)
    for rel in _implicit_inputs(stage.args[0], output):
        if _related(rel, output) or any(_related(rel, f) for f in folders):
            continue
        if (build / rel).exists():
            folders.add(rel)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel in sorted(folders):
            tar.add(build / rel, arcname=f"build/{rel}", filter=_skip(rel))
        for rel, path in files.items():
            tar.add(path, arcname=f"files/{rel}")
    return portable, buf.getvalue(), output


def _related(a: str, b: str) -> bool:
    """One of the two build-relative paths is the other or inside it."""
    return bool(_under(a, [b]) or _under(b, [a]) or a == b or "" in (a, b))


def _implicit_inputs(command: str, output: str) -> list[str]:
    """What a stage reads under build/ without naming it in its arguments."""
    from benchmark.contracts.results import CACHE_DIR

    if command == "dataset":
        return []
    if command == "evaluate":
        return ["dataset", f"results/{CACHE_DIR}"]
    if command == "site":
        return ["dataset", "results", "datatrack"]
    return ["dataset"]  # train, data prepare


def _skip(rel: str):
    """tar filter: what a stage never reads (adapter checkpoints, the evaluation cache and
    adapters where only the site's inputs are wanted)."""
    from benchmark.contracts.results import CACHE_DIR

    def keep(info: tarfile.TarInfo):
        parts = Path(info.name).parts
        if "checkpoints" in parts or "__pycache__" in parts:
            return None
        if rel in ("results", "datatrack") and (CACHE_DIR in parts or "adapters" in parts):
            return None
        return info

    return keep


def _tar_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(folder, arcname=".")
    return buf.getvalue()


def _untar(blob: bytes, dest: Path) -> None:
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python < 3.10.12 / 3.11.4
            tar.extractall(dest)  # noqa: S202 - our own archive


#: text files whose paths name the node's build folder (manifests, lm-eval configs, records)
TEXT_SUFFIXES = (".json", ".jsonl", ".md", ".txt", ".yaml", ".yml", ".html", ".csv")


def install_outputs(result: dict[str, Any], build: Path) -> None:
    """Write a task's returned folders under the driver's `build` atomically: its output folder
    (replacing the old one), and evaluation cache entries the driver does not have yet. Paths
    that name the node's temporary build folder (the manifest's dataset path, the stage's
    recorded fingerprint) are mapped to this one, as if the stage had run here; the
    fingerprint's digest is recomputed from its mapped parts."""
    from benchmark.fingerprint import FINGERPRINT_FILE
    from benchmark.hashing import sha256_json

    build = build.resolve()
    old, new = result["node_build"].encode(), str(build).encode()
    for rel, blob in result["folders"].items():
        target = build / rel
        if rel != result["output"] and target.exists():
            continue  # a cache entry this build already has
        with atomic_dir(target) as tmp:
            _untar(blob, tmp)
            for path in tmp.rglob("*"):
                if path.suffix in TEXT_SUFFIXES and path.is_file() and not path.is_symlink():
                    data = path.read_bytes()
                    if old in data:
                        path.write_bytes(data.replace(old, new))
            record = tmp / FINGERPRINT_FILE
            if record.is_file():
                parts = json.loads(record.read_text(encoding="utf-8")).get("parts")
                data = {"digest": sha256_json(parts), "parts": parts}
                text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
                record.write_text(text, encoding="utf-8")


def check_fingerprint(stage: Stage, node: str) -> None:
    """Warn when what the stage recorded differs from the fingerprint the driver decided with:
    the node computed under other conditions (CPU, packages, code), so the record says so and
    the next run on this driver redoes the stage."""
    from benchmark.fingerprint import FINGERPRINT_FILE, changed
    from benchmark.pipeline import stage_key

    if stage.output is None:
        return
    try:
        recorded = json.loads((stage.output / FINGERPRINT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if recorded.get("digest") == stage.fingerprint:
        return
    reasons = changed(stage_key(stage.args)) or ["its record"]
    print(
        f"[benchmark] warning: {stage.name} ran on {node}, whose fingerprint differs from this "
        f"machine's ({'; '.join(reasons)}): recorded as it ran, so the next run here redoes it",
        file=sys.stderr,
        flush=True,
    )


# -----------------------------------------------------------------------------------------------
# The task (runs on a node).


def token_visible(token: tuple[str, str] | None) -> bool:
    """Whether this node reads the driver's token file at the driver's path."""
    if not token:
        return False
    try:
        return Path(token[0]).read_text() == token[1]
    except (OSError, UnicodeDecodeError):
        return False


def _node_name() -> str:
    return socket.gethostname()


def run_stage_task(spec: dict[str, Any]) -> dict[str, Any]:
    """One stage on this node: `python -m benchmark ARGS` with the spec's threads, against the
    driver's build/ when this node reads it, else against a temporary build fed with the shipped
    inputs (its output folder comes back as tar bytes). Runs without Ray too (tests)."""
    started = time.perf_counter()
    visible = token_visible(spec.get("token"))
    result: dict[str, Any] = {"node": _node_name(), "returncode": -1, "log": ""}
    board = spec.get("board")

    def report(text: str) -> None:
        if board is not None:
            with contextlib.suppress(Exception):
                board.set.remote(spec["name"], text)

    env = {**os.environ, **spec["env"]}
    threads = str(spec["threads"])
    env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    if spec.get("shared") is not False and visible:
        result["shared"] = True
        log = Path(spec["log"])
        log.parent.mkdir(parents=True, exist_ok=True)
        report(f"started on {result['node']}")
        result["returncode"] = _run_child(spec["args"], env, log, report)
        result["log"] = _tail(log)
    elif spec.get("shared"):
        result["log"] = (
            f"node {result['node']} cannot read the driver's build folder at {spec['build']} "
            "(the cluster changed since the driver checked?); rerun the pipeline"
        )
    else:
        result["shared"] = False
        with tempfile.TemporaryDirectory(prefix="marinebench-stage-") as tmp:
            root = Path(tmp).resolve()
            build = root / "build"
            build.mkdir()
            blob = spec["inputs"][0] if spec["inputs"] else b""
            if blob and not isinstance(blob, bytes):
                import ray

                blob = ray.get(blob)
            if blob:
                _untar(blob, root)
            args = [
                a
                if isinstance(a, str)
                else str((build if a[0] == "build" else root / "files") / a[1])
                for a in spec["portable"]
            ]
            env["MARINEBENCH_BUILD"] = str(build)
            log = root / "stage.log"
            report(f"started on {result['node']} (own build folder)")
            code = _convert_models(spec.get("models", []), build, env, log)
            if code == 0:
                code = _run_child(args, env, log, report, append=True)
            result["returncode"] = code
            result["log"] = _tail(log)
            if code == 0:
                result.update(_collect(build, spec["output"], spec["args"][0], blob))
    result["seconds"] = time.perf_counter() - started
    return result


def _collect(build: Path, output: str, command: str, shipped: bytes) -> dict[str, Any]:
    """The output folder, plus (evaluate) the evaluation cache entries it added."""
    from benchmark.contracts.results import CACHE_DIR

    folders = {output: _tar_folder(build / output)}
    cache = build / "results" / CACHE_DIR
    if command == "evaluate" and cache.is_dir():
        had = set()
        if shipped:
            with tarfile.open(fileobj=io.BytesIO(shipped)) as tar:
                names = [Path(n).parts for n in tar.getnames()]
            had = {p[3] for p in names if len(p) > 3 and p[:3] == ("build", "results", CACHE_DIR)}
        for entry in sorted(cache.iterdir()):
            if entry.is_dir() and entry.name not in had and not entry.name.startswith("."):
                folders[f"results/{CACHE_DIR}/{entry.name}"] = _tar_folder(entry)
    return {"folders": folders, "output": output, "node_build": str(build)}


def _convert_models(models: list[str], build: Path, env: dict[str, str], log: Path) -> int:
    """Convert packaged models once per node into NODE_CACHE (one task at a time, under a lock)
    and link them into this task's build, so the stage's fingerprint finds them on disk."""
    if not models:
        return 0
    import fcntl

    NODE_CACHE.mkdir(parents=True, exist_ok=True)
    (NODE_CACHE / "models").mkdir(exist_ok=True)
    (build / "models").symlink_to(NODE_CACHE / "models", target_is_directory=True)
    code = (
        "import sys\nfrom benchmark.models import model_path\nfor m in sys.argv[1:]: model_path(m)"
    )
    with open(NODE_CACHE / "convert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(log, "ab") as fh:
            return subprocess.run(
                [sys.executable, "-c", code, *models],
                cwd=paths.REPO_ROOT,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            ).returncode


#: runs the stage's process: it dies with the Ray worker that started it (Linux), so a task
#: cancelled by force leaves nothing behind
_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "parent = int(sys.argv[1])\n"
    "try:\n"
    "    ctypes.CDLL(None).prctl(1, signal.SIGKILL)\n"  # PR_SET_PDEATHSIG
    "except Exception:\n"
    "    pass\n"
    "if os.getppid() != parent:\n"
    "    sys.exit(130)\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'benchmark', *sys.argv[2:]])\n"
)


def _run_child(args: list[str], env: dict[str, str], log: Path, report, append=False) -> int:
    """`python -m benchmark ARGS` in its own process group, output into `log`; reports its
    progress every 2 s. Cancelled (Ray raises KeyboardInterrupt here): kills the group."""
    cmd = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *args]
    with open(log, "ab" if append else "wb") as fh:
        proc = subprocess.Popen(
            cmd,
            cwd=paths.REPO_ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            last = 0.0
            while proc.poll() is None:
                time.sleep(0.5)
                if time.monotonic() - last >= 2:
                    report(_last_progress(log))
                    last = time.monotonic()
        except BaseException:
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    return proc.returncode


def _tail(log: Path) -> str:
    # tqdm redraws with carriage returns: keep each line's last state
    text = read_log_tail(log, LOG_TAIL_BYTES)
    return "\n".join(line.split("\r")[-1] for line in text.split("\n"))
