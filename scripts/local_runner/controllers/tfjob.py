"""TFJob (kubeflow.org, training-operator v1.9.0): one pod per replica with the operator's TF_CONFIG."""

from __future__ import annotations

import json

from scripts.local_runner.controllers.base import (Cluster, EXIT_SIGNAL_BASE,
                                                   PodRecord, Workload, service_dns_names)
from scripts.local_runner.manifest import NetworkSlot, PodRequest


def tfjob_retryable(code: int) -> bool:
    return code >= EXIT_SIGNAL_BASE


# Restart policies under which the container restarts in place, so its restarts count against
# runPolicy.backoffLimit (v1.9.0 pkg/core/job.go PastBackoffLimit: Always, OnFailure, ExitCode; a
# pod that ExitCode recreates starts again at restartCount 0, so only in-place restarts count).
TFJOB_IN_PLACE = ("Always", "OnFailure")


class TFJobController(Workload):
    """kubeflow.org/v1 TFJob, as kubeflow/training-operator v1.9.0 runs it.

    Pods <tfjob>-<type>-<index> (pkg/controller.v1/common/util.go GenGeneralName), each with the
    TF_CONFIG the operator injects (pkg/controller.v1/tensorflow/tensorflow.go genTFConfigJSONStr:
    {"cluster": {type: ["<pod>.<namespace>.svc:<port>"]}, "task": {...}, "environment": "cloud"},
    the port the container's "tfjob-port", default 2222). Success (tfjob_controller.go
    UpdateJobStatus): the Chief's success when there is one; else every Worker's, or worker 0's
    unless successPolicy is AllWorkers. A failed pod restarts under Always/OnFailure, under ExitCode
    when its code is retryable, else fails the TFJob; backoffLimit and activeDeadlineSeconds as in
    pkg/controller.v1/common/job.go (reason TFJobFailed). Chief and Worker replicas only."""

    kind = "TFJob"

    def __init__(self, cluster: Cluster, doc: dict):
        meta, spec = doc["metadata"], doc["spec"]
        replicas = spec.get("tfReplicaSpecs") or {}
        unsupported = sorted(set(replicas) - {"Chief", "Worker"})
        if unsupported:
            raise ValueError(f"TFJob/{meta['name']}: replica types {unsupported} are not supported "
                             "(MultiWorkerMirroredStrategy uses Chief and Worker)")
        first = next(iter(replicas.values()), {})
        labels = first.get("template", {}).get("metadata", {}).get("labels", {})
        super().__init__(cluster, meta["name"], labels.get("app.kubernetes.io/component") or meta["name"])
        self.spec = spec
        run = spec.get("runPolicy") or {}
        self.backoff_limit = run.get("backoffLimit")
        self.deadline = run.get("activeDeadlineSeconds")
        self.success_policy = spec.get("successPolicy") or ""
        self.replicas = []  # (type, index, spec)
        for rtype in ("Chief", "Worker"):
            if rtype in replicas:
                for i in range(int(replicas[rtype].get("replicas", 1))):
                    self.replicas.append((rtype, i, replicas[rtype]))
        self.cluster_spec = {}
        for rtype, i, rspec in self.replicas:
            port = 2222
            for c in rspec["template"]["spec"].get("containers", []):
                for p in c.get("ports") or []:
                    if p.get("name") == "tfjob-port":
                        port = int(p["containerPort"])
            self.cluster_spec.setdefault(rtype.lower(), []).append(
                f"{self.pod_name(rtype, i)}.{cluster.namespace}.svc:{port}")
        self.current: dict[tuple, PodRecord | None] = {(t, i): None for t, i, _ in self.replicas}
        self.succeeded: set[tuple] = set()
        self.next_start: dict[tuple, float] = {}
        self.in_place_restarts = 0  # what PastBackoffLimit sums
        self.restarts_of: dict[tuple, int] = {(t, i): 0 for t, i, _ in self.replicas}

    def pod_name(self, rtype: str, i: int) -> str:
        return f"{self.name}-{rtype.lower()}-{i}"

    def slots(self) -> list[NetworkSlot]:
        return [NetworkSlot(self.pod_name(t, i), self.pod_name(t, i),
                            service_dns_names(self.pod_name(t, i), self.cluster.namespace))
                for t, i, _ in self.replicas]

    def start(self) -> None:
        super().start()
        for key in self.current:
            self.next_start[key] = self.started_at

    def tick(self) -> None:
        if self.terminal or self.started_at is None:
            return
        if self._ended_by_deadline(self.deadline, f"Job {self.name} has failed because it was active "
                                   "longer than specified deadline", reason="TFJobFailed"):
            return
        now = self.cluster.now()
        for rtype, i, rspec in self.replicas:
            key = (rtype, i)
            if key in self.succeeded or self.current[key] is not None or self.next_start[key] > now:
                continue
            name = self.pod_name(rtype, i)
            tf_config = {"cluster": self.cluster_spec, "task": {"type": rtype.lower(), "index": i},
                         "environment": "cloud"}
            labels = {"training.kubeflow.org/job-name": self.name,
                      "training.kubeflow.org/replica-type": rtype.lower(),
                      "training.kubeflow.org/replica-index": str(i)}
            pod = self.cluster.builder.build(PodRequest(
                template=rspec["template"], name=name, hostname=name, subdomain=None, owner=self.ref,
                index=i, attempt=self.restarts_of[key], display=f"{self.component}-{i}"
                if rtype == "Worker" else f"{self.component}-chief",
                container_name="tensorflow", labels=labels,
                injected_env={"TF_CONFIG": json.dumps(tf_config, separators=(",", ":"))},
                slot=self.cluster.slot(name)))
            record = self.cluster.create(pod, restart_count=self.restarts_of[key])
            self.current[key] = record
            self.records.append(record)

    def on_exit(self, record: PodRecord) -> None:
        key = next((k for k, r in self.current.items() if r is record), None)
        if key is None:
            return
        self.current[key] = None
        if self.terminal:
            record.outcome = record.outcome or "terminated"
            return
        code = record.exit_code
        policy = dict(self.replicas_spec(key)).get("restartPolicy", "Never")
        if code == 0:
            record.outcome = "succeeded"
            self.succeeded.add(key)
            workers = [(t, i) for t, i, _ in self.replicas]
            chief = ("Chief", 0) if ("Chief", 0) in workers else ("Worker", 0)
            if self.success_policy == "AllWorkers":
                done = all(k in self.succeeded for k in workers)
            else:
                done = chief in self.succeeded
            if done:
                self._finish("Complete", "TFJobSucceeded", "")
            return
        restart = policy in ("OnFailure", "Always") or (policy == "ExitCode" and tfjob_retryable(code))
        if not restart:
            record.outcome = "failed"
            self._finish("Failed", "TFJobFailed", f"pod {record.pod.name} exited {record.exit_description()} "
                         f"(restartPolicy {policy})")
            return
        record.outcome = "restarted"
        self.restarts += 1
        self.restarts_of[key] += 1
        if policy in TFJOB_IN_PLACE:
            self.in_place_restarts += 1
        # PastBackoffLimit: restarts >= backoffLimit (any restart when it is 0) fails the TFJob.
        if self.backoff_limit is not None and self.in_place_restarts >= max(1, int(self.backoff_limit)):
            self._finish("Failed", "TFJobFailed", f"Job {self.name} has failed because it has reached "
                         "the specified backoff limit")
            return
        delay = self.cluster.backoff(self.restarts_of[key])
        self.next_start[key] = self.cluster.now() + delay
        self.cluster.event(f"{self.ref}: pod {record.pod.name} exited {record.exit_description()}: "
                           f"restartPolicy {policy} -> restart {self.restarts} in {delay:g} s")

    def replicas_spec(self, key) -> dict:
        for rtype, i, rspec in self.replicas:
            if (rtype, i) == key:
                return rspec
        return {}

    def templates(self) -> list[dict]:
        return [rspec["template"] for rspec in (self.spec.get("tfReplicaSpecs") or {}).values()]
