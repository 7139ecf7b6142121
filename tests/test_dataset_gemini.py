"""The Gemini source through the real google-genai client, against a loopback generateContent server."""

from __future__ import annotations

import json
import logging
import re

import pytest
from dataset_fixtures import make_record, make_src
from gemini_loopback import HANG, ScriptedGemini, reply

from benchmark.dataset.build import build
from benchmark.dataset.config import BuildConfig
from benchmark.errors import UserError

KEY = "test-gemini-key-5f2c9a1d"


def _pairs(topic: str, n: int = 4) -> list[dict]:
    """n distinct pairs (random pseudo-words, so dedup keeps them all)."""
    out = []
    for k in range(n):
        rec = make_record(topic, 500 + k)
        out.append(
            {"question": rec["question"], "answer": rec["answer"], "difficulty": rec["difficulty"]}
        )
    return out


_reply = reply


class FakeGemini(ScriptedGemini):
    """Scripted per topic (the `Topic:` line of the generation prompt); see gemini_loopback."""

    def __init__(self, script: dict[str, list[tuple[int, str]]], hang_s: float = 10.0):
        super().__init__(
            script,
            lambda prompt: re.search(r"^Topic: (\w+)$", prompt, re.M).group(1),
            "topic",
            hang_s=hang_s,
        )


def _cfg(src, tmp_path, url) -> BuildConfig:
    cfg = BuildConfig(
        src=src, out=tmp_path / "ds", sources=["gemini"], cache_dir=tmp_path / "cache"
    )
    cfg.gemini.base_url = url
    cfg.gemini.pairs_per_topic = 4
    cfg.gemini.max_workers = 2
    cfg.gemini.retry_initial_delay = 0.01  # tiny backoff for the test
    cfg.gemini.retry_jitter = 0.0
    return cfg


def test_429_retry_malformed_reply_and_cache(tmp_path, monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    src = make_src(tmp_path / "src", per_topic=3)
    script = {
        "reef_life": [(429, ""), (200, json.dumps(_pairs("reef_life")))],
        "open_ocean": [(200, json.dumps(_pairs("open_ocean")))],
        "tide_pools": [(200, '[{"question": "Why do limpets cling", "answer": ')],  # truncated JSON
    }
    with FakeGemini(script) as server:
        cfg = _cfg(src, tmp_path, server.url)
        report = build(cfg)
        assert server.count("reef_life") == 2  # 429, then success after backoff
        assert server.count("open_ocean") == 1 and server.count("tide_pools") == 1
        first = server.requests[0]
        assert first["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
        assert first["key"] == KEY
        gen = first["body"]["generationConfig"]
        assert gen["responseMimeType"] == "application/json"
        assert gen["responseSchema"]["type"] == "ARRAY"
        assert gen["temperature"] == 0.7

        load = report["steps"][0]
        malformed = [d for d in load["dropped_items"] if d["reason"] == "malformed_reply"]
        assert [d["id"] for d in malformed] == ["gemini:tide_pools"]
        assert "not JSON" in malformed[0]["detail"]
        assert load["kept"] == 8 and report["counts"]["total"] == 8
        assert {t for t in report["counts"]["by_topic"]} == {"reef_life", "open_ocean"}
        import pyarrow.parquet as pq

        rows = pq.read_table(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet").to_pylist()
        assert all(r["source"] == "gemini:gemini-2.5-flash" for r in rows)
        assert (
            len(list((tmp_path / "cache" / "gemini").glob("*.json"))) == 2
        )  # not the malformed one

        # Rerun: cached topics cost nothing; the malformed one is asked again (not cached).
        n_before = len(server.requests)
        again = build(cfg)
        assert server.count("reef_life") == 2 and server.count("open_ocean") == 1
        assert len(server.requests) == n_before + 1 and server.count("tide_pools") == 2
        assert again["build_hash"] == report["build_hash"]
    captured = capsys.readouterr()
    assert KEY not in captured.out + captured.err + caplog.text
    assert KEY not in (tmp_path / "ds" / "build_report.json").read_text()
    assert all(KEY not in p.read_text() for p in (tmp_path / "cache" / "gemini").glob("*.json"))


def test_persistent_error_is_a_clear_user_error_and_keeps_paid_replies(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    src = make_src(tmp_path / "src", per_topic=3)
    script = {
        "reef_life": [(200, json.dumps(_pairs("reef_life")))],
        "open_ocean": [(503, "")],
        "tide_pools": [(200, json.dumps(_pairs("tide_pools")))],
    }
    with FakeGemini(script) as server:
        cfg = _cfg(src, tmp_path, server.url)
        cfg.gemini.retry_attempts = 3
        with pytest.raises(UserError, match="HTTP 503 after 3 attempt") as info:
            build(cfg)
        assert server.count("open_ocean") == 3  # retried with backoff, then gave up
    assert server.url in str(info.value) and KEY not in str(info.value)
    assert not (tmp_path / "ds").exists()  # nothing half-written
    assert len(list((tmp_path / "cache" / "gemini").glob("*.json"))) == 2  # paid replies kept


@pytest.mark.parametrize(
    "failure, expected",
    [
        pytest.param((HANG, ""), r"did not answer within 400 ms \(2 attempt", id="hang"),
        pytest.param(
            (500, ""), r"answered HTTP 500 after 2 attempt\(s\): Internal error", id="500"
        ),
    ],
)
def test_failed_topic_is_a_clear_error_and_a_rerun_resumes(
    tmp_path, monkeypatch, caplog, failure, expected
):
    """A reply that never comes (past gemini.timeout_ms) or a 500 that outlasts the retries: the
    error names the endpoint, the other topics' replies stay cached, and the rerun asks only for
    the failed topic."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    src = make_src(tmp_path / "src", per_topic=3)
    good = {t: [(200, json.dumps(_pairs(t)))] for t in ("reef_life", "open_ocean", "tide_pools")}
    with FakeGemini({**good, "open_ocean": [failure]}) as server:
        cfg = _cfg(src, tmp_path, server.url)
        cfg.gemini.retry_attempts = 2
        cfg.gemini.timeout_ms = 400
        with pytest.raises(UserError, match=expected) as info:
            build(cfg)
        assert server.count("open_ocean") == 2  # the client's own retry, then it gave up
        assert server.count("reef_life") == 1 and server.count("tide_pools") == 1
    message = str(info.value)
    assert f"{server.url}/v1beta/models/gemini-2.5-flash:generateContent" in message
    assert "rerunning resumes" in message and KEY not in message + caplog.text
    assert not (tmp_path / "ds").exists()
    assert len(list((tmp_path / "cache" / "gemini").glob("*.json"))) == 2

    with FakeGemini(good) as healthy:  # a new port: nothing cached depends on the endpoint
        cfg.gemini.base_url = healthy.url
        report = build(cfg)
        assert [r["topic"] for r in healthy.requests] == ["open_ocean"]
    assert report["counts"]["total"] == 12
    assert set(report["counts"]["by_topic"]) == {"reef_life", "open_ocean", "tide_pools"}
    assert len(list((tmp_path / "cache" / "gemini").glob("*.json"))) == 3


@pytest.mark.parametrize("key, value", [("timeout_ms", 0), ("retry_attempts", 0)])
def test_bad_timeout_or_attempts_is_a_clear_error_naming_the_key(tmp_path, monkeypatch, key, value):
    """google-genai would read timeout 0 as "wait forever" and 0 attempts as 1: refuse, say which."""
    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    cfg = _cfg(make_src(tmp_path / "src", per_topic=3), tmp_path, "http://127.0.0.1:9")
    setattr(cfg.gemini, key, value)
    with pytest.raises(UserError, match=f"gemini.{key} must be"):
        build(cfg)
    assert not (tmp_path / "ds").exists()


def test_unreachable_endpoint_is_a_clear_user_error(tmp_path, monkeypatch):
    """Nothing listens on the port: the connection error names the endpoint, never the key."""
    import socket

    monkeypatch.setenv("GEMINI_API_KEY", KEY)
    with socket.socket() as sock:  # a port that was free a moment ago and is closed now
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    cfg = _cfg(make_src(tmp_path / "src", per_topic=3), tmp_path, url)
    cfg.gemini.retry_attempts = 1
    with pytest.raises(UserError, match="could not reach the Gemini API") as info:
        build(cfg)
    assert url in str(info.value) and KEY not in str(info.value)
    assert not (tmp_path / "ds").exists()


def test_no_key_is_a_clear_error_and_curated_still_builds(tmp_path, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    src = make_src(tmp_path / "src", per_topic=6)
    cfg = BuildConfig(
        src=src, out=tmp_path / "ds", sources=["curated", "gemini"], cache_dir=tmp_path / "c"
    )
    with pytest.raises(UserError, match="GEMINI_API_KEY"):
        build(cfg)
    assert not (tmp_path / "ds").exists()
    report = build(BuildConfig(src=src, out=tmp_path / "ds"))
    assert report["counts"]["total"] == 18
