"""A results run folder (`build/results/<run>/`): written by `marinebench evaluate`, read by the
site and the README report; plus the registry of the tasks and metrics it holds and the record
of one per-sample score.

    <run>/manifest.json                       what was evaluated, on which data, how
    <run>/summary.json                        mean + 95% CI per model/task/metric; paired tests
    <run>/scores.jsonl                        one ScoreRecord per (model, task, document)
    <run>/lm_eval/<model>/results.json        lm-eval's results, as its tracker writes them
    <run>/lm_eval/<model>/samples_<task>.jsonl  lm-eval's logged samples
    <run>/training/<adapter>/                 the adapter's training record (adapter.py's
                                              TRAINING_RECORD_FILES), copied at evaluation

Adding a metric or a task: its scorer (benchmark/scorers.py) and its task files (tasks/) compute
it; its entry below names it, orders it, gives its direction and says what it measures. No
other module lists metrics or tasks.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.json"
SUMMARY_FILE = "summary.json"
SCORES_FILE = "scores.jsonl"
LM_EVAL_DIR = "lm_eval"
LM_EVAL_RESULTS_FILE = "results.json"
TRAINING_DIR = "training"
#: the evaluation cache under the results root (a dot-folder: it holds no run to show)
CACHE_DIR = ".cache"
#: the model name of the base model in every file of a run (adapters go by their folder name)
BASE = "base"
#: key of a per-sample score inside a metric's record in lm-eval's logged samples (see
#: `sample_scores`); tasks/utils.py writes it, the runner reads it
SCORE_KEY = "score"
#: summary.json key, present when the evaluation was asked to compare with more models than the
#: base (`evaluate --compare-to`): {reference: {model: {task: {metric: paired comparison}}}}
REFERENCE_COMPARISONS_KEY = "reference_comparisons"


def samples_file(task: str) -> str:
    """lm-eval's logged samples of one task, inside `lm_eval/<model>/`."""
    return f"samples_{task}.jsonl"


def lm_eval_dir(run_folder: Path, model: str) -> Path:
    return Path(run_folder) / LM_EVAL_DIR / model


def training_dir(run_folder: Path, adapter: str) -> Path:
    """Where a run keeps the copy of an adapter's training record."""
    return Path(run_folder) / TRAINING_DIR / adapter


# --- the registry of tasks and metrics --------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One lm-eval task of tasks/ whose results a run holds."""

    name: str
    """The lm-eval task name (tasks/<name>.yaml)."""
    description: str
    """What the task asks of the model, for the site's method page."""


@dataclass(frozen=True)
class Metric:
    """One per-sample metric of MarineBench's tasks."""

    name: str
    """Its key in lm-eval's results (`<name>,none`), in scores.jsonl and in summary.json."""
    tasks: tuple[str, ...]
    """The tasks that report it (Task.name)."""
    lower_is_better: bool | None
    """True where a smaller value is better (perplexities, bits per byte), False where a larger
    one is; None for a description of the answers that is neither (their length): its change is
    reported and tested, never called a gain or a loss."""
    meaning: str
    """What it measures, one sentence for the site's method page."""


#: the tasks that score a generated answer against the reference
GENERATION_TASKS = ("marine_qa", "marine_recall", "retention_qa")
#: the tasks that measure how likely the model finds the reference answer
LIKELIHOOD_TASKS = ("marine_qa_ppl", "marine_recall_ppl")
#: the multiple-choice tasks
CHOICE_TASKS = ("marine_mc", "marine_recall_mc")

#: tasks in display order
TASKS: tuple[Task, ...] = (
    Task(
        "marine_qa",
        "Held-out marine-biology questions (the dataset's test split: transfer to facts never "
        "stated in a training pair). The model answers with greedy decoding through its chat "
        "template; each answer is scored against the reference answer.",
    ),
    Task(
        "marine_qa_ppl",
        "How likely the model finds the test split's reference answers (lm-eval "
        "log-likelihood). No generation, so it is free of decoding choices.",
    ),
    Task(
        "marine_mc",
        "Multiple-choice marine questions (test split): the model's log-likelihood picks one of "
        "four answers, the right one and three answers to other questions of the same topic.",
    ),
    Task(
        "marine_recall",
        "Recall of trained facts: hand-written questions that ask for the fact of a training "
        "pair in new words (the dataset's recall split); the trained answer is the reference. "
        "Generation and scoring as in marine_qa.",
    ),
    Task(
        "marine_recall_ppl",
        "How likely the model finds the trained answers, asked with the recall split's new "
        "questions (lm-eval log-likelihood).",
    ),
    Task(
        "marine_recall_mc",
        "Multiple choice on the recall split: the trained answer against three answers to other "
        "recall questions of the same topic.",
    ),
    Task(
        "retention_qa",
        "General-knowledge, non-marine questions never used for training. A drop here means "
        "fine-tuning made the model forget.",
    ),
)

#: metrics in display order (the leaderboard's columns, the method page's rows)
METRICS: tuple[Metric, ...] = (
    Metric(
        "rougeL",
        GENERATION_TASKS,
        False,
        "Longest-common-subsequence F-measure: shared wording in the same order. The "
        "leaderboard's default ordering.",
    ),
    Metric(
        "rouge1",
        GENERATION_TASKS,
        False,
        "Unigram overlap F-measure between answer and reference (rouge-score, with stemming).",
    ),
    Metric(
        "rouge2",
        GENERATION_TASKS,
        False,
        "Bigram overlap F-measure between answer and reference (rouge-score, with stemming).",
    ),
    Metric(
        "rougeL_precision",
        GENERATION_TASKS,
        False,
        "ROUGE-L precision: the longest common subsequence over the answer's length. A long "
        "answer pays here.",
    ),
    Metric(
        "rougeL_recall",
        GENERATION_TASKS,
        False,
        "ROUGE-L recall: the longest common subsequence over the reference's length. A long "
        "answer gains here.",
    ),
    Metric(
        "bertscore_f1",
        GENERATION_TASKS,
        False,
        "BERTScore F1: greedy matching of contextual token embeddings, so paraphrases count "
        "(bert-score with the offline embedding model).",
    ),
    Metric(
        "bertscore_precision",
        GENERATION_TASKS,
        False,
        "BERTScore precision: how well each answer token is matched in the reference.",
    ),
    Metric(
        "bertscore_recall",
        GENERATION_TASKS,
        False,
        "BERTScore recall: how well each reference token is matched in the answer.",
    ),
    Metric(
        "token_f1",
        GENERATION_TASKS,
        False,
        "SQuAD-style F1 of the bag of normalised tokens (lower-cased, punctuation and articles "
        "removed).",
    ),
    Metric(
        "exact_match",
        GENERATION_TASKS,
        False,
        "1 when the normalised answer equals the normalised reference, else 0. Strict; small "
        "models rarely score.",
    ),
    Metric(
        "tfidf_cosine",
        GENERATION_TASKS,
        False,
        "Cosine similarity of TF-IDF vectors (scikit-learn) of answer and reference: shared "
        "content words, weighted by rarity. One fixed function: the vectoriser is fitted once "
        "on the training split's questions and answers.",
    ),
    Metric(
        "embedding_cosine",
        GENERATION_TASKS,
        False,
        "Cosine similarity of sentence embeddings (all-MiniLM-L6-v2): closeness in meaning.",
    ),
    Metric(
        "rougeL_lc",
        GENERATION_TASKS,
        False,
        "Length-controlled ROUGE-L: the answer cut to the reference's length in words (a "
        "shorter answer as it is). Secondary.",
    ),
    Metric(
        "bertscore_f1_lc",
        GENERATION_TASKS,
        False,
        "Length-controlled BERTScore F1: the answer cut to the reference's length in words (a "
        "shorter answer as it is). Secondary.",
    ),
    Metric(
        "token_f1_lc",
        GENERATION_TASKS,
        False,
        "Length-controlled token F1: the answer cut to the reference's length in words (a "
        "shorter answer as it is). Secondary.",
    ),
    Metric(
        "tfidf_cosine_lc",
        GENERATION_TASKS,
        False,
        "Length-controlled TF-IDF cosine: the answer cut to the reference's length in words (a "
        "shorter answer as it is). Secondary.",
    ),
    Metric(
        "answer_words",
        GENERATION_TASKS,
        None,
        "Length of the answer in words (whitespace-separated). Describes the answers: neither "
        "more nor fewer words is better.",
    ),
    Metric(
        "length_ratio",
        GENERATION_TASKS,
        None,
        "Answer words over reference words, per question (1 = as long as the reference). "
        "Describes the answers: neither direction is better.",
    ),
    Metric(
        "acc",
        CHOICE_TASKS,
        False,
        "Multiple-choice accuracy: the choice with the highest log-likelihood is the right one.",
    ),
    Metric(
        "acc_norm",
        CHOICE_TASKS,
        False,
        "Multiple-choice accuracy with each choice's log-likelihood normalised by its length.",
    ),
    Metric(
        "bits_per_byte",
        LIKELIHOOD_TASKS,
        True,
        "Negative log-likelihood of the reference in bits per UTF-8 byte: comparable across "
        "tokenizers.",
    ),
    Metric(
        "word_perplexity",
        LIKELIHOOD_TASKS,
        True,
        "Perplexity of the reference answer per word.",
    ),
    Metric(
        "byte_perplexity",
        LIKELIHOOD_TASKS,
        True,
        "Perplexity of the reference answer per UTF-8 byte.",
    ),
    Metric(
        "loglikelihood",
        LIKELIHOOD_TASKS,
        False,
        "Summed log-likelihood of the reference answer given the question.",
    ),
    # --- the optional LLM judge (`marinebench evaluate --judge gemini`, evaluation/judge.py) ---
    # Only judged runs hold these, on every generation task's rows; no lm-eval task computes
    # them, so they name no task (metrics_of() stays the tasks' own metrics).
    Metric(
        "judge_correct",
        (),
        False,
        "LLM judge (optional, Gemini): 1 when the answer states the reference's essential facts "
        "and contradicts none of them (SimpleQA's CORRECT grade), else 0.",
    ),
    Metric(
        "judge_not_attempted",
        (),
        None,
        "LLM judge (optional, Gemini): 1 when the answer neither gives the reference's essential "
        "facts nor contradicts them (a refusal, a restated question, a vague or cut-off answer: "
        "SimpleQA's NOT_ATTEMPTED), else 0. Fewer is not always better: it can replace errors.",
    ),
)

#: direction of metrics that are not ours (other lm-eval tasks' results files), by name
_FOREIGN_LOWER_IS_BETTER = re.compile(
    r"perplexity|bits_per_byte|(^|_)loss|(^|_)ter$|error", re.IGNORECASE
)


def task_names() -> tuple[str, ...]:
    return tuple(t.name for t in TASKS)


def find_task(name: str) -> Task | None:
    return next((t for t in TASKS if t.name == name), None)


def find_metric(name: str) -> Metric | None:
    return next((m for m in METRICS if m.name == name), None)


def metrics_of(task: str) -> tuple[Metric, ...]:
    """The registered metrics a task reports, in display order."""
    return tuple(m for m in METRICS if task in m.tasks)


def lower_is_better(metric: str) -> bool | None:
    """A metric's direction: the registry's for ours (None: neither, see Metric), else guessed
    from an lm-eval name."""
    known = find_metric(metric)
    if known is not None:
        return known.lower_is_better
    return bool(_FOREIGN_LOWER_IS_BETTER.search(metric))


def higher_is_better(metric: str) -> bool | None:
    """The direction as lm-eval declares it (`higher_is_better`): None for a metric that
    describes the answers rather than scores them (neither direction is better)."""
    lower = lower_is_better(metric)
    return None if lower is None else not lower


def task_sort_key(task: str) -> tuple[int, str]:
    """Display order of tasks: the registry's, then tasks that are not ours by name."""
    names = task_names()
    return (names.index(task) if task in names else len(names), task)


def metric_sort_key(metric: str) -> tuple[int, str]:
    """Display order of metrics: the registry's, then metrics that are not ours by name."""
    names = [m.name for m in METRICS]
    return (names.index(metric) if metric in names else len(names), metric)


# --- one per-sample score ----------------------------------------------------------------------


def sample_scores(sample: dict[str, Any]) -> dict[str, float | None]:
    """The per-sample scores of one lm-eval logged sample, by metric, as the task computed them.

    A metric's value in a sample is either a number (ROUGE, token F1, acc, ...) or a record
    holding the number under SCORE_KEY (tasks/utils.py writes those where the score needs the
    whole task, or where lm-eval's aggregation needs more than the score). Any other value
    (a pair lm-eval aggregates, such as (loglikelihood, words)) carries no per-sample score.
    """
    out: dict[str, float | None] = {}
    for metric in sample.get("metrics", []):
        value = sample.get(metric)
        if isinstance(value, dict) and SCORE_KEY in value:
            score = value[SCORE_KEY]
            out[metric] = None if score is None else float(score)
        elif isinstance(value, int | float | bool):
            out[metric] = float(value)
    return out


@dataclass(frozen=True)
class ScoreRecord:
    """One line of scores.jsonl: one model's scores on one document of one task."""

    model: str
    """BASE, or the adapter's name."""
    task: str
    """The lm-eval task."""
    doc_id: int
    """lm-eval's document index within the task (the pairing key of the paired tests)."""
    id: str
    """The dataset row's id (the document index as text where the row has none)."""
    topic: str
    """The dataset row's topic ("" where it has none)."""
    question: str
    """The question as the dataset has it."""
    reference: str | None
    """The reference answer."""
    prediction: str | None
    """The model's answer: its generated text, or the choice it ranked first; None for tasks
    that only measure likelihood."""
    metrics: dict[str, float | None]
    """Per-sample score by metric name; None where a value does not exist (overflow)."""

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object (fields in the order above)."""
        return dataclasses.asdict(self)
