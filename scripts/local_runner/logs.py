"""Pod output: per-pod log files (what `kubectl logs` shows), a prefixed merged
stream on the terminal, and the facts the runner reads from the library's lines.

The library's lines (model/train.py, model/evaluate.py):
    train | start | model M | step S of N | global batch ...
    train | restored <path> at step N
    train | step N | loss ... | N img/s
    train | step N | saved <path>
    train | step N | SIGTERM: checkpoint saved, exiting for restart
    train | done | step N | ... | weights sha256 H
    After N training step(s), validation accuracy = X
    After N training step(s), test accuracy = X
    {"event": "eval", ...} / {"event": "final", ...}
    error: <message>              (exit code 2)
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from typing import TextIO
from collections.abc import Callable

from model import log_lines

RE_START, RE_RESTORED = log_lines.TRAIN_START, log_lines.TRAIN_RESTORED
RE_STEP, RE_SAVED, RE_PREEMPTED = log_lines.TRAIN_PROGRESS, log_lines.TRAIN_SAVED, log_lines.TRAIN_PREEMPTED
RE_DONE, RE_ERROR = log_lines.TRAIN_DONE, log_lines.ERROR
RE_VALIDATION, RE_TEST = log_lines.EVAL_VALIDATION, log_lines.EVAL_TEST
# TensorFlow's C++ start-up chatter, hidden from the terminal by --quiet-tf (never from the files).
RE_TF_NOISE = re.compile(r"^(?:[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ |WARNING: All log messages before absl"
                         r"|Sharding callback duration|Collective all_reduce tensors)")


@dataclasses.dataclass
class PodFacts:
    model: str | None = None
    start_step: int | None = None
    max_steps: int | None = None
    restored_step: int | None = None
    step: int | None = None  # the last step logged (training progress)
    saved_steps: list = dataclasses.field(default_factory=list)
    preempted_step: int | None = None
    done_step: int | None = None
    weights_sha256: str | None = None
    evaluations: list = dataclasses.field(default_factory=list)  # [(step, validation accuracy)]
    test_accuracy: float | None = None
    final: dict | None = None
    errors: list = dataclasses.field(default_factory=list)
    lines: int = 0

    def feed(self, line: str) -> None:
        self.lines += 1
        if line.startswith("train | "):
            if m := RE_STEP.match(line):
                self.step = int(m["step"])
            elif m := RE_SAVED.match(line):
                self.saved_steps.append(int(m["step"]))
                self.step = max(self.step or 0, int(m["step"]))
            elif m := RE_START.match(line):
                self.model, self.start_step, self.max_steps = m["model"], int(m["step"]), int(m["max_steps"])
                self.step = self.start_step
            elif m := RE_RESTORED.match(line):
                self.restored_step = int(m["step"])
            elif m := RE_PREEMPTED.match(line):
                self.preempted_step = int(m["step"])
            elif m := RE_DONE.match(line):
                self.done_step, self.weights_sha256 = int(m["step"]), m["sha256"]
                self.step = self.done_step
        elif line.startswith("After "):
            if m := RE_VALIDATION.match(line):
                self.evaluations.append((int(m["step"]), float(m["accuracy"])))
            elif m := RE_TEST.match(line):
                self.test_accuracy = float(m["accuracy"])
        elif line.startswith('{"'):
            try:
                event = json.loads(line)
            except ValueError:
                return
            if isinstance(event, dict) and event.get("event") == "final":
                self.final = event
        elif m := RE_ERROR.match(line):
            self.errors.append(m["message"])

    @property
    def eval_step(self) -> int | None:
        return self.evaluations[-1][0] if self.evaluations else None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


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
