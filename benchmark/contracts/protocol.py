"""The pre-registered endpoints of docs/protocol.md, declared once: which comparisons decide
whether fine-tuning helped, at what level, with which multiplicity correction."""

from __future__ import annotations

#: the adapter whose comparison with the base model the primary claims are about
PRIMARY_ADAPTER = "smollm2-lora-r16"
#: (claim, task): recall of trained facts in new words; transfer to held-out facts
PRIMARY_SETS = (("recall", "marine_recall"), ("transfer", "marine_qa"))
#: the seed's four metrics of the greedy answer against the reference
PRIMARY_METRICS = ("rougeL", "bertscore_f1", "token_f1", "tfidf_cosine")
#: family-wise level; Holm's step-down correction across every (set, metric) endpoint
ALPHA = 0.05
#: power at which minimum detectable effects are reported
POWER = 0.8


def endpoints() -> list[tuple[str, str, str]]:
    """(claim, task, metric) for each primary hypothesis, in the protocol's order."""
    return [(claim, task, metric) for claim, task in PRIMARY_SETS for metric in PRIMARY_METRICS]
