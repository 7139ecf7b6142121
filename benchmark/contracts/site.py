"""What `marinebench site build` reads: one results root and, optionally, one dataset folder.

- Every folder under the results root that holds one of RUN_MARKERS is a run folder
  (results.py): its models, statistics, per-sample scores and each adapter's training record.
  Nothing outside the results root is read for a run: no adapter folder, no model.
- Every other `*.json` under the results root whose top level has a FOREIGN_RESULTS_KEY object
  is an lm-eval results file from some other run, shown as a row of its own.
- Folders whose name starts with HIDDEN_PREFIX (the evaluation cache, temp folders of atomic
  writes) are skipped.
- The dataset folder (dataset.py) feeds the dataset page: its card, build report and splits.
- The pre-registered protocol (PROTOCOL_DOC, a file of the repository like the templates) is
  rendered into the method page, next to the verdicts each run's summary records.

Rows are grouped by the questions they were scored on (the manifest's dataset_hash,
dataset_source, retention_hash and limit): every table, chart and delta compares only models of
one group, and each group is named after its data's source (benchmark/leaderboard/evalsets.py).
"""

from __future__ import annotations

from benchmark.contracts import results

RUN_MARKERS = (results.MANIFEST_FILE, results.SUMMARY_FILE)
FOREIGN_RESULTS_KEY = "results"
HIDDEN_PREFIX = "."
#: the (task, metric) the leaderboard is sorted by first, and the compare page shows first
PRIMARY = ("marine_qa", "rougeL")
#: the evaluation protocol, relative to the repository root (rendered into the method page)
PROTOCOL_DOC = "docs/protocol.md"
