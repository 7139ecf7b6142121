"""Publish build/dataset to the Hugging Face Hub, idempotently, without ever printing the token.

We compare each local file's git blob id (or LFS sha256) with the remote tree and commit only what
changed (plus deletions of remote files the build no longer has); when nothing changed there is
no commit at all. huggingface_hub's upload_folder would also skip unchanged files, but still asks
the server and can create an empty commit; comparing first also gives --dry-run its exact list.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.dataset.records import DatasetError
from benchmark.errors import UserError
from benchmark.fingerprint import FINGERPRINT_FILE

log = logging.getLogger(__name__)
REPO_TYPE = "dataset"


class PushError(UserError):
    """The push could not happen (no token, bad repo id, the Hub said no)."""


@dataclass
class PushPlan:
    upload: list[str] = field(default_factory=list)  # new or changed, relative paths
    unchanged: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)  # on the Hub, not in the build
    remote_checked: bool = True


def git_blob_sha1(path: Path) -> str:
    """The id git (and the Hub's tree API) gives a regular file's content."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def local_files(folder: Path) -> list[str]:
    if not (folder / "README.md").is_file() or not (folder / "data").is_dir():
        raise DatasetError(
            f"{folder} is not a built dataset (run `marinebench dataset build` first)"
        )
    # The stage's fingerprint describes this machine's build (code, packages, CPU); it is a
    # local cache record, not part of the published dataset.
    return sorted(
        rel
        for p in folder.rglob("*")
        if p.is_file() and (rel := p.relative_to(folder).as_posix()) != FINGERPRINT_FILE
    )


def get_token() -> str | None:
    """HF_TOKEN, else the token saved by `hf auth login` (huggingface_hub reads both)."""
    from huggingface_hub import get_token as hub_token

    return os.environ.get("HF_TOKEN", "").strip() or hub_token()


def endpoint() -> str | None:
    """HF_ENDPOINT read at call time (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_ENDPOINT") or None


def _check_online() -> None:
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise PushError(
            "HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set; unset it to push to the Hub"
        )


def plan_push(api, repo_id: str, folder: Path, files: list[str]) -> PushPlan:
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        remote = {
            f.path: f
            for f in api.list_repo_tree(repo_id, repo_type=REPO_TYPE, recursive=True)
            if hasattr(f, "blob_id")
        }
    except (RepositoryNotFoundError, RevisionNotFoundError):
        remote = {}
    plan = PushPlan()
    for rel in files:
        entry = remote.get(rel)
        if entry is None:
            plan.upload.append(rel)
        elif entry.lfs is not None:
            (plan.unchanged if entry.lfs.sha256 == sha256(folder / rel) else plan.upload).append(
                rel
            )
        else:
            (
                plan.unchanged if entry.blob_id == git_blob_sha1(folder / rel) else plan.upload
            ).append(rel)
    # Only files this builder owns are deleted; a hand-added file elsewhere in the repo stays.
    plan.delete = sorted(
        p for p in remote if p not in files and (p.startswith("data/") or p == "build_report.json")
    )
    return plan


def push(
    folder: Path, repo_id: str, *, private: bool = False, dry_run: bool = False
) -> tuple[PushPlan, str | None]:
    """Returns the plan and the new commit id (None when nothing was committed)."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
    from huggingface_hub.errors import HfHubHTTPError

    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PushError(f"--repo-id must look like USER/NAME, got {repo_id!r}")
    files = local_files(folder)
    token = get_token()
    if token is None:
        if dry_run:
            return PushPlan(upload=files, remote_checked=False), None
        raise PushError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    _check_online()
    api = HfApi(endpoint=endpoint(), token=token)
    try:
        plan = plan_push(api, repo_id, folder, files)
        if dry_run or not (plan.upload or plan.delete):
            return plan, None
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True)
        ops = [
            CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(folder / p)) for p in plan.upload
        ]
        ops += [CommitOperationDelete(path_in_repo=p) for p in plan.delete]
        info = api.create_commit(
            repo_id,
            ops,
            repo_type=REPO_TYPE,
            commit_message=f"Update dataset ({len(plan.upload)} changed, {len(plan.delete)} removed)",
        )
    except (HfHubHTTPError, RuntimeError, *_transport_errors()) as exc:
        error = _push_error(repo_id, exc)
        if error is None:
            raise  # no HTTP failure behind it: a bug, keep its traceback
        raise error from exc
    return plan, info.oid


def _transport_errors() -> tuple[type[BaseException], ...]:
    """A request that got no HTTP reply (refused, reset, timeout): from huggingface_hub's HTTP
    library (httpx2, httpx in older releases) or hf_xet's uploads (a builtin ConnectionError)."""
    found: list[type[BaseException]] = [ConnectionError]
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _push_error(repo_id: str, exc: BaseException) -> PushError | None:
    """A clear error from the Hub's refusal or the lost connection behind exc, None if neither.

    huggingface_hub re-raises a failed LFS upload as RuntimeError("Error while uploading
    '<path>' to the Hub.") from its cause, so the chain is searched and that message kept."""
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError

    causes = (HfHubHTTPError, *_transport_errors())
    outer = "" if isinstance(exc, causes) else f"{exc} "
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, causes):
        cause = cause.__cause__
    if cause is None:
        return None
    if isinstance(cause, HfHubHTTPError):
        status = cause.response.status_code if cause.response is not None else "?"
        message = f"the Hub refused the push to {repo_id} (HTTP {status}): {outer}{cause}"
    else:
        message = (
            f"lost the connection to the Hub at {endpoint() or constants.ENDPOINT} while pushing "
            f"to {repo_id} ({outer}{type(cause).__name__}: {cause}); rerun the push: it compares "
            "with the repo first and sends only what is missing"
        )
    # The token travels in a header, never in a message; an upload URL's query is a signature
    # (a short-lived credential for the storage host), so queries are cut.
    return PushError(_strip_queries(message))


def _strip_queries(text: str) -> str:
    """URLs without their query string."""
    return re.sub(r"(https?://[^\s?'\"]+)\?[^\s'\"]*", r"\1?…", text)
