"""What the generated sources share: the prompt, the reply schema, and parsing untrusted replies.

A generator's reply is untrusted text: a reply that is not the JSON asked for, or an item that
lacks a field, is dropped and reported (never a crash, never silently kept).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.dataset.records import DIFFICULTIES, QARecord

PROMPT_FILE = Path("prompts") / "generate_qa.txt"

RESPONSE_SCHEMA = {
    "type": "ARRAY",
    "items": {
        "type": "OBJECT",
        "properties": {
            "question": {"type": "STRING"},
            "answer": {"type": "STRING"},
            "difficulty": {"type": "STRING", "enum": list(DIFFICULTIES)},
        },
        "required": ["question", "answer", "difficulty"],
        "propertyOrdering": ["question", "answer", "difficulty"],
    },
}


@dataclass
class Generated:
    """Records from one source plus what was dropped on the way ({"id", "reason", "detail"})."""

    records: list[QARecord] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)

    def drop(self, item_id: str, reason: str, detail: str) -> None:
        self.dropped.append({"id": item_id, "reason": reason, "detail": detail})


def render_prompt(src: Path, topic: str, description: str, n: int) -> str:
    template = (src / PROMPT_FILE).read_text(encoding="utf-8")
    return template.format(topic=topic, description=description, n=n)


def _json_payload(text: str) -> str:
    """The JSON inside a reply: strip a ```json fence or prose around the outermost [...]."""
    text = text.strip()
    if fence := re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL):
        return fence.group(1).strip()
    start, end = text.find("["), text.rfind("]")
    if start != -1 and end > start:
        return text[start : end + 1]
    return text


def parse_reply(text: str, *, topic: str, source: str, origin: str, out: Generated) -> None:
    """Append the valid items of one reply to `out.records`; report the rest in `out.dropped`."""
    try:
        items = json.loads(_json_payload(text))
    except json.JSONDecodeError as exc:
        snippet = text.strip()[:80].replace("\n", " ")
        out.drop(origin, "malformed_reply", f"not JSON ({exc.msg}): {snippet!r}")
        return
    if isinstance(items, dict):  # some models wrap the array: {"pairs": [...]}
        items = next((v for v in items.values() if isinstance(v, list)), [items])
    if not isinstance(items, list):
        out.drop(origin, "malformed_reply", "not a JSON array")
        return
    for k, item in enumerate(items):
        item_id = f"{origin}#{k}"
        if not isinstance(item, dict):
            out.drop(item_id, "malformed_item", "not an object")
            continue
        values = {key: item.get(key) for key in ("question", "answer", "difficulty")}
        bad = [key for key, v in values.items() if not isinstance(v, str) or not v.strip()]
        if bad:
            out.drop(item_id, "malformed_item", f"missing or empty {', '.join(bad)}")
            continue
        difficulty = values["difficulty"].strip().lower()
        if difficulty not in DIFFICULTIES:
            out.drop(item_id, "malformed_item", f"difficulty {difficulty!r}")
            continue
        digest = hashlib.sha256(values["question"].encode()).hexdigest()[:12]
        out.records.append(
            QARecord(
                id=f"{source.split(':')[0]}-{topic}-{digest}",
                topic=topic,
                difficulty=difficulty,
                question=values["question"],
                answer=values["answer"],
                source=source,
            )
        )
