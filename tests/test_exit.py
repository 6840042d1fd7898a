"""How `python -m model` ends (model/cli.py exit_process): after the trainer's exits the
interpreter's teardown of TensorFlow is skipped, with the exit code, the atexit handlers and
every line of output kept; the other commands exit the ordinary way.

Real processes: a small program that registers an atexit handler and an object whose
finalizer prints, then exits through exit_process (no TensorFlow needed to show the mechanism;
tests/test_signals.py and tests/test_multiworker.py check the trainer's real exit codes)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from model.errors import EXIT_FAILURE, EXIT_OK, EXIT_PREEMPTED
from scripts.paths import REPO_ROOT

PROGRAM = """
import atexit, logging, sys
from model.cli import exit_process
logging.basicConfig(level="INFO", stream=sys.stdout, format="%(message)s")
atexit.register(print, "atexit ran", flush=True)
class Finalized:
    def __del__(self):
        print("finalizer ran", flush=True)
keep = Finalized()
logging.getLogger("model").info("last line")
sys.stdout.write("unflushed tail")  # no newline, no flush: exit_process must flush it
exit_process({code}, skip_teardown={skip})
"""


def run(code: int, skip: bool) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROGRAM.format(code=code, skip=skip)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("code", [EXIT_OK, EXIT_PREEMPTED])
def test_a_complete_exit_skips_the_teardown_and_keeps_its_code_handlers_and_output(code):
    done = run(code, skip=True)
    assert done.returncode == code, done.stderr
    for line in ("last line", "atexit ran", "unflushed tail"):
        assert line in done.stdout, done.stdout
    assert "finalizer ran" not in done.stdout  # the interpreter's teardown did not run


def test_any_other_exit_is_the_ordinary_one():
    done = run(EXIT_FAILURE, skip=False)
    assert done.returncode == EXIT_FAILURE, done.stderr
    assert "atexit ran" in done.stdout and "finalizer ran" in done.stdout


def test_every_trainer_exit_skips_the_teardown_and_other_commands_do_not(monkeypatch):
    """A failed trainer too: after a peer's SIGKILL the survivor's teardown waited 30 s for the
    dead peer (docs/goodput.md), time taken from the group's restart."""
    from model import cli

    seen = []
    monkeypatch.setattr(cli, "exit_process",
                        lambda code, *, skip_teardown: seen.append((code, skip_teardown)))
    for argv, code in ((["train"], EXIT_OK), (["train"], EXIT_PREEMPTED), (["train"], EXIT_FAILURE),
                       (["train"], 2), (["evaluate"], EXIT_OK), (["export"], EXIT_FAILURE)):
        monkeypatch.setattr(cli, "main", lambda _argv, code=code: code)
        cli.run(argv)
    assert seen == [(EXIT_OK, True), (EXIT_PREEMPTED, True), (EXIT_FAILURE, True), (2, True),
                    (EXIT_OK, False), (EXIT_FAILURE, False)]
