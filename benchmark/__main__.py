"""`python -m benchmark` is the same as the `marinebench` command."""

from benchmark.cli import main

raise SystemExit(main())
