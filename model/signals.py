"""What SIGTERM and Ctrl-C (SIGINT) do to a trainer, from start-up to the last step.

Once training runs (`StopSignals`, entered by model/train.py), either signal
only raises a flag; the workers agree on it at the next loop call, save a
checkpoint at the same step and exit: 42 after SIGTERM (preempted: restart to
resume), 130 after Ctrl-C. The first Ctrl-C also restores the default SIGINT
action, so a second one aborts at once without saving.

Before that, while a multi-worker group starts, no Python handler can act:
TensorFlow's coordination service installs its own SIGTERM handler (which
only records the signal) and the main thread sits inside TensorFlow until
every worker has joined. So the CLI holds (blocks) both signals before
TensorFlow starts any thread, and a `StartupGuard` process watches for them:
a held SIGTERM or SIGINT means nothing has been trained yet, so the guard
says so and ends the worker at once (SIGKILL: exit 137). It also ends a
worker whose peers have not all joined within `--startup-timeout-secs`.

The guard runs in its own session, so a signal to the worker's process group
(`timeout`, `kill -- -PGID`, a terminal's Ctrl-C, the local runner's
os.killpg) cannot kill it first; it exits when the worker closes its pipe
(start-up over, or the worker died), so it never outlives the worker. When
`StopSignals` releases the signals, one held since the guard exited stops
training at the first step boundary like any other.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading

from model import log_lines

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def hold_stop_signals() -> None:
    """Block SIGTERM and SIGINT in this thread and every thread it starts from now on."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def release_stop_signals() -> None:
    """Unblock them in this thread; one that arrived meanwhile is delivered now."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class StopSignals:
    """SIGTERM and SIGINT set `event` instead of killing the process.

    A watcher thread says at once what will happen (the main thread may be
    inside a compiled loop call for seconds, and Python runs signal handlers
    only between bytecodes) and, after a Ctrl-C, restores SIGINT's default
    action at the C level, so that a second Ctrl-C ends the process at once.
    The previous handlers are restored on exit.
    """

    def __init__(self):
        self.event = threading.Event()
        self._seen: set[int] = set()
        self._previous: dict[int, object] = {}
        self._previous_wakeup = -1
        self._pipe: tuple[int, int] | None = None
        self._watcher: threading.Thread | None = None

    @property
    def interrupted(self) -> bool:
        """Whether this process got Ctrl-C (rather than SIGTERM, or a stop from a peer)."""
        return signal.SIGINT in self._seen

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self  # signal handlers can only be set from the main thread
        self._pipe = os.pipe()
        os.set_blocking(self._pipe[1], False)
        self._previous_wakeup = signal.set_wakeup_fd(self._pipe[1], warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        self._watcher = threading.Thread(target=self._watch, args=(self._pipe[0],),
                                         name="stop-signals", daemon=True)
        self._watcher.start()
        release_stop_signals()  # held since start-up (see StartupGuard)
        return self

    def _handle(self, sig: int, _frame) -> None:
        self._seen.add(sig)
        self.event.set()

    def _watch(self, read_fd: int) -> None:
        announced = set()
        while chunk := os.read(read_fd, 64):  # signal numbers, written by the C-level handler
            for sig in chunk:
                if sig not in STOP_SIGNALS or sig in announced:
                    continue
                announced.add(sig)
                self._seen.add(sig)
                self.event.set()
                if sig == signal.SIGINT:
                    _default_action_now(signal.SIGINT)
                    log.warning(log_lines.STOP_REQUESTED_SIGINT_FORMAT)
                else:
                    log.warning(log_lines.STOP_REQUESTED_SIGTERM_FORMAT)

    def __exit__(self, *exc) -> None:
        if self._pipe is None:
            return
        signal.set_wakeup_fd(self._previous_wakeup)
        for sig, previous in self._previous.items():
            if previous is not None:  # None: installed outside Python (TensorFlow's); keep ours
                signal.signal(sig, previous)
        os.close(self._pipe[1])  # the watcher reads end-of-file and returns
        self._watcher.join()
        os.close(self._pipe[0])


def _default_action_now(sig: int) -> None:
    """Set `sig`'s C-level disposition to SIG_DFL, from any thread.

    (signal.signal works only in the main thread, which may be busy in
    TensorFlow for seconds.)
    """
    libc = ctypes.CDLL(None, use_errno=True)
    libc.signal.restype = ctypes.c_void_p
    libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.signal(int(sig), None)  # None is SIG_DFL, the null handler


# The guard is a separate process, not a thread: while the workers join, the
# main thread sits in TensorFlow, which may hold the GIL, and a SIGKILL must
# come from outside. It reads the worker's pending signals from /proc (held
# signals stay pending until released).
_GUARD = r"""
import os, select, signal, sys, time
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})  # inherited
worker = int(sys.argv[1])
names = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT (Ctrl-C)"}

def say(text):
    try:
        print(text, flush=True)
    except OSError:
        pass

def pending_stop_signal():
    try:
        with open(f"/proc/{worker}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
    except OSError:
        return None
    bits = int(fields.get("ShdPnd", "0"), 16) | int(fields.get("SigPnd", "0"), 16)
    return next((s for s in names if bits >> (s - 1) & 1), None)

deadline, timeout, buffered = None, 0.0, b""
while os.getppid() == worker:
    if select.select([0], [], [], 0.1)[0]:
        chunk = os.read(0, 256)
        if not chunk:  # start-up is over, or the worker died
            break
        buffered += chunk
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            if line.startswith(b"join "):
                timeout = float(line.split()[1])
                deadline = time.monotonic() + timeout
            elif line == b"joined":
                deadline = None
    sig = pending_stop_signal()
    if sig is not None:
        say(f"start-up | {names[sig]} before training started: nothing to save; ending this "
            "worker now (exit 137)")
    elif deadline is not None and time.monotonic() > deadline:
        say(f"cluster | not every worker joined within {timeout:.0f} s (--startup-timeout-secs); "
            "killing this worker so the group can be restarted")
    else:
        continue
    os.kill(worker, signal.SIGKILL)
    break
"""


class StartupGuard:
    """Holds SIGTERM and SIGINT and watches this process until training starts (module docstring).

    Create it before TensorFlow is imported (TensorFlow starts threads, and a
    thread that does not block SIGTERM would hand it to TensorFlow's handler);
    `close()` once the strategy exists. `joining(timeout)` / `joined()`
    bracket the wait for the other workers.
    """

    def __init__(self):
        hold_stop_signals()
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _GUARD, str(os.getpid())], stdin=subprocess.PIPE,
            start_new_session=True)  # out of reach of signals to the worker's process group

    def _tell(self, line: str) -> None:
        self._process.stdin.write(line.encode() + b"\n")
        self._process.stdin.flush()

    def joining(self, timeout_secs: float | None) -> None:
        if timeout_secs:
            self._tell(f"join {timeout_secs}")

    def joined(self) -> None:
        self._tell("joined")

    def close(self) -> None:
        if self._process.stdin.closed:
            return
        self._process.stdin.close()
        self._process.wait()

