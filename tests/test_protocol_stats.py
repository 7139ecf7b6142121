"""The statistics docs/protocol.md relies on: the power calculation (checked against a
simulation), minimum detectable effects, Holm's correction and the primary verdicts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from benchmark.contracts.protocol import PRIMARY_ADAPTER, endpoints
from benchmark.evaluation.protocol import verdicts
from benchmark.evaluation.stats import (
    BootstrapSettings,
    holm,
    min_detectable_effect,
    paired_comparison,
    questions_needed,
)


def test_protocol_sample_size_is_the_registered_one():
    # docs/protocol.md: sd 0.10, delta 0.02, power 0.8, Holm's first step over 8 -> ~320.
    assert questions_needed(0.10, 0.02, alpha=0.05 / 8) == 320
    assert questions_needed(0.10, 0.02, alpha=0.05) == 197  # ENVIRONMENT.md's figure
    assert min_detectable_effect(0.10, 320, alpha=0.05 / 8) == pytest.approx(0.02, abs=2e-4)
    assert math.isnan(min_detectable_effect(0.1, 1))
    with pytest.raises(ValueError):
        questions_needed(0.1, 0.0)


def test_power_calculation_matches_a_simulation():
    """Simulated paired differences at the computed n reject at about the promised rate."""
    sd, delta, alpha = 0.10, 0.02, 0.05 / 8
    n = questions_needed(sd, delta, alpha=alpha)
    rng = np.random.default_rng(7)
    diffs = rng.normal(delta, sd, size=(4000, n))
    p = stats.ttest_1samp(diffs, 0.0, axis=1).pvalue
    power = float(np.mean(p < alpha))
    assert 0.77 <= power <= 0.83, power
    # and half the questions give clearly less power
    p_half = stats.ttest_1samp(diffs[:, : n // 2], 0.0, axis=1).pvalue
    assert float(np.mean(p_half < alpha)) < 0.55


def test_holm_matches_its_definition():
    p = [0.01, 0.04, 0.03, 0.005, float("nan")]
    adjusted = holm(p)
    assert adjusted[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(adjusted[4])
    assert holm([0.5, 0.9]) == [1.0, 1.0]


def test_paired_comparison_reports_its_minimum_detectable_effect():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.3, 0.6, 80)
    cand = base + rng.normal(0.01, 0.1, 80)
    comp = paired_comparison(cand, base, BootstrapSettings(n_resamples=999))
    sd = float(np.std(cand - base, ddof=1))
    assert comp["sd_diff"] == pytest.approx(sd)
    assert comp["mde"] == pytest.approx(min_detectable_effect(sd, 80))


def _comparison(delta: float, p: float) -> dict:
    return {"delta": delta, "p_value": p, "mde": 0.03, "n": 80}


def test_verdicts_apply_holm_across_the_endpoints_tested():
    comps = {task: {} for _, task, _ in endpoints()}
    ps = iter([0.001, 0.004, 0.02, 0.3, 0.0001, 0.006, 0.01, 0.04])
    for _, task, metric in endpoints():
        comps[task][metric] = _comparison(0.02, next(ps))
    comps["marine_recall"]["tfidf_cosine"]["delta"] = -0.02  # significant, but a loss
    out = verdicts({PRIMARY_ADAPTER: comps, "other": {"marine_qa": comps["marine_qa"]}})
    primary = out[PRIMARY_ADAPTER]
    assert primary["primary"] and "8 endpoints" in primary["correction"]
    held = {(c["claim"], c["metric"]): c["holds"] for c in primary["claims"]}
    # sorted p: .0001 .001 .004 .006 .01 .02 .04 .3 -> x8 x7 x6 x5 x4 x3 x2 x1 (running max)
    assert held[("transfer", "rougeL")] and held[("recall", "rougeL")]
    assert held[("recall", "bertscore_f1")] and held[("transfer", "bertscore_f1")]
    assert not held[("recall", "token_f1")]  # 0.02 * 3 = 0.06
    assert not held[("recall", "tfidf_cosine")]  # a loss never "holds"
    other = out["other"]
    assert not other["primary"] and "4 endpoints" in other["correction"]
    assert sum(c["missing"] for c in other["claims"]) == 4
