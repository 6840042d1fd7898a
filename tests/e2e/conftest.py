"""Helpers of the end-to-end tests: run `python -m scripts.local_runner` and inspect the run.

The runner needs iproute2, util-linux, helm, and root or (as a normal user)
unprivileged user namespaces; without them these tests are skipped with the
reason (for user namespaces: the setting that forbids them), and fail
instead when CI=true.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scripts.paths import REPO_ROOT  # noqa: F401 (re-exported)
from tests.requirements import in_ci, unavailable  # noqa: F401 (re-exported)

from scripts.local_runner import netns, userns  # noqa: E402
from scripts.local_runner.render import find_helm  # noqa: E402

# Small, fast settings shared by the MLP runs (the chart's defaults otherwise):
# a step line every 50 steps (the library logs a step where a summary is written),
# quick evaluator polls and a 1 s restart back-off (doubling per failure of an index).
FAST = ["--set", "training.model=mlp", "--set", "training.saveSummariesSteps=50",
        "--set", "evaluator.evalIntervalSecs=1", "--set", "tensorboard.reloadInterval=2",
        "--set", "trainer.extraArgs={--log-every-steps,50,--steps-per-loop,50}",
        "--restart-backoff", "1"]


def runner_prerequisites() -> str | None:
    """Why the local runner cannot run here, or None."""
    missing = userns.missing_tools()
    if missing:
        return f"missing {', '.join(missing)} (Debian packages iproute2, util-linux)"
    if not find_helm():
        return "helm not found (run `make tools` or `bash scripts/install_k8s_tools.sh`)"
    if ROOTLESS:
        return userns.unavailable_reason()
    probe = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create network/mount namespaces here: {probe.stderr.strip()}"
    return None


# As a normal user the runner's namespaces live in its own user namespace (userns.py): their
# names are never visible here, and they vanish with its holder process.
ROOTLESS = os.geteuid() != 0


def holder_userns(run_id: str) -> int:
    """The user namespace (inode) of a live rootless run's holder process."""
    pids = processes_mentioning(f"{userns.HOLDER_NAME} {run_id}")
    assert len(pids) == 1, f"expected one holder process of run {run_id}, found {pids}"
    return os.stat(f"/proc/{pids[0][0]}/ns/user").st_ino


@pytest.fixture(scope="session")
def runner_ready() -> None:
    reason = runner_prerequisites()
    if reason:
        unavailable(reason)


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains `text` (the run dir: every pod's args name it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            cmdline = raw.replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append((int(entry), cmdline.strip()))
    return found


class LocalRun:
    """One `python -m scripts.local_runner` process and its run directory."""

    def __init__(self, tmp_path: Path, args: list[str], name: str = "run", *, mode: str = "--fresh",
                 run_dir: Path | None = None):
        """`mode` --fresh (a new run dir), --resume or --upgrade (of `run_dir`, e.g. an earlier run's)."""
        self.name = name
        self.run_dir = run_dir or tmp_path / name
        self.out_path = tmp_path / f"{name}.out"
        self.cmd = [sys.executable, "-m", "scripts.local_runner", mode, "--run-dir", str(self.run_dir),
                    "--quiet-tf", "--progress-every", "0", *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "MNIST_", "JOB_"))}
        self._out = open(self.out_path, "wb")
        # Its own session: the test signals it like a terminal would, and
        # nothing the test does reaches the pods directly.
        self.popen = subprocess.Popen(self.cmd, cwd=REPO_ROOT, env=env, stdout=self._out,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        self.t0 = time.monotonic()

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.output().splitlines()[-n:])

    def wait(self, timeout: float) -> int:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(f"the runner did not finish within {timeout} s; "
                                 f"output:\n{self.tail()}") from None
        self._out.close()
        return code

    def interrupt(self, sig: int = signal.SIGINT) -> None:
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def stop(self) -> None:
        """Ctrl-C, then kill: never leave the runner behind (its pods die with it)."""
        if self.popen.poll() is None:
            self.interrupt()
            try:
                self.popen.wait(60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._out.close()
        run_id = self.run_id()
        if run_id and not ROOTLESS:
            netns.delete_run(run_id)

    def wait_for(self, pattern: str, timeout: float, where: str | None = None) -> re.Match:
        """Wait until the runner's output (or a file under the run dir, `where` a glob) matches."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            texts = [self.output()] if where is None else [
                p.read_text(errors="replace") for p in sorted(self.run_dir.glob(where))]
            for text in texts:
                match = re.search(pattern, text, re.M)
                if match:
                    return match
            if self.popen.poll() is not None:
                break
            time.sleep(0.3)
        raise AssertionError(f"no {pattern!r} within {timeout} s (runner exit {self.popen.poll()}); "
                             f"output:\n{self.tail()}")

    def run_id(self) -> str | None:
        match = re.search(r"\| run (\S+): release", self.output())
        return match.group(1) if match else None

    def summary(self) -> dict:
        return json.loads((self.run_dir / "summary.json").read_text())

    def pods(self, component: str | None = None) -> list[dict]:
        return [p for p in self.summary()["pods"] if component is None or p["component"] == component]

    def log(self, pod_name: str) -> str:
        return (self.run_dir / "logs" / f"{pod_name}.log").read_text(errors="replace")

    def model_dir(self) -> Path:
        return Path(self.summary()["model_dir"])

    def assert_clean(self) -> None:
        """No process of the run left (pods, and a rootless run's holder), and none of its network
        namespaces (as root; rootless, they went with the holder's namespaces)."""
        assert self.popen.poll() is not None, "the runner still runs"
        deadline = time.monotonic() + 10
        while processes_mentioning(str(self.run_dir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        leftovers = processes_mentioning(str(self.run_dir))
        assert not leftovers, f"processes outlived the run: {leftovers}"
        run_id = self.run_id()
        assert run_id, f"no run id in the output:\n{self.tail()}"
        while processes_mentioning(f"{userns.HOLDER_NAME} {run_id}") and time.monotonic() < deadline:
            time.sleep(0.2)
        holders = processes_mentioning(f"{userns.HOLDER_NAME} {run_id}")
        assert not holders, f"the run's namespace holder outlived it: {holders}"
        assert not netns.runner_namespaces(run_id), f"namespaces left: {netns.runner_namespaces(run_id)}"


def checkpoint_steps(model_dir: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in model_dir.glob("ckpt-*.index")
                  if (m := re.match(r"ckpt-(\d+)\.index", p.name)))


def generations(pods: list[dict]) -> list[list[dict]]:
    """Trainer pods grouped by attempt: [[index 0 and 1 of attempt 0], [... attempt 1], ...]."""
    by_attempt: dict[int, list[dict]] = {}
    for pod in pods:
        by_attempt.setdefault(max(pod["attempt"], pod["restart_count"]), []).append(pod)
    return [sorted(by_attempt[a], key=lambda p: p["index"]) for a in sorted(by_attempt)]


@pytest.fixture
def local_run(runner_ready, tmp_path):
    """Start runs with `local_run(args, name=...)`; every run is stopped and checked clean afterwards."""
    runs: list[LocalRun] = []

    def start(args: list[str], name: str = "run", **kwargs) -> LocalRun:
        run = LocalRun(tmp_path, args, name, **kwargs)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()
    for run in runs:
        run.assert_clean()
