"""`python -m model`: the CLI (model/cli.py)."""

from model.cli import run

run()
