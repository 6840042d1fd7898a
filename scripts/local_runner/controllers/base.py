"""What every controller shares: the pod record, the cluster interface the runner
provides, DNS names, pod failure policy matching, and the Workload base class."""

from __future__ import annotations

import dataclasses
import signal
from pathlib import Path
from typing import Protocol

from scripts.local_runner.launcher import PodHandle
from scripts.local_runner.manifest import CLUSTER_DOMAIN, NetworkSlot, Pod, PodBuilder

EXIT_SIGNAL_BASE = 128


# -- what controllers need from the runner ---------------------------------------


@dataclasses.dataclass(eq=False, slots=True)
class PodRecord:
    """One container run of one pod, from start to exit.

    Every attribute is declared here (slots: none can be added at run time);
    records compare by identity, so they can key the reporting's tables."""

    pod: Pod
    created_at: float
    log_path: Path
    restart_count: int = 0  # in-place container restarts before this run (kubelet's restartCount)
    handle: PodHandle | None = None
    phase: str = "Running"  # Running | Succeeded | Failed
    finished_at: float | None = None
    exit_code: int | None = None
    conditions: set[str] = dataclasses.field(default_factory=set)  # e.g. {"DisruptionTarget"}
    deleting: bool = False
    delete_reason: str = ""
    kill_at: float | None = None
    outcome: str = ""  # succeeded | counted | ignored | FailJob | FailIndex | terminated | ...
    ready: bool = False  # its readiness probe answered
    ready_url: str | None = None  # where the probed port answered (http://host:port/)
    last_probe: float = 0.0  # when the readiness probe last ran (the runner's clock)

    @property
    def running(self) -> bool:
        return self.finished_at is None

    def exit_description(self) -> str:
        code = self.exit_code
        if code is None:
            return "running"
        if code > EXIT_SIGNAL_BASE:
            try:
                return f"{code} ({signal.Signals(code - EXIT_SIGNAL_BASE).name})"
            except ValueError:
                pass
        return str(code)


class Cluster(Protocol):
    builder: PodBuilder
    namespace: str

    def now(self) -> float: ...
    def create(self, pod: Pod, restart_count: int = 0) -> PodRecord: ...
    def delete(self, record: PodRecord, reason: str, grace: float | None = None,
               disruption: bool = False) -> None: ...
    def event(self, message: str) -> None: ...
    def backoff(self, failures: int) -> float: ...
    def slot(self, key: str) -> NetworkSlot: ...
    def next_pod_number(self, key: str) -> int: ...


def headless_dns_names(hostname: str, subdomain: str, namespace: str) -> tuple[str, ...]:
    """The names a headless Service publishes for a pod with hostname and subdomain."""
    fqdn = f"{hostname}.{subdomain}.{namespace}.svc.{CLUSTER_DOMAIN}"
    return (f"{hostname}.{subdomain}", f"{hostname}.{subdomain}.{namespace}",
            f"{hostname}.{subdomain}.{namespace}.svc", fqdn)


def service_dns_names(service: str, namespace: str) -> tuple[str, ...]:
    return (service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
            f"{service}.{namespace}.svc.{CLUSTER_DOMAIN}")


# -- pod failure policy --------------------------------------------------------------


def match_pod_failure_policy(policy: dict | None, container: str, exit_code: int,
                             conditions: set[str]) -> tuple[str, int | None]:
    """The action of the first matching rule ("Ignore", "FailJob", "FailIndex",
    "Count") and its position, or ("Count", None) when no rule matches."""
    for i, rule in enumerate((policy or {}).get("rules") or []):
        on_codes = rule.get("onExitCodes")
        if on_codes is not None:
            if on_codes.get("containerName") not in (None, container):
                continue
            values = set(on_codes.get("values") or [])
            operator = on_codes.get("operator", "In")
            if operator == "In" and exit_code in values:
                return rule["action"], i
            if operator == "NotIn" and exit_code != 0 and exit_code not in values:
                return rule["action"], i
            continue
        for cond in rule.get("onPodConditions") or []:
            wanted = str(cond.get("status", "True")) == "True"
            if (cond.get("type") in conditions) == wanted:
                return rule["action"], i
    return "Count", None


# -- workloads -------------------------------------------------------------------------


class Workload:
    kind = "Workload"
    is_job = True  # Deployments are not: they never complete

    def __init__(self, cluster: Cluster, name: str, component: str):
        self.cluster = cluster
        self.name = name
        self.component = component
        self.status = "Pending"  # Pending | Running | Complete | Failed | Stopped
        self.reason = ""
        self.message = ""
        self.started_at: float | None = None
        self.finished_at: float | None = None  # cluster.now() when it became Complete/Failed
        self.finished_wall: float | None = None  # the same as time.time(), set by the runner
        self.records: list[PodRecord] = []
        # Pods replaced after a failure (a JobSet: times the whole set was recreated). One int for
        # every kind; the pods' own in-place restarts are PodRecord.restart_count.
        self.restarts = 0
        self.hook = False  # a `helm test` hook Job: started by the runner after the release's Jobs

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def terminal(self) -> bool:
        return self.status in ("Complete", "Failed", "Stopped")

    def slots(self) -> list[NetworkSlot]:
        return []

    def templates(self) -> list[dict]:
        """The pod templates this workload creates pods from."""
        raise NotImplementedError

    def start(self) -> None:
        self.started_at = self.cluster.now()
        self.status = "Running"

    def tick(self) -> None:
        raise NotImplementedError

    def on_exit(self, record: PodRecord) -> None:
        raise NotImplementedError

    def active(self) -> list[PodRecord]:
        return [r for r in self.records if r.running]

    def _delete_active(self, reason: str) -> None:
        for record in self.active():
            if not record.deleting:
                self.cluster.delete(record, reason)

    def stop(self, reason: str) -> None:
        """End the workload without a verdict (Ctrl-C, or the run ends)."""
        if not self.terminal:
            self.status, self.reason = "Stopped", reason
        self._delete_active(reason)

    def _finish(self, status: str, reason: str, message: str) -> None:
        self.status, self.reason, self.message = status, reason, message
        self.finished_at = self.cluster.now()
        self.cluster.event(f"{self.ref}: {status} ({reason}){': ' + message if message else ''}")
        self._delete_active(f"{self.ref} {status.lower()}")

    def _ended_by_deadline(self, deadline, message: str, reason: str = "DeadlineExceeded") -> bool:
        """Fail with `reason` once active for `deadline` seconds (None: never)."""
        if deadline is None or self.cluster.now() - self.started_at < float(deadline):
            return False
        self._finish("Failed", reason, message)
        return True

    def describe(self) -> dict:
        return {"kind": self.kind, "name": self.name, "component": self.component,
                "status": self.status, "reason": self.reason, "message": self.message,
                "finished_wall": self.finished_wall, "restarts": self.restarts}


@dataclasses.dataclass
class IndexState:
    index: int | None
    succeeded: bool = False
    failed: bool = False
    counted: int = 0  # failures counted against the back-off limit
    ignored: int = 0  # failures a podFailurePolicy Ignore rule let through
    next_start: float = 0.0
    current: PodRecord | None = None
    pods: list = dataclasses.field(default_factory=list)
