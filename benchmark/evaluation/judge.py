"""The optional LLM judge of factual correctness: `marinebench evaluate --judge gemini`.

Each generated answer is graded against its reference answer as CORRECT, INCORRECT or
NOT_ATTEMPTED: the scheme of SimpleQA's grader (Wei et al. 2024, "Measuring short-form
factuality in large language models"), with a prompt written for this project's long-form marine
answers. The grade comes from Gemini through google-genai with structured output (a JSON object:
a short reason, then a verdict from an enum) at temperature 0. Each generation task's score rows
then carry two more per-sample metrics, `judge_correct` and `judge_not_attempted` (1 or 0), so
the summary gives their means, CIs and paired tests like any other metric.

Every verdict is cached on disk the moment it arrives, as build/judge_cache/<sha256>.json, keyed
by the hash of (question, reference, answer, judge model, prompt, generation parameters): a rerun
asks nothing already judged, and a change of judge model or prompt asks again. A reply that is not
a valid verdict is an error naming the item and the endpoint, and is not cached. The judge never
runs without a key and is never part of the offline default: only `--judge` starts it.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmark import gemini_api, paths
from benchmark.atomic import atomic_write_json
from benchmark.contracts.results import GENERATION_TASKS
from benchmark.errors import UserError
from benchmark.hashing import sha256_json

log = logging.getLogger(__name__)

#: the judges `--judge` accepts
PROVIDERS = ("gemini",)
DEFAULT_MODEL = "gemini-2.5-flash"
#: SimpleQA's grades; the order is the one reports use
VERDICTS = ("CORRECT", "INCORRECT", "NOT_ATTEMPTED")
#: the per-sample metrics the judge adds (registered in contracts/results.py)
CORRECT_METRIC = "judge_correct"
NOT_ATTEMPTED_METRIC = "judge_not_attempted"
#: greedy: the same prompt should get the same grade (the cache makes reruns exact regardless)
TEMPERATURE = 0.0
CACHE_DIR = "judge_cache"

RESPONSE_SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "reason": {
            "type": "STRING",
            "description": "One or two sentences: the reference's essential facts and what the "
            "answer does with them.",
        },
        "verdict": {"type": "STRING", "enum": list(VERDICTS)},
    },
    "required": ["reason", "verdict"],
    # The reason first, so the verdict is written after it.
    "propertyOrdering": ["reason", "verdict"],
}

#: Adapted from SimpleQA's grader template (openai/simple-evals), in our own words, for answers
#: of a few sentences against a reference of one to three sentences. Placeholders: {question},
#: {reference}, {answer}; no other braces.
GRADER_PROMPT = """\
You grade answers to marine-biology questions. You are given a question, a reference answer
that is correct, and an answer to grade. Compare the answer with the reference and give it
exactly one grade: CORRECT, INCORRECT or NOT_ATTEMPTED.

What counts
- The reference may say more than the question asks. Its essential facts are the ones that
  answer the question itself; background, examples and elaboration in the reference are not
  essential, and the answer need not repeat them.
- Grade against the reference, not against your own knowledge. A statement in the answer that
  the reference neither supports nor contradicts does not change the grade.
- Judge meaning, not wording: paraphrases, synonyms, the common or the scientific name of the
  same organism, small spelling slips, another order and other units for the same value are all
  the same fact. Do not ask for details that follow plainly from the question.
- Numbers must match the reference to the precision the reference gives them. A vague range in
  place of a stated number ("a few hundred metres" for "about 200 m") gives the number no value:
  treat it as not given.

CORRECT: the answer states every essential fact of the reference and nothing in it contradicts
the reference. Hedged wording ("probably", "I think") is fine as long as the essential facts are
given as the answer. Extra detail is fine as long as it agrees with the reference.

INCORRECT: a statement in the answer contradicts an essential fact of the reference, even when
it is hedged, and even when the right fact is also stated somewhere else (an answer that asserts
both is wrong). Also INCORRECT: several candidates offered where one of them is wrong ("either A
or B"); only part of what the question asks for, presented as the whole answer; a number that
does not match the reference at its precision.

NOT_ATTEMPTED: the essential facts of the reference are not in the answer, and nothing in the
answer contradicts them. This covers refusals and "I don't know", answers that only restate the
question or stay in generalities, answers cut off before they reach the point, and partial
answers that say they are unsure of, or cannot give, the rest.

Examples, for the question "Why do corals bleach when the sea warms?" with the reference "Heat
stress makes corals expel the symbiotic algae (zooxanthellae) living in their tissue; the algae
give corals their colour and most of their food, so the white skeleton shows through.":
- "In warm water the coral gets stressed and throws out the tiny algae in its tissue, so it
  turns white and starts to starve." CORRECT: the expelled algae, in other words.
- "Maybe because the algae leave, or maybe because warm water dissolves the coloured skeleton."
  INCORRECT: one of the two candidates contradicts the reference.
- "Warm water kills the coral's skeleton, which turns white." INCORRECT: contradicts the cause.
- "Corals bleach because the water gets too hot for them." NOT_ATTEMPTED: it restates the
  question and never says what happens.
- "Corals are delicate animals and many things affect their colour; I am not sure which one
  matters here." NOT_ATTEMPTED.

Give a reason of one or two sentences naming the essential facts and what the answer does with
them, then the grade.

<question>
{question}
</question>

<reference>
{reference}
</reference>

<answer>
{answer}
</answer>
"""

RESUME = "Verdicts received so far are cached; rerunning asks only for the rest."


class JudgeError(UserError):
    """The judge cannot run (no key, bad settings) or gave no valid verdict for an item."""


@dataclass(frozen=True)
class JudgeSettings:
    """Which judge, and how to reach it. `fingerprint()` is what decides the verdicts."""

    provider: str = "gemini"
    model: str = DEFAULT_MODEL
    prompt: str = GRADER_PROMPT
    max_workers: int = 8
    retry_attempts: int = 6
    retry_initial_delay: float = 2.0  # seconds; doubles per retry (exponential backoff)
    retry_max_delay: float = 60.0
    retry_jitter: float = 1.0
    base_url: str | None = None  # tests point this at a loopback server
    timeout_ms: int = 120_000
    cache_dir: Path | None = None  # None = build/judge_cache

    def params(self) -> dict[str, Any]:
        return {
            "temperature": TEMPERATURE,
            "response_mime_type": "application/json",
            "response_schema": RESPONSE_SCHEMA,
        }

    def fingerprint(self) -> dict[str, str]:
        """What decides a verdict besides the item: part of the evaluate stage's fingerprint and
        of every verdict's cache key (the endpoint, workers and retries decide nothing)."""
        return {
            "provider": self.provider,
            "model": self.model,
            "prompt_sha256": sha256_json(self.prompt),
            "params_sha256": sha256_json(self.params()),
        }

    def cache_root(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir is not None else paths.build_dir() / CACHE_DIR


@dataclass(frozen=True)
class Item:
    """One answer to grade; `name` says which in errors (model, task, document; or file:line)."""

    name: str
    question: str
    reference: str
    answer: str


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reason: str


def check_settings(settings: JudgeSettings) -> None:
    if settings.provider not in PROVIDERS:
        raise JudgeError(
            f"unknown judge {settings.provider!r}; choose one of {', '.join(PROVIDERS)}"
        )
    gemini_api.check_settings(settings, JudgeError, "judge.")
    workers = settings.max_workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise JudgeError(f"judge.max_workers must be an integer >= 1, got {workers!r}")
    try:
        render(settings.prompt, Item("", "q", "r", "a"))
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise JudgeError(
            "the judge prompt must hold {question}, {reference} and {answer} and no other "
            f"braces ({type(exc).__name__}: {exc})"
        ) from None
    missing = [
        f for f in ("question", "reference", "answer") if "{" + f + "}" not in settings.prompt
    ]
    if missing:
        raise JudgeError(f"the judge prompt has no {{{missing[0]}}} field to fill in")


def render(prompt: str, item: Item) -> str:
    return prompt.format(question=item.question, reference=item.reference, answer=item.answer)


def cache_key(item: Item, settings: JudgeSettings) -> str:
    """sha256 of (question, reference, answer, judge model, prompt, generation parameters)."""
    return sha256_json(
        {
            "question": item.question,
            "reference": item.reference,
            "answer": item.answer,
            "model": settings.model,
            "prompt": settings.prompt,
            "params": settings.params(),
        }
    )


def parse_verdict(text: str) -> Verdict:
    """The verdict of one structured-output reply; ValueError saying what is wrong with it."""
    snippet = text.strip()[:120].replace("\n", " ")
    if not text.strip():
        raise ValueError("an empty reply")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg}): {snippet!r}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object: {snippet!r}")
    verdict, reason = obj.get("verdict"), obj.get("reason", "")
    if not isinstance(verdict, str) or verdict.strip() not in VERDICTS:
        raise ValueError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    if not isinstance(reason, str):
        raise ValueError(f"reason {reason!r} is not a string")
    return Verdict(verdict.strip(), reason.strip())


def _finish_reason(response) -> str:
    """Why a reply holds no usable text, where the API says: the candidate's finish reason
    (MAX_TOKENS, SAFETY, ...) or, with no candidate at all, why the prompt was blocked."""
    candidates = getattr(response, "candidates", None) or []
    if candidates:
        reason = getattr(candidates[0], "finish_reason", None)
        return f" (finish reason {getattr(reason, 'name', reason)})" if reason else ""
    blocked = getattr(getattr(response, "prompt_feedback", None), "block_reason", None)
    return f" (prompt blocked: {getattr(blocked, 'name', blocked)})" if blocked else ""


def _usage(response) -> dict[str, int]:
    meta = getattr(response, "usage_metadata", None)
    names = ("prompt_token_count", "candidates_token_count", "thoughts_token_count")
    return {name: int(getattr(meta, name, None) or 0) for name in names}


@dataclass
class JudgeStats:
    """What one judge did, for the run's manifest and the log."""

    answers: int = 0
    unique: int = 0
    cached: int = 0
    requested: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    """Tokens of the verdicts and of the model's thinking (both are billed as output)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def as_dict(self) -> dict[str, int]:
        return {
            "answers": self.answers,
            "unique": self.unique,
            "cached": self.cached,
            "requested": self.requested,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
        }


class GeminiJudge:
    """Grades items through the Gemini API, every verdict cached.

    Constructing one checks the settings and reads the key (GEMINI_API_KEY or GOOGLE_API_KEY),
    so a missing key is an error before any other work. Called on a run's score rows (the hook
    `marinebench evaluate` gives the runner), it returns them with the judge's metrics added.
    """

    def __init__(self, settings: JudgeSettings | None = None):
        self.settings = settings or JudgeSettings()
        check_settings(self.settings)
        self._key = gemini_api.api_key(
            JudgeError,
            "the Gemini judge (--judge gemini)",
            "nothing else in MarineBench needs one (evaluate without --judge is offline)",
        )
        self._client = None
        self.stats = JudgeStats()

    @property
    def record(self) -> dict[str, Any]:
        """The judge as the results manifest records it: what decides the verdicts, the scheme,
        and what the last calls did (answers, cache hits, requests, tokens)."""
        return {
            **self.settings.fingerprint(),
            "scheme": "SimpleQA grades: " + ", ".join(VERDICTS),
            "metrics": [CORRECT_METRIC, NOT_ATTEMPTED_METRIC],
            "temperature": TEMPERATURE,
            **self.stats.as_dict(),
        }

    def __call__(self, scores: dict[str, list[dict]]) -> dict[str, list[dict]]:
        return add_judge_metrics(scores, self)

    # --- grading -------------------------------------------------------------------------------

    def judge(self, items: list[Item]) -> list[Verdict]:
        """A verdict per item, in order: from the cache where judged before, else asked (each
        distinct (question, reference, answer) once, `max_workers` at a time)."""
        s = self.settings
        keys = [cache_key(item, s) for item in items]
        unique: dict[str, Item] = {}
        for key, item in zip(keys, items, strict=True):
            unique.setdefault(key, item)
        verdicts: dict[str, Verdict] = {}
        for key in unique:
            cached = self._read(key)
            if cached is not None:
                verdicts[key] = cached
        missing = [(key, item) for key, item in unique.items() if key not in verdicts]
        self.stats.answers += len(items)
        self.stats.unique += len(unique)
        self.stats.cached += len(unique) - len(missing)
        log.info(
            "judge %s: %d answers, %d distinct, %d verdicts cached, %d to ask",
            s.model,
            len(items),
            len(unique),
            len(unique) - len(missing),
            len(missing),
        )
        if missing:
            self._ask(missing, verdicts)
            log.info(
                "judge %s: asked %d; tokens so far %d in, %d out (thinking included)",
                s.model,
                len(missing),
                self.stats.prompt_tokens,
                self.stats.output_tokens,
            )
        return [verdicts[key] for key in keys]

    def _path(self, key: str) -> Path:
        return self.settings.cache_root() / f"{key}.json"

    def _read(self, key: str) -> Verdict | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return parse_verdict(json.dumps({"verdict": data["verdict"], "reason": data["reason"]}))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("judge cache %s is unreadable (%s); asking again", path, exc)
            return None

    def _ask(self, missing: list[tuple[str, Item]], verdicts: dict[str, Verdict]) -> None:
        if self._client is None:
            self._client = gemini_api.make_client(self.settings, self._key)
        with ThreadPoolExecutor(max_workers=self.settings.max_workers) as pool:
            futures = {pool.submit(self._ask_one, key, item): key for key, item in missing}
            try:
                for fut in tqdm(
                    as_completed(futures),
                    total=len(futures),
                    desc=f"judge {self.settings.model}",
                    disable=None,
                    leave=False,
                ):
                    verdicts[futures[fut]] = fut.result()
            except BaseException:
                # Stop asking; requests in flight finish (their verdicts are cached) first.
                for fut in futures:
                    fut.cancel()
                raise

    def _ask_one(self, key: str, item: Item) -> Verdict:
        s = self.settings
        response = gemini_api.generate_content(
            self._client,
            s,
            render(s.prompt, item),
            s.params(),
            JudgeError,
            RESUME,
            "judge.",
            item=f"judging {item.name}",
        )
        text = response.text or ""
        try:
            verdict = parse_verdict(text)
        except ValueError as exc:
            raise JudgeError(
                f"the Gemini judge at {gemini_api.endpoint(s)} gave no valid verdict for "
                f"{item.name}: {exc}{_finish_reason(response)}. The reply was not cached; "
                f"{RESUME}"
            ) from None
        usage = _usage(response)
        atomic_write_json(
            self._path(key),
            {
                "question": item.question,
                "reference": item.reference,
                "answer": item.answer,
                **s.fingerprint(),
                "verdict": verdict.verdict,
                "reason": verdict.reason,
                "usage": usage,
            },
        )
        with self.stats.lock:
            self.stats.requested += 1
            self.stats.prompt_tokens += usage["prompt_token_count"]
            self.stats.output_tokens += (
                usage["candidates_token_count"] + usage["thoughts_token_count"]
            )
        return verdict


# --- the judge's metrics in a run's score rows ------------------------------------------------


def judged_rows(scores: dict[str, list[dict]]) -> list[tuple[str, int]]:
    """(model, row index) of every score row the judge grades: a generation task's row with an
    answer and a reference (contracts/results.py's GENERATION_TASKS; `--data` runs are marine_qa)."""
    return [
        (model, i)
        for model, rows in scores.items()
        for i, row in enumerate(rows)
        if row["task"] in GENERATION_TASKS
        and row.get("prediction") is not None
        and row.get("reference") is not None
    ]


def add_judge_metrics(scores: dict[str, list[dict]], judge: GeminiJudge) -> dict[str, list[dict]]:
    """Copies of a run's score rows (contracts.results.ScoreRecord, by model) in which every
    judged row's metrics gain judge_correct and judge_not_attempted (1.0 or 0.0); other rows are
    copied unchanged. The rows hold everything the judge reads (question, reference, prediction),
    so lm-eval's samples are not needed. The input is not modified (it is the evaluation cache's)."""
    targets = judged_rows(scores)
    items = []
    for model, i in targets:
        row = scores[model][i]
        items.append(
            Item(
                name=f"model {model}, task {row['task']}, doc {row['doc_id']} (id {row['id']})",
                question=row["question"],
                reference=row["reference"],
                answer=row["prediction"],
            )
        )
    verdicts = judge.judge(items)
    out = {
        model: [{**row, "metrics": dict(row["metrics"])} for row in rows]
        for model, rows in scores.items()
    }
    for (model, i), v in zip(targets, verdicts, strict=True):
        out[model][i]["metrics"][CORRECT_METRIC] = float(v.verdict == "CORRECT")
        out[model][i]["metrics"][NOT_ATTEMPTED_METRIC] = float(v.verdict == "NOT_ATTEMPTED")
    return out
