"""The base model every stage assumes when none is named (training configs, evaluation, the
default results run name): one preset of benchmark.models, named here once."""

from __future__ import annotations

DEFAULT_MODEL = "smollm2-135m-instruct"
