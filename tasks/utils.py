"""Glue between the lm-eval task YAMLs in this folder and MarineBench's own code.

Every function is a thin adapter: data comes from benchmark.evaluation.data, scores from
benchmark.scorers, so the plain `lm_eval` CLI and `marinebench evaluate` agree exactly.

Each sample is scored here once. Where a score needs the whole task (TF-IDF is fitted on the
task's corpus; BERTScore and embeddings are batched) or lm-eval's aggregation needs more than the
score (perplexities are corpus-weighted), process_results returns a record for the metric; the
aggregation fills in each record's per-sample score, and lm-eval logs the same records in its
samples, which is where `marinebench evaluate` reads every per-sample score from
(benchmark.contracts.results.sample_scores).
"""

from __future__ import annotations

import hashlib
import math
import random
import sys
from pathlib import Path

try:
    import benchmark  # noqa: F401
except ImportError:  # plain `lm_eval` from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lm_eval.api.metrics import bits_per_byte, weighted_perplexity

from benchmark import scorers
from benchmark.contracts.results import SCORE_KEY
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
    """Per-sample ROUGE/token F1/exact match; for each corpus metric a record of the pair, which
    that metric's aggregation below scores with the rest of the task and fills in."""
    prediction = results[0] if results else ""
    reference = doc["answer"]
    out = scorers.pair_scores(prediction, reference)
    for metric in scorers.CORPUS_METRICS:
        out[metric] = {"prediction": prediction, "reference": reference}
    return out


def _pairs(items):
    predictions = [item["prediction"] for item in items]
    references = [item["reference"] for item in items]
    return predictions, references


def _score_each(items, scores) -> float:
    """Write each sample's score into its record (lm-eval logs the records); return the mean."""
    for item, score in zip(items, scores, strict=True):
        item[SCORE_KEY] = score
    return sum(scores) / len(scores) if scores else 0.0


def agg_bertscore_f1(items):
    """Mean BERTScore F1 (batched over every answer of the task)."""
    scores = scorers.bertscore_f1(*_pairs(items), model=scorers.bertscore_model_name())
    return _score_each(items, scores)


def agg_tfidf_cosine(items):
    """Mean TF-IDF cosine, the vectoriser fitted on this task's references + predictions."""
    return _score_each(items, scorers.tfidf_cosine(*_pairs(items)))


def agg_embedding_cosine(items):
    """Mean MiniLM embedding cosine (batched)."""
    return _score_each(items, scorers.embedding_cosine(*_pairs(items)))


# --- marine_qa_ppl: how likely is the reference answer, given the question ---------------------


def _safe_exp(x: float) -> float | None:
    """exp, or None where it overflows (JSON has no infinity; statistics skip None)."""
    return math.exp(x) if x < 700 else None


def _weighted(loglikelihood: float, units: int, score: float | None) -> dict:
    """A perplexity record: the sample's own score, and what the corpus aggregation weighs."""
    return {"loglikelihood": loglikelihood, "units": units, SCORE_KEY: score}


def process_ppl_results(doc, results):
    """Per-sample word/byte perplexity and bits per byte of the reference answer (at least one
    unit each, so an empty answer still scores), kept with (loglikelihood, units) for lm-eval's
    corpus-weighted aggregations; plus the raw loglikelihood of the reference answer."""
    loglikelihood, _is_greedy = results[0]
    answer = doc["answer"]
    words = len(answer.split())
    n_bytes = len(answer.encode("utf-8"))
    ll = float(loglikelihood)
    scored_words, scored_bytes = max(words, 1), max(n_bytes, 1)
    return {
        "word_perplexity": _weighted(loglikelihood, words, _safe_exp(-ll / scored_words)),
        "byte_perplexity": _weighted(loglikelihood, n_bytes, _safe_exp(-ll / scored_bytes)),
        "bits_per_byte": _weighted(loglikelihood, n_bytes, -ll / (scored_bytes * math.log(2))),
        "loglikelihood": loglikelihood,
    }


def _units(items):
    return [(item["loglikelihood"], item["units"]) for item in items]


def agg_weighted_perplexity(items):
    """lm-eval's corpus perplexity: exp(-total loglikelihood / total units)."""
    return weighted_perplexity(_units(items))


def agg_bits_per_byte(items):
    """lm-eval's corpus bits per byte: -total loglikelihood / total bytes / ln 2."""
    return bits_per_byte(_units(items))
