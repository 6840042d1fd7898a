"""Job semantics (controllers.JobController) on a fake clock, and the typed pod record.

The Job rules are Kubernetes' (pkg/controller/job in kubernetes/kubernetes): per-index
back-off, podFailurePolicy rules in order, activeDeadlineSeconds, backoffLimit."""

from __future__ import annotations

import dataclasses

import pytest

from scripts.local_runner.controllers import (CONTROLLERS, DeploymentController, PodRecord, Workload,
                                              match_pod_failure_policy)
from tests.local_runner.fakes import name, one, started_job


def test_the_charts_pod_failure_policy_rules_apply_in_order(rendered):
    policy = one(rendered["job"], "Job", "trainer")["spec"]["podFailurePolicy"]
    assert match_pod_failure_policy(policy, "trainer", 42, set()) == ("Ignore", 1)
    assert match_pod_failure_policy(policy, "trainer", 2, set()) == ("FailJob", 2)
    assert match_pod_failure_policy(policy, "trainer", 1, set()) == ("Count", None)
    assert match_pod_failure_policy(policy, "trainer", 137, set()) == ("Count", None)
    # An evicted pod is ignored whatever its exit code: the condition rule comes first.
    assert match_pod_failure_policy(policy, "trainer", 2, {"DisruptionTarget"}) == ("Ignore", 0)
    assert match_pod_failure_policy(policy, "other", 2, set()) == ("Count", None)
    not_in = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1]}}]}
    assert match_pod_failure_policy(not_in, "c", 3, set())[0] == "FailJob"
    assert match_pod_failure_policy(not_in, "c", 1, set())[0] == "Count"


def test_indexed_job_retries_each_index_up_to_backoff_limit_per_index(tmp_path, rendered):
    cluster, job = started_job(tmp_path, rendered["job"])
    trainer = name(rendered["job"], "Job", "trainer")
    assert [r.pod.name for r in cluster.created] == [f"{trainer}-0-0", f"{trainer}-1-0"]
    limit = job.per_index_limit
    assert limit == 3 and job.max_failed_indexes == 0
    for attempt in range(limit):
        record = next(r for r in cluster.running() if r.pod.index == 0)
        assert record.pod.attempt == attempt
        cluster.exit(job, record, 1)
        assert job.status == "Running"
        job.tick()
        assert all(r.pod.index != 0 for r in cluster.running()), "replaced before the back-off"
        cluster.clock += 10.0 * 2 ** attempt  # Kubernetes' back-off: 10 s, 20 s, 40 s
        job.tick()
        assert any(r.pod.index == 0 for r in cluster.running())
    cluster.exit(job, next(r for r in cluster.running() if r.pod.index == 0), 1)
    assert job.status == "Failed" and job.reason == "MaxFailedIndexesExceeded"
    assert [r.pod.name for r, _ in cluster.deleted] == [f"{trainer}-1-0"]  # the rest is terminated


def test_preemption_is_replaced_at_once_and_not_counted(tmp_path, rendered):
    cluster, job = started_job(tmp_path, rendered["job"])
    for record in list(cluster.running()):
        cluster.exit(job, record, 42)
    job.tick()
    names = sorted(r.pod.name for r in cluster.running())
    trainer = name(rendered["job"], "Job", "trainer")
    assert names == [f"{trainer}-0-1", f"{trainer}-1-1"]
    assert [s.counted for s in job.indexes] == [0, 0] and [s.ignored for s in job.indexes] == [1, 1]
    assert cluster.running()[0].pod.annotations["batch.kubernetes.io/job-index-ignored-failure-count"] == "1"
    for record in list(cluster.running()):
        cluster.exit(job, record, 0)
    assert job.status == "Complete"


def test_configuration_error_fails_the_job_at_once(tmp_path, rendered):
    cluster, job = started_job(tmp_path, rendered["job"])
    cluster.exit(job, cluster.running()[1], 2)
    assert job.status == "Failed" and job.reason == "PodFailurePolicy"
    assert "exit code 2 matching FailJob rule at index 2" in job.message
    assert [r.pod.name for r, _ in cluster.deleted] == [f"{name(rendered['job'], 'Job', 'trainer')}-0-0"]
    job.tick()
    assert len(cluster.created) == 2, "a failed Job must not create pods"


def test_active_deadline_fails_the_job_and_terminates_its_pods(tmp_path, rendered):
    cluster, job = started_job(tmp_path, rendered["job"])
    cluster.clock = float(job.deadline) - 1
    job.tick()
    assert job.status == "Running"
    cluster.clock = float(job.deadline)
    job.tick()
    assert job.status == "Failed" and job.reason == "DeadlineExceeded"
    assert len(cluster.deleted) == 2


def test_evaluator_job_uses_its_backoff_limit(tmp_path, rendered):
    cluster, job = started_job(tmp_path, rendered["job"], "evaluator")
    assert not job.indexed and job.backoff_limit == 6
    (record,) = cluster.running()
    assert record.pod.name == f"{name(rendered['job'], 'Job', 'evaluator')}-0" and record.pod.slot is None
    for _ in range(6):
        cluster.exit(job, cluster.running()[0], 137)
        cluster.clock += 1000
        job.tick()
    assert job.status == "Running"
    cluster.exit(job, cluster.running()[0], 137)
    assert job.status == "Failed" and job.reason == "BackoffLimitExceeded"


def test_pod_records_declare_every_attribute(tmp_path, rendered):
    """No attribute can be added to a PodRecord at run time (the runner once did: `_last_probe`)."""
    cluster, job = started_job(tmp_path, rendered["job"])
    record = cluster.running()[0]
    with pytest.raises(AttributeError):
        record._last_probe = 1.0
    assert {f.name for f in dataclasses.fields(PodRecord)} >= {"ready_url", "last_probe", "restart_count"}


def test_restarts_are_one_int_in_every_controller(tmp_path, rendered):
    """Every workload counts its replaced pods in `restarts` (an int; describe() reports it)."""
    cluster, job = started_job(tmp_path, rendered["job"])
    cluster.exit(job, cluster.running()[0], 42)  # ignored: replaced at once, not counted
    job.tick()
    cluster.exit(job, cluster.running()[0], 1)  # counted
    assert job.restarts == 2 and job.describe()["restarts"] == 2
    deployment = DeploymentController(cluster, one(rendered["job"], "Deployment", "tensorboard"))
    deployment.start()
    deployment.tick()
    (pod,) = [r for r in cluster.running() if r in deployment.records]
    cluster.exit(deployment, pod, 1)
    cluster.clock += 100
    deployment.tick()
    assert deployment.restarts == 1 and deployment.describe()["restarts"] == 1
    assert [r.restart_count for r in deployment.records] == [0, 1]
    for kind in CONTROLLERS.values():
        assert issubclass(kind, Workload)
    assert isinstance(Workload(cluster, "w", "c").restarts, int)
