"""Bootstrap CIs and paired tests behave as statistics should on known cases."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.errors import UserError
from benchmark.evaluation.stats import BootstrapSettings, mean_ci, paired_comparison
from benchmark.evaluation.summary import build_summary

FAST = BootstrapSettings(n_resamples=2000, seed=3)


def test_constant_shift_gives_tiny_p_value():
    rng = np.random.default_rng(0)
    base = rng.uniform(size=40)
    result = paired_comparison(base + 0.1, base, FAST)
    assert result["delta"] == pytest.approx(0.1)
    assert result["p_value"] < 0.001
    assert result["ci_low"] == pytest.approx(0.1) and result["ci_high"] == pytest.approx(0.1)


def test_identical_scores_give_p_one_and_zero_delta():
    scores = np.linspace(0, 1, 25)
    result = paired_comparison(scores, scores, FAST)
    assert result["p_value"] == 1.0
    assert result["delta"] == 0.0 and result["ci_low"] == 0.0 and result["ci_high"] == 0.0


def test_exact_sign_flip_p_value_for_small_n():
    # 5 positive differences: only 2 of the 32 sign patterns are as extreme -> p = 1/16
    result = paired_comparison(np.arange(5) + 1.0, np.zeros(5), FAST)
    assert result["p_value"] == pytest.approx(2 / 32)


def test_noise_is_not_significant():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=200), rng.normal(size=200)
    result = paired_comparison(a, b, FAST)
    assert result["p_value"] > 0.05
    assert result["ci_low"] < 0 < result["ci_high"]


def test_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    settings = BootstrapSettings(n_resamples=1000, seed=0)
    trials, covered = 200, 0
    for _ in range(trials):
        sample = rng.exponential(scale=1.0, size=60)  # skewed; true mean 1.0
        ci = mean_ci(sample, settings)
        covered += ci["ci_low"] <= 1.0 <= ci["ci_high"]
    assert 0.88 <= covered / trials <= 0.99


def test_mean_ci_is_seeded_and_handles_degenerate_input():
    data = np.random.default_rng(4).normal(size=50)
    assert mean_ci(data, FAST) == mean_ci(data, FAST)
    assert mean_ci([0.5], FAST) == {"mean": 0.5, "ci_low": 0.5, "ci_high": 0.5, "n": 1}
    assert mean_ci([1.0, None, float("nan"), 3.0], FAST)["n"] == 2


def test_summary_pairs_adapter_and_base_by_document():
    def rows(model, values):
        return [
            {"model": model, "task": "t", "doc_id": i, "metrics": {"m": v}}
            for i, v in enumerate(values)
        ]

    base = [0.1 * i for i in range(20)]
    summary = build_summary(
        "r", {"base": rows("base", base), "a": rows("a", [v + 0.2 for v in base])[::-1]}, FAST
    )
    assert summary["models"]["a"]["t"]["m"]["mean"] == pytest.approx(np.mean(base) + 0.2)
    cmp = summary["comparisons"]["a"]["t"]["m"]
    assert cmp["delta"] == pytest.approx(0.2) and cmp["p_value"] < 0.001
    assert "base" not in summary["comparisons"]
    assert summary["bootstrap"] == FAST.as_dict()


def test_summary_compares_every_model_with_a_reference_model_too():
    def rows(values):
        return [
            {"task": "marine_qa", "doc_id": i, "metrics": {"rougeL": v}}
            for i, v in enumerate(values)
        ]

    scores = {
        "base": rows([0.1, 0.2, 0.3, 0.2]),
        "curated": rows([0.3, 0.4, 0.5, 0.4]),
        "half": rows([0.2, 0.3, 0.4, 0.3]),
    }
    settings = BootstrapSettings(n_resamples=200, seed=0)
    summary = build_summary("dt", scores, settings, references=("curated",))
    against = summary["reference_comparisons"]["curated"]
    assert set(against) == {"base", "half"}
    assert against["half"]["marine_qa"]["rougeL"]["delta"] == pytest.approx(-0.1)
    assert summary["comparisons"]["half"]["marine_qa"]["rougeL"]["delta"] == pytest.approx(0.1)
    assert "reference_comparisons" not in build_summary("dt", scores, settings)
    with pytest.raises(UserError, match="nobody"):
        build_summary("dt", scores, settings, references=("nobody",))
