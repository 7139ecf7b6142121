"""Keep secrets off the site: scrub secret-named keys from displayed configs and redact
token-shaped strings (and the values of secret environment variables) from every written file."""

from __future__ import annotations

import os
import re
from typing import Any

REDACTED = "[redacted]"
SECRET_ENV_VARS = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HUGGINGFACEHUB_API_TOKEN",
    "HF_API_TOKEN",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "WANDB_API_KEY",
)
# A key is secret when one of its _/-separated words is one of these (so `tokens_seen` and
# `max_new_tokens` are kept, `hf_token`, `api_key`, `client_secret` are not).
_SECRET_KEY = re.compile(
    r"(?:^|[_\-.])(token|api[_\-]?key|apikey|secret|password|passwd|credentials?|auth)(?:$|[_\-.])",
    re.IGNORECASE,
)
_TOKENIZER_KEYS = re.compile(r"^(pad|eos|bos|unk|sep|cls|mask)_token(_id)?$", re.IGNORECASE)
# Token shapes: Hugging Face user tokens, Google API keys, generic sk- keys.
_TOKEN_SHAPES = re.compile(
    r"\bhf_[A-Za-z0-9]{20,}\b|\bAIza[0-9A-Za-z_\-]{30,}|\bsk-[A-Za-z0-9_\-]{20,}"
)
# key=value pairs inside strings such as lm-eval's model_args ("pretrained=x,token=hf_...").
_KV_SECRET = re.compile(
    r"((?:^|[,;\s?&])[A-Za-z_\-]*(?:token|api[_\-]?key|secret|password)[A-Za-z_\-]*\s*[=:]\s*)([^,;\s&]+)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key)) and not _TOKENIZER_KEYS.match(key)


def scrub(obj: Any) -> Any:
    """A copy of `obj` with every secret-named key's value replaced and strings redacted."""
    if isinstance(obj, dict):
        return {
            k: (REDACTED if is_secret_key(str(k)) and v not in (None, "", False) else scrub(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [scrub(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(_KV_SECRET.sub(lambda m: m.group(1) + REDACTED, obj))
    return obj


def _env_secrets() -> list[str]:
    values = {os.environ.get(name, "") for name in SECRET_ENV_VARS}
    return sorted((v for v in values if len(v) >= 8), key=len, reverse=True)


def redact_text(text: str) -> str:
    """Remove token-shaped substrings and the literal values of secret environment variables."""
    for value in _env_secrets():
        if value in text:
            text = text.replace(value, REDACTED)
    if "hf_" in text or "AIza" in text or "sk-" in text:  # skip the regex scan when it cannot match
        text = _TOKEN_SHAPES.sub(REDACTED, text)
    return text
