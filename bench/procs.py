"""Bounded subprocesses: timestamped output, peak memory, CPU accounting, no orphans.

Every benchmark measurement is a child process started here. Each child gets
its own session (process group) so it can be killed with everything it
started; `kill_all` runs at exit (also on Ctrl-C or SIGTERM of the harness,
see bench.run) so a failed measurement never leaves workers behind.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from scripts.paths import REPO_ROOT

PYTHON = sys.executable

_LIVE: dict[int, Proc] = {}
_LIVE_LOCK = threading.Lock()


class BenchError(RuntimeError):
    """A measurement failed (non-zero exit, timeout, unparsable output)."""


def base_env(**extra: str) -> dict[str, str]:
    """The environment every child gets: quiet TensorFlow, unbuffered output, no cluster."""
    env = dict(os.environ)
    for name in ("TF_CONFIG", "JOB_COMPLETION_INDEX", "MNIST_NUM_WORKERS", "TF_LOGDIR",
                 "TF_MAX_STEPS", "MNIST_MODEL", "TF_SAVE_CHECKPOINTS_SECS",
                 "TF_SAVE_SUMMARIES_STEPS", "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS"):
        env.pop(name, None)
    env.update({"PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2",
                "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": str(REPO_ROOT)})
    env.update(extra)
    return env


def _read_vm_hwm_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class Proc:
    """A child process whose output lines are timestamped relative to its start."""

    def __init__(self, name: str, argv: list[str], *, log_path: Path, env: dict[str, str] | None = None,
                 cpus: str | None = None, on_line: Callable[[float, str], None] | None = None):
        if cpus is not None:
            argv = ["taskset", "-c", cpus, *argv]  # taskset execs: the pid stays the child's
        self.name = name
        self.argv = argv
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.lines: list[tuple[float, str]] = []
        self.returncode: int | None = None
        self.rusage: resource.struct_rusage | None = None
        self.peak_rss_sampled_kb = 0
        self._on_line = on_line
        self._log = open(self.log_path, "w", encoding="utf-8")
        self._log.write(f"# {' '.join(argv)}\n")
        self._log.flush()
        self.start = time.monotonic()
        self.popen = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=str(REPO_ROOT), env=env or base_env(), start_new_session=True, text=True,
            encoding="utf-8", errors="replace", bufsize=1)
        self.pid = self.popen.pid
        self.end: float | None = None
        with _LIVE_LOCK:
            _LIVE[self.pid] = self
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            t = time.monotonic() - self.start
            line = raw.rstrip("\n")
            self.lines.append((t, line))
            self._log.write(f"[{t:9.3f}] {line}\n")
            self._log.flush()
            if self._on_line is not None:
                with contextlib.suppress(Exception):  # a callback bug must not kill the reader
                    self._on_line(t, line)

    def poll(self) -> int | None:
        """The exit code if the child has exited (reaping it and keeping its rusage)."""
        if self.returncode is not None:
            return self.returncode
        hwm = _read_vm_hwm_kb(self.pid)
        if hwm:
            self.peak_rss_sampled_kb = max(self.peak_rss_sampled_kb, hwm)
        try:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:  # already reaped elsewhere
            pid, status, usage = self.pid, 0, None
        if pid == 0:
            return None
        self.end = time.monotonic()
        self.returncode = os.waitstatus_to_exitcode(status)
        self.popen.returncode = self.returncode  # keep subprocess from waiting again
        self.rusage = usage
        self._reader.join(timeout=10)
        self._log.write(f"# exit {self.returncode} after {self.end - self.start:.1f} s\n")
        self._log.close()
        with _LIVE_LOCK:
            _LIVE.pop(self.pid, None)
        return self.returncode

    @property
    def seconds(self) -> float:
        return (self.end or time.monotonic()) - self.start

    @property
    def max_rss_mb(self) -> float | None:
        """Peak resident memory: getrusage's ru_maxrss (KiB on Linux), else the sampled VmHWM."""
        kb = self.rusage.ru_maxrss if self.rusage is not None else self.peak_rss_sampled_kb
        return round(kb / 1024, 1) if kb else None

    @property
    def cpu_seconds(self) -> float:
        if self.rusage is None:
            return 0.0
        return self.rusage.ru_utime + self.rusage.ru_stime

    def kill(self, grace: float = 5.0) -> None:
        """SIGTERM the child's process group, SIGKILL it after `grace` seconds."""
        if self.poll() is not None:
            _killpg(self.pid, signal.SIGKILL)  # stragglers it may have started
            return
        _killpg(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if self.poll() is not None:
                break
            time.sleep(0.1)
        _killpg(self.pid, signal.SIGKILL)
        while self.poll() is None:
            time.sleep(0.05)

    def tail(self, n: int = 15) -> str:
        return "\n".join(line for _, line in self.lines[-n:])


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_all(procs: Iterable[Proc], timeout: float, *, what: str) -> None:
    """Wait for every process; on a failure or timeout kill the rest and raise BenchError."""
    procs = list(procs)
    deadline = time.monotonic() + timeout
    while True:
        codes = [p.poll() for p in procs]
        failed = [p for p, c in zip(procs, codes) if c not in (None, 0)]
        if failed:
            for p in procs:
                p.kill()
            p = failed[0]
            raise BenchError(f"{what}: {p.name} exited with {p.returncode} (log {p.log_path}):\n"
                             f"{p.tail()}")
        if all(c == 0 for c in codes):
            return
        if time.monotonic() > deadline:
            for p in procs:
                p.kill()
            raise BenchError(f"{what}: timed out after {timeout:.0f} s; killed "
                             f"{', '.join(p.name for p in procs)} (logs in {procs[0].log_path.parent})")
        time.sleep(0.25)


def kill_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE.values())
    for p in live:
        p.kill(grace=3.0)


atexit.register(kill_all)


# --- CPU accounting: how much of the machine something other than us used -----------------

def _cpu_jiffies() -> tuple[int, int, int]:
    """(busy, idle, steal) jiffies over all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, idle + iowait, steal


_HZ = os.sysconf("SC_CLK_TCK")


@dataclasses.dataclass
class CpuWindow:
    """Busy CPU over a window, to tell how much came from processes outside the benchmark."""

    start_busy: int
    start_steal: int
    start_time: float
    start_self: float

    @classmethod
    def begin(cls) -> CpuWindow:
        busy, _, steal = _cpu_jiffies()
        t = os.times()
        return cls(busy, steal, time.monotonic(), t.user + t.system)

    def foreign_cores(self, own_cpu_seconds: float) -> dict:
        """Average cores used by others (busy minus our children and ourselves) and steal."""
        busy, _, steal = _cpu_jiffies()
        wall = max(time.monotonic() - self.start_time, 1e-9)
        t = os.times()
        self_cpu = t.user + t.system - self.start_self
        total = (busy - self.start_busy) / _HZ
        foreign = max(total - own_cpu_seconds - self_cpu, 0.0)
        return {"foreign_cores": round(foreign / wall, 3),
                "steal_cores": round((steal - self.start_steal) / _HZ / wall, 3)}


def wait_for_quiet(max_wait: float, threshold_cores: float = 0.3, window: float = 2.0,
                   log: Callable[[str], None] = print) -> dict:
    """Wait (up to `max_wait` s) until the machine is nearly idle; report what was seen."""
    t0 = time.monotonic()
    last = 0.0
    while True:
        busy0, _, _ = _cpu_jiffies()
        time.sleep(window)
        busy1, _, _ = _cpu_jiffies()
        last = (busy1 - busy0) / _HZ / window
        waited = time.monotonic() - t0
        if last < threshold_cores:
            return {"quiet": True, "waited_seconds": round(waited, 1), "busy_cores_before": round(last, 2)}
        if waited >= max_wait:
            log(f"   machine still busy ({last:.2f} cores used by other processes) after "
                f"{waited:.0f} s; measuring anyway")
            return {"quiet": False, "waited_seconds": round(waited, 1), "busy_cores_before": round(last, 2)}
