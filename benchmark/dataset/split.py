"""Seeded split stratified by topic, then decontamination of the held-out splits."""

from __future__ import annotations

import random

from benchmark.contracts.dataset import SPLITS
from benchmark.dataset.config import DedupConfig
from benchmark.dataset.dedup import jaccard, near_duplicate_pairs, shingle_hashes
from benchmark.dataset.records import DatasetError, QARecord
from benchmark.dataset.step_report import StepReport


def split(
    records: list[QARecord], fractions: dict[str, float], seed: int
) -> tuple[dict[str, list[QARecord]], StepReport]:
    """Per topic: sort by id, shuffle with a (seed, topic) RNG, cut validation/test off the front.

    Sizes are rounded cumulatively over topics (a topic of 25 gets 3 or 2 validation records in
    turn), so every topic is within one record of its share and the whole set hits 80/10/10.
    Hand-written rather than sklearn's train_test_split(stratify=...), which refuses topics with
    fewer than two records and reshuffles every topic when one changes; here a topic's record order
    depends only on its own records and the seed.
    """
    if set(fractions) != set(SPLITS) or abs(sum(fractions.values()) - 1) > 1e-9:
        raise DatasetError(
            f"split fractions must be {', '.join(SPLITS)} summing to 1, got {fractions}"
        )
    by_topic: dict[str, list[QARecord]] = {}
    for rec in records:
        by_topic.setdefault(rec.topic, []).append(rec)
    out: dict[str, list[QARecord]] = {s: [] for s in SPLITS}
    seen = 0
    for topic in sorted(by_topic):
        recs = sorted(by_topic[topic], key=lambda r: r.id)
        random.Random(f"{seed}:{topic}").shuffle(recs)
        n = len(recs)
        n_val = _cut(seen + n, fractions["validation"]) - _cut(seen, fractions["validation"])
        n_test = _cut(seen + n, fractions["test"]) - _cut(seen, fractions["test"])
        seen += n
        if n_val + n_test >= n:  # tiny topics: keep at least one record for training
            n_val, n_test = (n - 1) // 2, (n - 1) - (n - 1) // 2
        out["validation"].extend(recs[:n_val])
        out["test"].extend(recs[n_val : n_val + n_test])
        out["train"].extend(recs[n_val + n_test :])
    for name in SPLITS:
        out[name].sort(key=lambda r: (r.topic, r.id))  # fixed row order -> byte-identical files
    report = StepReport("split", input=len(records), kept=len(records))
    return out, report


def _cut(n: int, fraction: float) -> int:
    return int(n * fraction + 0.5 + 1e-9)


def decontaminate(
    splits: dict[str, list[QARecord]], cfg: DedupConfig
) -> tuple[dict[str, list[QARecord]], StepReport]:
    """Drop validation/test records whose question is a near-duplicate of any train question.

    Dropped, not moved to train: moving would change the train split's size and the topic
    balance the split just fixed, and the held-out sets are meant to be strictly unseen.
    """
    train = splits["train"]
    held = [(name, rec) for name in ("validation", "test") for rec in splits[name]]
    report = StepReport("decontaminate", input=len(held))
    texts = [r.question for r in train] + [r.question for _, r in held]
    pairs = near_duplicate_pairs(
        texts,
        cfg.decontam_threshold,
        shingle_chars=cfg.shingle_chars,
        num_perm=cfg.num_perm,
        seed=cfg.seed,
        progress="decontaminate",
    )
    n_train = len(train)
    leaks: dict[int, tuple[int, float]] = {}
    for i, j, score in pairs:
        if i < n_train <= j:  # a (train, held-out) pair
            k = j - n_train
            if k not in leaks or score > leaks[k][1]:
                leaks[k] = (i, score)
    out = {"train": list(train), "validation": [], "test": []}
    for k, (name, rec) in enumerate(held):
        if k in leaks:
            i, score = leaks[k]
            report.drop(
                rec.id, "near_duplicate_of_train", f"{name}: Jaccard {score:.2f} with {train[i].id}"
            )
        else:
            out[name].append(rec)
    report.kept = len(held) - len(leaks)
    return out, report


def max_leak_similarity(splits: dict[str, list[QARecord]], shingle_chars: int) -> float:
    """Brute-force highest held-out-vs-train question Jaccard (for tests and the card)."""
    train = [shingle_hashes(r.question, shingle_chars) for r in splits["train"]]
    best = 0.0
    for name in ("validation", "test"):
        for rec in splits[name]:
            sh = shingle_hashes(rec.question, shingle_chars)
            best = max([best, *(jaccard(sh, t) for t in train)])
    return best
