"""`make demo` (scripts/demo.py): TensorBoard keeps serving after training in a terminal, and the
demo ends with the run in CI, without a terminal or with --exit.

The runner's --keep-serving itself (TensorBoard serving after the Jobs, Ctrl-C ending the run
cleanly with the Jobs' exit code) is tested on a real run by tests/e2e/test_local_runner.py
(`default_run`, test_ctrl_c_after_the_jobs_ends_the_run_with_their_exit_code); here the demo's
choice is checked in real processes, on a pipe and on a pseudo-terminal, stopped at the runner's
--help so that no pod starts.
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys

import pytest

from scripts import demo
from scripts.paths import REPO_ROOT
from tests.e2e.conftest import runner_prerequisites
from tests.requirements import unavailable


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("args,environ,tty,keep", [
    ([], {}, True, True),
    ([], {}, False, False),  # output piped or redirected: a script, not a person
    ([], {"CI": "true"}, True, False),
    ([], {"CI": "false"}, True, True),
    (["--exit"], {}, True, False),
    (["--no-keep-serving"], {}, True, False),
    (["--keep-serving"], {"CI": "1"}, False, True),  # asked for explicitly
])
def test_the_demo_keeps_tensorboard_in_a_terminal_only(args, environ, tty, keep):
    stream = Tty() if tty else io.StringIO()
    assert demo.keep_serving(args, environ=environ, stdin=stream, stdout=stream) is keep


def _demo_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def _runner_line(output: str) -> str:
    [line] = [ln for ln in output.splitlines() if ln.startswith("demo | python -m scripts.local_runner")]
    return line


def test_the_demo_exits_with_the_run_when_not_in_a_terminal():
    reason = runner_prerequisites()
    if reason:
        unavailable(reason)
    result = subprocess.run([sys.executable, "scripts/demo.py", "--help"], cwd=REPO_ROOT, env=_demo_env(),
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TensorBoard stops when training ends" in result.stdout, result.stdout
    assert "--keep-serving" not in _runner_line(result.stdout)


def test_the_demo_keeps_tensorboard_serving_in_a_terminal_and_says_how_to_stop_it():
    reason = runner_prerequisites()
    if reason:
        unavailable(reason)
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen([sys.executable, "scripts/demo.py", "--help"], cwd=REPO_ROOT,
                                   env=_demo_env(), stdin=terminal, stdout=terminal, stderr=terminal)
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the demo closed its end of the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(120) == 0
    finally:
        os.close(controller)
    output = b"".join(chunks).decode(errors="replace").replace("\r\n", "\n")
    assert "TensorBoard keeps serving" in output and "press Ctrl-C" in output, output
    assert "--keep-serving" in _runner_line(output).split(), output
