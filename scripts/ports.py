"""Free TCP ports on 127.0.0.1 for the processes tests, bench and the local runner start.

A port is free only at the moment it is chosen: the caller's process binds it a little later,
and another process may take it in between (rare on loopback; callers that start workers
treat a failed bind like any other start-up failure).
"""

from __future__ import annotations

import contextlib
import socket


def free_ports(count: int) -> list[int]:
    """`count` different ports on 127.0.0.1 that were free a moment ago.

    All sockets stay bound until every port is chosen, so the kernel cannot hand out one twice.
    """
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                   for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


def free_port() -> int:
    """One port on 127.0.0.1 that was free a moment ago."""
    return free_ports(1)[0]
