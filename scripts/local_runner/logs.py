"""Pod output: per-pod log files (what `kubectl logs` shows) read as they grow, and
the prefixed merged stream on the terminal. What the lines mean is reporting.py's.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import TextIO

# TensorFlow's C++ start-up chatter, hidden from the terminal by --quiet-tf (never from the files).
RE_TF_NOISE = re.compile(r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ |WARNING: All log messages before absl"
                         r"|Sharding callback duration|Collective all_reduce tensors)")


class Follower:
    """Reads what a pod appended to its log file since the last call."""

    def __init__(self, record, on_line: Callable):
        self.record = record
        self.on_line = on_line
        self.offset = 0
        self.partial = b""

    def pump(self, final: bool = False) -> None:
        try:
            with open(self.record.log_path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        self.offset += len(data)
        data = self.partial + data
        *lines, self.partial = data.split(b"\n")
        if final and self.partial:
            lines.append(self.partial)
            self.partial = b""
        for raw in lines:
            self.on_line(self.record, raw.decode("utf-8", errors="replace").rstrip("\r"))


class Terminal:
    """The merged stream: `[trainer-0] line`, `[trainer-0#1] line` for a replacement pod."""

    def __init__(self, show: set[str] | None, quiet_tf: bool, stream: TextIO = sys.stdout,
                 match: str | None = None):
        self.show = show  # components to echo; None = all
        self.quiet_tf = quiet_tf
        self.match = re.compile(match) if match else None
        self.stream = stream
        self.width = 12

    @staticmethod
    def label(record) -> str:
        pod = record.pod
        n = max(pod.attempt, record.restart_count)
        return f"{pod.display}#{n}" if n else pod.display

    def pod_line(self, record, line: str) -> None:
        if self.show is not None and record.pod.component not in self.show:
            return
        if self.quiet_tf and RE_TF_NOISE.match(line):
            return
        if self.match is not None and not self.match.search(line):
            return
        label = self.label(record)
        self.width = max(self.width, len(label) + 2)
        self.write(f"{'[' + label + ']':<{self.width}} {line}")

    def runner_line(self, text: str) -> None:
        self.write(f"{'runner':<{self.width}} | {text}")

    def write(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass
