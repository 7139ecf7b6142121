"""`marinebench report` writes the README's results section from build/ and nothing else."""

from __future__ import annotations

import pytest

from benchmark.errors import UserError
from benchmark.leaderboard.synthetic import write_tree
from benchmark.readme_results import END, START, render_section, replace_section


def test_section_has_every_model_metric_and_training_cost(build_root):
    tree = write_tree(build_root, n_adapters=2, n_samples=12)
    section = render_section(tree["run"].name)
    for model in ("base", "smollm2-lora-r8", "smollm2-lora-r16"):
        assert f"| {model} |" in section
    assert "rougeL" in section and "tfidf_cosine" in section and "(p=" in section
    assert "**Training cost**" in section and "MFU" in section


def test_replace_section_keeps_the_rest_and_needs_markers(build_root):
    readme = f"# Title\n\nintro\n\n{START}\nold numbers\n{END}\n\ntail\n"
    out = replace_section(readme, "new numbers\n")
    assert out == f"# Title\n\nintro\n\n{START}\nnew numbers\n{END}\n\ntail\n"
    with pytest.raises(UserError, match="markers"):
        replace_section("# no markers here\n", "x")


def test_missing_results_is_a_clear_error(build_root):
    with pytest.raises(UserError, match="nox -s benchmark"):
        render_section("no-such-run")
