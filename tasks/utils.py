"""Glue between the lm-eval task YAMLs in this folder and MarineBench's own code.

Every function is a thin adapter: data comes from benchmark.evaluation.data, scores from
benchmark.scorers, so the plain `lm_eval` CLI and `marinebench evaluate` agree exactly.

Each sample is scored here once. Where a score needs the whole task (BERTScore and embeddings
are batched) or lm-eval's aggregation needs more than the score (perplexities and the length
ratio are corpus-weighted), process_results returns a record for the metric; the aggregation
fills in each record's per-sample score, and lm-eval logs the same records in its samples, which
is where `marinebench evaluate` reads every per-sample score from
(benchmark.contracts.results.sample_scores).

TF-IDF cosine is one fixed function (docs/protocol.md): the dataset loaders fit it on the
training split of the marine dataset the tasks read (metadata `dataset`), once per dataset hash
in a process, and every document carries that hash (TFIDF_FIT), so that its pair is scored with
exactly that function, whatever else is evaluated with it.
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
from benchmark.contracts.dataset import RECALL_SPLIT
from benchmark.contracts.results import SCORE_KEY
from benchmark.errors import UserError
from benchmark.evaluation import data

MC_CHOICES = 4
MC_SEED = "marine_mc-v1"
#: a document's field naming the fixed TF-IDF function that scores its answers: the hash of the
#: dataset whose training split it was fitted on
TFIDF_FIT = "tfidf_fit"


# --- datasets (lm-eval `custom_dataset`: called with the task metadata as keyword arguments) ---


def marine_dataset(dataset: str | None = None, **_metadata):
    """The marine Q&A splits: --metadata '{"dataset": ...}' > $MARINEBENCH_DATASET > build/dataset.

    `dataset` may be a dataset folder, a .jsonl file of question/answer pairs, or a Hub id.
    """
    source = data.resolve_source(dataset)
    splits = data.load_source(source)
    return _with_tfidf_fit(splits, _fit_tfidf(source, lambda: splits))


def recall_dataset(dataset: str | None = None, **metadata):
    """The marine splits (as marine_dataset), which must include the recall split."""
    splits = marine_dataset(dataset, **metadata)
    if RECALL_SPLIT not in splits:
        source = data.resolve_source(dataset)
        raise UserError(
            f"{source.describe()} has no {RECALL_SPLIT!r} split, which the marine_recall tasks "
            "read: rebuild the dataset with `marinebench dataset build` (it writes the split "
            "from datasets_src/recall/), or leave the recall tasks out (--tasks marine_qa ...)"
        )
    return splits


def retention_dataset(retention_data: str | None = None, dataset: str | None = None, **_metadata):
    """The general-knowledge retention set (datasets_src/retention_qa.jsonl unless overridden),
    scored with the marine dataset's TF-IDF function (`dataset` as for marine_dataset)."""
    source = data.resolve_source(
        retention_data or str(data.default_retention_file()), env=data.RETENTION_ENV
    )
    marine = data.resolve_source(dataset)
    return _with_tfidf_fit(
        data.load_source(source), _fit_tfidf(marine, lambda: data.load_source(marine))
    )


def _fit_tfidf(source: data.DataSource, load_splits) -> str:
    """The key of the fixed TF-IDF function of a marine dataset: its hash. The function is
    fitted on the dataset's training split (from `load_splits()`) the first time this process
    sees that hash, and reused after."""
    key = data.source_hash(source)
    scorers.tfidf_for(key, lambda: data.tfidf_corpus(load_splits()))
    return key


def _with_tfidf_fit(splits, key: str):
    """Every split's documents with TFIDF_FIT set to `key`."""
    import datasets

    return datasets.DatasetDict(
        {name: split.add_column(TFIDF_FIT, [key] * len(split)) for name, split in splits.items()}
    )


# --- marine_mc / marine_recall_mc: the right answer among three same-topic distractors --------


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
    # each answer normalised once, not once per document of its topic (800 test documents:
    # 1.1 s per call, and lm-eval processes the docs ~5 times per model)
    key = {a: scorers.normalize_answer(a) for a in everything}

    def add_choices(doc):
        rng = _doc_rng(doc["id"])
        right = doc["answer"]
        right_key = key[right]
        same = sorted({a for a in by_topic[doc["topic"]] if key[a] != right_key})
        picked = rng.sample(same, min(MC_CHOICES - 1, len(same)))
        if len(picked) < MC_CHOICES - 1:
            others = [a for a in everything if a not in picked and key[a] != right_key]
            picked += rng.sample(others, min(MC_CHOICES - 1 - len(picked), len(others)))
        gold = rng.randrange(len(picked) + 1)
        choices = picked[:gold] + [right] + picked[gold:]
        return {"choices": choices, "gold": gold}

    return dataset.map(add_choices)


# --- marine_qa / marine_recall / retention_qa: generation metrics -----------------------------


def process_qa_results(doc, results):
    """Every per-pair metric (scorers.pair_scores, TF-IDF with the document's fixed function);
    for each corpus metric a record of the pair, which that metric's aggregation below scores
    with the rest of the task and fills in (a length-controlled metric's record holds the answer
    cut to the reference's length); the length ratio as a record that also keeps both lengths,
    for lm-eval's corpus-weighted aggregation."""
    prediction = results[0] if results else ""
    reference = doc["answer"]
    out = scorers.pair_scores(prediction, reference, scorers.tfidf_for(doc[TFIDF_FIT]))
    cut = scorers.cut_to_reference(prediction, reference)
    for metric in scorers.CORPUS_METRICS:
        answer = cut if metric.endswith(scorers.LC_SUFFIX) else prediction
        out[metric] = {"prediction": answer, "reference": reference}
    out["length_ratio"] = {
        "answer_words": out["answer_words"],
        "reference_words": scorers.word_count(reference),
        SCORE_KEY: out["length_ratio"],
    }
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


def _bertscore(items, part: str) -> float:
    """One BERTScore part of every record's pair. The task's first BERTScore aggregation scores
    all its answers and, in the same batched call, the answers cut to the reference's length;
    scorers.bertscore memoises each pair, so the task's other BERTScore metrics (their records
    hold the same pairs) reuse those scores and the encoder sees each pair once."""
    predictions, references = _pairs(items)
    cuts = [scorers.cut_to_reference(p, r) for p, r in zip(predictions, references, strict=True)]
    scores = scorers.bertscore(
        predictions + cuts, references + references, model=scorers.bertscore_model_name()
    )
    return _score_each(items, scores[part][: len(items)])


def agg_bertscore_f1(items):
    """Mean BERTScore F1 of the records' pairs (bertscore_f1, and bertscore_f1_lc, whose records
    hold the cut answers)."""
    return _bertscore(items, "f1")


def agg_bertscore_precision(items):
    """Mean BERTScore precision."""
    return _bertscore(items, "precision")


def agg_bertscore_recall(items):
    """Mean BERTScore recall."""
    return _bertscore(items, "recall")


def agg_embedding_cosine(items):
    """Mean MiniLM embedding cosine (batched)."""
    return _score_each(items, scorers.embedding_cosine(*_pairs(items)))


def agg_length_ratio(items):
    """The answers' total length over the references' (docs/protocol.md: mean answer length
    over the references' mean); each record keeps its own per-question ratio as its score."""
    reference_words = sum(item["reference_words"] for item in items)
    answer_words = sum(item["answer_words"] for item in items)
    return answer_words / reference_words if reference_words else 0.0


# --- marine_qa_ppl / marine_recall_ppl: how likely is the reference, given the question -------


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
