"""Markdown cards (dataset / adapter README.md) to safe HTML.

markdown-it-py (already installed as a rich dependency) with raw HTML disabled, so HTML in a
card shows as text, and images disabled, so a card can never make the page fetch a URL.
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from markupsafe import Markup

_MD = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table").disable("image")


def split_front_matter(text: str) -> tuple[str, str]:
    """(YAML front matter, body) of a Hugging Face card; front matter is '' when absent."""
    if text.startswith("---\n") or text.startswith("---\r\n"):
        end = text.find("\n---", 3)
        if end != -1:
            after = text.find("\n", end + 4)
            body = "" if after == -1 else text[after + 1 :]
            return text[4:end].strip("\r\n"), body
    return "", text


def render_markdown(text: str) -> dict[str, object]:
    front, body = split_front_matter(text)
    return {"front_matter": front, "html": Markup(_MD.render(body))}
