"""`dataset push` through the real huggingface_hub client, over HTTP, to a loopback Hub-API server."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import pytest
from dataset_fixtures import make_src

from benchmark.cli import main as cli_main
from benchmark.dataset.build import build
from benchmark.dataset.config import BuildConfig

TOKEN = "hf_testtoken_0123456789abcdef"
REPO = "marine-user/marine-qa"


class FakeHub:
    """Just the Hub endpoints create_repo / list_repo_tree / create_commit use, in memory."""

    def __init__(self):
        self.repos: dict[str, dict[str, bytes]] = {}
        self.commits: list[dict] = []
        self.auth: list[str | None] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, payload, headers=None):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _authorised(self) -> bool:
                got = self.headers.get("Authorization")
                owner.auth.append(got)
                if got != f"Bearer {TOKEN}":
                    self._send(401, {"error": "Invalid credentials"})
                    return False
                return True

            def _repo(self, parts):
                repo_id = f"{parts[2]}/{parts[3]}"
                if repo_id not in owner.repos:
                    self._send(
                        404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
                    )
                    return None, None
                return repo_id, owner.repos[repo_id]

            def do_GET(self):
                if not self._authorised():
                    return
                parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
                # /api/datasets/{ns}/{name}/tree/{rev}
                if parts[:2] == ["api", "datasets"] and len(parts) >= 6 and parts[4] == "tree":
                    repo_id, files = self._repo(parts)
                    if repo_id is None:
                        return
                    listing = []
                    for path in sorted(files):
                        data = files[path]
                        oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                        listing.append(
                            {"type": "file", "path": path, "size": len(data), "oid": oid}
                        )
                    return self._send(200, listing)
                if parts[:2] == ["api", "datasets"] and len(parts) >= 4:  # repo_info
                    repo_id, files = self._repo(parts)
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

            def do_POST(self):
                if not self._authorised():
                    return
                body = self._body()
                parts = [unquote(p) for p in urlparse(self.path).path.strip("/").split("/")]
                if parts == ["api", "repos", "create"]:
                    req = json.loads(body)
                    assert req["type"] == "dataset"
                    repo_id = f"{req['organization']}/{req['name']}"
                    if repo_id in owner.repos:
                        return self._send(
                            409,  # the real Hub also answers the repo's url here
                            {
                                "error": "You already created this dataset repo",
                                "url": f"{owner.url}/datasets/{repo_id}",
                            },
                        )
                    owner.repos[repo_id] = {}
                    return self._send(200, {"url": f"{owner.url}/datasets/{repo_id}"})
                if parts == ["api", "validate-yaml"]:
                    return self._send(200, {"errors": [], "warnings": []})
                if parts[:2] == ["api", "datasets"] and len(parts) >= 6 and parts[4] == "preupload":
                    repo_id, files = self._repo(parts)
                    if repo_id is None:
                        return
                    out = []
                    for f in json.loads(body)["files"]:
                        data = files.get(f["path"])
                        oid = (
                            hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                            if data is not None
                            else None
                        )
                        out.append(
                            {
                                "path": f["path"],
                                "uploadMode": "regular",
                                "shouldIgnore": False,
                                "oid": oid,
                            }
                        )
                    return self._send(200, {"files": out})
                if parts[:2] == ["api", "datasets"] and len(parts) >= 6 and parts[4] == "commit":
                    repo_id, files = self._repo(parts)
                    if repo_id is None:
                        return
                    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                    assert lines[0]["key"] == "header"
                    changed = []
                    for item in lines[1:]:
                        value = item["value"]
                        if item["key"] == "file":
                            assert value["encoding"] == "base64"
                            files[value["path"]] = base64.b64decode(value["content"])
                        elif item["key"] == "deletedFile":
                            del files[value["path"]]
                        else:
                            raise AssertionError(f"unexpected commit operation {item['key']}")
                        changed.append((item["key"], value["path"]))
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
                self._send(404, {"error": f"unexpected POST {self.path}"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    """No ambient token; HTTP to the Hub allowed (the suite runs with HF_HUB_OFFLINE=1)."""
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def _files(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
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
        assert hub.repos[REPO] == _files(folder)

        # Unchanged data: no new commit.
        assert cli_main(push) == 0
        assert "up to date" in capsys.readouterr().out
        assert len(hub.commits) == 1

        # New seed: the changed files (and a stale remote shard's removal) in exactly one commit.
        hub.repos[REPO]["data/train-00000-of-00002.parquet"] = b"old shard"
        build(BuildConfig(src=src, out=folder, seed=99))
        assert cli_main([*push, "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "delete  data/train-00000-of-00002.parquet" in out
        assert len(hub.commits) == 1
        assert cli_main(push) == 0
        capsys.readouterr()
        assert len(hub.commits) == 2
        assert ("deletedFile", "data/train-00000-of-00002.parquet") in hub.commits[1]["changed"]
        assert hub.repos[REPO] == _files(folder)
        assert set(hub.auth) == {f"Bearer {TOKEN}"}

        # A wrong token: the Hub's 401 becomes a clear error, without the token in it.
        monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_value_42")
        build(BuildConfig(src=src, out=folder, seed=5))
        assert cli_main(push) == 2
        err = capsys.readouterr().err
        assert "refused the push" in err and "hf_wrong_token_value_42" not in err

    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err + caplog.text


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
