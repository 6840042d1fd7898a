"""The live processes of this machine, read from /proc (what teardown and the cleanup tests check)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def live_pids(where: Callable[[str, list[str]], bool]) -> list[int]:
    """Pids of the processes that are not zombies and for which `where(pid, stat_fields)` holds.

    `stat_fields` are /proc/<pid>/stat's fields after the command name (which may hold spaces
    and parentheses): [0] is the state, [2] the process group. A process that exits while it
    is being read is left out."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and where(entry, fields):
                pids.append(int(entry))
        except OSError:
            continue
    return pids
