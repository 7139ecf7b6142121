"""Performance measurements (not timed tests): each times one stage against a baseline in one
run and writes build/perf/<name>.json. `marinebench perf NAME`, `nox -s perf -- NAME`."""
