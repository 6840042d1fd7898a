"""The library's log lines that programs read: each one's format beside its pattern.

The trainer, the evaluator and the exporter print these lines with the
`*_FORMAT` strings (`log.info(FORMAT, *values)`, or `print(FORMAT % values)`);
the local runner, the ops tool, the benchmarks and the tests parse them with
the patterns beside them, never with patterns of their own. Each pattern
matches at the start of a line (use `.match` on one line, or `.search` /
`.finditer` on many: they are compiled with re.M) and names its groups:
`step`, and where present `path`, `model`, `max_steps`, `global_batch`,
`replicas`, `chief`, `accuracy`, `loss`, `batch_accuracy`, `lr`,
`images_per_sec`, `seconds`, `sha256`, `message`, `plan`, `wire`, `signal`,
`run_id`, `holder`, `source`, `task`, `workers`, `all_reduce`.
tests/test_log_lines.py formats every line and parses it back.
"""

from __future__ import annotations

import json
import re

# --- the cluster (model/cluster.py): every worker joined, the strategy is made
CLUSTER_FORMED_FORMAT = "cluster | %s | task %s:%d of %d workers | %s all-reduce | %d replica(s) in sync"
CLUSTER_FORMED = re.compile(r"^cluster \| (?P<source>[^|]+?) \| task (?P<task>\S+) of (?P<workers>\d+) "
                            r"workers \| (?P<all_reduce>\S+) all-reduce \| (?P<replicas>\d+) replica\(s\) "
                            r"in sync", re.M)

# --- the trainer (model/train.py)
TRAIN_START_FORMAT = ("train | start | model %s | step %d of %d | global batch %d over %d replica(s) | "
                      "chief %s")
TRAIN_START = re.compile(r"^train \| start \| model (?P<model>\S+) \| step (?P<step>\d+) "
                         r"of (?P<max_steps>\d+) (?:\| global batch (?P<global_batch>\d+) over "
                         r"(?P<replicas>\d+) replica\(s\) \| chief (?P<chief>True|False))?", re.M)
TRAIN_RESTORED_FORMAT = "train | restored %s at step %d"
TRAIN_RESTORED = re.compile(r"^train \| restored (?P<path>\S+) at step (?P<step>\d+)", re.M)
TRAIN_EXCHANGE_FORMAT = "exchange | %s | %s on the wire"
TRAIN_EXCHANGE = re.compile(r"^exchange \| (?P<plan>[^|]+?) \| (?P<wire>\S+) on the wire", re.M)
# The first loop call traces and compiles the loop: its time is left out of img/s.
TRAIN_COMPILED_FORMAT = "train | compiled and ran %d step(s) in %.1f s"
TRAIN_COMPILED = re.compile(r"^train \| compiled and ran (?P<steps>\d+) step\(s\) in "
                            r"(?P<seconds>[\d.]+) s", re.M)
# Means over the loop call's steps; img/s over the window since the previous progress line.
TRAIN_PROGRESS_FORMAT = "train | step %d | loss %.4f | batch acc %.4f | lr %.5f | %.0f img/s"
TRAIN_PROGRESS = re.compile(r"^train \| step (?P<step>\d+) \| loss (?P<loss>\S+) \| "
                            r"batch acc (?P<batch_accuracy>\S+) (?:\| lr (?P<lr>\S+) \| "
                            r"(?P<images_per_sec>\S+) img/s)?", re.M)
TRAIN_SAVED_FORMAT = "train | step %d | saved %s"
TRAIN_SAVED = re.compile(r"^train \| step (?P<step>\d+) \| saved (?P<path>\S+)", re.M)
# A stop signal arrived (model/signals.py): the workers save at the next loop call.
STOP_REQUESTED_SIGINT_FORMAT = ("train | Ctrl-C: saving a checkpoint at the next step boundary, "
                                "then exiting (Ctrl-C again aborts at once without saving)")
STOP_REQUESTED_SIGTERM_FORMAT = ("train | SIGTERM: saving a checkpoint at the next step boundary, "
                                 "then exiting for restart")
STOP_REQUESTED = re.compile(r"^train \| (?P<signal>Ctrl-C|SIGTERM): saving a checkpoint at the next "
                            r"step boundary", re.M)
TRAIN_PREEMPTED_FORMAT = "train | step %d | SIGTERM: checkpoint saved, exiting for restart"
TRAIN_PREEMPTED = re.compile(r"^train \| step (?P<step>\d+) \| SIGTERM: checkpoint saved", re.M)
TRAIN_INTERRUPTED_FORMAT = ("train | step %d | Ctrl-C: checkpoint saved; run the same command again "
                            "to resume from step %d")
TRAIN_INTERRUPTED = re.compile(r"^train \| step (?P<step>\d+) \| Ctrl-C: checkpoint saved", re.M)
# img/s over the whole run, the first (compiling) loop call left out; 0 when nothing was trained.
TRAIN_DONE_FORMAT = "train | done | step %d | %.0f img/s | weights sha256 %s"
TRAIN_DONE = re.compile(r"^train \| done \| step (?P<step>\d+) \| (?P<images_per_sec>\S+) img/s \| "
                        r"weights sha256 (?P<sha256>[0-9a-f]{64})", re.M)
# The run's goodput at training end (model/goodput.py, the chief only): preserved productive
# step time over the job's wall time, and the cause with the largest share of the rest.
GOODPUT_FORMAT = ("train | goodput %.4f | productive %.1f s of %.1f s | %d attempt(s) | "
                  "largest badput %s %.4f")
GOODPUT = re.compile(r"^train \| goodput (?P<goodput>[\d.]+) \| productive (?P<productive>[\d.]+) s of "
                     r"(?P<wall>[\d.]+) s \| (?P<attempts>\d+) attempt\(s\) \| largest badput "
                     r"(?P<cause>\w+) (?P<share>[\d.]+)", re.M)

# --- the evaluator (model/evaluate.py): a line for people, then its JSON twin
EVAL_VALIDATION_FORMAT = "After %d training step(s), validation accuracy = %g"
EVAL_VALIDATION = re.compile(r"^After (?P<step>\d+) training step\(s\), validation accuracy = "
                             r"(?P<accuracy>[0-9.eE+-]+)", re.M)
EVAL_TEST_FORMAT = "After %d training step(s), test accuracy = %g"
ALREADY_EVALUATED = " (already evaluated)"  # appended when final_metrics.json already held the result
EVAL_TEST = re.compile(r"^After (?P<step>\d+) training step\(s\), test accuracy = "
                       r"(?P<accuracy>[0-9.eE+-]+)(?P<already> \(already evaluated\))?", re.M)
# One JSON object a line, sorted keys, with "event": "eval" (one checkpoint) or "final" (the
# final metrics, as in final_metrics.json).
EVAL_EVENT = re.compile(r'^\{.*"event": ".*\}$', re.M)


def eval_event_line(event: dict) -> str:
    """The evaluator's machine-readable line for `event` (which has an "event" key)."""
    return json.dumps(event, sort_keys=True)


def parse_eval_event(line: str) -> dict | None:
    """The event of one of the evaluator's JSON lines; None for any other line."""
    return json.loads(line) if EVAL_EVENT.match(line) else None


# --- the exporter (model/export.py)
EXPORTED_FORMAT = "export | %s at step %d (moving-average weights) -> %s"
EXPORTED = re.compile(r"^export \| (?P<model>\S+) at step (?P<step>\d+) \(moving-average weights\) "
                      r"-> (?P<path>\S+)", re.M)
EXPORTED_BEST_FORMAT = "export | best checkpoint: step %d, validation accuracy %g%s -> %s"
BEST_RANK_FORMAT = " (rank %d)"  # the %s above when the best checkpoints were gone
EXPORTED_BEST = re.compile(r"^export \| best checkpoint: step (?P<step>\d+), validation accuracy "
                           r"(?P<accuracy>[0-9.eE+-]+)(?: \(rank (?P<rank>\d+)\))? -> (?P<path>\S+)",
                           re.M)

# --- every command (model/cli.py): its settings; a bad configuration, on stderr, exit 2
CONFIG_FORMAT = "config | %s"
CONFIG = re.compile(r"^config \| (?P<settings>.*)$", re.M)
ERROR_FORMAT = "error: %s"
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

# The chief's last line in a group (model/leaving.py): every other worker said it was leaving.
LEAVE_TOGETHER_FORMAT = "leave | every worker is leaving (%d waited for, %.2f s)"
LEAVE_TOGETHER = re.compile(r"^leave \| every worker is leaving \((?P<waited>\d+) waited for, "
                            r"(?P<secs>[\d.]+) s\)", re.M)

# --- parsed by the local runner and mnistctl
# The configuration line `python -m model train|evaluate` logs first (model/cli.py: "config | k=v ...").
CONFIG_MODEL_DIR = re.compile(r"^config \| (?:.* )?model_dir=(?P<path>\S+)", re.M)
# The evaluator's machine-readable twin of each human line (model/evaluate.py `_emit`:
# `json.dumps(event, sort_keys=True)`); `event` is "eval" or "final". Parse `json` with json.loads.
EVAL_EVENT = re.compile(r'^(?P<json>\{.*"event":\s*"(?P<event>\w+)".*\})\s*$', re.M)

# --- `python -m model predict` (model/predict.py): one line per image, on stdout; the path last
# (it may hold spaces), the probability of the predicted digit.
PREDICTION_FORMAT = "predict | digit %d | probability %.4f | %s"
PREDICTION = re.compile(r"^predict \| digit (?P<digit>\d) \| probability (?P<probability>[\d.]+) \| "
                        r"(?P<path>.+)$", re.M)

# --- TensorFlow's own lines (not the project's): what model/logging_setup.py keeps out of the logs.
# A C++ log line (Abseil/glog format), e.g.
# "I0000 00:00:1796185118.201683   16372 port.cc:153] oneDNN custom operations are on. ..."
TF_CPP_LOG = re.compile(r"^(?P<severity>[IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ (?P<source>\S+:\d+)\] ", re.M)
# Abseil's notice, printed before the first C++ log line of each TensorFlow shared library.
TF_ABSL_PREINIT = re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called", re.M)
