"""Duplicate detection: exact on normalised text, near-duplicates by MinHash LSH (datasketch).

Near-duplicates are character-shingle Jaccard >= threshold. LSH (datasketch.MinHashLSH) proposes
candidates at a lower threshold so pairs just above the threshold are not missed, and every
candidate is then verified with the exact Jaccard of the shingle sets, so no pair is reported
below the threshold (precision) and few are missed (recall).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
from datasketch import MinHash, MinHashLSH
from tqdm import tqdm

from benchmark.dataset.config import DedupConfig
from benchmark.dataset.records import QARecord
from benchmark.dataset.step_report import StepReport

_PUNCT = re.compile(r"[^\w\s]")


def normalise_for_match(text: str) -> str:
    """Case-, accent-width- and punctuation-blind form used for matching (never stored)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCT.sub(" ", text).split())


_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing: odd 64-bit multiplier


def shingle_hashes(text: str, k: int) -> np.ndarray:
    """Sorted unique 32-bit hashes of the k-byte shingles of the normalised text (UTF-8).

    Vectorised in numpy rather than hashing each shingle string in Python (10x faster, which the
    100,000-pair benchmark needs): each k-byte window (k <= 8) is packed into one uint64 exactly,
    then mixed to 32 bits. Stable across processes, unlike Python's salted hash().
    """
    if not 1 <= k <= 8:
        raise ValueError(f"shingle size must be 1..8 bytes, got {k}")
    data = np.frombuffer(normalise_for_match(text).encode(), dtype=np.uint8).astype(np.uint64)
    if data.size < k:
        data = np.concatenate([data, np.zeros(k - data.size, dtype=np.uint64)])
    n = data.size - k + 1
    packed = np.zeros(n, dtype=np.uint64)
    for j in range(k):
        packed |= data[j : j + n] << np.uint64(8 * j)
    return np.unique(((packed * _MIX) >> np.uint64(32)).astype(np.uint32))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.intersect1d(a, b, assume_unique=True).size
    union = a.size + b.size - inter
    return inter / union if union else 1.0


def _identity(x):
    return x


def near_duplicate_pairs(
    texts: Sequence[str],
    threshold: float,
    *,
    shingle_chars: int = 5,
    num_perm: int = 128,
    seed: int = 1,
    progress: str | None = None,
) -> list[tuple[int, int, float]]:
    """Every pair (i, j, jaccard), i < j, whose shingle Jaccard is >= threshold, sorted."""
    shingles = [
        shingle_hashes(t, shingle_chars)
        for t in tqdm(
            texts,
            desc=f"{progress}: shingles",
            disable=True if progress is None else None,
            leave=False,
        )
    ]
    # Candidate threshold below the real one: the LSH S-curve misses pairs near its threshold.
    lsh = MinHashLSH(threshold=max(0.05, threshold - 0.2), num_perm=num_perm)
    sketches = list(
        tqdm(
            MinHash.generator(
                (s.tolist() for s in shingles), num_perm=num_perm, seed=seed, hashfunc=_identity
            ),
            total=len(texts),
            desc=f"{progress}: minhash",
            disable=True if progress is None else None,
            leave=False,
        )
    )
    with lsh.insertion_session() as session:
        for i, m in enumerate(sketches):
            session.insert(i, m, check_duplication=False)
    out = []
    for j, m in enumerate(sketches):
        for i in sorted(k for k in lsh.query(m) if k < j):
            score = jaccard(shingles[i], shingles[j])
            if score >= threshold:
                out.append((i, j, round(score, 4)))
    out.sort()
    return out


def _drop_later(
    records: list[QARecord],
    pairs: list[tuple[int, int, float]],
    dropped: dict[int, tuple[str, str]],
    reason: str,
) -> None:
    """Keep the first of each near-duplicate group: j goes when an earlier kept i matches it."""
    partners: dict[int, list[tuple[int, float]]] = {}
    for i, j, score in pairs:
        partners.setdefault(j, []).append((i, score))
    for j in sorted(partners):
        if j in dropped:
            continue
        for i, score in partners[j]:
            if i not in dropped:
                dropped[j] = (reason, f"Jaccard {score:.2f} with {records[i].id}")
                break


def dedupe(records: list[QARecord], cfg: DedupConfig) -> tuple[list[QARecord], StepReport]:
    """Drop exact duplicate questions, then near-duplicate questions and question+answer pairs."""
    report = StepReport("dedupe", input=len(records))
    dropped: dict[int, tuple[str, str]] = {}
    first: dict[str, int] = {}
    for idx, rec in enumerate(records):
        key = normalise_for_match(rec.question)
        if key in first:
            dropped[idx] = (
                "exact_duplicate_question",
                f"same question as {records[first[key]].id}",
            )
        else:
            first[key] = idx
    common = {"shingle_chars": cfg.shingle_chars, "num_perm": cfg.num_perm, "seed": cfg.seed}
    questions = [r.question for r in records]
    pairs = near_duplicate_pairs(
        questions, cfg.question_threshold, progress="dedupe questions", **common
    )
    _drop_later(records, pairs, dropped, "near_duplicate_question")
    qa = [f"{r.question} {r.answer}" for r in records]
    pairs = near_duplicate_pairs(qa, cfg.qa_threshold, progress="dedupe question+answer", **common)
    _drop_later(records, pairs, dropped, "near_duplicate_qa")
    return report.keep(records, [dropped.get(idx) for idx in range(len(records))]), report
