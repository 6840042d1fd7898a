"""What a run of this project's chart means to the user: facts from the pods' output,
progress lines, the summary printed at the end and summary.json.

The engine (runner.py) calls a `Report`; `ProjectReport` is the one for this
repository's library. It reads the lines the library prints, only through the
patterns of model/log_lines.py:
    config | ... model_dir=<path> ...            (where the model directory is)
    train | start | model M | step S of N | ...
    train | restored <path> at step N
    train | step N | loss ... / train | step N | saved <path>
    train | step N | SIGTERM: checkpoint saved ...
    train | done | step N | ... | weights sha256 H
    After N training step(s), validation|test accuracy = X
    {"event": "final", ...}                      (the evaluator's final metrics)
    error: <message>                             (exit code 2)
and knows the chart's component labels (trainer, evaluator, tensorboard) to
group them. At the end it reads the model directory's goodput.json (or the
goodput record so far, model/goodput.py). Nothing here changes what runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

from model import goodput, log_lines
from scripts.local_runner.controllers import JobController, PodRecord, Workload
from scripts.local_runner.launcher import optional

if TYPE_CHECKING:
    from scripts.local_runner.runner import Runner

TRAINER, EVALUATOR, TENSORBOARD = "trainer", "evaluator", "tensorboard"  # app.kubernetes.io/component


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


@dataclasses.dataclass
class PodFacts:
    """What one pod's output said (summary.json: pods[].facts)."""

    model: str | None = None
    model_dir: str | None = None  # as the container sees it
    start_step: int | None = None
    max_steps: int | None = None
    restored_step: int | None = None
    step: int | None = None  # the last training step logged
    saved_steps: list[int] = dataclasses.field(default_factory=list)
    preempted_step: int | None = None
    done_step: int | None = None
    weights_sha256: str | None = None
    evaluations: list[tuple[int, float]] = dataclasses.field(default_factory=list)  # (step, accuracy)
    test_accuracy: float | None = None
    final: dict | None = None
    errors: list[str] = dataclasses.field(default_factory=list)
    lines: int = 0

    def feed(self, line: str) -> None:
        self.lines += 1
        if m := log_lines.TRAIN_PROGRESS.match(line):
            self.step = int(m["step"])
        elif m := log_lines.TRAIN_SAVED.match(line):
            self.saved_steps.append(int(m["step"]))
            self.step = max(self.step or 0, int(m["step"]))
        elif m := log_lines.TRAIN_START.match(line):
            self.model, self.start_step, self.max_steps = m["model"], int(m["step"]), int(m["max_steps"])
            self.step = self.start_step
        elif m := log_lines.TRAIN_RESTORED.match(line):
            self.restored_step = int(m["step"])
        elif m := log_lines.TRAIN_PREEMPTED.match(line):
            self.preempted_step = int(m["step"])
        elif m := log_lines.TRAIN_DONE.match(line):
            self.done_step, self.weights_sha256 = int(m["step"]), m["sha256"]
            self.step = self.done_step
        elif m := log_lines.EVAL_VALIDATION.match(line):
            self.evaluations.append((int(m["step"]), float(m["accuracy"])))
        elif m := log_lines.EVAL_TEST.match(line):
            self.test_accuracy = float(m["accuracy"])
        elif (m := log_lines.EVAL_EVENT.match(line)) and m["event"] == "final":
            with contextlib.suppress(ValueError):
                self.final = json.loads(m["json"])
        elif m := log_lines.CONFIG_MODEL_DIR.match(line):
            self.model_dir = m["path"]
        elif m := log_lines.ERROR.match(line):
            self.errors.append(m["message"])

    @property
    def last_step(self) -> int | None:
        """The last step this pod reported: trained, else evaluated."""
        if self.step is not None:
            return self.step
        return self.evaluations[-1][0] if self.evaluations else None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class ProjectReport:
    """The Report (runner.Report) for this repository's trainer, evaluator and TensorBoard."""

    def __init__(self) -> None:
        self.facts: dict[PodRecord, PodFacts] = {}
        self.newest_checkpoint: int | None = None

    def facts_of(self, record: PodRecord) -> PodFacts:
        return self.facts.setdefault(record, PodFacts())

    # -- during the run -------------------------------------------------------------------

    def on_line(self, record: PodRecord, line: str) -> None:
        facts = self.facts_of(record)
        facts.feed(line)
        if facts.saved_steps:
            self.newest_checkpoint = facts.saved_steps[-1]

    def step_of(self, record: PodRecord) -> int | None:
        return self.facts_of(record).last_step

    def last_checkpoint(self) -> int | None:
        return self.newest_checkpoint

    def ready_event(self, record: PodRecord) -> str:
        what = "TensorBoard is serving at" if record.pod.component == TENSORBOARD else "ready at"
        return f"pod {record.pod.name} is ready; {what} {record.ready_url}"

    def serving_event(self, runner: Runner) -> str:
        url = self.tensorboard_url(runner) or "(starting)"
        return f"every Job finished; TensorBoard keeps serving at {url} (press Ctrl-C to stop)"

    def tensorboard_url(self, runner: Runner) -> str | None:
        urls = [r.ready_url for r in runner.records if r.ready_url]
        tensorboard = [r.ready_url for r in runner.records if r.ready_url and r.pod.component == TENSORBOARD]
        return (tensorboard or urls or [None])[-1]

    def progress(self, runner: Runner) -> str:
        parts = [format_duration(runner.elapsed())]
        for w in runner.workloads:
            if w.component == TENSORBOARD:
                parts.append(f"tensorboard {self.tensorboard_url(runner) or 'starting'}")
            elif w.is_job:
                parts.append(self._job_progress(w))
        return " | ".join(parts)

    def _job_progress(self, w: Workload) -> str:
        facts = [self.facts_of(r) for r in w.records]
        if any(f.max_steps for f in facts):
            step = max((f.step or 0) for f in facts)
            total = max(f.max_steps or 0 for f in facts)
            return (f"{w.component} step {step}/{total} ({w.status.lower()}, "
                    f"{len(w.records) - len({(r.pod.index, r.pod.owner) for r in w.records})} "
                    "replacement pod(s))")
        if any(f.evaluations for f in facts):
            step, acc = max(e for f in facts for e in f.evaluations)
            return f"{w.component} step {step} validation accuracy {acc:.4f} ({w.status.lower()})"
        return f"{w.component} {w.status.lower()}"

    # -- at the end ---------------------------------------------------------------------------

    def model_dir(self, runner: Runner) -> str | None:
        """The model directory on this machine, from the first pod that logged one: as logged when
        that exists here (the process launcher hands pods host paths), else where the pod's
        volume mounts put it (a launcher that keeps container paths)."""
        for record in runner.records:
            path = self.facts_of(record).model_dir
            if path:
                local = None if Path(path).exists() else record.pod.host_path(path)
                return str(local or path)
        return None

    def _pod(self, runner: Runner, r: PodRecord) -> dict:
        t0 = runner.t0
        return {"name": r.pod.name, "display": r.pod.display, "component": r.pod.component,
                "owner": r.pod.owner, "index": r.pod.index, "attempt": r.pod.attempt,
                "restart_count": r.restart_count, "address": r.pod.slot.address if r.pod.slot else None,
                "log": str(r.log_path), "started": round(r.created_at - t0, 2),
                "finished": round(r.finished_at - t0, 2) if r.finished_at else None,
                "exit_code": r.exit_code, "outcome": r.outcome, "conditions": sorted(r.conditions),
                "deleted": r.delete_reason or None, "facts": self.facts_of(r).as_dict()}

    def summary(self, runner: Runner) -> dict:
        trainer = [self.facts_of(r) for r in runner.records if r.pod.component == TRAINER]
        trainer_pods = [r for r in runner.records if r.pod.component == TRAINER]
        evaluator = [self.facts_of(r) for r in runner.records if r.pod.component == EVALUATOR]
        done = [f.done_step for f in trainer if f.done_step is not None]
        return {
            "run_id": runner.run_id, "run_dir": str(runner.run_dir), "release": runner.rendering.release,
            "namespace": runner.namespace, "launcher": runner.launcher.name, "result": runner.result,
            "exit_code": runner.exit_code, "error": runner.error,
            "elapsed_seconds": round(runner.elapsed(), 2), "started": runner.started_wall,
            "render_command": runner.rendering.command, "model_dir": self.model_dir(runner),
            "model_dir_copy": self.model_dir_copy(runner),
            "tensorboard_url": self.tensorboard_url(runner),
            "workloads": [w.describe() for w in runner.workloads], "not_run": runner.ignored_kinds,
            "upgrade": runner.upgrade.as_dict() if runner.upgrade else None,
            "faults": [f.as_dict() for f in runner.injector.faults],
            "pods": [self._pod(runner, r) for r in runner.records],
            "training": {"final_step": max(done) if done else None,
                         "last_step": max((f.step or 0 for f in trainer), default=None),
                         "last_checkpoint": self.newest_checkpoint,
                         "max_steps": max((f.max_steps or 0 for f in trainer), default=None),
                         "replacement_pods": sum(1 for r in trainer_pods
                                                 if r.pod.attempt or r.restart_count)},
            "evaluation": {"evaluations": [e for f in evaluator for e in f.evaluations],
                           "final": next((f.final for f in reversed(evaluator) if f.final), None),
                           "test_accuracy": next((f.test_accuracy for f in reversed(evaluator)
                                                  if f.test_accuracy is not None), None)},
            "goodput": self.goodput(runner),
        }

    def model_dir_copy(self, runner: Runner) -> str | None:
        """Where the launcher copied a remote model directory at the end (--local-gcs), or None."""
        model_dir = self.model_dir(runner)
        local_copy = optional(runner.launcher, "local_copy")
        local = local_copy(model_dir) if model_dir and "://" in model_dir else None
        return str(local) if local else None

    def goodput(self, runner: Runner) -> dict | None:
        """goodput.json of the model dir (model/goodput.py; a remote one's local copy), or the
        goodput so far; None if none."""
        model_dir = self.model_dir_copy(runner) or self.model_dir(runner)
        if not model_dir or "://" in model_dir or not Path(model_dir).is_dir():
            return None
        return goodput.summary_of(model_dir)

    def summary_lines(self, runner: Runner, data: dict) -> list[str]:
        lines = [f"result: {data['result']} (exit {data['exit_code']}) after "
                 f"{format_duration(data['elapsed_seconds'])}"]
        if runner.upgrade:
            verbs = ("create", "update", "unchanged", "delete", "keep")
            lines.append("upgrade: " + ", ".join(f"{runner.upgrade.count(verb)} {verb}"
                                                 for verb in verbs if runner.upgrade.count(verb)))
        for w in runner.workloads:
            lines.append(workload_line(w))
            if w.message and w.status == "Failed":
                lines.append(f"  {w.message}")
        training = data["training"]
        if training["final_step"] is not None:
            lines.append(f"training: final step {training['final_step']} of {training['max_steps']}")
        elif training["max_steps"]:
            lines.append(f"training: stopped at step {training['last_step']} of {training['max_steps']}; "
                         f"last checkpoint: step {training['last_checkpoint']} (--resume continues from it)")
        for e in sorted({e for f in self.facts.values() for e in f.errors}):
            lines.append(f"error reported by a pod: {e}")
        ev = data["evaluation"]
        if ev["evaluations"]:
            step, acc = ev["evaluations"][-1]
            lines.append(f"evaluator: {len(ev['evaluations'])} checkpoint(s) evaluated; validation accuracy "
                         f"{acc:.4f} at step {step}" + (f"; test accuracy {ev['test_accuracy']:.4f}"
                                                        if ev["test_accuracy"] is not None else ""))
        if data.get("goodput"):
            lines.append(goodput.describe(data["goodput"]))
        for fault in runner.injector.faults:
            if fault.fired:
                lines.append(f"fault {fault.spec}: fired at {fault.fired_at:.1f} s on {fault.pod}"
                             + (f" (step {fault.seen_step})" if fault.seen_step is not None else ""))
            else:
                lines.append(f"fault {fault.spec}: never fired")
        if data["tensorboard_url"]:
            lines.append(f"TensorBoard was at {data['tensorboard_url']} (stopped with the run; "
                         f"`tensorboard --logdir {data.get('model_dir_copy') or data['model_dir']}` "
                         "serves it again)")
        copy = f" (copied to {data['model_dir_copy']})" if data.get("model_dir_copy") else ""
        lines.append(f"pod logs: {Path(runner.run_dir) / 'logs'}/; model dir: {data['model_dir']}{copy}; "
                     f"summary: {Path(runner.run_dir) / 'summary.json'}")
        return lines


def workload_line(w: Workload) -> str:
    """One workload's verdict: per index for an Indexed Job, else its restarts."""
    text = f"{w.ref}: {w.status}" + (f" ({w.reason})" if w.reason else "")
    if isinstance(w, JobController) and w.indexed:
        return text + "; " + ", ".join(
            f"index {s.index}: {len(s.pods)} pod(s), {s.counted} counted + {s.ignored} ignored failure(s)"
            for s in w.indexes)
    return text + f"; {w.restarts} restart(s)"
