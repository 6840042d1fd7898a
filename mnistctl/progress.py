"""What the trainer's and the evaluator's logs say about a run's progress.

Lines are recognised only with model/log_lines.py's patterns (the producers
print with the formats beside them), and the evaluator's JSON events.
"""

from __future__ import annotations

import dataclasses
import json

from model import log_lines

_SAVED, _RESTORED, _SIGTERM = log_lines.TRAIN_SAVED, log_lines.TRAIN_RESTORED, log_lines.TRAIN_PREEMPTED
_DONE, _PROGRESS = log_lines.TRAIN_DONE, log_lines.TRAIN_PROGRESS
_GOODPUT = log_lines.GOODPUT
_EVAL, _TEST = log_lines.EVAL_VALIDATION, log_lines.EVAL_TEST


@dataclasses.dataclass
class Progress:
    step: int | None = None  # the trainer's latest reported step
    checkpoint_step: int | None = None  # newest checkpoint known
    checkpoint_source: str | None = None
    training_done: bool = False
    eval_step: int | None = None
    eval_accuracy: float | None = None
    test_accuracy: float | None = None
    final_step: int | None = None
    # The run's goodput: goodput.json (model/goodput.py) when the model dir was read, else the
    # chief's goodput line: goodput, wall_secs, attempts and the largest badput's cause and share.
    goodput: dict | None = None


def parse_trainer_log(text: str, progress: Progress) -> Progress:
    """The chief's steps, checkpoints (saved, restored, at SIGTERM) and whether it finished."""
    for line in text.splitlines():
        for regex in (_SAVED, _RESTORED, _SIGTERM, _DONE):
            m = regex.search(line)
            if m:
                newer_checkpoint(progress, int(m["step"]), "chief's log")
        m = _PROGRESS.search(line) or _DONE.search(line)
        if m:
            progress.step = max(progress.step or 0, int(m["step"]))
        if _DONE.search(line):
            progress.training_done = True
        m = _GOODPUT.search(line)
        if m:
            progress.goodput = {"goodput": float(m["goodput"]), "wall_secs": float(m["wall"]),
                                "attempts": int(m["attempts"]), "largest_badput": m["cause"],
                                "largest_badput_share": float(m["share"]), "source": "chief's log"}
    return progress


def parse_evaluator_log(text: str, progress: Progress) -> Progress:
    """The JSON events (and, failing those, the tutorial's lines) of the evaluator."""
    for line in text.splitlines():
        line = line.strip()
        event = _json_event(line)
        if event and event.get("event") == "eval":
            progress.eval_step = int(event["step"])
            progress.eval_accuracy = float(event["validation_accuracy"])
        elif event and event.get("event") == "final":
            progress.final_step = int(event["final_step"])
            progress.test_accuracy = float(event["test_accuracy"])
        elif event is None:
            m = _EVAL.search(line)
            if m:
                progress.eval_step, progress.eval_accuracy = int(m["step"]), float(m["accuracy"])
            m = _TEST.search(line)
            if m:
                progress.final_step, progress.test_accuracy = int(m["step"]), float(m["accuracy"])
    if progress.eval_step is not None:
        newer_checkpoint(progress, progress.eval_step, "evaluator's log")
    if progress.final_step is not None:
        newer_checkpoint(progress, progress.final_step, "evaluator's log")
    return progress


def _json_event(line: str) -> dict | None:
    """The evaluator's JSON event on this line, or None."""
    if not log_lines.EVAL_EVENT.match(line):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def newer_checkpoint(progress: Progress, step: int, source: str) -> None:
    """Record a checkpoint at `step` (seen in `source`) if it is the newest known."""
    if progress.checkpoint_step is None or step > progress.checkpoint_step:
        progress.checkpoint_step, progress.checkpoint_source = step, source


def error_line(text: str) -> str | None:
    """The CLI's one-line `error: ...` (exit code 2), if the log has one."""
    lines = [line.strip() for line in text.splitlines() if log_lines.ERROR.match(line.strip())]
    return lines[-1][:500] if lines else None
