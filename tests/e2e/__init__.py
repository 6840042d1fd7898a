"""End-to-end tests: the chart run by scripts/local_runner (see conftest.py)."""
