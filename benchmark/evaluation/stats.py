"""Is a difference real? Bootstrap confidence intervals and paired tests on per-sample scores.

- `mean_ci`: mean and percentile bootstrap CI of one model's per-sample scores.
- `paired_comparison`: adapter vs base on the same documents: the mean per-sample difference,
  its percentile bootstrap CI, and a two-sided paired permutation (sign-flip) test p-value.

Both use scipy.stats (bootstrap, permutation_test), vectorised, seeded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 0
DEFAULT_CONFIDENCE = 0.95
PAIRED_TEST = "paired permutation (sign-flip) test, two-sided; percentile bootstrap CI of delta"


@dataclass(frozen=True)
class BootstrapSettings:
    n_resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    confidence: float = DEFAULT_CONFIDENCE

    def as_dict(self) -> dict:
        return {"n_resamples": self.n_resamples, "seed": self.seed, "confidence": self.confidence}


def _clean(values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]


def _percentile_ci(data: np.ndarray, settings: BootstrapSettings) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean; degenerate (constant or n < 2) data give a point."""
    if data.size < 2 or np.all(data == data[0]):
        value = float(data.mean()) if data.size else float("nan")
        return value, value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.bootstrap(
            (data,),
            np.mean,
            n_resamples=settings.n_resamples,
            confidence_level=settings.confidence,
            method="percentile",
            vectorized=True,
            random_state=np.random.default_rng(settings.seed),
        )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_ci(values, settings: BootstrapSettings | None = None) -> dict[str, float]:
    """{"mean", "ci_low", "ci_high", "n"} of per-sample scores (non-finite values dropped)."""
    settings = settings or BootstrapSettings()
    data = _clean(values)
    low, high = _percentile_ci(data, settings)
    mean = float(data.mean()) if data.size else float("nan")
    return {"mean": mean, "ci_low": low, "ci_high": high, "n": int(data.size)}


def paired_comparison(candidate, baseline, settings: BootstrapSettings | None = None) -> dict:
    """Candidate minus baseline on paired samples: delta, its bootstrap CI and a p-value.

    The p-value is a two-sided paired permutation test: under "no difference" each pair's
    difference is as likely to have either sign; scipy flips signs (exactly, when 2**n is at
    most n_resamples). Identical scores give p = 1; a consistent shift gives p near 1/n_resamples.
    """
    settings = settings or BootstrapSettings()
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    n = int(diff.size)
    delta = float(diff.mean()) if n else float("nan")
    low, high = _percentile_ci(diff, settings)
    if n == 0:
        p_value = float("nan")
    elif np.all(diff == 0):
        p_value = 1.0
    else:
        res = stats.permutation_test(
            (diff,),
            lambda d, axis: np.mean(d, axis=axis),
            permutation_type="samples",
            vectorized=True,
            n_resamples=settings.n_resamples,
            alternative="two-sided",
            random_state=np.random.default_rng(settings.seed),
        )
        p_value = float(res.pvalue)
    return {
        "delta": delta,
        "ci_low": low,
        "ci_high": high,
        "p_value": p_value,
        "n": n,
        "test": PAIRED_TEST,
    }
