"""model/ops.py: the status of a training run from Kubernetes API objects.

The status logic runs on real `kubernetes.client` model objects, deserialized
by the client's own ApiClient from JSON shaped like the API server's answers
(Indexed Job pods with their completion-index labels, a preempted worker with
exit code 42 and a DisruptionTarget condition, a configuration error that the
Job's pod failure policy turned into a Failed Job, a TFJob worker restarting in
place, OOM, eviction, an unschedulable pod...).

No API server runs here. Where a command needs one, `FakeApi` stands in for
model/ops.py's `KubeApi`: it only hands out those deserialized objects and
canned log text, so everything above that thin layer (collect, verdict,
render, the status/wait/logs commands) is the real code.
"""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest
from kubernetes.client import ApiClient

from model import ops

NS = "mnist-train"
RELEASE = "mnist-train"
CHART_LABELS = {"app.kubernetes.io/name": "mnist-train", "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/part-of": "mnist-train",
                "app.kubernetes.io/version": "0.1.0", "helm.sh/chart": "mnist-train-0.1.0"}


def deserialize(data: dict, kind: str):
    return ApiClient()._ApiClient__deserialize(data, kind)


# ---------------------------------------------------------------- API-shaped JSON

def ts(minute: int) -> str:
    return f"2026-03-01T10:{minute:02d}:00Z"


def container_status(name="trainer", *, running=False, waiting=None, terminated=None, last=None,
                     restarts=0, ready=None):
    state = {}
    if running:
        state["running"] = {"startedAt": ts(2)}
    if waiting:
        state["waiting"] = waiting
    if terminated:
        state["terminated"] = {"containerID": "containerd://ab12", "startedAt": ts(2),
                               "finishedAt": ts(30), **terminated}
    status = {"name": name, "image": "ghcr.io/example/mnist-train:0.1.0",
              "imageID": "ghcr.io/example/mnist-train@sha256:" + "0" * 64,
              "containerID": "containerd://ab12", "ready": bool(running if ready is None else ready),
              "restartCount": restarts, "started": bool(running), "state": state, "lastState": {}}
    if last:
        status["lastState"] = {"terminated": {"containerID": "containerd://cd34", "startedAt": ts(1),
                                              "finishedAt": ts(2), **last}}
    return status


def pod(name, component, *, index=None, phase="Running", statuses=(), conditions=None, minute=1,
        owner=("Job", "mnist-train-trainer"), reason=None, message=None, container="trainer",
        extra_labels=None):
    labels = {**CHART_LABELS, "app.kubernetes.io/component": component, **(extra_labels or {})}
    annotations = {}
    if index is not None:
        labels["batch.kubernetes.io/job-completion-index"] = str(index)
        annotations["batch.kubernetes.io/job-completion-index"] = str(index)
        labels["batch.kubernetes.io/controller-uid"] = "7d1a"
        labels["job-name"] = owner[1]
    ready = phase == "Running" and all(s.get("ready") for s in statuses)
    body = {
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "labels": labels,
                     "annotations": annotations, "creationTimestamp": ts(minute),
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": owner[0], "name": owner[1],
                                          "uid": "7d1a", "controller": True,
                                          "blockOwnerDeletion": True}]},
        "spec": {"containers": [{"name": container, "image": "ghcr.io/example/mnist-train:0.1.0",
                                 "command": ["python", "-m", "model"]}],
                 "restartPolicy": "Never", "nodeName": "gke-pool-1-abcd",
                 "serviceAccountName": "mnist-train"},
        "status": {"phase": phase, "hostIP": "10.128.0.5", "podIP": "10.4.1.7",
                   "startTime": ts(minute),
                   "conditions": conditions if conditions is not None else [
                       {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts(minute)},
                       {"type": "Initialized", "status": "True", "lastTransitionTime": ts(minute)},
                       {"type": "ContainersReady", "status": str(ready), "lastTransitionTime": ts(2)},
                       {"type": "Ready", "status": str(ready), "lastTransitionTime": ts(2)}],
                   "containerStatuses": list(statuses), "qosClass": "Burstable"},
    }
    if reason:
        body["status"]["reason"] = reason
    if message:
        body["status"]["message"] = message
    return body


def pod_list(*pods):
    return deserialize({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "81"},
                        "items": list(pods)}, "V1PodList").items


def job(name, component, *, active=0, succeeded=0, failed=0, conditions=(), completions=2,
        owner=None):
    metadata = {"name": name, "namespace": NS, "uid": f"uid-{name}", "creationTimestamp": ts(0),
                "labels": {**CHART_LABELS, "app.kubernetes.io/component": component}}
    if owner:
        metadata["ownerReferences"] = [{"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": owner[0],
                                        "name": owner[1], "uid": "js1", "controller": True}]
    status = {"startTime": ts(0), "active": active, "succeeded": succeeded, "failed": failed,
              "ready": active, "terminating": 0,
              "uncountedTerminatedPods": {}, "conditions": list(conditions)}
    return {"metadata": metadata,
            "spec": {"completions": completions, "parallelism": completions, "completionMode": "Indexed",
                     "template": {"spec": {"containers": [{"name": component, "image": "x"}]}}},
            "status": status}


def job_list(*jobs):
    return deserialize({"kind": "JobList", "apiVersion": "batch/v1", "metadata": {}, "items": list(jobs)},
                       "V1JobList").items


def condition(type_, reason=None, message=None, status="True"):
    c = {"type": type_, "status": status, "lastProbeTime": ts(30), "lastTransitionTime": ts(30)}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


TB_SERVICE = {"metadata": {"name": "mnist-train-tensorboard", "namespace": NS,
                           "labels": {**CHART_LABELS, "app.kubernetes.io/component": "tensorboard"}},
              "spec": {"type": "ClusterIP", "clusterIP": "10.8.3.21", "clusterIPs": ["10.8.3.21"],
                       "selector": {"app.kubernetes.io/component": "tensorboard"},
                       "ports": [{"name": "http", "port": 6006, "targetPort": "http", "protocol": "TCP"}]},
              "status": {"loadBalancer": {}}}


def services():
    return deserialize({"kind": "ServiceList", "apiVersion": "v1", "metadata": {}, "items": [TB_SERVICE]},
                       "V1ServiceList").items


def tensorboard_pod(ready=True):
    return pod("mnist-train-tensorboard-6d9f-x2x", "tensorboard", container="tensorboard",
               owner=("ReplicaSet", "mnist-train-tensorboard-6d9f"),
               statuses=[container_status("tensorboard", running=True, ready=ready)])


CHIEF_LOG = """\
config | model=mlp model_dir=/models/mnist-train
train | start | model mlp | step 0 of 30000 | global batch 200 over 2 replica(s) | chief True
train | compiled and ran 100 step(s) in 4.1 s
train | step 1000 | loss 0.3412 | batch acc 0.9400 | lr 0.80000 | 5300 img/s
train | step 1000 | saved /models/mnist-train/ckpt-1000
train | step 2000 | saved /models/mnist-train/ckpt-2000
train | step 2100 | loss 0.2011 | batch acc 0.9650 | lr 0.79200 | 5410 img/s
"""
RESUMED_CHIEF_LOG = """\
train | restored /models/mnist-train/ckpt-2000 at step 2000
train | step 2500 | loss 0.1811 | batch acc 0.9700 | lr 0.79200 | 5390 img/s
"""
def event(**fields) -> str:
    """One of the evaluator's machine-readable lines (json.dumps, sorted keys)."""
    return json.dumps(fields, sort_keys=True)


def eval_event(step: int, accuracy: float, raw: float) -> str:
    return event(checkpoint=f"/models/mnist-train/ckpt-{step}", eval_seconds=1.1, event="eval",
                 raw_validation_accuracy=raw, step=step, validation_accuracy=accuracy)


EVALUATOR_LOG = "\n".join([
    "eval | watching /models/mnist-train every 10 s; writing /models/mnist-train/eval",
    "After 1000 training step(s), validation accuracy = 0.9612",
    eval_event(1000, 0.9612, 0.958),
    "After 2000 training step(s), validation accuracy = 0.9733",
    eval_event(2000, 0.9733, 0.97),
]) + "\n"
FINAL_EVALUATOR_LOG = EVALUATOR_LOG + "\n".join([
    "After 30000 training step(s), validation accuracy = 0.9842",
    eval_event(30000, 0.9842, 0.98),
    "After 30000 training step(s), test accuracy = 0.9839",
    event(best_step=30000, best_validation_accuracy=0.9842, checkpoints_evaluated=30, event="final",
          final_step=30000, final_validation_accuracy=0.9842, raw_test_accuracy=0.981,
          test_accuracy=0.9839),
]) + "\n"
CONFIG_ERROR_LOG = (
    "config | model=mlp model_dir=gs://example-bucket/mnist/mnist-train\n"
    "error: MNIST file not found in gs://example-bucket/mnist-data: looked for "
    "gs://example-bucket/mnist-data/train-images-idx3-ubyte.gz and "
    "gs://example-bucket/mnist-data/train-images-idx3-ubyte\n")


def running_chief(name="mnist-train-trainer-0-7xk2p", minute=1):
    return pod(name, "trainer", index=0, minute=minute, statuses=[container_status(running=True)])


def preempted_worker():
    """Worker 1 after a SIGTERM: saved, exited 42; the node was being drained."""
    conditions = [condition("DisruptionTarget", "EvictionByEvictionAPI",
                            "Eviction API: evicting"),
                  condition("Ready", "PodFailed", status="False"),
                  condition("PodScheduled")]
    return pod("mnist-train-trainer-1-q9d4w", "trainer", index=1, phase="Failed", minute=1,
               conditions=conditions,
               statuses=[container_status(terminated={"exitCode": 42, "reason": "Error"})])


def replacement_worker():
    return pod("mnist-train-trainer-1-m3kdz", "trainer", index=1, minute=31,
               statuses=[container_status(running=True)])


def evaluator_pod(*, running=True, exit_code=None):
    reason = "Completed" if exit_code == 0 else "Error"
    statuses = [container_status("evaluator", running=True)] if running else \
        [container_status("evaluator", terminated={"exitCode": exit_code, "reason": reason})]
    return pod("mnist-train-evaluator-5hq2n", "evaluator", phase="Running" if running else
               ("Succeeded" if exit_code == 0 else "Failed"), container="evaluator",
               owner=("Job", "mnist-train-evaluator"), statuses=statuses)


# ---------------------------------------------------------------- pods

def test_running_chief():
    info = ops.pod_info(pod_list(running_chief())[0])
    assert (info.component, info.index, info.phase, info.state, info.ready, info.restarts) == \
        ("trainer", 0, "Running", "running", True, 0)
    assert info.summary() == "running"


def test_preempted_worker_is_explained():
    info = ops.pod_info(pod_list(preempted_worker())[0])
    assert info.exit_code == 42 and info.preempted and info.disruption == "EvictionByEvictionAPI"
    assert info.summary().startswith("exit 42: preempted: SIGTERM received and a checkpoint saved")
    assert "without counting as a failure" in info.summary()


def test_config_error_pod_with_its_log_line():
    failed = pod("mnist-train-trainer-0-b7c1d", "trainer", index=0, phase="Failed",
                 statuses=[container_status(terminated={"exitCode": 2, "reason": "Error"})])
    status = ops.summarize(NS, RELEASE, pods=pod_list(failed),
                           logs={"mnist-train-trainer-0-b7c1d": CONFIG_ERROR_LOG})
    info = status.trainer_pods[0]
    assert info.summary().startswith("exit 2: configuration or data error: retrying cannot help")
    assert "error: MNIST file not found in gs://example-bucket/mnist-data" in info.summary()


def test_tfjob_worker_restarting_in_place():
    """restartPolicy OnFailure: the same pod, restarted 3 times, now backing off."""
    crashing = pod("mnist-train-trainer-worker-1", "trainer", container="tensorflow",
                   owner=("TFJob", "mnist-train-trainer"),
                   extra_labels={"training.kubeflow.org/replica-index": "1",
                                 "training.kubeflow.org/replica-type": "worker",
                                 "training.kubeflow.org/job-name": "mnist-train-trainer"},
                   statuses=[container_status(
                       "tensorflow", restarts=3,
                       waiting={"reason": "CrashLoopBackOff",
                                "message": "back-off 40s restarting failed container=tensorflow"},
                       last={"exitCode": 1, "reason": "Error"})])
    info = ops.pod_info(pod_list(crashing)[0])
    assert (info.index, info.restarts, info.state, info.reason) == (1, 3, "waiting", "CrashLoopBackOff")
    assert info.summary() == ("waiting: CrashLoopBackOff: back-off 40s restarting failed "
                              "container=tensorflow; last restart: exit 1: failed: unexpected error "
                              "(e.g. a peer worker died); the group is retried")


def test_oom_killed_and_evicted_and_unschedulable():
    oom = pod("w-0", "trainer", index=0, phase="Failed",
              statuses=[container_status(terminated={"exitCode": 137, "reason": "OOMKilled"})])
    evicted = pod("w-1", "trainer", index=1, phase="Failed", reason="Evicted",
                  message="The node was low on resource: memory.", statuses=[])
    pending = pod("w-2", "trainer", index=2, phase="Pending", statuses=[], conditions=[
        condition("PodScheduled", "Unschedulable",
                  "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.", status="False")])
    oom_i, evicted_i, pending_i = map(ops.pod_info, pod_list(oom, evicted, pending))
    assert oom_i.summary() == "exit 137: out of memory (OOMKilled): raise the memory limit"
    assert evicted_i.preempted and "Evicted: The node was low on resource: memory." in evicted_i.summary()
    assert pending_i.summary() == ("pending: Unschedulable: 0/3 nodes are available: "
                                   "3 Insufficient nvidia.com/gpu.")


# ---------------------------------------------------------------- Jobs, JobSets, TFJobs

FAIL_JOB_MESSAGE = ("Container trainer for pod mnist-train/mnist-train-trainer-0-b7c1d failed with "
                    "exit code 2 matching FailJob rule at index 2")


def test_job_states():
    running, done, failed, suspended, pending = map(ops.job_info, job_list(
        job("a", "trainer", active=2),
        job("b", "trainer", succeeded=2, conditions=[condition("SuccessCriteriaMet"), condition("Complete")]),
        job("c", "trainer", failed=1, conditions=[
            condition("FailureTarget", "PodFailurePolicy", FAIL_JOB_MESSAGE),
            condition("Failed", "PodFailurePolicy", FAIL_JOB_MESSAGE)]),
        job("d", "trainer", conditions=[condition("Suspended", "JobSuspended", "Job suspended")]),
        job("e", "trainer")))
    assert [j.state for j in (running, done, failed, suspended, pending)] == \
        ["running", "succeeded", "failed", "suspended", "pending"]
    text = failed.summary()
    assert "PodFailurePolicy (a pod failure policy rule failed the Job)" in text
    assert "[exit 2: configuration or data error: retrying cannot help" in text


def jobset(conditions):
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
            "metadata": {"name": "mnist-train-trainer", "namespace": NS,
                         "labels": {**CHART_LABELS, "app.kubernetes.io/component": "trainer"}},
            "status": {"conditions": conditions, "restarts": 1,
                       "replicatedJobsStatus": [{"name": "worker", "active": 1, "failed": 0,
                                                 "ready": 1, "succeeded": 0, "suspended": 0}]}}


def test_jobset_decides_over_its_child_jobs():
    """The JobSet restarts its group by recreating child Jobs: a failed child
    Job is not the verdict while the JobSet itself runs."""
    child = job("mnist-train-trainer-worker-0", "trainer", failed=1, owner=("JobSet", "mnist-train-trainer"),
                conditions=[condition("Failed", "BackoffLimitExceeded",
                                      "Job has reached the specified backoff limit")])
    status = ops.summarize(NS, RELEASE, pods=pod_list(running_chief()), jobs=job_list(child),
                           jobsets=[jobset([])])
    assert status.trainer.kind == "JobSet" and status.trainer.state == "pending"
    assert not ops.verdict(status).failed
    failed = jobset([{"type": "Failed", "status": "True", "reason": "FailedJobs",
                      "message": "jobset failed due to reaching max number of restarts",
                      "lastTransitionTime": ts(40)}])
    status = ops.summarize(NS, RELEASE, pods=pod_list(running_chief()), jobs=job_list(child),
                           jobsets=[failed])
    v = ops.verdict(status)
    assert v.failed and "JobSet/mnist-train-trainer: failed: FailedJobs" in v.reason


def test_tfjob_conditions():
    tfjob = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": "mnist-train-trainer"},
             "status": {"conditions": [
                 {"type": "Created", "status": "True", "reason": "TFJobCreated"},
                 {"type": "Running", "status": "False", "reason": "TFJobRestarting"},
                 {"type": "Restarting", "status": "True", "reason": "TFJobRestarting",
                  "message": "TFJob mnist-train/mnist-train-trainer is restarting because "
                             "1 Worker replica(s) failed."}]}}
    info = ops.custom_info(tfjob)
    assert (info.kind, info.state, info.reason) == ("TFJob", "running", "Restarting")
    tfjob["status"]["conditions"].append({"type": "Succeeded", "status": "True", "reason": "TFJobSucceeded"})
    assert ops.custom_info(tfjob).state == "succeeded"


# ---------------------------------------------------------------- logs

def test_log_parsing():
    progress = ops.parse_trainer_log(CHIEF_LOG, ops.Progress())
    assert (progress.step, progress.checkpoint_step, progress.training_done) == (2100, 2000, False)
    ops.parse_evaluator_log(EVALUATOR_LOG, progress)
    assert (progress.eval_step, progress.eval_accuracy) == (2000, 0.9733)
    final = ops.parse_evaluator_log(FINAL_EVALUATOR_LOG, ops.Progress())
    assert (final.final_step, final.test_accuracy, final.checkpoint_step) == (30000, 0.9839, 30000)
    plain = ops.parse_evaluator_log("After 700 training step(s), validation accuracy = 0.95\n",
                                    ops.Progress())
    assert (plain.eval_step, plain.eval_accuracy) == (700, 0.95)
    assert ops.error_line(CONFIG_ERROR_LOG).startswith("error: MNIST file not found")


# ---------------------------------------------------------------- the release

def in_progress_release():
    """Worker 1 was preempted and replaced; the chief was restarted once too."""
    old_chief = pod("mnist-train-trainer-0-aaaaa", "trainer", index=0, phase="Failed", minute=1,
                    statuses=[container_status(terminated={"exitCode": 42, "reason": "Error"})],
                    conditions=[condition("DisruptionTarget", "PreemptionByScheduler",
                                          "Kubernetes scheduler preemption")])
    return dict(
        pods=pod_list(old_chief, running_chief(minute=31), preempted_worker(), replacement_worker(),
                      evaluator_pod(), tensorboard_pod()),
        jobs=job_list(job("mnist-train-trainer", "trainer", active=2),
                      job("mnist-train-evaluator", "evaluator", active=1, completions=1)),
        services=services(),
        logs={"mnist-train-trainer-0-aaaaa": CHIEF_LOG, "mnist-train-trainer-0-7xk2p": RESUMED_CHIEF_LOG,
              "mnist-train-evaluator-5hq2n": EVALUATOR_LOG})


def test_status_of_a_run_in_progress():
    status = ops.summarize(NS, RELEASE, **in_progress_release())
    assert [(p.name, p.index) for p in status.trainer_pods] == [
        ("mnist-train-trainer-0-aaaaa", 0), ("mnist-train-trainer-0-7xk2p", 0),
        ("mnist-train-trainer-1-q9d4w", 1), ("mnist-train-trainer-1-m3kdz", 1)]
    assert status.progress.checkpoint_step == 2000 and status.progress.step == 2500
    assert status.progress.eval_accuracy == 0.9733
    assert status.tensorboard[0].ready_pods == 1
    v = ops.verdict(status)
    assert not v.done and not v.failed and v.reason == "trainer running"
    text = ops.render(status)
    assert "trainer      Job/mnist-train-trainer: running (2 active, 0 succeeded, 0 failed)" in text
    assert "checkpoint   newest at step 2000 (from the chief's log); training at step 2500" in text
    assert "After 2000 training step(s), validation accuracy = 0.9733" in text
    assert "Service/mnist-train-tensorboard ClusterIP 10.8.3.21:6006, 1/1 pod(s) ready" in text
    assert "kubectl port-forward -n mnist-train svc/mnist-train-tensorboard 6006:6006" in text
    assert "exit 42: preempted" in text and "disrupted: PreemptionByScheduler" in text


def test_model_dir_step_wins_when_newer():
    status = ops.summarize(NS, RELEASE, **in_progress_release(), model_dir_step=3000)
    assert (status.progress.checkpoint_step, status.progress.checkpoint_source) == (3000, "model dir")


def test_finished_release():
    status = ops.summarize(
        NS, RELEASE,
        pods=pod_list(pod("mnist-train-trainer-0-7xk2p", "trainer", index=0, phase="Succeeded",
                          statuses=[container_status(terminated={"exitCode": 0, "reason": "Completed"})]),
                      evaluator_pod(running=False, exit_code=0)),
        jobs=job_list(job("mnist-train-trainer", "trainer", succeeded=2,
                          conditions=[condition("SuccessCriteriaMet"), condition("Complete")]),
                      job("mnist-train-evaluator", "evaluator", succeeded=1, completions=1,
                          conditions=[condition("Complete")])),
        logs={"mnist-train-evaluator-5hq2n": FINAL_EVALUATOR_LOG})
    v = ops.verdict(status)
    assert v.done and v.reason == ("trainer succeeded; evaluator finished; after 30000 training step(s), "
                                   "test accuracy = 0.9839")
    assert "tensorboard  no Service" in ops.render(status)


def test_config_error_fails_the_run_with_the_reason():
    message = FAIL_JOB_MESSAGE
    status = ops.summarize(
        NS, RELEASE,
        pods=pod_list(pod("mnist-train-trainer-0-b7c1d", "trainer", index=0, phase="Failed",
                          statuses=[container_status(terminated={"exitCode": 2, "reason": "Error"})]),
                      preempted_worker()),
        jobs=job_list(job("mnist-train-trainer", "trainer", failed=1, conditions=[
            condition("FailureTarget", "PodFailurePolicy", message),
            condition("Failed", "PodFailurePolicy", message)])),
        logs={"mnist-train-trainer-0-b7c1d": CONFIG_ERROR_LOG})
    v = ops.verdict(status)
    assert v.failed and not v.done
    assert v.reason.startswith("trainer Job/mnist-train-trainer: failed")
    assert "[exit 2: configuration or data error" in v.reason
    # The culprit is the exit-2 pod, not the preempted one.
    assert "pod mnist-train-trainer-0-b7c1d: exit 2" in v.reason
    assert "error: MNIST file not found in gs://example-bucket/mnist-data" in v.reason


def test_nothing_found():
    v = ops.verdict(ops.summarize(NS, "other", pods=[]))
    assert not v.found and "no trainer of release 'other'" in v.reason


# ---------------------------------------------------------------- commands, on a stand-in API

class FakeApi:
    """Stands in for ops.KubeApi (no API server here): returns the deserialized
    objects of the current snapshot, filtered by the label selector as the API
    server would, and canned logs. Each `advance()` moves to the next snapshot."""

    def __init__(self, *snapshots: dict):
        self.snapshots = list(snapshots)
        self.current = 0
        self.selectors: list[str] = []

    @property
    def snap(self) -> dict:
        return self.snapshots[min(self.current, len(self.snapshots) - 1)]

    def advance(self):
        self.current += 1

    @staticmethod
    def _match(objects, selector):
        wanted = dict(part.split("=", 1) for part in selector.split(","))
        return [o for o in objects if wanted.items() <= (o.metadata.labels or {}).items()]

    def pods(self, namespace, selector):
        assert namespace == NS
        self.selectors.append(selector)
        return self._match(self.snap.get("pods", []), selector)

    def jobs(self, namespace, selector):
        return self._match(self.snap.get("jobs", []), selector)

    def services(self, namespace, selector):
        return self._match(self.snap.get("services", []), selector)

    def custom_objects(self, namespace, resource, selector):
        return self.snap.get("jobsets" if resource == ops.JOBSET else "tfjobs", [])

    def log(self, namespace, pod, container, tail_lines):
        return self.snap.get("logs", {}).get(pod)

    def stream_log(self, namespace, pod, container, *, follow, tail_lines):
        lines = (self.snap.get("logs", {}).get(pod) or "").splitlines()
        yield from (lines[-tail_lines:] if tail_lines else lines)
        if follow:
            self.advance()  # the pod ended while we followed it

    def pod_container(self, namespace, pod):
        return pod.spec.containers[0].name


def run(argv, api, capsys):
    code = ops.main([*argv, "-n", NS], api=api)
    out, err = capsys.readouterr()
    return code, out, err


def test_status_command_text_and_json(capsys):
    api = FakeApi(in_progress_release())
    code, out, _ = run(["status"], api, capsys)
    assert code == 0 and "verdict      in progress: trainer running" in out
    assert "app.kubernetes.io/instance=mnist-train,app.kubernetes.io/name=mnist-train" in api.selectors
    code, out, _ = run(["status", "-o", "json"], api, capsys)
    payload = json.loads(out)
    assert payload["progress"]["checkpoint_step"] == 2000
    assert [p["exit_code"] for p in payload["trainer_pods"]] == [42, None, 42, None]
    assert payload["verdict"]["done"] is False
    code, out, _ = run(["status", "--release", "nope"], api, capsys)
    assert code == 2 and "no trainer of release 'nope'" in out


def finished_snapshot():
    snap = in_progress_release()
    snap["jobs"] = job_list(job("mnist-train-trainer", "trainer", succeeded=2,
                                conditions=[condition("Complete")]),
                            job("mnist-train-evaluator", "evaluator", succeeded=1, completions=1,
                                conditions=[condition("Complete")]))
    snap["logs"] = {**snap["logs"], "mnist-train-evaluator-5hq2n": FINAL_EVALUATOR_LOG}
    return snap


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def wait(api, *extra, clock=None):
    clock = clock or Clock()
    out, err = [], []
    args = ops.build_parser().parse_args(["wait", "-n", NS, "--interval-secs", "10", *extra])

    def sleep(seconds):
        clock.now += seconds
        api.advance()

    code = ops.cmd_wait(api, args, out=out.append, err=err.append, sleep=sleep, clock=clock)
    return code, out, err


def test_wait_until_done():
    api = FakeApi(in_progress_release(), in_progress_release(), finished_snapshot())
    code, out, err = wait(api)
    assert code == 0 and not err
    assert out[-1] == ("wait | trainer succeeded; evaluator finished; after 30000 training step(s), test "
                       "accuracy = 0.9839 | mnist-train-trainer-0-aaaaa: exit 42: preempted: SIGTERM "
                       "received and a checkpoint saved; the pod is replaced without counting as a "
                       "failure and training resumes; disrupted: PreemptionByScheduler | "
                       "mnist-train-trainer-1-q9d4w: exit 42: preempted: SIGTERM received and a "
                       "checkpoint saved; the pod is replaced without counting as a failure and "
                       "training resumes; disrupted: EvictionByEvictionAPI")
    assert len(out) == 2  # one line per change, not per poll


def test_wait_fails_with_the_reason():
    failing = in_progress_release()
    failing["jobs"] = job_list(job("mnist-train-trainer", "trainer", active=1),
                               job("mnist-train-evaluator", "evaluator", failed=7, completions=1, conditions=[
                                   condition("Failed", "BackoffLimitExceeded",
                                             "Job has reached the specified backoff limit")]))
    code, _, err = wait(FakeApi(in_progress_release(), failing))
    assert code == 1
    assert err == ["error: evaluator Job/mnist-train-evaluator: failed (0 active, 0 succeeded, 7 failed): "
                   "BackoffLimitExceeded (too many failed pods (backoffLimit)): Job has reached the "
                   "specified backoff limit"]


def test_wait_times_out_and_gives_up_on_a_missing_release():
    code, _, err = wait(FakeApi(in_progress_release()), "--timeout-secs", "35")
    assert code == 124 and err == ["error: timed out after 35 s: trainer running"]
    code, _, err = wait(FakeApi({}), "--not-found-grace-secs", "20")
    assert code == 2 and "no trainer of release 'mnist-train'" in err[0]


def test_logs_follow_moves_to_the_replacement_pod(capsys, monkeypatch):
    monkeypatch.setattr(ops.time, "sleep", lambda s: None)
    first = {"pods": pod_list(preempted_worker()),
             "logs": {"mnist-train-trainer-1-q9d4w":
                      "train | step 2400 | SIGTERM: checkpoint saved, exiting for restart"}}
    second = {"pods": pod_list(preempted_worker(), replacement_worker()),
              "logs": {"mnist-train-trainer-1-m3kdz": "train | restored ckpt-2400 at step 2400"}}
    code, out, _ = run(["logs", "--worker", "1", "-f"], FakeApi(first, second), capsys)
    assert code == 0
    assert out.splitlines() == ["train | step 2400 | SIGTERM: checkpoint saved, exiting for restart",
                                "--- following the replacement pod mnist-train-trainer-1-m3kdz",
                                "train | restored ckpt-2400 at step 2400"]


def test_logs_default_to_the_evaluator(capsys):
    code, out, _ = run(["logs", "--tail", "1"], FakeApi(in_progress_release()), capsys)
    assert code == 0 and out.strip() == EVALUATOR_LOG.splitlines()[-1]
    code, _, err = run(["logs", "--worker", "5"], FakeApi(in_progress_release()), capsys)
    assert code == 2 and "no worker 5 pod of release 'mnist-train'" in err


# ---------------------------------------------------------------- kubeconfig / in-cluster

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:%d"}
users:
- name: u
  user: {token: not-a-real-token}
contexts:
- name: training
  context: {cluster: c, user: u, namespace: team-a}
- name: other
  context: {cluster: c, user: u}
current-context: training
"""


def test_kubeconfig_namespace_and_context(tmp_path):
    path = tmp_path / "config"
    path.write_text(KUBECONFIG % 1)
    assert ops.load_api(str(path))[1] == "team-a"
    assert ops.load_api(str(path), context="other")[1] == "default"
    with pytest.raises(ops.OpsError, match="kubeconfig"):
        ops.load_api(str(path), context="missing")
    with pytest.raises(ops.OpsError, match="service account"):
        ops.load_api(in_cluster=True)


def test_unreachable_api_is_a_clear_error(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = tmp_path / "config"
    path.write_text(KUBECONFIG % port)
    code = ops.main(["status", "--kubeconfig", str(path)])
    assert code == 2 and "cannot reach the Kubernetes API" in capsys.readouterr().err


# ---------------------------------------------------------------- the helm test hook's check

class TensorBoardStandIn(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802
        body = b"<!doctype html><title>TensorBoard</title>"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def tensorboard():
    """An HTTP server on 127.0.0.1 answering like TensorBoard's index page."""
    handler = type("Handler", (TensorBoardStandIn,), {"status": 200})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    server.shutdown()
    server.server_close()


def write_model_dir(root: Path, *, started=True, steps=(), complete=None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if started:
        (root / "run_config.json").write_text('{"model": "mlp", "hparams": {}}')
    if steps:  # the format tf.train.CheckpointManager writes
        lines = [f'model_checkpoint_path: "ckpt-{steps[-1]}"']
        lines += [f'all_model_checkpoint_paths: "ckpt-{s}"' for s in steps]
        lines += [f"all_model_checkpoint_timestamps: 1772359200.{i}" for i, _ in enumerate(steps)]
        lines.append("last_preserved_timestamp: 1772359100.0")
        (root / "checkpoint").write_text("\n".join(lines) + "\n")
        for s in steps:
            (root / f"ckpt-{s}.index").write_bytes(b"\0")
            (root / f"ckpt-{s}.data-00000-of-00001").write_bytes(b"\0")
    if complete is not None:
        (root / "training_complete.json").write_text(json.dumps({"final_step": complete}))
    return root


def check(argv, clock=None):
    clock = clock or Clock()
    out = []
    args = ops.build_parser().parse_args(["check", "--interval-secs", "5", *argv])

    def sleep(seconds):
        clock.now += seconds

    code = ops.cmd_check(args, out=out.append, sleep=sleep, clock=clock)
    return code, out


def test_check_passes(tensorboard, tmp_path):
    url, _ = tensorboard
    model = write_model_dir(tmp_path / "m", steps=(1000, 2000), complete=2000)
    code, out = check(["--model-dir", str(model), "--tensorboard-url", url])
    assert code == 0, out
    assert out[0].startswith(f"ok   | TensorBoard answers at {url} (HTTP 200")
    assert out[1] == (f"ok   | {model} has 2 checkpoint(s), newest at step 2000; "
                      "training complete at step 2000")


def test_check_fails_when_tensorboard_does_not_answer(tensorboard, tmp_path):
    url, handler = tensorboard
    handler.status = 503
    model = write_model_dir(tmp_path / "m", steps=(1000,))
    code, out = check(["--model-dir", str(model), "--tensorboard-url", url, "--timeout-secs", "20"])
    assert code == 1
    assert out[0] == f"FAIL | TensorBoard at {url} did not answer within 20 s (last: HTTP 503)"


def test_check_before_and_after_training_started(tmp_path):
    not_started = tmp_path / "empty"
    code, out = check(["--model-dir", str(not_started), "--timeout-secs", "10"])
    assert code == 0 and out[1].startswith("skip | training has not started")
    started = write_model_dir(tmp_path / "started")
    code, out = check(["--model-dir", str(started), "--timeout-secs", "10"])
    assert code == 1 and out[1].startswith("FAIL | training has started but")
    # A listed checkpoint whose files are gone does not count.
    vanished = write_model_dir(tmp_path / "vanished", steps=(1000,))
    (vanished / "ckpt-1000.index").unlink()
    assert check(["--model-dir", str(vanished), "--timeout-secs", "10"])[0] == 1


def test_check_waits_for_the_first_checkpoint(tmp_path):
    model = write_model_dir(tmp_path / "m")

    class AppearingClock(Clock):
        def __call__(self):
            if self.now >= 15 and not (model / "checkpoint").exists():
                write_model_dir(model, steps=(100,))
            return self.now

    code, out = check(["--model-dir", str(model), "--timeout-secs", "60"], clock=AppearingClock())
    assert code == 0 and "newest at step 100" in out[1]


def test_check_reads_a_real_checkpoint_state_file(tmp_path):
    """The state file as TensorFlow writes it, with absolute paths."""
    import tensorflow as tf

    directory = tmp_path / "m"
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(v=tf.Variable(1.0)), str(directory),
                                         max_to_keep=2, checkpoint_name="ckpt")
    for step in (10, 20, 30):
        manager.save(checkpoint_number=step)
    state = ops.read_model_dir(str(directory))
    assert state.checkpoints == [20, 30] and not state.started


def test_parser_rejects_two_targets(capsys):
    with pytest.raises(SystemExit):
        ops.build_parser().parse_args(["logs", "--worker", "1", "--evaluator"])
    assert "not allowed with argument" in capsys.readouterr().err
