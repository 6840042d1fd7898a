"""--fault specs and the injector (faults.py), which asks the run's report for the pods' steps."""

from __future__ import annotations

import pytest

from scripts.local_runner.faults import FaultInjector, FaultSpecError, parse_fault


def test_fault_specs():
    f = parse_fault("kill:worker=1:step=300")
    assert (f.action, f.component, f.index, f.step, f.after) == ("kill", "trainer", 1, 300, None)
    f = parse_fault("stop:worker=0:after=1.5m:for=20s")
    assert (f.action, f.index, f.after, f.duration) == ("stop", 0, 90.0, 20.0)
    assert parse_fault("kill:evaluator:step=2").component == "evaluator"
    for bad in ("kill:worker=1", "boom:worker=1:step=3", "kill:chief:step=3", "term:worker=1:step=3:for=2s",
                "kill:worker=1:step=3:after=2", "kill:worker=1:step=x"):
        with pytest.raises(FaultSpecError):
            parse_fault(bad)


class Pod:
    def __init__(self, component, index):
        self.component, self.index, self.name = component, index, f"{component}-{index}"


class Record:
    def __init__(self, component, index):
        self.pod, self.deleting = Pod(component, index), False


def test_a_step_trigger_fires_once_on_the_step_the_report_gives():
    fault = parse_fault("kill:worker=1:step=300")
    steps = {}
    injector = FaultInjector([fault], step_of=lambda r: steps.get(r.pod.name), last_checkpoint=lambda: 200)
    fired = []
    worker0, worker1 = Record("trainer", 0), Record("trainer", 1)
    steps.update({"trainer-0": 400, "trainer-1": 250})
    injector.tick(1.0, [worker0, worker1], lambda r, f: fired.append(r))
    assert fired == []
    steps["trainer-1"] = 300
    injector.tick(2.0, [worker0, worker1], lambda r, f: fired.append(r))
    injector.tick(3.0, [worker0, worker1], lambda r, f: fired.append(r))
    assert fired == [worker1]
    assert (fault.seen_step, fault.last_saved_step, fault.pod) == (300, 200, "trainer-1")
    assert fault.describe("p") == ("fault kill:worker=1:step=300: kill pod p at step 300 "
                                   "(last checkpoint: step 200)")
