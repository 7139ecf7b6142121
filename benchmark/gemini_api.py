"""The Gemini API through google-genai, shared by the dataset's Gemini source
(benchmark/dataset/gemini.py) and the evaluation's LLM judge (benchmark/evaluation/judge.py).

What they share: where the key comes from, the endpoint a request goes to (named in every
error), the client with its timeout and retry settings, and one `generateContent` request whose
failures become clear errors. Retries with exponential backoff on 408/429/5xx and on timeouts
are google-genai's own (HttpRetryOptions); we only configure them. The key travels in a header
(x-goog-api-key), never in a URL, so no error message or log line built here can contain it.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Protocol

from benchmark.errors import UserError

KEY_VARS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
RETRY_STATUS = [408, 429, 500, 502, 503, 504]
API_VERSION = "v1beta"
DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
#: google-genai's own override of the base URL (read here only to name the endpoint in errors)
BASE_URL_ENV = "GOOGLE_GEMINI_BASE_URL"


class ClientSettings(Protocol):
    """What a client needs; GeminiConfig (dataset) and JudgeSettings (evaluation) have it."""

    model: str
    base_url: str | None
    timeout_ms: int
    retry_attempts: int
    retry_initial_delay: float
    retry_max_delay: float
    retry_jitter: float


def find_api_key() -> str | None:
    """The key from GEMINI_API_KEY, else GOOGLE_API_KEY; None when neither is set."""
    for var in KEY_VARS:
        if value := os.environ.get(var, "").strip():
            return value
    return None


def api_key(error: type[UserError], who: str, without: str) -> str:
    """The key, or `error` saying that `who` needs one and what works `without` it."""
    key = find_api_key()
    if key is None:
        raise error(f"{who} needs an API key: set GEMINI_API_KEY (or GOOGLE_API_KEY); {without}")
    return key


def check_settings(cfg: ClientSettings, error: type[UserError], prefix: str) -> None:
    """google-genai reads a timeout of 0 as "no timeout" (a hung reply would block forever) and
    0 attempts as 1; refuse both rather than guess. `prefix` names the settings in the error
    (`gemini.` for the dataset config)."""
    timeout = cfg.timeout_ms
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0:
        raise error(
            f"{prefix}timeout_ms must be a positive number of milliseconds, got {timeout!r}"
        )
    attempts = cfg.retry_attempts
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise error(f"{prefix}retry_attempts must be an integer >= 1, got {attempts!r}")


def endpoint(cfg: ClientSettings) -> str:
    """The URL each request goes to, for error messages (the key travels in a header, not here)."""
    base = cfg.base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL
    return f"{base.rstrip('/')}/{API_VERSION}/models/{cfg.model}:generateContent"


def make_client(cfg: ClientSettings, key: str):
    """A google-genai client with the settings' base URL, timeout and retries."""
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


def transport_errors(kind: str = "TransportError") -> tuple[type[BaseException], ...]:
    """Errors of a request that got no HTTP reply at all (refused, DNS, timeout, TLS), from the
    HTTP library google-genai uses: httpx, or its successor httpx2 in newer releases."""
    found = []
    for name in ("httpx", "httpx2"):
        try:
            found.append(getattr(importlib.import_module(name), kind))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def generate_content(
    client,
    cfg: ClientSettings,
    contents: str,
    config: dict[str, Any],
    error: type[UserError],
    resume: str,
    prefix: str,
    item: str = "",
):
    """One generateContent request; the response, or `error` naming the endpoint (and `item`,
    what the request was for, where given), the cause, the setting to change (`prefix` as in
    check_settings) and `resume` (what a rerun does)."""
    from google.genai import errors

    where = f"the Gemini API at {endpoint(cfg)}" + (f" ({item})" if item else "")
    try:
        return client.models.generate_content(model=cfg.model, contents=contents, config=config)
    except transport_errors("TimeoutException") as exc:
        # google-genai retries timeouts too, so this is the last of retry_attempts tries.
        raise error(
            f"{where} did not answer within {cfg.timeout_ms} ms "
            f"({cfg.retry_attempts} attempt(s), {type(exc).__name__}); {prefix}timeout_ms sets "
            f"the limit. {resume}"
        ) from exc
    except transport_errors() as exc:
        raise error(
            f"could not reach {where} ({type(exc).__name__}: {exc}); "
            f"check the network or {prefix}base_url. {resume}"
        ) from exc
    except errors.APIError as exc:
        # exc carries the HTTP status and the server's message, never the key (sent as a header).
        tries = f" after {cfg.retry_attempts} attempt(s)" if exc.code in RETRY_STATUS else ""
        raise error(f"{where} answered HTTP {exc.code}{tries}: {exc.message}. {resume}") from exc
