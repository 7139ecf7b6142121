"""`marinebench perf dedup`: near-duplicate detection on synthetic Q&A pairs with planted copies.

Times the builder's own near_duplicate_pairs (questions, then question+answer, as the dedupe step
runs it) and checks it against a brute-force ground truth: for a random sample of documents, the
exact Jaccard against every other document (a sparse matrix product). Writes build/perf/dedup.json.
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

from benchmark.atomic import atomic_write_json
from benchmark.dataset.config import DedupConfig
from benchmark.dataset.dedup import near_duplicate_pairs, shingle_hashes
from benchmark.paths import perf_dir

_STARTS = ("What is", "How does", "Why do", "Which", "Where do", "When does", "What role does")


def _vocab(rng: random.Random, n: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = set()
    while len(words) < n:
        words.add("".join(rng.choice(letters) for _ in range(rng.randint(4, 10))))
    return sorted(words)


def _mutate(text: str, rng: random.Random, vocab: list[str]) -> str:
    """A near-duplicate: one or two words swapped, dropped or added, maybe case/punctuation."""
    words = text.rstrip("?.").split()
    for _ in range(rng.randint(1, 2)):
        k = rng.randrange(len(words))
        op = rng.random()
        if op < 0.5:
            words[k] = rng.choice(vocab)
        elif op < 0.75 and len(words) > 4:
            del words[k]
        else:
            words.insert(k, rng.choice(vocab))
    out = " ".join(words)
    if rng.random() < 0.3:
        out = out.lower()
    return out + rng.choice(("?", ".", "", " ?"))


def synthetic_pairs(n: int, seed: int, dup_rate: float = 0.1) -> list[tuple[str, str]]:
    """n (question, answer) pairs; about dup_rate of them are mutated copies of earlier ones."""
    rng = random.Random(seed)
    vocab = _vocab(rng, 20_000)
    pairs: list[tuple[str, str]] = []
    for _ in range(n):
        if pairs and rng.random() < dup_rate:
            q, a = rng.choice(pairs)
            pairs.append((_mutate(q, rng, vocab), _mutate(a, rng, vocab)))
            continue
        q = f"{rng.choice(_STARTS)} {' '.join(rng.choices(vocab, k=rng.randint(6, 11)))}?"
        a = " ".join(rng.choices(vocab, k=rng.randint(14, 30))).capitalize() + "."
        pairs.append((q, a))
    return pairs


def brute_force_truth(
    texts: list[str], sample: list[int], threshold: float, k: int
) -> set[tuple[int, int]]:
    """Exact Jaccard of every sampled document against all documents, via sparse products."""
    from scipy import sparse

    sh = [shingle_hashes(t, k) for t in texts]
    cols, inverse = np.unique(np.concatenate(sh), return_inverse=True)
    indptr = np.cumsum([0] + [len(s) for s in sh])
    x = sparse.csr_matrix(
        (np.ones(len(inverse), dtype=np.int32), inverse, indptr), shape=(len(texts), len(cols))
    )
    sizes = np.diff(indptr)
    xt = x.T.tocsc()
    truth = set()
    for start in range(0, len(sample), 200):
        rows = sample[start : start + 200]
        inter = (x[rows] @ xt).tocoo()
        i = np.asarray(rows)[inter.row]
        jac = inter.data / (sizes[i] + sizes[inter.col] - inter.data)
        for a, b in zip(i[jac >= threshold], inter.col[jac >= threshold], strict=True):
            if a != b:
                truth.add((min(a, b), max(a, b)))
    return truth


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="marinebench perf dedup", description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="synthetic pairs (default 100000)")
    parser.add_argument(
        "--sample", type=int, default=1000, help="documents in the brute-force check"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = DedupConfig()
    pairs = synthetic_pairs(args.n, args.seed)
    fields = {
        "question": ([q for q, _ in pairs], cfg.question_threshold),
        "question+answer": ([f"{q} {a}" for q, a in pairs], cfg.qa_threshold),
    }
    rng = random.Random(args.seed + 1)
    sample = sorted(rng.sample(range(args.n), min(args.sample, args.n)))
    sample_set = set(sample)
    per_field, seconds, tp, n_found, n_true = {}, 0.0, 0, 0, 0
    for name, (texts, threshold) in fields.items():
        t0 = time.perf_counter()
        found = near_duplicate_pairs(
            texts, threshold, shingle_chars=cfg.shingle_chars, num_perm=cfg.num_perm, seed=cfg.seed
        )
        took = time.perf_counter() - t0
        seconds += took
        found_s = {(i, j) for i, j, _ in found if i in sample_set or j in sample_set}
        truth = brute_force_truth(texts, sample, threshold, cfg.shingle_chars)
        hit = len(found_s & truth)
        per_field[name] = {
            "seconds": round(took, 2),
            "threshold": threshold,
            "pairs_found": len(found),
            "sample_pairs_found": len(found_s),
            "sample_pairs_true": len(truth),
            "precision": round(hit / len(found_s), 4) if found_s else 1.0,
            "recall": round(hit / len(truth), 4) if truth else 1.0,
        }
        tp, n_found, n_true = tp + hit, n_found + len(found_s), n_true + len(truth)
    result = {
        "n_pairs": args.n,
        "seconds": round(seconds, 2),
        "pairs_per_second": round(args.n / seconds, 1),
        "precision": round(tp / n_found, 4) if n_found else 1.0,
        "recall": round(tp / n_true, 4) if n_true else 1.0,
        "sample": len(sample),
        "num_perm": cfg.num_perm,
        "shingle_chars": cfg.shingle_chars,
        "fields": per_field,
    }
    out = perf_dir() / "dedup.json"
    atomic_write_json(out, result)
    print(
        f"dedup: {args.n} pairs in {result['seconds']} s ({result['pairs_per_second']} pairs/s), "
        f"precision {result['precision']}, recall {result['recall']} "
        f"(brute force on {len(sample)} sampled docs) -> {out}"
    )
    for name, f in per_field.items():
        print(
            f"  {name}: {f['seconds']} s, precision {f['precision']}, recall {f['recall']}, "
            f"{f['sample_pairs_true']} true pairs in the sample"
        )
    return 0
