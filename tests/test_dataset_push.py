"""`dataset push` through the real huggingface_hub client, over HTTP, to a loopback Hub-API server."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import threading
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

import pytest
from dataset_fixtures import make_src

from benchmark.cli import main as cli_main
from benchmark.dataset.build import build
from benchmark.dataset.config import BuildConfig

TOKEN = "hf_testtoken_0123456789abcdef"
REPO = "marine-user/marine-qa"
LFS_POINTER = re.compile(
    rb"version https://git-lfs.github.com/spec/v1\noid sha256:([0-9a-f]{64})\nsize (\d+)\n"
)
# The head of the .gitattributes the Hub writes into every new dataset repo.
GITATTRIBUTES = (
    b"*.arrow filter=lfs diff=lfs merge=lfs -text\n"
    b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
    b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
    b"*.zip filter=lfs diff=lfs merge=lfs -text\n"
)
LFS_MIN_SIZE = 10 * 1024 * 1024  # the Hub refuses larger files outside LFS


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    oid = hashlib.sha256(data).hexdigest()
    return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (
        oid.encode(),
        len(data),
    )


def lfs_patterns(gitattributes: bytes) -> list[str]:
    return [
        line.split()[0]
        for line in gitattributes.decode().splitlines()
        if line.strip() and not line.startswith("#") and "filter=lfs" in line.split()[1:]
    ]


class FakeHub:
    """The Hub endpoints create_repo / list_repo_tree / create_commit use, in memory, LFS included.

    Like the real Hub, a new repo holds the default .gitattributes, and preupload answers "lfs"
    for a path matching one of its LFS patterns, for binary content (a NUL in the sample) or for
    a file over 10 MiB. LFS content then goes: batch API (basic transfer only, never xet) ->
    PUT of the bytes to a signed upload URL on this server (no token, as to S3) -> verify ->
    commit with an `lfsFile` line, checked against what was uploaded. The repo's git blobs hold
    pointer files for LFS paths, the bytes live in `objects` by sha256; `files()` resolves them.
    """

    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}  # path -> git blob (LFS: the pointer file)
        self.objects: dict[str, bytes] = {}  # LFS store, by sha256
        self.signed: dict[str, tuple[str, int]] = {}  # upload signature -> (oid, size)
        self.commits: list[dict] = []
        self.auth: list[str | None] = []
        self.requests: list[tuple[str, str]] = []  # (method, route)
        self.upload_headers: list[dict[str, str]] = []
        self.reject_uploads: int | None = None  # answer every LFS PUT with this status
        self.drop: set[str] = set()  # routes whose connection is closed without an answer
        self.violations: list[str] = []  # requests the real Hub would not get from the client
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, payload, headers=None, content_type="application/json"):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    out = b""
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        out += self.rfile.read(size)
                        self.rfile.readline()
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return out
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _route(self, route):
                with owner.lock:
                    owner.requests.append((self.command, route))

            def _authorised(self) -> bool:
                got = self.headers.get("Authorization")
                owner.auth.append(got)
                if got != f"Bearer {TOKEN}":
                    self._send(401, {"error": "Invalid credentials"})
                    return False
                return True

            def _repo(self, ns, name):
                repo_id = f"{ns}/{name}"
                if repo_id not in owner.repos:
                    self._send(
                        404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
                    )
                    return None, None
                return repo_id, owner.repos[repo_id]

            def _parts(self):
                return [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]

            def _guarded(self, handle):
                """A failed protocol check answers 400 and fails the test when the server stops
                (an exception in this thread would only look like a dropped connection)."""
                try:
                    handle()
                except AssertionError as exc:
                    owner.violations.append(f"{self.command} {self.path}: {exc}")
                    self._send(400, {"error": f"protocol violation: {exc}"})

            def do_GET(self):
                self._guarded(self._get)

            def do_PUT(self):
                self._guarded(self._put)

            def do_POST(self):
                self._guarded(self._post)

            def _get(self):
                parts = self._parts()
                route = "?"
                if parts[:2] == ["api", "datasets"]:  # /api/datasets/{ns}/{name}[/{route}/{rev}]
                    route = parts[4] if len(parts) >= 6 else "repo_info"
                self._route(route)  # "xet-write-token" would be hf_xet asking for a CAS token
                if not self._authorised():
                    return
                if route == "tree":  # /api/datasets/{ns}/{name}/tree/{rev}
                    repo_id, files = self._repo(parts[2], parts[3])
                    if repo_id is None:
                        return
                    listing = []
                    for path in sorted(files):
                        blob = files[path]
                        entry = {"type": "file", "path": path, "size": len(blob)}
                        entry["oid"] = git_sha1(blob)
                        if m := LFS_POINTER.fullmatch(blob):
                            entry["size"] = int(m[2])
                            entry["lfs"] = {
                                "oid": m[1].decode(),
                                "size": int(m[2]),
                                "pointerSize": len(blob),
                            }
                        listing.append(entry)
                    return self._send(200, listing)
                if route == "repo_info":
                    repo_id, files = self._repo(parts[2], parts[3])
                    if repo_id is None:
                        return
                    sha = owner.commits[-1]["oid"] if owner.commits else "0" * 40
                    return self._send(
                        200,
                        {
                            "id": repo_id,
                            "sha": sha,
                            "siblings": [{"rfilename": p} for p in sorted(files)],
                        },
                    )
                self._send(404, {"error": f"unexpected GET {self.path}"})

            def _put(self):
                """The upload URL the batch API handed out: signed, so no token (as on S3)."""
                parts = self._parts()
                self._route("lfs-upload")
                with owner.lock:
                    owner.upload_headers.append(dict(self.headers))
                body = self._body()
                sig = parse_qs(urlparse(self.path).query).get("sig", [""])[0]
                if owner.reject_uploads is not None:
                    return self._send(owner.reject_uploads, {"error": "Request has expired"})
                oid, size = owner.signed.get(sig, (None, None))
                if oid is None or parts != ["lfs-upload", oid]:
                    return self._send(403, {"error": "bad upload signature"})
                if len(body) != size or hashlib.sha256(body).hexdigest() != oid:
                    return self._send(400, {"error": f"content does not match oid {oid}"})
                with owner.lock:
                    owner.objects[oid] = body
                self.send_response(200)
                self.send_header("ETag", f'"{hashlib.md5(body).hexdigest()}"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _lfs(self, parts, body):
                """POST /datasets/{ns}/{name}.git/info/lfs/objects/{batch,verify}"""
                repo_id, _ = self._repo(parts[1], parts[2].removesuffix(".git"))
                if repo_id is None:
                    return
                req = json.loads(body)
                if parts[-1] == "verify":
                    data = owner.objects.get(req["oid"])
                    if data is None or len(data) != req["size"]:
                        return self._send(404, {"error": f"object {req['oid']} not uploaded"})
                    return self._send(200, {})
                accept = self.headers.get("Accept", "")
                assert "application/vnd.git-lfs+json" in accept, f"Accept: {accept}"
                assert req["operation"] == "upload", req["operation"]
                assert req.get("hash_algo", "sha256") == "sha256", req["hash_algo"]
                # The client lists the transfers it speaks; this server only answers "basic".
                assert "basic" in req.get("transfers", ["basic"]), req["transfers"]
                objects = []
                for obj in req["objects"]:
                    oid, size = obj["oid"], obj["size"]
                    assert re.fullmatch(r"[0-9a-f]{64}", oid) and isinstance(size, int), obj
                    if oid in owner.objects:  # already stored: no actions, nothing to send
                        objects.append({"oid": oid, "size": size})
                        continue
                    sig = secrets.token_hex(8)
                    with owner.lock:
                        owner.signed[sig] = (oid, size)
                    repo_url = f"{owner.url}/datasets/{repo_id}.git/info/lfs/objects"
                    objects.append(
                        {
                            "oid": oid,
                            "size": size,
                            "authenticated": True,
                            "actions": {
                                "upload": {"href": f"{owner.url}/lfs-upload/{oid}?sig={sig}"},
                                "verify": {"href": f"{repo_url}/verify"},
                            },
                        }
                    )
                return self._send(
                    200,
                    {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
                    content_type="application/vnd.git-lfs+json",
                )

            def _is_lfs(self, files, path, size, sample) -> bool:
                patterns = lfs_patterns(files.get(".gitattributes", b""))
                name = path.rsplit("/", 1)[-1]
                by_pattern = any(fnmatch(path if "/" in p else name, p) for p in patterns)
                return by_pattern or size > LFS_MIN_SIZE or b"\0" in sample

            def _commit(self, repo_id, files, body):
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                assert lines[0]["key"] == "header", lines[0]
                changed, staged = [], dict(files)
                for item in lines[1:]:
                    key, value = item["key"], item["value"]
                    path = value["path"]
                    if key == "file":
                        assert value["encoding"] == "base64", value["encoding"]
                        data = base64.b64decode(value["content"])
                        if self._is_lfs(files, path, len(data), data[:512]):
                            return self._send(
                                400,
                                {
                                    "error": "Your push was rejected because it contains binary "
                                    f"files. Use LFS for them. Offending files: - {path}"
                                },
                            )
                        staged[path] = data
                    elif key == "lfsFile":
                        data = owner.objects.get(value["oid"])
                        if value.get("algo") != "sha256" or data is None:
                            return self._send(
                                400, {"error": f"LFS object {value['oid']} of {path} not found"}
                            )
                        if value.get("size", len(data)) != len(data):
                            return self._send(400, {"error": f"size mismatch for {path}"})
                        staged[path] = lfs_pointer(data)
                    elif key == "deletedFile":
                        del staged[path]
                    else:
                        raise AssertionError(f"unexpected commit operation {key}")
                    changed.append((key, path))
                files.clear()
                files.update(staged)
                oid = hashlib.sha1(repr((len(owner.commits), changed)).encode()).hexdigest()
                owner.commits.append(
                    {"oid": oid, "summary": lines[0]["value"]["summary"], "changed": changed}
                )
                return self._send(
                    200,
                    {
                        "commitUrl": f"{owner.url}/datasets/{repo_id}/commit/{oid}",
                        "commitOid": oid,
                    },
                )

            def _post(self):
                parts = self._parts()
                lfs = parts[:1] == ["datasets"] and parts[3:6] == ["info", "lfs", "objects"]
                if parts[:2] == ["api", "datasets"] and len(parts) >= 6:
                    route = parts[4]  # /api/datasets/{ns}/{name}/{preupload,commit}/{rev}
                elif lfs:
                    route = f"lfs-{parts[-1]}"
                else:
                    route = "/".join(parts[1:])  # repos/create, validate-yaml
                self._route(route)
                if not self._authorised():
                    return
                body = self._body()
                if route in owner.drop:
                    self.close_connection = True
                    return
                if route == "repos/create":
                    req = json.loads(body)
                    assert req["type"] == "dataset", req["type"]
                    repo_id = f"{req['organization']}/{req['name']}"
                    if repo_id in owner.repos:
                        return self._send(
                            409,  # the real Hub also answers the repo's url here
                            {
                                "error": "You already created this dataset repo",
                                "url": f"{owner.url}/datasets/{repo_id}",
                            },
                        )
                    owner.repos[repo_id] = {".gitattributes": GITATTRIBUTES}
                    return self._send(200, {"url": f"{owner.url}/datasets/{repo_id}"})
                if route == "validate-yaml":
                    return self._send(200, {"errors": [], "warnings": []})
                if lfs:
                    return self._lfs(parts, body)
                if route in ("preupload", "commit"):
                    repo_id, files = self._repo(parts[2], parts[3])
                    if repo_id is None:
                        return
                    if route == "commit":
                        return self._commit(repo_id, files, body)
                    out = []
                    for f in json.loads(body)["files"]:
                        blob = files.get(f["path"])
                        sample = base64.b64decode(f["sample"])
                        lfs_mode = self._is_lfs(files, f["path"], f["size"], sample)
                        oid = None
                        if blob is not None:  # LFS: the content's sha256, as the client compares
                            m = LFS_POINTER.fullmatch(blob)
                            oid = m[1].decode() if m else git_sha1(blob)
                        out.append(
                            {
                                "path": f["path"],
                                "uploadMode": "lfs" if lfs_mode else "regular",
                                "shouldIgnore": False,
                                "oid": oid,
                            }
                        )
                    return self._send(200, {"files": out})
                self._send(404, {"error": f"unexpected POST {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def files(self, repo_id: str) -> dict[str, bytes]:
        """The repo as a checkout sees it: LFS pointers resolved to the stored bytes."""
        out = {}
        for path, blob in self.repos[repo_id].items():
            m = LFS_POINTER.fullmatch(blob)
            out[path] = self.objects[m[1].decode()] if m else blob
        return out

    def lfs_paths(self, repo_id: str) -> set[str]:
        return {p for p, blob in self.repos[repo_id].items() if LFS_POINTER.fullmatch(blob)}

    def put_lfs(self, repo_id: str, path: str, data: bytes) -> None:
        """Plant an LFS file, as an earlier push would have left it."""
        self.objects[hashlib.sha256(data).hexdigest()] = data
        self.repos[repo_id][path] = lfs_pointer(data)

    def count(self, route: str) -> int:
        return sum(r == route for _, r in self.requests)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, exc_type, *exc):
        self.server.shutdown()
        self.server.server_close()
        assert exc_type is not None or not self.violations, self.violations


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    """No ambient token; HTTP to the Hub allowed (the suite runs with HF_HUB_OFFLINE=1); no xet.

    huggingface_hub sends LFS content through hf_xet whenever that package is installed (it
    asks no server first), and only HF_HUB_DISABLE_XET turns that off; this server speaks the
    LFS batch protocol, so that is the path under test."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def _files(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def _parquet(folder) -> dict[str, str]:
    """Local parquet path -> sha256 of its bytes."""
    return {
        rel: hashlib.sha256(data).hexdigest()
        for rel, data in _files(folder).items()
        if rel.endswith(".parquet")
    }


def test_push_dry_run_idempotent_update_and_token_never_shown(
    hub_env, tmp_path, monkeypatch, capsys, caplog
):
    caplog.set_level(logging.DEBUG)
    src = make_src(tmp_path / "src", per_topic=6)
    folder = tmp_path / "ds"
    build(BuildConfig(src=src, out=folder))
    push = ["dataset", "push", "--repo-id", REPO, "--path", str(folder)]

    # No token: a clear error, and a dry run still lists every file.
    assert cli_main(push) == 2
    assert "no Hugging Face token" in capsys.readouterr().err
    assert cli_main([*push, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "remote not checked" in out and "would upload 5 file(s)" in out

    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        # Dry run against the (missing) repo: lists exactly the files, changes nothing.
        assert cli_main([*push, "--dry-run"]) == 0
        out = capsys.readouterr().out
        for rel in _files(folder):
            assert f"upload  {rel}" in out
        assert hub.repos == {} and hub.commits == []

        assert cli_main(push) == 0
        assert "pushed 5 file(s)" in capsys.readouterr().out
        assert len(hub.commits) == 1
        # Every file as built; the Hub's own .gitattributes stays (the push does not own it).
        assert hub.files(REPO) == {**_files(folder), ".gitattributes": GITATTRIBUTES}
        # The three parquet shards went the LFS way: one batch call, a PUT and a verify each,
        # the bytes stored under their sha256, the commit naming them as lfsFile.
        parquet = _parquet(folder)
        assert len(parquet) == 3 and hub.lfs_paths(REPO) == set(parquet)
        assert hub.count("lfs-batch") == 1
        assert hub.count("lfs-upload") == 3 and hub.count("lfs-verify") == 3
        for rel, digest in parquet.items():
            assert hashlib.sha256(hub.objects[digest]).hexdigest() == digest
            assert ("lfsFile", rel) in hub.commits[0]["changed"]
        assert ("file", "README.md") in hub.commits[0]["changed"]
        assert hub.count("xet-write-token") == 0
        # The upload URL is signed: the token never travels to the storage host.
        assert len(hub.upload_headers) == 3
        assert not any("authorization" in {k.lower() for k in h} for h in hub.upload_headers)

        # Unchanged data: no new commit, no upload.
        requests_before = len(hub.requests)
        assert cli_main(push) == 0
        assert "up to date" in capsys.readouterr().out
        assert len(hub.commits) == 1
        assert [r for _, r in hub.requests[requests_before:]] == ["tree"]

        # New seed: the changed files (and a stale remote shard's removal) in exactly one commit;
        # only shards the store does not hold yet are uploaded.
        hub.put_lfs(REPO, "data/train-00000-of-00002.parquet", b"old shard")
        build(BuildConfig(src=src, out=folder, seed=99))
        assert cli_main([*push, "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "delete  data/train-00000-of-00002.parquet" in out
        assert len(hub.commits) == 1
        new_shards = {d for d in _parquet(folder).values() if d not in hub.objects}
        assert new_shards  # a new seed reshuffles the splits
        uploads_before = hub.count("lfs-upload")
        assert cli_main(push) == 0
        capsys.readouterr()
        assert len(hub.commits) == 2
        assert ("deletedFile", "data/train-00000-of-00002.parquet") in hub.commits[1]["changed"]
        assert hub.files(REPO) == {**_files(folder), ".gitattributes": GITATTRIBUTES}
        assert hub.count("lfs-upload") == uploads_before + len(new_shards)

        # Back to the first seed: byte-identical shards the store already holds. The batch API
        # says so (no upload action), nothing is PUT, and the commit still points at them.
        build(BuildConfig(src=src, out=folder))
        assert set(_parquet(folder).values()) == set(parquet.values())
        uploads_before, batches_before = hub.count("lfs-upload"), hub.count("lfs-batch")
        assert cli_main(push) == 0
        capsys.readouterr()
        assert len(hub.commits) == 3
        assert hub.count("lfs-batch") == batches_before + 1
        assert hub.count("lfs-upload") == uploads_before
        assert hub.files(REPO) == {**_files(folder), ".gitattributes": GITATTRIBUTES}
        assert set(hub.auth) == {f"Bearer {TOKEN}"}

        # A wrong token: the Hub's 401 becomes a clear error, without the token in it.
        monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_value_42")
        build(BuildConfig(src=src, out=folder, seed=5))
        assert cli_main(push) == 2
        err = capsys.readouterr().err
        assert "refused the push" in err and "hf_wrong_token_value_42" not in err

    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err + caplog.text


def test_rejected_lfs_upload_is_a_clear_error_and_commits_nothing(
    hub_env, tmp_path, monkeypatch, capsys, caplog
):
    """The storage host refuses the bytes (an expired upload URL): a clear error naming the file,
    no traceback, no commit, and neither the token nor the URL's signature shown."""
    caplog.set_level(logging.DEBUG)
    folder = tmp_path / "ds"
    build(BuildConfig(src=make_src(tmp_path / "src", per_topic=6), out=folder))
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        hub.reject_uploads = 403
        assert cli_main(["dataset", "push", "--repo-id", REPO, "--path", str(folder)]) == 2
        assert hub.count("lfs-upload") >= 1 and hub.commits == []
        assert hub.objects == {} and hub.files(REPO) == {".gitattributes": GITATTRIBUTES}
    err = capsys.readouterr().err
    assert "HTTP 403" in err and ".parquet" in err and REPO in err
    assert "Traceback" not in err and TOKEN not in err + caplog.text
    assert not any(sig in err for sig in hub.signed)


def test_connection_lost_at_commit_is_a_clear_error_and_a_rerun_completes(
    hub_env, tmp_path, monkeypatch, capsys
):
    """The connection drops before the commit is answered (huggingface_hub does not retry a
    commit, a retry could commit twice): a clear error naming the Hub, and the rerun commits
    without sending the shards again, since the LFS store already holds them."""
    folder = tmp_path / "ds"
    build(BuildConfig(src=make_src(tmp_path / "src", per_topic=6), out=folder))
    push = ["dataset", "push", "--repo-id", REPO, "--path", str(folder)]
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        hub.drop = {"commit"}
        assert cli_main(push) == 2
        err = capsys.readouterr().err
        assert f"lost the connection to the Hub at {hub.url} while pushing to {REPO}" in err
        assert "Traceback" not in err and TOKEN not in err
        assert hub.commits == [] and hub.count("commit") == 1 and hub.count("lfs-upload") == 3

        hub.drop = set()
        assert cli_main(push) == 0
        assert "pushed 5 file(s)" in capsys.readouterr().out
        assert hub.count("lfs-upload") == 3 and hub.count("lfs-batch") == 2
        assert hub.files(REPO) == {**_files(folder), ".gitattributes": GITATTRIBUTES}


def test_offline_mode_is_a_clear_error(hub_env, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    build(BuildConfig(src=make_src(tmp_path / "src", per_topic=6), out=tmp_path / "ds"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert cli_main(["dataset", "push", "--repo-id", REPO, "--path", str(tmp_path / "ds")]) == 2
    assert "HF_HUB_OFFLINE" in capsys.readouterr().err
    assert (
        cli_main(["dataset", "push", "--repo-id", "no-slash", "--path", str(tmp_path / "ds")]) == 2
    )
    assert "USER/NAME" in capsys.readouterr().err
