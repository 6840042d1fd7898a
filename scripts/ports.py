"""Free TCP ports on 127.0.0.1 for the processes tests, bench and the local runner start.

A port is free only at the moment it is chosen: the caller's process binds it a little later
(a training worker only once TensorFlow has loaded, seconds later). The kernel never hands out a
port that is bound, but it may hand the same unbound port to two callers in that window, e.g. to
two pytest-xdist workers or to a test and the local runner it started. So every port chosen here
is also written to a registry shared by all processes of this user on the machine
(`REGISTRY`, under a file lock), and a port handed out in the last `HOLD_SECS` is never handed
out again. Only programs that do not use this module can still take a chosen port in between
(rare on loopback; callers that start workers treat a failed bind like any other start-up
failure).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path

# Fixed, not tempfile.gettempdir(): the test helpers give each process its own TMPDIR, and all
# of them must share one registry.
REGISTRY = Path("/tmp") / f"mnist-train-ports-{os.getuid()}.json"
# Longer than any caller takes to bind what it was given (a worker under heavy load: about a minute).
HOLD_SECS = 600.0


def _kernel_ports(count: int) -> list[int]:
    """`count` different ports the kernel found free, all bound at once so none comes twice."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                   for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


@contextlib.contextmanager
def _registry():
    """The recently handed-out ports {port: time}, locked for this process; saved on exit."""
    fd = os.open(REGISTRY, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            recent = {int(k): float(v) for k, v in json.loads(f.read() or "{}").items()}
        except (ValueError, AttributeError):
            recent = {}  # damaged: start afresh (it only guards a short window)
        now = time.time()
        recent = {p: t for p, t in recent.items() if now - t < HOLD_SECS}
        yield recent
        f.seek(0)
        f.truncate()
        f.write(json.dumps(recent))


def free_ports(count: int) -> list[int]:
    """`count` different ports on 127.0.0.1 that were free a moment ago and that no caller of
    this module was given in the last `HOLD_SECS`."""
    try:
        with _registry() as recent:
            chosen: list[int] = []
            while len(chosen) < count:
                chosen += [p for p in _kernel_ports(count - len(chosen))
                           if p not in recent and p not in chosen]
            recent.update((p, time.time()) for p in chosen)
            return chosen
    except OSError:  # no shared registry here: the kernel's choice alone
        return _kernel_ports(count)


def free_port() -> int:
    """One port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]
