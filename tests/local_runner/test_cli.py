"""The command line (cli.py)."""

from __future__ import annotations

import subprocess
import sys

from scripts.paths import REPO_ROOT


def test_help_documents_the_runner():
    result = subprocess.run([sys.executable, "-m", "scripts.local_runner", "--help"], capture_output=True,
                            text=True, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0
    for text in ("--fault", "kill:worker=1:step=300", "exit codes", "summary.json", "--keep-tensorboard",
                 "--restart-backoff", "cleanup", "--resume", "--upgrade", "ttlSecondsAfterFinished",
                 "immutable", "rendered.previous.yaml"):
        assert text in result.stdout, text
