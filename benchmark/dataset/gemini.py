"""The Gemini source: one structured-output request per topic, each raw reply cached on disk.

Replies are cached by sha256 of (model, prompt, parameters) the moment they arrive, so a rerun
costs nothing and a crash loses nothing already paid for. Replies that do not parse are reported
and NOT cached, so the next run asks again. Retries with exponential backoff on 408/429/5xx and
on timeouts are google-genai's own (HttpRetryOptions); we only configure them. Every error names
the endpoint, never the key (which travels in a header).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from benchmark.atomic import atomic_write_json
from benchmark.dataset.config import GeminiConfig
from benchmark.dataset.generate import RESPONSE_SCHEMA, Generated, parse_reply, render_prompt
from benchmark.dataset.records import DatasetError
from benchmark.hashing import sha256_json

log = logging.getLogger(__name__)
KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
RETRY_STATUS = [408, 429, 500, 502, 503, 504]
API_VERSION = "v1beta"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"


def api_key() -> str:
    for var in KEY_VARS:
        if value := os.environ.get(var, "").strip():
            return value
    raise DatasetError(
        "the gemini source needs an API key: set GEMINI_API_KEY (or GOOGLE_API_KEY); "
        "the curated source (--source curated) works without one"
    )


def check_config(cfg: GeminiConfig) -> None:
    """google-genai reads a timeout of 0 as "no timeout" (a hung reply would block forever) and
    0 attempts as 1; refuse both rather than guess."""
    if (
        isinstance(cfg.timeout_ms, bool)
        or not isinstance(cfg.timeout_ms, int)
        or cfg.timeout_ms <= 0
    ):
        raise DatasetError(
            f"gemini.timeout_ms must be a positive number of milliseconds, got {cfg.timeout_ms!r}"
        )
    attempts = cfg.retry_attempts
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise DatasetError(f"gemini.retry_attempts must be an integer >= 1, got {attempts!r}")


def endpoint(cfg: GeminiConfig) -> str:
    """The URL each request goes to, for error messages (the key travels in a header, not here)."""
    base = cfg.base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or DEFAULT_BASE_URL
    return f"{base.rstrip('/')}/{API_VERSION}/models/{cfg.model}:generateContent"


def _client(cfg: GeminiConfig, key: str):
    from google import genai
    from google.genai import types

    retry = types.HttpRetryOptions(
        attempts=cfg.retry_attempts,
        initial_delay=cfg.retry_initial_delay,
        max_delay=cfg.retry_max_delay,
        exp_base=2.0,
        jitter=cfg.retry_jitter,
        http_status_codes=RETRY_STATUS,
    )
    http = types.HttpOptions(
        base_url=cfg.base_url, api_version=API_VERSION, retry_options=retry, timeout=cfg.timeout_ms
    )
    return genai.Client(api_key=key, http_options=http)


def _params(cfg: GeminiConfig) -> dict:
    return {
        "temperature": cfg.temperature,
        "response_mime_type": "application/json",
        "response_schema": RESPONSE_SCHEMA,
    }


def cache_key(model: str, prompt: str, params: dict) -> str:
    return sha256_json({"model": model, "prompt": prompt, "params": params})


def _transport_errors(kind: str = "TransportError") -> tuple[type[BaseException], ...]:
    """Errors of a request that got no HTTP reply at all (refused, DNS, timeout, TLS), from the
    HTTP library google-genai uses: httpx, or its successor httpx2 in newer releases."""
    found = []
    for name in ("httpx", "httpx2"):
        try:
            found.append(getattr(importlib.import_module(name), kind))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


RESUME = "Replies received so far are cached; rerunning resumes from there."


def _request(client, cfg: GeminiConfig, prompt: str) -> str:
    from google.genai import errors

    try:
        response = client.models.generate_content(
            model=cfg.model, contents=prompt, config=_params(cfg)
        )
    except _transport_errors("TimeoutException") as exc:
        # google-genai retries timeouts too, so this is the last of retry_attempts tries.
        raise DatasetError(
            f"the Gemini API at {endpoint(cfg)} did not answer within {cfg.timeout_ms} ms "
            f"({cfg.retry_attempts} attempt(s), {type(exc).__name__}); gemini.timeout_ms sets "
            f"the limit. {RESUME}"
        ) from exc
    except _transport_errors() as exc:
        raise DatasetError(
            f"could not reach the Gemini API at {endpoint(cfg)} ({type(exc).__name__}: {exc}); "
            f"check the network or gemini.base_url. {RESUME}"
        ) from exc
    except errors.APIError as exc:
        # exc carries the HTTP status and the server's message, never the key (sent as a header).
        tries = f" after {cfg.retry_attempts} attempt(s)" if exc.code in RETRY_STATUS else ""
        raise DatasetError(
            f"the Gemini API at {endpoint(cfg)} answered HTTP {exc.code}{tries}: {exc.message}. "
            f"{RESUME}"
        ) from exc
    return response.text or ""


def generate(
    src: Path, taxonomy: dict[str, str], topics: list[str], cfg: GeminiConfig, cache_dir: Path
) -> Generated:
    """Pairs for each topic, in topic order (deterministic whatever order the replies arrive)."""
    check_config(cfg)
    params = _params(cfg)
    jobs = []
    for topic in topics:
        prompt = render_prompt(src, topic, taxonomy[topic], cfg.pairs_per_topic)
        key = cache_key(cfg.model, prompt, params)
        jobs.append((topic, prompt, cache_dir / "gemini" / f"{key}.json"))
    missing = [job for job in jobs if not job[2].is_file()]
    replies: dict[str, str] = {}
    for topic, _, path in jobs:
        if path.is_file():
            replies[topic] = json.loads(path.read_text(encoding="utf-8"))["text"]
    log.info("gemini: %d cached replies, %d to request", len(jobs) - len(missing), len(missing))
    out = Generated()
    if missing:
        client = _client(cfg, api_key())

        def run(job):
            topic, prompt, path = job
            text = _request(client, cfg, prompt)
            probe = Generated()
            parse_reply(text, topic=topic, source="x", origin="x", out=probe)
            if probe.records:  # cache only what parses, so a garbled reply is asked for again
                atomic_write_json(
                    path, {"model": cfg.model, "prompt": prompt, "params": params, "text": text}
                )
            return topic, text

        with ThreadPoolExecutor(max_workers=max(1, cfg.max_workers)) as pool:
            futures = [pool.submit(run, job) for job in missing]
            errors = []
            for fut in tqdm(futures, desc="gemini requests", disable=None, leave=False):
                try:
                    topic, text = fut.result()
                    replies[topic] = text
                except DatasetError as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]
    for topic in topics:
        parse_reply(
            replies[topic],
            topic=topic,
            source=f"gemini:{cfg.model}",
            origin=f"gemini:{topic}",
            out=out,
        )
    return out
