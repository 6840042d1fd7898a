"""TFJob semantics (controllers.TFJobController) held against kubeflow/training-operator v1.9.0.

Each test names the upstream source it reproduces (github.com/kubeflow/training-operator, tag
v1.9.0). Not reproduced, and refused: replica types other than Chief and Worker (PS, Evaluator,
Master), enableDynamicWorker's sparse TF_CONFIG."""

from __future__ import annotations

import json

import pytest

from scripts.local_runner.controllers import TFJobController
from tests.local_runner.fakes import FakeCluster, name, one


def tfjob_doc(replicas=(("Worker", 2),), policy="OnFailure", port=None, **spec):
    container = {"name": "tensorflow", "image": "i", "command": ["run"]}
    if port:
        container["ports"] = [{"name": "tfjob-port", "containerPort": port}]
    return {"kind": "TFJob", "metadata": {"name": "tf"},
            "spec": {"tfReplicaSpecs": {rtype: {"replicas": n, "restartPolicy": policy,
                                                "template": {"spec": {"containers": [container]}}}
                                        for rtype, n in replicas}, **spec}}


def started(tmp_path, doc, namespace="ns"):
    cluster = FakeCluster(tmp_path, [], namespace=namespace)
    tfjob = TFJobController(cluster, doc)
    tfjob.start()
    tfjob.tick()
    return cluster, tfjob


def pod(cluster, pod_name):
    return next(r for r in cluster.running() if r.pod.name == pod_name)


def test_pods_get_the_tf_config_the_operator_injects(tmp_path):
    """pkg/controller.v1/tensorflow/tensorflow.go genTFConfigJSONStr + genClusterSpec (Go json.Marshal:
    map keys sorted, struct fields in order): "<tfjob>-<type>-<i>.<namespace>.svc:<port>", the port
    the container's "tfjob-port" (GetPortFromTFJob), pods named by common/util.go GenGeneralName."""
    cluster, tfjob = started(tmp_path, tfjob_doc((("Worker", 2), ("Chief", 1)), port=2345))
    assert sorted(r.pod.name for r in cluster.running()) == ["tf-chief-0", "tf-worker-0", "tf-worker-1"]
    assert pod(cluster, "tf-worker-1").pod.container.env["TF_CONFIG"] == (
        '{"cluster":{"chief":["tf-chief-0.ns.svc:2345"],"worker":["tf-worker-0.ns.svc:2345",'
        '"tf-worker-1.ns.svc:2345"]},"task":{"type":"worker","index":1},"environment":"cloud"}')
    assert "tf-worker-1.ns.svc" in next(s for s in tfjob.slots() if s.key == "tf-worker-1").dns_names
    _, default_port = started(tmp_path, tfjob_doc())
    assert default_port.cluster_spec == {"worker": ["tf-worker-0.ns.svc:2222", "tf-worker-1.ns.svc:2222"]}


@pytest.mark.parametrize("replicas, success_policy, exits, expected", [
    ((("Chief", 1), ("Worker", 1)), "", ["tf-chief-0"], "Complete"),
    ((("Worker", 2),), "", ["tf-worker-0"], "Complete"),
    ((("Worker", 2),), "AllWorkers", ["tf-worker-0"], "Running"),
    ((("Worker", 2),), "AllWorkers", ["tf-worker-0", "tf-worker-1"], "Complete"),
])
def test_success_follows_the_chief_or_worker_0_or_all_workers(tmp_path, replicas, success_policy, exits,
                                                               expected):
    """pkg/controller.v1/tensorflow/tfjob_controller.go UpdateJobStatus: with a Chief its success
    completes the TFJob; without, every Worker's, or worker 0's unless successPolicy is AllWorkers."""
    cluster, tfjob = started(tmp_path, tfjob_doc(replicas, successPolicy=success_policy))
    for pod_name in exits:
        record = pod(cluster, pod_name)
        cluster.exit(tfjob, record, 0)
    assert tfjob.status == expected
    if expected == "Complete":
        assert tfjob.reason == "TFJobSucceeded"


@pytest.mark.parametrize("policy, code, restarts", [
    ("OnFailure", 1, True), ("Always", 1, True), ("Never", 137, False),
    ("ExitCode", 137, True), ("ExitCode", 1, False)])
def test_restart_policy_decides_whether_a_failed_pod_restarts(tmp_path, policy, code, restarts):
    """pkg/util/train/train_util.go IsRetryableExitCode (>= 128) under ExitCode; OnFailure/Always
    restart in place; otherwise the failed replica fails the TFJob (UpdateJobStatus, TFJobFailed)."""
    cluster, tfjob = started(tmp_path, tfjob_doc(policy=policy))
    cluster.exit(tfjob, pod(cluster, "tf-worker-1"), code)
    if restarts:
        assert tfjob.status == "Running" and tfjob.restarts == 1
        cluster.clock += 1000
        tfjob.tick()
        assert pod(cluster, "tf-worker-1").restart_count == 1
    else:
        assert tfjob.status == "Failed" and tfjob.reason == "TFJobFailed"


def test_in_place_restarts_reaching_the_backoff_limit_fail_the_tfjob(tmp_path):
    """pkg/core/job.go PastBackoffLimit: the sum of the pods' restartCounts >= backoffLimit fails
    the TFJob (pkg/controller.v1/common/job.go: "... has reached the specified backoff limit");
    a pod ExitCode recreates starts at restartCount 0, so those restarts do not count."""
    cluster, tfjob = started(tmp_path, tfjob_doc(policy="OnFailure", runPolicy={"backoffLimit": 2}))
    cluster.exit(tfjob, pod(cluster, "tf-worker-0"), 1)
    assert tfjob.status == "Running"
    cluster.clock += 1000
    tfjob.tick()
    cluster.exit(tfjob, pod(cluster, "tf-worker-1"), 1)
    assert tfjob.status == "Failed" and tfjob.reason == "TFJobFailed"
    assert tfjob.message == "Job tf has failed because it has reached the specified backoff limit"
    cluster, tfjob = started(tmp_path, tfjob_doc(policy="ExitCode", runPolicy={"backoffLimit": 1}))
    for _ in range(3):
        cluster.exit(tfjob, pod(cluster, "tf-worker-0"), 137)
        cluster.clock += 1000
        tfjob.tick()
    assert tfjob.status == "Running" and tfjob.restarts == 3


def test_active_deadline_fails_the_tfjob(tmp_path):
    """pkg/controller.v1/common/job.go: PastActiveDeadline -> JobFailed, reason TFJobFailed."""
    cluster, tfjob = started(tmp_path, tfjob_doc(runPolicy={"activeDeadlineSeconds": 60}))
    cluster.clock = 59
    tfjob.tick()
    assert tfjob.status == "Running"
    cluster.clock = 60
    tfjob.tick()
    assert tfjob.status == "Failed" and tfjob.reason == "TFJobFailed"
    assert "active longer than specified deadline" in tfjob.message and len(cluster.deleted) == 2


def test_other_replica_types_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"replica types \['PS'\] are not supported"):
        TFJobController(FakeCluster(tmp_path, []), tfjob_doc((("PS", 1), ("Worker", 1))))


def test_the_charts_tfjob_workers_resolve_the_operators_tf_config(tmp_path, rendered):
    from model.cluster import resolve_cluster
    cluster = FakeCluster(tmp_path, rendered["tfjob"].docs)
    tfjob = TFJobController(cluster, one(rendered["tfjob"], "TFJob"))
    tfjob.start()
    tfjob.tick()
    pods = [r.pod for r in cluster.running()]
    trainer = name(rendered["tfjob"], "TFJob", "trainer")
    assert [p.name for p in pods] == [f"{trainer}-worker-0", f"{trainer}-worker-1"]
    config = json.loads(pods[1].container.env["TF_CONFIG"])
    assert config["cluster"]["worker"] == [f"{trainer}-worker-0.mnist-train.svc:2222",
                                           f"{trainer}-worker-1.mnist-train.svc:2222"]
    info = resolve_cluster(pods[1].container.env)
    assert (info.source, info.task_index, info.num_workers, info.is_chief) == ("TF_CONFIG", 1, 2, False)
