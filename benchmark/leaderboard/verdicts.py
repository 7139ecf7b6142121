"""The verdicts of the pre-registered protocol (docs/protocol.md) as the summary records them
(`summary["protocol"]`, benchmark/evaluation/protocol.py): claim by claim, for the primary
adapter, whether it held. Shared by the site's method page and the README's results section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmark.contracts.protocol import ALPHA, PRIMARY_ADAPTER, endpoints

HELD, NOT_HELD, NOT_EVALUATED = "held", "did not hold", "not evaluated"


@dataclass(frozen=True)
class Claim:
    claim: str
    task: str
    metric: str
    n: int
    delta: float | None
    p: float | None
    p_holm: float | None
    mde: float | None
    verdict: str


@dataclass(frozen=True)
class Verdicts:
    adapter: str
    alpha: float
    correction: str
    claims: list[Claim]

    @property
    def held(self) -> int:
        return sum(c.verdict == HELD for c in self.claims)

    @property
    def tested(self) -> int:
        return sum(c.verdict != NOT_EVALUATED for c in self.claims)

    def of(self, claim: str) -> list[Claim]:
        return [c for c in self.claims if c.claim == claim]

    def sentence(self) -> str:
        """One line: how many claims held, per claim, e.g. "recall 3 of 4 held, transfer 2 of
        4 held (Holm across the 8 endpoints tested)"."""
        parts = []
        for claim in dict.fromkeys(c.claim for c in self.claims):
            mine = self.of(claim)
            tested = [c for c in mine if c.verdict != NOT_EVALUATED]
            if not tested:
                parts.append(f"{claim} not evaluated")
            else:
                held = sum(c.verdict == HELD for c in tested)
                parts.append(f"{claim} {held} of {len(tested)} held")
        return ", ".join(parts) + f" ({self.correction}, α = {self.alpha:g})"


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def verdicts(summary: dict[str, Any] | None, adapter: str = PRIMARY_ADAPTER) -> Verdicts | None:
    """The protocol's verdicts for `adapter` from a summary, or None where the summary has no
    protocol block for it (evaluated before the protocol, or without that adapter)."""
    block = ((summary or {}).get("protocol") or {}).get(adapter)
    if not isinstance(block, dict):
        return None
    recorded = {
        (c.get("claim"), c.get("task"), c.get("metric")): c
        for c in block.get("claims") or []
        if isinstance(c, dict)
    }
    claims = []
    for claim, task, metric in endpoints():
        c = recorded.get((claim, task, metric)) or {"missing": True}
        missing = bool(c.get("missing"))
        verdict = NOT_EVALUATED if missing else HELD if c.get("holds") else NOT_HELD
        claims.append(
            Claim(
                claim,
                task,
                metric,
                int(c.get("n") or 0),
                None if missing else _num(c.get("delta")),
                None if missing else _num(c.get("p_value")),
                None if missing else _num(c.get("p_holm")),
                None if missing else _num(c.get("mde")),
                verdict,
            )
        )
    return Verdicts(
        adapter,
        _num(block.get("alpha")) or ALPHA,
        str(block.get("correction") or "Holm"),
        claims,
    )
