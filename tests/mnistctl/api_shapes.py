"""Kubernetes API objects shaped like the API server's answers, canned logs, and
`FakeApi`, for the tests of mnistctl.

The objects are real `kubernetes.client` models, deserialized by the client's
own public ApiClient.deserialize from JSON shaped like the API server's answers
(Indexed Job pods with their completion-index labels, a preempted worker with
exit code 42 and a DisruptionTarget condition, a configuration error that the
Job's pod failure policy turned into a Failed Job, a TFJob worker restarting in
place, OOM, eviction, an unschedulable pod...).

No API server runs here. Where a command needs one, `FakeApi` stands in for
mnistctl/kube.py's `KubeApi`: it only hands out those deserialized objects and
canned log text, so everything above that thin layer (collect, verdict,
render, the status/wait/logs commands) is the real code.
"""

from __future__ import annotations

import json
from pathlib import Path

from kubernetes.client import ApiClient

from mnistctl import release

NS = "mnist-train"
RELEASE = "mnist-train"
CHART_LABELS = {"app.kubernetes.io/name": "mnist-train", "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/part-of": "mnist-train",
                "app.kubernetes.io/version": "0.1.0", "helm.sh/chart": "mnist-train-0.1.0"}


def deserialize(data: dict, kind: str):
    """`data` as the client's model object `kind`, through the public
    `ApiClient.deserialize(response_text, response_type, content_type)` that the
    generated API methods use on a response (kubernetes==37.0.2, api_client.py)."""
    return ApiClient().deserialize(json.dumps(data), kind, "application/json")


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


FAIL_JOB_MESSAGE = ("Container trainer for pod mnist-train/mnist-train-trainer-0-b7c1d failed with "
                    "exit code 2 matching FailJob rule at index 2")


def jobset(conditions):
    return {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
            "metadata": {"name": "mnist-train-trainer", "namespace": NS,
                         "labels": {**CHART_LABELS, "app.kubernetes.io/component": "trainer"}},
            "status": {"conditions": conditions, "restarts": 1,
                       "replicatedJobsStatus": [{"name": "worker", "active": 1, "failed": 0,
                                                 "ready": 1, "succeeded": 0, "suspended": 0}]}}


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


def finished_snapshot():
    snap = in_progress_release()
    snap["jobs"] = job_list(job("mnist-train-trainer", "trainer", succeeded=2,
                                conditions=[condition("Complete")]),
                            job("mnist-train-evaluator", "evaluator", succeeded=1, completions=1,
                                conditions=[condition("Complete")]))
    snap["logs"] = {**snap["logs"], "mnist-train-evaluator-5hq2n": FINAL_EVALUATOR_LOG}
    return snap


class FakeApi:
    """Stands in for mnistctl.kube.KubeApi (no API server here): returns the deserialized
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
        return self.snap.get("jobsets" if resource == release.JOBSET else "tfjobs", [])

    def log(self, namespace, pod, container, tail_lines):
        return self.snap.get("logs", {}).get(pod)

    def stream_log(self, namespace, pod, container, *, follow, tail_lines):
        lines = (self.snap.get("logs", {}).get(pod) or "").splitlines()
        yield from (lines[-tail_lines:] if tail_lines else lines)
        if follow:
            self.advance()  # the pod ended while we followed it

    def pod_container(self, namespace, pod):
        return pod.spec.containers[0].name


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


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
