"""The Gemini source: one structured-output request per topic, each raw reply cached on disk.

Replies are cached by sha256 of (model, prompt, parameters) the moment they arrive, so a rerun
costs nothing and a crash loses nothing already paid for. Replies that do not parse are reported
and NOT cached, so the next run asks again. Retries with exponential backoff on 408/429/5xx and
on timeouts are google-genai's own (HttpRetryOptions); we only configure them. Every error names
the endpoint, never the key (which travels in a header). The key, client, endpoint and request
errors are shared with the evaluation's LLM judge (benchmark/gemini_api.py).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from benchmark import gemini_api
from benchmark.atomic import atomic_write_json
from benchmark.dataset.config import GeminiConfig
from benchmark.dataset.generate import RESPONSE_SCHEMA, Generated, parse_reply, render_prompt
from benchmark.dataset.records import DatasetError
from benchmark.hashing import sha256_json

log = logging.getLogger(__name__)


def api_key() -> str:
    """The key from GEMINI_API_KEY or GOOGLE_API_KEY, or a DatasetError saying how to set one."""
    return gemini_api.api_key(
        DatasetError, "the gemini source", "the curated source (--source curated) works without one"
    )


def check_config(cfg: GeminiConfig) -> None:
    """Refuse a timeout or attempt count google-genai would misread (gemini_api.check_settings)."""
    gemini_api.check_settings(cfg, DatasetError, "gemini.")


def endpoint(cfg: GeminiConfig) -> str:
    """The URL each request goes to, for error messages (the key travels in a header, not here)."""
    return gemini_api.endpoint(cfg)


def _params(cfg: GeminiConfig) -> dict:
    return {
        "temperature": cfg.temperature,
        "response_mime_type": "application/json",
        "response_schema": RESPONSE_SCHEMA,
    }


def cache_key(model: str, prompt: str, params: dict) -> str:
    return sha256_json({"model": model, "prompt": prompt, "params": params})


RESUME = "Replies received so far are cached; rerunning resumes from there."


def _request(client, cfg: GeminiConfig, prompt: str) -> str:
    response = gemini_api.generate_content(
        client, cfg, prompt, _params(cfg), DatasetError, RESUME, "gemini."
    )
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
        client = gemini_api.make_client(cfg, api_key())

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
