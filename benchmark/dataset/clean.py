"""The clean step: normalise text, then reject records no model should be trained on."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

from benchmark.dataset.config import CleanConfig
from benchmark.dataset.records import QARecord
from benchmark.dataset.step_report import StepReport

# Chat-template control tokens of the common families (ChatML, Llama 2/3, Gemma, Mistral, GPT-2).
CONTROL_TOKEN = re.compile(
    r"<\|[a-z_]+(\|>|>)|</?s>|\[/?INST\]|<</?SYS>>|<(start|end)_of_turn>|<\|endoftext\|>",
    re.IGNORECASE,
)
REFUSAL = re.compile(
    r"\bas an ai\b|\bas a (large )?language model\b|\bi(?: a|')m (sorry|unable)\b|"
    r"\bi cannot (help|answer|provide)\b|\bi can't (help|answer|provide)\b",
    re.IGNORECASE,
)
# A sentence ends at . ! or ? followed by a space and a capital/digit; common abbreviations don't.
_SENTENCE_END = re.compile(
    r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)(?<!\bca)(?<!\bc)[.!?]\s+(?=[A-Z0-9])"
)
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        "the a an of and or to in on at by for with from is are was were be been being it its this "
        "that these those what which who whom whose why how when where do does did can could would "
        "should their they them there than then as into so such not no yes",
    )
)


def normalise_text(text: str) -> str:
    """Unicode NFC and single spaces: the form every later step (and the model) sees."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def count_sentences(text: str) -> int:
    return len(_SENTENCE_END.split(text.strip()))


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS and len(w) > 2}


def rejection(rec: QARecord, cfg: CleanConfig) -> tuple[str, str] | None:
    """(reason, detail) when `rec` must go, else None."""
    for name in ("question", "answer"):
        text = getattr(rec, name)
        if m := CONTROL_TOKEN.search(text):
            return "chat_control_token", f"{name} contains {m.group(0)!r}"
        if m := REFUSAL.search(text):
            return "refusal", f"{name} contains {m.group(0)!r}"
    q, a = len(rec.question), len(rec.answer)
    if not cfg.min_question_chars <= q <= cfg.max_question_chars:
        return (
            "question_length",
            f"{q} chars (bounds {cfg.min_question_chars}-{cfg.max_question_chars})",
        )
    if not cfg.min_answer_chars <= a <= cfg.max_answer_chars:
        return "answer_length", f"{a} chars (bounds {cfg.min_answer_chars}-{cfg.max_answer_chars})"
    sentences = count_sentences(rec.answer)
    if sentences > cfg.max_answer_sentences:
        return "answer_sentences", f"{sentences} sentences (max {cfg.max_answer_sentences})"
    new_words = content_words(rec.answer) - content_words(rec.question)
    if len(new_words) < cfg.min_new_answer_words:
        return "answer_restates_question", "the answer adds no word the question lacks"
    return None


def clean(records: list[QARecord], cfg: CleanConfig) -> tuple[list[QARecord], StepReport]:
    report = StepReport("clean", input=len(records))
    fields = ("question", "answer", "source", "id")
    normalised = [
        replace(rec, **{k: normalise_text(getattr(rec, k)) for k in fields}) for rec in records
    ]
    return report.keep(normalised, [rejection(rec, cfg) for rec in normalised]), report
