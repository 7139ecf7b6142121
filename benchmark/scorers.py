"""Answer-quality scorers: how close is a model's answer to the reference answer?

Every scorer takes predictions and references as parallel lists (or one pair) and returns one
float per pair, in [0, 1] (higher is better), except the answer's length. An empty or
whitespace-only prediction scores 0 on every metric, its length included (no library is asked
to score it: some crash or warn on empty text).

- ROUGE-1/2/L F-measure, and ROUGE-L precision and recall (Google's rouge-score, Porter stemming).
- BERTScore precision, recall and F1 (bert-score). Default: the offline all-MiniLM-L6-v2 shipped
  on PyPI, layer 6 of 6; ``roberta-large`` (layer 17, the seed project's choice) is selectable
  but needs a download.
- Token F1 and exact match with SQuAD v1.1's answer normalisation.
- TF-IDF cosine (scikit-learn) as one fixed function (`TfidfCosine`, docs/protocol.md): the
  vectoriser is fitted once, on the training split's questions and answers, and scores every
  model and every set, so a pair's score never depends on the other answers scored with it.
- Embedding cosine of sentence-transformers all-MiniLM-L6-v2 embeddings.
- Length: the answer's words and their ratio to the reference's; and the length-controlled
  variant of each primary metric (LENGTH_CONTROLLED), scored on the answer cut to the
  reference's length in words (`cut_to_reference`; docs/evaluation.md says why).

Heavy models (BERTScore's encoder, the sentence embedder) are loaded once per process and kept.
"""

from __future__ import annotations

import functools
import os
import re
import string
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import numpy as np

#: the primary metrics (docs/protocol.md), each also scored on the answer cut to the reference's
#: length in words, under its name + LC_SUFFIX
LENGTH_CONTROLLED = ("rougeL", "bertscore_f1", "token_f1", "tfidf_cosine")
LC_SUFFIX = "_lc"
#: metrics scored in batches over a task's answers (a batched encoder) rather than pair by pair;
#: `pair_scores` computes the others (names, order and direction: benchmark.contracts.results).
#: A name ending in LC_SUFFIX is scored on the answer cut to the reference's length.
CORPUS_METRICS = (
    "bertscore_f1",
    "bertscore_precision",
    "bertscore_recall",
    "bertscore_f1" + LC_SUFFIX,
    "embedding_cosine",
)
#: BERTScore's parts, as `bertscore` returns them
BERTSCORE_PARTS = ("precision", "recall", "f1")

DEFAULT_BERTSCORE_MODEL = "minilm"
BERTSCORE_ENV = "MARINEBENCH_BERTSCORE_MODEL"
#: bert-score model name -> layer whose embeddings are compared. MiniLM has 6 layers; 17 of 24
#: is bert-score's own tuned default for roberta-large.
BERTSCORE_LAYERS = {"minilm": 6, "roberta-large": 17}

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_WORD = re.compile(r"\S+")
_PUNCT = set(string.punctuation)
_LOCK = threading.Lock()


def is_empty(text: str | None) -> bool:
    return text is None or not str(text).strip()


# --- length -----------------------------------------------------------------------------------


def word_count(text: str | None) -> int:
    """Words of a text: its whitespace-separated pieces."""
    return 0 if text is None else len(str(text).split())


def cut_to_reference(prediction: str, reference: str) -> str:
    """The answer cut to the reference's length in words (the length control of
    docs/protocol.md): the prefix of the answer that ends with its n-th word, n the reference's
    word count. An answer not longer than the reference is returned as it is."""
    n = word_count(reference)
    ends = [m.end() for m in _WORD.finditer(prediction or "")]
    if len(ends) <= n:
        return prediction
    return prediction[: ends[n - 1]] if n else ""


def length_scores(prediction: str, reference: str) -> dict[str, float]:
    """The answer's length in words and its ratio to the reference's (0 for an empty answer)."""
    words = word_count(prediction)
    return {
        "answer_words": float(words),
        "length_ratio": words / max(word_count(reference), 1),
    }


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
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures of one pair, and ROUGE-L's precision (the common
    subsequence over the answer's length) and recall (over the reference's); stemming on."""
    names = ("rouge1", "rouge2", "rougeL", "rougeL_precision", "rougeL_recall")
    if is_empty(prediction):
        return dict.fromkeys(names, 0.0)
    scores = _rouge_scorer().score(reference, prediction)
    out = {name: float(s.fmeasure) for name, s in scores.items()}
    out["rougeL_precision"] = float(scores["rougeL"].precision)
    out["rougeL_recall"] = float(scores["rougeL"].recall)
    return out


def pair_scores(prediction: str, reference: str, tfidf: TfidfCosine) -> dict[str, float]:
    """Every metric one pair decides: ROUGE, token F1, exact match, TF-IDF cosine (with the
    run's fixed vectoriser), the answer's length, and the length-controlled variants of the
    primary metrics among them (scored on `cut_to_reference`; the same numbers when the answer
    is not longer than the reference)."""
    out = rouge(prediction, reference)
    out["token_f1"] = token_f1(prediction, reference)
    out["exact_match"] = exact_match(prediction, reference)
    out["tfidf_cosine"] = tfidf([prediction], [reference])[0]
    cut = cut_to_reference(prediction, reference)
    if cut == prediction:
        controlled = out
    else:
        controlled = {
            "rougeL": rouge(cut, reference)["rougeL"],
            "token_f1": token_f1(cut, reference),
            "tfidf_cosine": tfidf([cut], [reference])[0],
        }
    for metric in LENGTH_CONTROLLED:
        if metric in controlled:
            out[metric + LC_SUFFIX] = controlled[metric]
    out.update(length_scores(prediction, reference))
    return out


# --- TF-IDF cosine --------------------------------------------------------------------------


class TfidfCosine:
    """TF-IDF cosine as one fixed function: the vectoriser is fitted once, on `corpus` (the
    training split's questions and answers, docs/protocol.md), and then scores any pair. A
    pair's score depends on nothing but the pair and that corpus: not on the other answers
    scored with it, nor on the model that gave them.

    Vectors are L2-normalised, so the cosine is a dot product; words the corpus never saw
    carry no weight.
    """

    def __init__(self, corpus: Iterable[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = list(corpus)
        self.vectorizer = TfidfVectorizer()
        try:
            self.vectorizer.fit(texts)
        except ValueError as exc:  # no word of two characters or more in the whole corpus
            raise ValueError(f"cannot fit TF-IDF on {len(texts)} texts: {exc}") from None

    def __call__(self, predictions: Sequence[str], references: Sequence[str]) -> list[float]:
        _check_parallel(predictions, references)
        out = [0.0] * len(predictions)
        keep = [i for i, p in enumerate(predictions) if not is_empty(p)]
        if keep:
            refs = self.vectorizer.transform([references[i] for i in keep])
            preds = self.vectorizer.transform([predictions[i] for i in keep])
            sims = np.asarray(refs.multiply(preds).sum(axis=1)).ravel()
            for i, s in zip(keep, sims, strict=True):
                out[i] = float(np.clip(s, 0.0, 1.0))
        return out


_TFIDF: dict[str, TfidfCosine] = {}


def tfidf_for(key: str, corpus: Callable[[], Iterable[str]] | None = None) -> TfidfCosine:
    """The fixed TF-IDF function registered under `key` (a dataset's hash), fitted on
    `corpus()` the first time this process asks for that key and reused after."""
    with _LOCK:
        if key not in _TFIDF:
            if corpus is None:
                raise KeyError(
                    f"no TF-IDF function fitted for dataset {key!r} in this process: the task's "
                    "dataset loader (tasks/utils.py) fits it"
                )
            _TFIDF[key] = TfidfCosine(corpus())
        return _TFIDF[key]


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

#: Texts go to the encoders one at a time. In a batch, padding and the batch's shape move fp32
#: rounding, and which texts share a batch depends on what this process scored before (the
#: memo) and, inside bert-score, on the string hash seed (it orders its sentences by word count
#: with ties in set order): the same answer scored 1 ulp apart in two runs. One at a time costs
#: ~0.9 s more per 128 pairs on 2 cores and gives the same bits in any process.
ENCODE_BATCH = 1


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
    predictions: Sequence[str], references: Sequence[str], batch_size: int = ENCODE_BATCH
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


_BERTSCORE_CACHE: dict[tuple[str, str, str], tuple[float, float, float]] = {}


def bertscore(
    predictions: Sequence[str],
    references: Sequence[str],
    model: str = DEFAULT_BERTSCORE_MODEL,
    batch_size: int = ENCODE_BATCH,
) -> dict[str, list[float]]:
    """BERTScore precision, recall and F1 per pair (no baseline rescaling), by part name
    (BERTSCORE_PARTS).

    Every pair this process has not scored yet goes to the encoder in one call (in batches of
    `batch_size`), each distinct pair once; results are memoised per (model, prediction,
    reference): models of one run often give the same answer to a question, and a task's
    BERTScore metrics share one scoring of its answers.
    """
    _check_parallel(predictions, references)
    todo = list(
        dict.fromkeys(
            (p, r)
            for p, r in zip(predictions, references, strict=True)
            if not is_empty(p) and (model, p, r) not in _BERTSCORE_CACHE
        )
    )
    if todo:
        scored = _bertscore_pairs(model, [p for p, _ in todo], [r for _, r in todo], batch_size)
        with _LOCK:
            for (p, r), parts in zip(todo, scored, strict=True):
                _BERTSCORE_CACHE[(model, p, r)] = parts
    out: dict[str, list[float]] = {part: [] for part in BERTSCORE_PARTS}
    for p, r in zip(predictions, references, strict=True):
        parts = (0.0, 0.0, 0.0) if is_empty(p) else _BERTSCORE_CACHE[(model, p, r)]
        for part, value in zip(BERTSCORE_PARTS, parts, strict=True):
            out[part].append(float(np.clip(value, 0.0, 1.0)))
    return out


def _bertscore_pairs(
    model: str, predictions: list[str], references: list[str], batch_size: int
) -> list[tuple[float, float, float]]:
    """(precision, recall, F1) of each pair from BERTScore's encoder: the one place it runs."""
    precision, recall, f1 = _bert_scorer(model).score(
        predictions, references, batch_size=batch_size
    )
    return list(zip(precision.tolist(), recall.tolist(), f1.tolist(), strict=True))


def _check_parallel(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; they must pair up"
        )
