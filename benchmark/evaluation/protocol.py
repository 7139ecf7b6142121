"""The verdicts of docs/protocol.md: for each adapter, its primary endpoints against the base,
Holm-adjusted across the family, and whether each claim held (adjusted p < alpha and a gain)."""

from __future__ import annotations

from benchmark.contracts.protocol import ALPHA, PRIMARY_ADAPTER, endpoints
from benchmark.evaluation.stats import holm


def verdicts(comparisons: dict) -> dict:
    """{adapter: {"primary": bool, "alpha": ..., "claims": [...]}} from summary comparisons.

    Endpoints a run did not evaluate (a task left out, an older dataset without the recall
    split) are listed as missing and left out of the family, so Holm corrects only over the
    hypotheses actually tested; the verdict says how many that was.
    """
    out = {}
    for adapter, tasks in comparisons.items():
        claims = []
        for claim, task, metric in endpoints():
            comp = tasks.get(task, {}).get(metric)
            claims.append(
                {
                    "claim": claim,
                    "task": task,
                    "metric": metric,
                    "delta": comp["delta"] if comp else None,
                    "p_value": comp["p_value"] if comp else None,
                    "mde": comp.get("mde") if comp else None,
                    "n": comp["n"] if comp else 0,
                    "missing": comp is None,
                }
            )
        tested = [c for c in claims if not c["missing"]]
        for c, p in zip(tested, holm([c["p_value"] for c in tested]), strict=True):
            c["p_holm"] = p
            c["holds"] = bool(p < ALPHA and c["delta"] > 0)
        out[adapter] = {
            "primary": adapter == PRIMARY_ADAPTER,
            "alpha": ALPHA,
            "correction": f"Holm across the {len(tested)} endpoints tested",
            "claims": claims,
        }
    return out
