"""model/leaving.py: the order in which a group's workers leave, and that a peer that does not
answer only ends the chief's wait.

The coordination service is a fake here: a dict with TensorFlow's key-value calls and their
blocking-with-timeout semantics. The real service is exercised by tests/test_multiworker.py,
whose 2-worker runs assert the chief's `leave` line after the done and preempted exits."""

from __future__ import annotations

import logging

import pytest

from model import leaving, log_lines
from model.cluster import ClusterInfo


class FakeCoordination:
    """TensorFlow's eager context's key-value calls; a missing key times out at once."""

    def __init__(self, keys=(), fail_set=False):
        self.keys, self.fail_set, self.asked = dict.fromkeys(keys, "1"), fail_set, []

    def set_config_key_value(self, key, value):
        if self.fail_set:
            raise RuntimeError("UNAVAILABLE: the service is gone")
        self.keys[key] = value

    def get_config_key_value(self, key, timeout_in_ms=0):
        self.asked.append((key, timeout_in_ms))
        if key not in self.keys:
            raise RuntimeError(f"DEADLINE_EXCEEDED after {timeout_in_ms} ms")
        return self.keys[key]


def group(task_type="worker", index=0, workers=3, chief=False) -> ClusterInfo:
    cluster = {"worker": [f"w{i}:2222" for i in range(workers)]}
    if chief:
        cluster["chief"] = ["c0:2222"]
    config = {"cluster": cluster, "task": {"type": task_type, "index": index}}
    return ClusterInfo(config, task_type, index, workers + chief, "TF_CONFIG")


def test_a_non_chief_says_it_is_leaving_and_does_not_wait():
    service = FakeCoordination()
    leaving.leave_together(group(index=2), coordination=service)
    assert service.keys == {"mnist-train/leaving/worker/2": "1"} and service.asked == []


def test_the_chief_waits_for_every_other_worker_then_logs_it(caplog):
    keys = [leaving.leaving_key("worker", i) for i in (1, 2)]
    service = FakeCoordination(keys)
    with caplog.at_level(logging.INFO, logger="model.leaving"):
        leaving.leave_together(group(index=0), coordination=service)
    assert [key for key, _ in service.asked] == keys
    assert int(log_lines.LEAVE_TOGETHER.search("\n".join(caplog.messages))["waited"]) == 2


def test_a_chief_task_waits_for_all_workers_including_worker_0():
    keys = [leaving.leaving_key("worker", i) for i in range(2)]
    service = FakeCoordination(keys)
    leaving.leave_together(group("chief", 0, workers=2, chief=True), coordination=service)
    assert [key for key, _ in service.asked] == keys


def test_a_worker_that_never_says_so_ends_the_wait_with_a_warning_not_an_error(caplog):
    service = FakeCoordination([leaving.leaving_key("worker", 2)])  # worker 1 is silent
    ticks = iter([0.0, 0.0, 5.0, 31.0])
    leaving.leave_together(group(index=0), timeout_secs=30, coordination=service,
                           clock=lambda: next(ticks))
    assert [key for key, _ in service.asked] == [leaving.leaving_key("worker", 1)]
    assert service.asked[0][1] == 30_000  # the whole budget, in ms
    assert "worker 1 did not say it was leaving within 30 s" in caplog.text
    assert not log_lines.LEAVE_TOGETHER.search("\n".join(caplog.messages))


def test_a_non_chief_whose_chief_is_gone_only_warns(caplog):
    leaving.leave_together(group(index=1), coordination=FakeCoordination(fail_set=True))
    assert "could not tell the chief" in caplog.text


def test_a_single_worker_has_nobody_to_wait_for():
    service = FakeCoordination()
    leaving.leave_together(ClusterInfo(None, "worker", 0, 1, "none"), coordination=service)
    assert service.keys == {} and service.asked == []


@pytest.mark.parametrize("objects", [("a", "b"), ("c",)])
def test_hold_keeps_only_the_latest_loop(objects):
    leaving.hold(*objects)
    assert leaving._held == list(objects)
