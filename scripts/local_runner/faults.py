"""Fault injection: `--fault ACTION:TARGET:TRIGGER[:for=DURATION]`.

ACTION   kill   SIGKILL (a crash or OOM kill: no chance to save)
         stop   SIGSTOP (a frozen process or node); with for=DURATION it gets
                SIGCONT afterwards, else it stays frozen (Kubernetes would not
                notice either: the chart's workers have no liveness probe)
         term   SIGTERM to the container, as a `kill -TERM 1` would
         evict  a preemption or eviction: the pod gets the DisruptionTarget
                condition, SIGTERM, and SIGKILL after its grace period
TARGET   worker=I (trainer pod of index I), evaluator, tensorboard
TRIGGER  step=N    when the target's current pod logs a step >= N
                   (workers: `train | step N |`; evaluator: `After N training step(s)`)
         after=T   T seconds (30, 30s, 2m) after the run started, once the
                   target has a running pod

Each fault fires once, on whichever pod of the target is running then.
Examples: kill:worker=1:step=300   stop:worker=0:after=40s:for=60s   term:worker=1:step=500
"""

from __future__ import annotations

import dataclasses
import re
import signal
from collections.abc import Callable

ACTIONS = ("kill", "stop", "term", "evict")


class FaultSpecError(ValueError):
    pass


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not match:
        raise FaultSpecError(f"bad duration {text!r} (e.g. 20, 20s, 1.5m)")
    value = float(match.group(1))
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]


@dataclasses.dataclass
class Fault:
    spec: str
    action: str
    component: str  # trainer | evaluator | tensorboard
    index: int | None
    step: int | None = None
    after: float | None = None
    duration: float | None = None
    # what happened
    fired: bool = False
    fired_at: float | None = None  # seconds since the run started
    pod: str | None = None
    seen_step: int | None = None
    last_saved_step: int | None = None  # the newest checkpoint the chief had logged by then
    resumed_at: float | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def describe(self, pod_name: str) -> str:
        """The event line when the fault fires on `pod_name`."""
        step = f" at step {self.seen_step}" if self.seen_step is not None else ""
        saved = f" (last checkpoint: step {self.last_saved_step})" if self.component == "trainer" else ""
        return f"fault {self.spec}: {self.action} pod {pod_name}{step}{saved}"


def parse_fault(spec: str) -> Fault:
    parts = spec.split(":")
    if len(parts) < 3:
        raise FaultSpecError(f"--fault {spec!r}: expected ACTION:TARGET:TRIGGER, e.g. kill:worker=1:step=300")
    action = parts[0]
    if action not in ACTIONS:
        raise FaultSpecError(f"--fault {spec!r}: action must be one of {', '.join(ACTIONS)}")
    target = parts[1]
    if m := re.fullmatch(r"worker=(\d+)", target):
        component, index = "trainer", int(m.group(1))
    elif target in ("evaluator", "tensorboard"):
        component, index = target, None
    else:
        raise FaultSpecError(f"--fault {spec!r}: target must be worker=I, evaluator or tensorboard")
    fault = Fault(spec, action, component, index)
    for part in parts[2:]:
        key, sep, value = part.partition("=")
        if not sep:
            raise FaultSpecError(f"--fault {spec!r}: {part!r} is not key=value")
        if key == "step":
            if not value.isdigit():
                raise FaultSpecError(f"--fault {spec!r}: step must be an integer")
            fault.step = int(value)
        elif key == "after":
            fault.after = parse_duration(value)
        elif key == "for":
            fault.duration = parse_duration(value)
        else:
            raise FaultSpecError(f"--fault {spec!r}: unknown key {key!r} (step, after, for)")
    if (fault.step is None) == (fault.after is None):
        raise FaultSpecError(f"--fault {spec!r}: give exactly one trigger, step=N or after=T")
    if fault.duration is not None and action != "stop":
        raise FaultSpecError(f"--fault {spec!r}: for= only applies to stop")
    return fault


class FaultInjector:
    """Checked every tick of the runner's loop. `step_of(record)`: the step a pod last reported;
    `last_checkpoint()`: the newest checkpoint step reported (both from the run's Report)."""

    def __init__(self, faults: list[Fault], step_of: Callable[[object], int | None],
                 last_checkpoint: Callable[[], int | None]):
        self.faults = faults
        self.step_of = step_of
        self.last_checkpoint = last_checkpoint
        self.frozen: list[tuple[float, object, Fault]] = []  # (resume time, record, fault)

    def tick(self, elapsed: float, running: list, deliver) -> None:
        """`deliver(record, fault)` applies the action; `running`: the running pod records.

        Called every tick of the loop, and after each line a pod logs (with
        that pod alone in `running`), so a step trigger fires on the line
        that reaches the step, not at the next tick."""
        for resume_at, record, fault in list(self.frozen):
            if elapsed >= resume_at:
                self.frozen.remove((resume_at, record, fault))
                if record.running:
                    record.handle.send_signal(signal.SIGCONT)
                fault.resumed_at = elapsed
        for fault in self.faults:
            if fault.fired:
                continue
            targets = [r for r in running if r.pod.component == fault.component
                       and (fault.index is None or r.pod.index == fault.index) and not r.deleting]
            if not targets:
                continue
            record = targets[-1]
            step = self.step_of(record)
            if fault.step is not None and (step is None or step < fault.step):
                continue
            if fault.after is not None and elapsed < fault.after:
                continue
            fault.fired, fault.fired_at, fault.pod = True, elapsed, record.pod.name
            fault.seen_step, fault.last_saved_step = step, self.last_checkpoint()
            deliver(record, fault)
            if fault.action == "stop" and fault.duration is not None:
                self.frozen.append((elapsed + fault.duration, record, fault))
