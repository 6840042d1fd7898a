"""Launch real `python -m model` processes on 127.0.0.1 for integration tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from model import log_lines
from scripts.paths import REPO_ROOT
from scripts.ports import free_ports  # noqa: F401 (tests/test_signals.py imports it from here)



class Proc:
    """A child process whose combined output goes to a log file."""

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict[str, str]):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen([sys.executable, "-m", "model", *args], cwd=REPO_ROOT, env=env,
                                      stdout=self._log, stderr=subprocess.STDOUT,
                                      start_new_session=True)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"{self.name} did not exit within {timeout} s; log:\n"
                                 f"{self.output()[-3000:]}") from None
        finally:
            self._log.close()

    def wait_for(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output(), re.M)
            if match:
                return match
            if self.popen.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"{self.name}: no {pattern!r} within {timeout} s "
                             f"(exit {self.popen.poll()}); log:\n{self.output()[-3000:]}")

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "MNIST_", "JOB_"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", TMPDIR=str(tmp))
    return env


class Cluster:
    """N training workers on 127.0.0.1 plus an optional evaluator."""

    def __init__(self, tmp: Path, workers: int, train_args: list[str]):
        self.tmp = tmp
        self.model_dir = tmp / "model"
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.worker_tmp = [tmp / f"worker{i}-tmp" for i in range(workers)]
        self.num_workers = workers
        self.train_args = train_args
        self.ports = free_ports(workers)
        self.procs: list[Proc] = []

    def start_workers(self, attempt: int = 0, extra: list[str] | None = None,
                      env: dict[str, str] | None = None) -> list[Proc]:
        addresses = [f"127.0.0.1:{p}" for p in self.ports]
        started = []
        for i in range(self.num_workers):
            self.worker_tmp[i].mkdir(exist_ok=True)
            worker_env = {**base_env(self.worker_tmp[i]), **(env or {})}
            if self.num_workers > 1:
                worker_env["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses},
                                                      "task": {"type": "worker", "index": i}})
            proc = Proc(f"worker{i}-attempt{attempt}",
                        ["train", "--model-dir", str(self.model_dir), *self.train_args, *(extra or [])],
                        self.logs, worker_env)
            started.append(proc)
        self.procs += started
        return started

    def start_evaluator(self, name: str = "evaluator", extra: list[str] | None = None) -> Proc:
        proc = Proc(name, ["evaluate", "--model-dir", str(self.model_dir),
                           "--eval-interval-secs", "1", *(extra or [])],
                    self.logs, base_env(self.tmp))
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            proc.kill()


def done_line(proc: Proc) -> tuple[int, str]:
    match = log_lines.TRAIN_DONE.search(proc.output())
    assert match, f"{proc.name} did not finish; log:\n{proc.output()[-3000:]}"
    return int(match["step"]), match["sha256"]


def eval_steps(proc: Proc) -> list[int]:
    return [int(m["step"]) for m in log_lines.EVAL_VALIDATION.finditer(proc.output())]
