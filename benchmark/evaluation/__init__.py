"""Evaluation: lm-eval tasks on the base model and every adapter, scores, statistics, caching."""
