"""The library's log lines that other programs read, in one place.

The trainer and evaluator print these; the local runner, `python -m model.ops`
and the tests parse them with the patterns below. Each pattern matches at the
start of a line (use `.match` on one line, or `.search` with re.M on many) and
names its groups: `step`, and where present `path`, `model`, `max_steps`,
`accuracy`, `loss`, `batch_accuracy`, `sha256`, `message`, `plan`, `wire`,
`run_id`, `holder`. The newer lines keep their format string beside the pattern.
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
TRAIN_DONE_FORMAT = "train | done | step %d | %.0f img/s | weights sha256 %s"
EVAL_VALIDATION = re.compile(r"^After (?P<step>\d+) training step\(s\), validation accuracy = "
                             r"(?P<accuracy>[0-9.eE+-]+)", re.M)
EVAL_TEST = re.compile(r"^After (?P<step>\d+) training step\(s\), test accuracy = "
                       r"(?P<accuracy>[0-9.eE+-]+)", re.M)
ERROR = re.compile(r"^error: (?P<message>.*)", re.M)

# The run's identity and the model directory's lease (model/run_identity.py, model/lease.py):
# each line's format (for `log.info(FORMAT, ...)`) beside its pattern.
RUN_NEW_FORMAT = "run | new run %s (%s) recorded in %s"
RUN_NEW = re.compile(r"^run \| new run (?P<run_id>[0-9a-f]{12}) \((?P<summary>.*)\) recorded in "
                     r"(?P<path>\S+)", re.M)
RUN_RESUMING_FORMAT = "run | resuming run %s at step %d of %d"
RUN_EXTENDING_FORMAT = "run | extending run %s from step %d to %d"
RUN_RESUMING = re.compile(r"^run \| (?:resuming run (?P<run_id>[0-9a-f]{12}) at step (?P<step>\d+) of "
                          r"|extending run (?P<extended_id>[0-9a-f]{12}) from step (?P<from_step>\d+) "
                          r"to )(?P<max_steps>\d+)", re.M)
ALREADY_COMPLETE_FORMAT = "train | already complete at step %d (--max-steps %d): nothing to train"
ALREADY_COMPLETE = re.compile(r"^train \| already complete at step (?P<step>\d+) "
                              r"\(--max-steps (?P<max_steps>\d+)\): nothing to train", re.M)
LEASE_ACQUIRED_FORMAT = "lease | acquired %s | run %s | expires %.0f s after its last renewal"
LEASE_ACQUIRED = re.compile(r"^lease \| acquired (?P<path>\S+) \| run (?P<run_id>[0-9a-f]{12}) ", re.M)
LEASE_TAKEN_OVER_FORMAT = "lease | took over %s from %s: it expired (a lease lasts %.0f s) | run %s"
LEASE_TAKEN_OVER = re.compile(r"^lease \| took over (?P<path>\S+) from (?P<holder>.*): it expired "
                              r".* \| run (?P<run_id>[0-9a-f]{12})$", re.M)
LEASE_WAITING_FORMAT = ("lease | %s is held by %s, a trainer of this same run; waiting up to %.0f s "
                        "for it to release the lease or for the lease to expire")
LEASE_WAITING = re.compile(r"^lease \| (?P<path>\S+) is held by (?P<holder>.*), a trainer of this "
                           r"same run; waiting up to (?P<secs>\d+) s", re.M)
LEASE_RELEASED_FORMAT = "lease | released %s"
LEASE_RELEASED = re.compile(r"^lease \| released (?P<path>\S+)", re.M)

# --- parsed by the local runner and mnistctl
# The configuration line `python -m model train|evaluate` logs first (model/cli.py: "config | k=v ...").
CONFIG_MODEL_DIR = re.compile(r"^config \| (?:.* )?model_dir=(?P<path>\S+)", re.M)
# The evaluator's machine-readable twin of each human line (model/evaluate.py `_emit`:
# `json.dumps(event, sort_keys=True)`); `event` is "eval" or "final". Parse `json` with json.loads.
EVAL_EVENT = re.compile(r'^(?P<json>\{.*"event":\s*"(?P<event>\w+)".*\})\s*$', re.M)
