"""`marinebench report` writes the README's results section from build/ and nothing else:
recall and transfer side by side with every delta's p-value and MDE, and the protocol's
verdicts claim by claim."""

from __future__ import annotations

import json
import re

import pytest

from benchmark.contracts import results as contract
from benchmark.contracts.protocol import PRIMARY_ADAPTER, PRIMARY_METRICS, endpoints
from benchmark.errors import UserError
from benchmark.leaderboard.synthetic import write_results_run, write_tree
from benchmark.readme_results import END, START, render_section, replace_section


def _rows(section: str, first_header: str) -> list[list[str]]:
    """The rows of the table whose header starts with `first_header`, as lists of cells."""
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def test_section_has_every_model_metric_and_training_cost(build_root):
    tree = write_tree(build_root, n_adapters=2, n_samples=12)
    section = render_section(tree["run"].name)
    for model in ("base", "smollm2-lora-r8", "smollm2-lora-r16"):
        assert f"| {model} |" in section
    assert "rougeL" in section and "tfidf_cosine" in section and "(p=" in section
    assert "**Training cost**" in section and "MFU" in section
    assert "questions from `build/dataset` (Dataset folder, hash `dddddddddddd`" in section


def test_recall_and_transfer_side_by_side_with_p_and_mde(build_root):
    tree = write_tree(build_root, n_adapters=2, n_samples=12)
    summary = json.loads((tree["run"] / contract.SUMMARY_FILE).read_text())
    rows = _rows(render_section(tree["run"].name), "| model | recall")
    header = rows[0]
    assert header == [
        "model",
        *(f"recall {m}" for m in PRIMARY_METRICS),
        "recall length",
        *(f"transfer {m}" for m in PRIMARY_METRICS),
        "transfer length",
    ]
    body = {r[0]: dict(zip(header, r, strict=True)) for r in rows[2:]}
    assert set(body) == set(summary["models"])
    for claim, task in (("recall", "marine_recall"), ("transfer", "marine_qa")):
        for metric in PRIMARY_METRICS:
            stat = summary["models"]["smollm2-lora-r16"][task][metric]
            c = summary["comparisons"]["smollm2-lora-r16"][task][metric]
            cell = body["smollm2-lora-r16"][f"{claim} {metric}"]
            assert cell.startswith(f"{stat['mean']:.3f} [{stat['ci_low']:.3f}, ")
            assert f"<br>{c['delta']:+.3f} (p={c['p_value']:.2g}, MDE {c['mde']:.3f})" in cell
            assert cell.endswith(" ✔") == (c["p_value"] < 0.05)
        # the answers' length in words, its ratio to the references, its change (no ✔: it
        # describes the answers, it is neither better nor worse)
        words = summary["models"]["base"][task]["answer_words"]["mean"]
        ratio = summary["models"]["base"][task]["length_ratio"]["mean"]
        assert body["base"][f"{claim} length"] == f"{words:.1f} words (×{ratio:.2f})"
        c = summary["comparisons"]["smollm2-lora-r16"][task]["answer_words"]
        length = body["smollm2-lora-r16"][f"{claim} length"]
        assert f"<br>{c['delta']:+.1f} (p={c['p_value']:.2g}, MDE {c['mde']:.1f})" in length
        assert "✔" not in length


def test_verdicts_claim_by_claim(build_root):
    tree = write_tree(build_root, n_adapters=2, n_samples=12)
    summary = json.loads((tree["run"] / contract.SUMMARY_FILE).read_text())
    section = render_section(tree["run"].name)
    rows = _rows(section, "| claim |")
    assert rows[0] == ["claim", "task", "metric", "n", "Δ", "p", "Holm p", "MDE", "verdict"]
    claims = summary["protocol"][PRIMARY_ADAPTER]["claims"]
    assert [tuple(r[:3]) for r in rows[2:]] == endpoints()
    for row, c in zip(rows[2:], claims, strict=True):
        assert row[3:8] == [
            str(c["n"]),
            f"{c['delta']:+.3f}",
            f"{c['p_value']:.2g}",
            f"{c['p_holm']:.2g}",
            f"{c['mde']:.3f}",
        ]
        assert row[8] == ("**held**" if c["holds"] else "did not hold")
    held = {
        claim: sum(c["holds"] for c in claims if c["claim"] == claim)
        for claim in ("recall", "transfer")
    }
    assert (
        f"recall {held['recall']} of 4 held, transfer {held['transfer']} of 4 held "
        "(Holm across the 8 endpoints tested, α = 0.05)" in section
    )


def test_a_run_without_recall_has_no_recall_columns(build_root):
    older = tuple(t for t in contract.task_names() if "recall" not in t)
    tree = write_tree(build_root, n_adapters=2, n_samples=12, tasks=older)
    section = render_section(tree["run"].name)
    header = _rows(section, "| model | transfer")[0]
    assert not any(h.startswith("recall") for h in header)
    verdicts = _rows(section, "| claim |")[2:]
    assert [r[8] for r in verdicts[:4]] == ["not evaluated"] * 4
    assert all(r[3] == "–" for r in verdicts[:4]) and all(r[3] != "–" for r in verdicts[4:])
    assert "recall not evaluated, transfer" in section and "the 4 endpoints tested" in section


def test_a_run_on_other_questions_says_so(build_root):
    write_results_run(
        build_root / "results",
        [],
        run="mine",
        n_samples=8,
        dataset_hash="e" * 64,
        dataset_source="jsonl:/data/my.jsonl",
        tasks=("marine_qa",),
    )
    section = render_section("mine")
    assert "questions from `my.jsonl` (JSONL file, hash `eeeeeeeeeeee`" in section
    assert f"records none for `{PRIMARY_ADAPTER}`" in section  # no adapter was evaluated


def test_terminal_table_shows_recall_and_transfer_side_by_side(build_root, capsys):
    from benchmark.pipeline import _print_summary

    tree = write_tree(build_root, n_adapters=1, n_samples=12)
    _print_summary(tree["run"] / contract.SUMMARY_FILE)
    out = capsys.readouterr().out
    assert "recall (marine_recall) | transfer (marine_qa)" in out
    first_header_line = next(line for line in out.splitlines() if "┃" in line)
    assert re.findall(r"recall|transfer", first_header_line) == ["recall"] * 4 + ["transfer"] * 4
    summary = json.loads((tree["run"] / contract.SUMMARY_FILE).read_text())
    c = summary["comparisons"]["smollm2-lora-r8"]["marine_recall"]["rougeL"]
    assert f"{c['delta']:+.3f}" in out


def test_replace_section_keeps_the_rest_and_needs_markers(build_root):
    readme = f"# Title\n\nintro\n\n{START}\nold numbers\n{END}\n\ntail\n"
    out = replace_section(readme, "new numbers\n")
    assert out == f"# Title\n\nintro\n\n{START}\nnew numbers\n{END}\n\ntail\n"
    with pytest.raises(UserError, match="markers"):
        replace_section("# no markers here\n", "x")


def test_missing_results_is_a_clear_error(build_root):
    with pytest.raises(UserError, match="nox -s benchmark"):
        render_section("no-such-run")
