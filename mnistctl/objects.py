"""Kubernetes objects as the few facts that matter here: pods, Jobs, JobSets, TFJobs, Services.

Each `*_info` takes what the API returns (kubernetes.client models; JobSets
and TFJobs as dicts) and reads only fields; no API calls.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re

from mnistctl.exit_codes import JOB_FAILURE_REASONS, describe_exit
from mnistctl.release import COMPONENT, index_of
from model.errors import EXIT_PREEMPTED

# The Job controller's message for a pod failure policy's FailJob rule names the
# exit code: "Container <c> for pod <ns>/<pod> failed with exit code <n> matching
# FailJob rule at index <i>" (kubernetes/kubernetes pkg/controller/job/pod_failure_policy.go;
# the message TestMatchPodFailurePolicy in pod_failure_policy_test.go expects, and the
# one the docs' "pod failure policy" task shows).
_JOB_MESSAGE_EXIT_CODE = re.compile(r"exit code (\d+)")


@dataclasses.dataclass
class PodInfo:
    name: str
    component: str
    index: int | None
    phase: str
    ready: bool
    restarts: int
    state: str  # running, waiting, terminated, pending
    created: str | None = None
    node: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    last_exit_code: int | None = None  # the previous instance's, after a restart in place
    last_reason: str | None = None
    disruption: str | None = None  # DisruptionTarget / Evicted
    error_line: str | None = None  # the `error: ...` line of its log, for exit code 2

    @property
    def preempted(self) -> bool:
        return self.exit_code == EXIT_PREEMPTED or self.disruption is not None

    def summary(self) -> str:
        if self.state == "terminated":
            text = describe_exit(self.exit_code, self.reason)
        elif self.state == "waiting":
            text = f"waiting: {self.reason or '?'}" + (f": {self.message}" if self.message else "")
        elif self.state == "pending":
            text = "pending" + (f": {self.reason}" if self.reason else "") + \
                (f": {self.message}" if self.message else "")
        else:
            text = "running" + ("" if self.ready else " (not ready)")
        if self.disruption:
            text += f"; disrupted: {self.disruption}"
        if self.last_exit_code is not None:
            text += f"; last restart: {describe_exit(self.last_exit_code, self.last_reason)}"
        if self.error_line:
            text += f"; {self.error_line}"
        return text


def iso(value) -> str | None:
    """A timestamp as the API server's ISO 8601 text."""
    return value.isoformat() if isinstance(value, dt.datetime) else value


def pod_info(pod) -> PodInfo:
    """A V1Pod as the few facts that matter here."""
    status = pod.status
    labels = pod.metadata.labels or {}
    statuses = list(status.container_statuses or []) if status else []
    main = statuses[0] if statuses else None
    info = PodInfo(name=pod.metadata.name, component=labels.get(COMPONENT, ""), index=index_of(pod),
                   phase=(status.phase if status else None) or "Unknown", ready=False,
                   restarts=sum(s.restart_count or 0 for s in statuses), state="pending",
                   created=iso(pod.metadata.creation_timestamp),
                   node=pod.spec.node_name if pod.spec else None)
    for condition in (status.conditions or []) if status else []:
        if condition.type == "Ready":
            info.ready = condition.status == "True"
        elif condition.type == "DisruptionTarget" and condition.status == "True":
            info.disruption = condition.reason or "DisruptionTarget"
        elif condition.type == "PodScheduled" and condition.status == "False":
            info.reason, info.message = condition.reason, condition.message
    if status and status.reason == "Evicted":
        info.disruption = f"Evicted: {status.message}" if status.message else "Evicted"
    if main is not None and main.state is not None:
        state = main.state
        if state.terminated is not None:
            info.state, info.exit_code = "terminated", state.terminated.exit_code
            info.reason, info.message = state.terminated.reason, state.terminated.message
        elif state.waiting is not None:
            info.state, info.reason, info.message = "waiting", state.waiting.reason, state.waiting.message
        elif state.running is not None:
            info.state = "running"
        last = main.last_state.terminated if main.last_state else None
        if last is not None:
            info.last_exit_code, info.last_reason = last.exit_code, last.reason
    elif info.phase in ("Failed", "Succeeded"):
        info.state = "terminated"
    return info


@dataclasses.dataclass
class WorkloadInfo:
    kind: str
    name: str
    state: str  # pending, running, succeeded, failed, suspended
    reason: str | None = None
    message: str | None = None
    active: int = 0
    succeeded: int = 0
    failed: int = 0

    def summary(self) -> str:
        text = f"{self.kind}/{self.name}: {self.state}"
        counts = f"{self.active} active, {self.succeeded} succeeded, {self.failed} failed"
        if self.kind == "Job":
            text += f" ({counts})"
        if self.reason:
            text += f": {self.reason}"
            if self.reason in JOB_FAILURE_REASONS:
                text += f" ({JOB_FAILURE_REASONS[self.reason]})"
        if self.message:
            text += f": {self.message}"
            code = _JOB_MESSAGE_EXIT_CODE.search(self.message)
            if code:
                text += f" [{describe_exit(int(code.group(1)))}]"
        return text


def _true(conditions, *types: str):
    for condition in conditions or []:
        get = condition.get if isinstance(condition, dict) else (lambda k, c=condition: getattr(c, k))
        if get("type") in types and get("status") == "True":
            return get
    return None


def job_info(job) -> WorkloadInfo:
    status = job.status
    conditions = status.conditions if status else None
    info = WorkloadInfo("Job", job.metadata.name, "running", active=(status.active or 0) if status else 0,
                        succeeded=(status.succeeded or 0) if status else 0,
                        failed=(status.failed or 0) if status else 0)
    if not _state_from_conditions(info, conditions, failed=("Failed", "FailureTarget"),
                                  done=("Complete", "SuccessCriteriaMet")) \
            and not info.active and not info.succeeded:
        info.state = "pending"
    return info


def _state_from_conditions(info: WorkloadInfo, conditions, *, failed: tuple[str, ...],
                           done: tuple[str, ...]) -> bool:
    """Set info.state from a failed, done or suspended condition; False if none is true."""
    failure = _true(conditions, *failed)
    if failure:
        info.state, info.reason, info.message = "failed", failure("reason"), failure("message")
    elif _true(conditions, *done):
        info.state = "succeeded"
    elif _true(conditions, "Suspended"):
        info.state = "suspended"
    else:
        return False
    return True


def custom_info(obj: dict) -> WorkloadInfo:
    """A JobSet's or a TFJob's status (both use conditions)."""
    kind, name = obj.get("kind", "?"), obj.get("metadata", {}).get("name", "?")
    conditions = (obj.get("status") or {}).get("conditions") or []
    info = WorkloadInfo(kind, name, "pending" if not conditions else "running")
    if not _state_from_conditions(info, conditions, failed=("Failed",),
                                  done=("Completed", "Succeeded")) \
            and _true(conditions, "Restarting"):
        info.state, info.reason = "running", "Restarting"
    return info


@dataclasses.dataclass
class ServiceInfo:
    name: str
    type: str
    cluster_ip: str | None
    port: int | None
    ready_pods: int = 0
    pods: int = 0
    external: str | None = None


def service_info(service, pods: list[PodInfo]) -> ServiceInfo:
    spec = service.spec
    port = spec.ports[0].port if spec and spec.ports else None
    external = None
    ingress = (service.status.load_balancer.ingress if service.status and service.status.load_balancer
               else None) or []
    if ingress:
        external = ingress[0].ip or ingress[0].hostname
    return ServiceInfo(service.metadata.name, spec.type if spec else "?", spec.cluster_ip if spec else None,
                       port, ready_pods=sum(p.ready for p in pods), pods=len(pods), external=external)
