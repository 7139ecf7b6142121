"""The leaderboard site: ingest results folders (and any lm-eval results JSON), render static HTML."""
