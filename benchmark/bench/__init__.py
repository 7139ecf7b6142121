"""Benchmark scripts (not timed tests): each measures one stage and writes build/bench/<name>.json."""
