"""What each dataset build step kept and dropped, and why: for build_report.json and the console."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class StepReport:
    name: str
    input: int = 0
    kept: int = 0
    dropped: list[dict] = field(default_factory=list)  # {"id", "reason", "detail"?}

    def drop(self, rec_id: str, reason: str, detail: str | None = None) -> None:
        item = {"id": rec_id, "reason": reason}
        if detail:
            item["detail"] = detail
        self.dropped.append(item)

    def keep(self, records: list, reasons: list[tuple[str, str] | None]) -> list:
        """The records with no (reason, detail) against them; the others are recorded as dropped."""
        kept = []
        for rec, why in zip(records, reasons, strict=True):
            if why:
                self.drop(rec.id, *why)
            else:
                kept.append(rec)
        self.kept = len(kept)
        return kept

    def to_dict(self) -> dict:
        reasons = Counter(d["reason"] for d in self.dropped)
        return {
            "name": self.name,
            "input": self.input,
            "kept": self.kept,
            "dropped": len(self.dropped),
            "reasons": dict(sorted(reasons.items())),
            "dropped_items": self.dropped,
        }


def print_steps(steps: list[dict], console=None) -> None:
    """A rich table of the steps: in, kept, dropped, reasons."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=True, width=120)
    table = Table(title="dataset build steps")
    for col in ("step", "in", "kept", "dropped", "why"):
        table.add_column(col, overflow="fold")
    for step in steps:
        why = ", ".join(f"{k}: {v}" for k, v in step["reasons"].items()) or "-"
        table.add_row(
            step["name"], str(step["input"]), str(step["kept"]), str(step["dropped"]), why
        )
    console.print(table)
