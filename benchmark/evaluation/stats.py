"""Is a difference real? Bootstrap confidence intervals and paired tests on per-sample scores.

- `mean_ci`: mean and percentile bootstrap CI of one model's per-sample scores.
- `paired_comparison`: adapter vs base on the same documents: the mean per-sample difference,
  its percentile bootstrap CI, a two-sided paired permutation (sign-flip) test p-value, and the
  minimum effect that comparison could detect (`min_detectable_effect`).
- `questions_needed` / `min_detectable_effect`: the power calculation of docs/protocol.md.
- `holm`: Holm's step-down adjustment of a family of p-values.

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
    sd = float(diff.std(ddof=1)) if n > 1 else float("nan")
    return {
        "delta": delta,
        "ci_low": low,
        "ci_high": high,
        "p_value": p_value,
        "n": n,
        "sd_diff": sd,
        "mde": min_detectable_effect(sd, n),
        "test": PAIRED_TEST,
    }


def _z_sum(alpha: float, power: float) -> float:
    return float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power))


def questions_needed(sd_diff: float, delta: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Paired questions for a two-sided test at level `alpha` to detect a mean difference
    `delta` with probability `power`, when per-question differences have SD `sd_diff`
    (normal approximation: n = ((z_{1-alpha/2} + z_power) * sd / delta)^2, rounded up)."""
    if delta <= 0 or sd_diff < 0:
        raise ValueError(f"need delta > 0 and sd_diff >= 0, got {delta}, {sd_diff}")
    return int(np.ceil((_z_sum(alpha, power) * sd_diff / delta) ** 2))


def min_detectable_effect(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference a paired test on `n` questions detects with
    probability `power` at two-sided level `alpha` (the inverse of `questions_needed`)."""
    if n < 2 or not np.isfinite(sd_diff):
        return float("nan")
    return float(_z_sum(alpha, power) * sd_diff / np.sqrt(n))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in the input order:
    the k-th smallest p is multiplied by (m - k), running maxima keep them monotone, capped at
    1. NaN p-values are left out of the family and stay NaN. Written here because scipy offers
    only false-discovery-rate control (`false_discovery_control`) and statsmodels, which has
    Holm, is not otherwise a dependency."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    running = 0.0
    for rank, i in enumerate(finite[np.argsort(p[finite], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()
