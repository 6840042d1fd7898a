"""The library's log lines that other programs read, in one place.

The trainer and evaluator print these; the local runner, `python -m model.ops`
and the tests parse them with the patterns below. Each pattern matches at the
start of a line (use `.match` on one line, or `.search` with re.M on many) and
names its groups: `step`, and where present `path`, `model`, `max_steps`,
`accuracy`, `loss`, `batch_accuracy`, `sha256`, `message`, `plan`, `wire`.
"""

from __future__ import annotations

import re

TRAIN_START = re.compile(r"^train \| start \| model (?P<model>\S+) \| step (?P<step>\d+) "
                         r"of (?P<max_steps>\d+) ", re.M)
TRAIN_RESTORED = re.compile(r"^train \| restored (?P<path>\S+) at step (?P<step>\d+)", re.M)
TRAIN_PROGRESS = re.compile(r"^train \| step (?P<step>\d+) \| loss (?P<loss>\S+) \| "
                            r"batch acc (?P<batch_accuracy>\S+) ", re.M)
TRAIN_EXCHANGE = re.compile(r"^exchange \| (?P<plan>[^|]+?) \| (?P<wire>\S+) on the wire", re.M)
TRAIN_SAVED = re.compile(r"^train \| step (?P<step>\d+) \| saved (?P<path>\S+)", re.M)
TRAIN_PREEMPTED = re.compile(r"^train \| step (?P<step>\d+) \| SIGTERM: checkpoint saved", re.M)
TRAIN_INTERRUPTED = re.compile(r"^train \| step (?P<step>\d+) \| Ctrl-C: checkpoint saved", re.M)
TRAIN_DONE = re.compile(r"^train \| done \| step (?P<step>\d+) \| .*weights sha256 "
                        r"(?P<sha256>[0-9a-f]{64})", re.M)
EVAL_VALIDATION = re.compile(r"^After (?P<step>\d+) training step\(s\), validation accuracy = "
                             r"(?P<accuracy>[0-9.eE+-]+)", re.M)
EVAL_TEST = re.compile(r"^After (?P<step>\d+) training step\(s\), test accuracy = "
                       r"(?P<accuracy>[0-9.eE+-]+)", re.M)
ERROR = re.compile(r"^error: (?P<message>.*)", re.M)
