"""Deployment: keeps its pods running, restarting them with back-off."""

from __future__ import annotations

from scripts.local_runner.controllers.base import Cluster, PodRecord, Workload
from scripts.local_runner.manifest import PodRequest


class DeploymentController(Workload):
    kind = "Deployment"
    is_job = False

    def __init__(self, cluster: Cluster, doc: dict):
        meta, spec = doc["metadata"], doc["spec"]
        labels = spec["template"].get("metadata", {}).get("labels", {})
        super().__init__(cluster, meta["name"], labels.get("app.kubernetes.io/component") or meta["name"])
        self.template = spec["template"]
        self.replicas = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        self.current: list[PodRecord | None] = [None] * self.replicas
        self.next_start = [0.0] * self.replicas
        self.restarts_of = [0] * self.replicas  # per replica; self.restarts is their sum

    def start(self) -> None:
        super().start()
        self.next_start = [self.started_at] * self.replicas

    def tick(self) -> None:
        if self.terminal or self.started_at is None:
            return
        now = self.cluster.now()
        for i in range(self.replicas):
            if self.current[i] is not None or self.next_start[i] > now:
                continue
            name = f"{self.name}-{i}"
            display = self.component if self.replicas == 1 else f"{self.component}-{i}"
            pod = self.cluster.builder.build(PodRequest(
                template=self.template, name=name, hostname=name, subdomain=None, owner=self.ref, index=None,
                attempt=self.restarts_of[i], display=display))
            record = self.cluster.create(pod, restart_count=self.restarts_of[i])
            self.current[i] = record
            self.records.append(record)

    def on_exit(self, record: PodRecord) -> None:
        if record not in self.current:
            return
        i = self.current.index(record)
        self.current[i] = None
        if self.terminal:
            record.outcome = record.outcome or "terminated"
            return
        record.outcome = "restarted"
        self.restarts_of[i] += 1
        self.restarts += 1
        delay = self.cluster.backoff(self.restarts_of[i])
        self.next_start[i] = self.cluster.now() + delay
        self.cluster.event(f"{self.ref}: pod {record.pod.name} exited {record.exit_description()}: "
                           f"restartPolicy Always -> restart in {delay:g} s")

    def templates(self) -> list[dict]:
        return [self.template]
