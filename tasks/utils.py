"""Glue between the lm-eval task YAMLs in this folder and MarineBench's own code.

Every function is a thin adapter: data comes from benchmark.evaluation.data, scores from
benchmark.scorers, so the plain `lm_eval` CLI and `marinebench evaluate` agree exactly.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

try:
    import benchmark  # noqa: F401
except ImportError:  # plain `lm_eval` from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmark import scorers
from benchmark.evaluation import data

MC_CHOICES = 4
MC_SEED = "marine_mc-v1"


# --- datasets (lm-eval `custom_dataset`: called with the task metadata as keyword arguments) ---


def marine_dataset(dataset: str | None = None, **_metadata):
    """The marine Q&A splits: --metadata '{"dataset": ...}' > $MARINEBENCH_DATASET > build/dataset.

    `dataset` may be a dataset folder, a .jsonl file of question/answer pairs, or a Hub id.
    """
    return data.load_source(data.resolve_source(dataset))


def retention_dataset(retention_data: str | None = None, **_metadata):
    """The general-knowledge retention set (datasets_src/retention_qa.jsonl unless overridden)."""
    source = data.resolve_source(
        retention_data or str(data.default_retention_file()), env=data.RETENTION_ENV
    )
    return data.load_source(source)


# --- marine_mc: the right answer among three same-topic distractors ---------------------------


def _doc_rng(doc_id: str) -> random.Random:
    """A generator seeded by the document id, so each question's choices never change."""
    seed = hashlib.sha256(f"{MC_SEED}:{doc_id}".encode()).hexdigest()
    return random.Random(int(seed[:16], 16))


def process_mc_docs(dataset):
    """Add `choices` (4 answers) and `gold` (index of the right one) to every document.

    Distractors are answers to other questions of the same topic in the split, drawn with a
    per-document seeded RNG; when a topic has fewer than three other answers, the rest come from
    other topics. The right answer's position is drawn from the same RNG.
    """
    answers = list(dataset["answer"])
    topics = list(dataset["topic"])
    by_topic: dict[str, list[str]] = {}
    for topic, answer in zip(topics, answers, strict=True):
        by_topic.setdefault(topic, []).append(answer)
    everything = sorted(set(answers))

    def add_choices(doc):
        rng = _doc_rng(doc["id"])
        right = doc["answer"]
        right_key = scorers.normalize_answer(right)
        same = sorted(
            {a for a in by_topic[doc["topic"]] if scorers.normalize_answer(a) != right_key}
        )
        picked = rng.sample(same, min(MC_CHOICES - 1, len(same)))
        if len(picked) < MC_CHOICES - 1:
            others = [
                a
                for a in everything
                if a not in picked and scorers.normalize_answer(a) != right_key
            ]
            picked += rng.sample(others, min(MC_CHOICES - 1 - len(picked), len(others)))
        gold = rng.randrange(len(picked) + 1)
        choices = picked[:gold] + [right] + picked[gold:]
        return {"choices": choices, "gold": gold}

    return dataset.map(add_choices)


# --- marine_qa / retention_qa: generation metrics ---------------------------------------------


def process_qa_results(doc, results):
    """Per-sample ROUGE/token F1/exact match; (prediction, reference) for the corpus metrics,
    which the aggregations below score over the whole task at once."""
    prediction = results[0] if results else ""
    reference = doc["answer"]
    out = scorers.pair_scores(prediction, reference)
    for metric in scorers.CORPUS_METRICS:
        out[metric] = (prediction, reference)
    return out


def _pairs(items):
    predictions = [p for p, _ in items]
    references = [r for _, r in items]
    return predictions, references


def _mean(values):
    return sum(values) / len(values) if values else 0.0


def agg_bertscore_f1(items):
    """Mean BERTScore F1 (batched over every answer of the task)."""
    return _mean(scorers.bertscore_f1(*_pairs(items), model=scorers.bertscore_model_name()))


def agg_tfidf_cosine(items):
    """Mean TF-IDF cosine, the vectoriser fitted on this task's references + predictions."""
    return _mean(scorers.tfidf_cosine(*_pairs(items)))


def agg_embedding_cosine(items):
    """Mean MiniLM embedding cosine (batched)."""
    return _mean(scorers.embedding_cosine(*_pairs(items)))


# --- marine_qa_ppl: how likely is the reference answer, given the question ---------------------


def process_ppl_results(doc, results):
    """(loglikelihood, units) pairs for lm-eval's weighted perplexity and bits-per-byte
    aggregations, plus the raw loglikelihood of the reference answer."""
    loglikelihood, _is_greedy = results[0]
    answer = doc["answer"]
    words = len(answer.split())
    n_bytes = len(answer.encode("utf-8"))
    return {
        "word_perplexity": (loglikelihood, words),
        "byte_perplexity": (loglikelihood, n_bytes),
        "bits_per_byte": (loglikelihood, n_bytes),
        "loglikelihood": loglikelihood,
    }
