"""Kubernetes' workload semantics, as the chart renders them.

Each controller owns the pods of one workload and reacts to their exits the
way its Kubernetes controller would:

- `JobController` (batch/v1 Job, Indexed or not): per-index retries up to
  `backoffLimitPerIndex` (else a job-wide `backoffLimit`), `maxFailedIndexes`,
  `podFailurePolicy` rules in order (Ignore: replace the pod without counting;
  FailJob: fail the whole Job at once; FailIndex; Count), a replacement only
  after the failed pod has exited (`podReplacementPolicy: Failed`, the only
  behaviour possible with one network identity per index), exponential
  back-off before a counted retry (`--restart-backoff`, 10 s in Kubernetes),
  `activeDeadlineSeconds`, completion when every index succeeded.
- `JobSetController` (jobset.x-k8s.io): its replicated Jobs as JobControllers;
  when one fails, `failurePolicy.rules` decide (FailJobSet on a matching
  failure reason), else the whole set is recreated up to `maxRestarts`.
- `TFJobController` (kubeflow.org TFJob): one pod per replica with the
  operator's TF_CONFIG, restartPolicy OnFailure/ExitCode/Never, the run
  policy's backoffLimit and activeDeadlineSeconds, successPolicy.
- `DeploymentController`: keeps its pods running (restart with back-off).

How the chart's Indexed Job recovers a MultiWorkerMirroredStrategy group:
when one worker dies, its index fails (counted) and is replaced; the
survivors' next collective fails (at once for a dead peer, within ~15 s
for a frozen one, when the coordination service misses its heartbeats), they exit 1 and are replaced
too, each counted against its own index's backoffLimitPerIndex. The new
group restores the last checkpoint. A preempted group exits 42 everywhere
and is replaced without counting. A configuration error (exit 2) fails the
Job at once. That is what Kubernetes does with this Job; the runner does no
more (it never restarts a worker that has not exited).
"""

from __future__ import annotations

import dataclasses
import json
import re
import signal
from pathlib import Path
from typing import Protocol

from scripts.local_runner.launcher import PodHandle
from scripts.local_runner.manifest import CLUSTER_DOMAIN, NetworkSlot, Pod, PodBuilder, PodRequest

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


class JobController(Workload):
    """batch/v1 Job; also the replicated Jobs of a JobSet (job_name/hostnames from it)."""

    kind = "Job"

    def __init__(self, cluster: Cluster, doc: dict, *, name: str | None = None, component: str = "",
                 subdomain: str | None = None, extra_labels: dict | None = None,
                 extra_annotations: dict | None = None, owner_kind: str = "Job"):
        meta, spec = doc["metadata"], doc["spec"]
        name = name or meta["name"]
        template = spec["template"]
        labels = template.get("metadata", {}).get("labels", {})
        super().__init__(cluster, name, component or labels.get("app.kubernetes.io/component") or name)
        self.kind = owner_kind
        self.spec = spec
        self.template = template
        self.indexed = spec.get("completionMode", "NonIndexed") == "Indexed"
        self.completions = int(spec.get("completions", 1) if spec.get("completions") is not None else 1)
        self.parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
        if not self.indexed and self.completions != 1:
            raise ValueError(f"{self.ref}: NonIndexed Jobs with completions != 1 are not supported")
        self.per_index_limit = spec.get("backoffLimitPerIndex") if self.indexed else None
        default_limit = 2**31 - 1 if self.per_index_limit is not None else 6
        limit = spec.get("backoffLimit")
        self.backoff_limit = int(limit) if limit is not None else default_limit
        self.max_failed_indexes = spec.get("maxFailedIndexes")
        self.policy = spec.get("podFailurePolicy")
        self.deadline = spec.get("activeDeadlineSeconds")
        self.subdomain = subdomain if subdomain is not None else template.get("spec", {}).get("subdomain")
        self.extra_labels = extra_labels or {}
        self.extra_annotations = extra_annotations or {}
        self.indexes = [IndexState(i if self.indexed else None) for i in range(self.completions)]
        self.total_counted = 0

    def templates(self) -> list[dict]:
        return [self.template]

    def hostname(self, state: IndexState) -> str | None:
        return f"{self.name}-{state.index}" if self.indexed else None

    def slot_key(self, state: IndexState) -> str | None:
        if not self.indexed or not self.subdomain:
            return None
        return f"{self.hostname(state)}.{self.subdomain}"

    def slots(self) -> list[NetworkSlot]:
        out = []
        for state in self.indexes:
            key = self.slot_key(state)
            if key:
                host = self.hostname(state)
                out.append(NetworkSlot(key, host, headless_dns_names(host, self.subdomain,
                                                                     self.cluster.namespace)))
        return out

    def display(self, state: IndexState) -> str:
        return self.component if state.index is None else f"{self.component}-{state.index}"

    def start(self) -> None:
        super().start()
        for state in self.indexes:
            state.next_start = self.started_at

    def _create(self, state: IndexState) -> None:
        key = f"{self.name}-{state.index}" if self.indexed else self.name
        number = self.cluster.next_pod_number(key)
        pod_name = f"{key}-{number}"
        labels = {**self.extra_labels, "batch.kubernetes.io/job-name": self.name, "job-name": self.name}
        annotations = dict(self.extra_annotations)
        if self.indexed:
            labels["batch.kubernetes.io/job-completion-index"] = str(state.index)
            annotations["batch.kubernetes.io/job-completion-index"] = str(state.index)
        if self.per_index_limit is not None:
            annotations["batch.kubernetes.io/job-index-failure-count"] = str(state.counted)
            annotations["batch.kubernetes.io/job-index-ignored-failure-count"] = str(state.ignored)
        slot_key = self.slot_key(state)
        pod = self.cluster.builder.build(PodRequest(
            template=self.template, name=pod_name, hostname=self.hostname(state) or pod_name,
            subdomain=self.subdomain if self.indexed else None, owner=self.ref, index=state.index,
            attempt=number, display=self.display(state), labels=labels,
            annotations=annotations, slot=self.cluster.slot(slot_key) if slot_key else None))
        record = self.cluster.create(pod)
        state.current = record
        state.pods.append(record)
        self.records.append(record)

    def tick(self) -> None:
        if self.terminal or self.started_at is None:
            return
        if self._ended_by_deadline(
                self.deadline, f"Job was active longer than specified deadline ({self.deadline} s)"):
            return
        now = self.cluster.now()
        running = sum(1 for s in self.indexes if s.current is not None)
        for state in self.indexes:
            if running >= self.parallelism:
                break
            if state.succeeded or state.failed or state.current is not None or state.next_start > now:
                continue
            self._create(state)
            running += 1

    def _state_of(self, record: PodRecord) -> IndexState:
        for state in self.indexes:
            if state.current is record:
                return state
        raise KeyError(record.pod.name)

    def on_exit(self, record: PodRecord) -> None:
        try:
            state = self._state_of(record)
        except KeyError:
            return
        state.current = None
        if self.terminal:
            record.outcome = record.outcome or "terminated"
            return
        now = self.cluster.now()
        code = record.exit_code
        where = f"pod {record.pod.name}" + (f" (index {state.index})" if state.index is not None else "")
        if code == 0:
            record.outcome = "succeeded"
            state.succeeded = True
            if all(s.succeeded for s in self.indexes):
                self._finish("Complete", "Completed", "")
            return
        action, rule = match_pod_failure_policy(self.policy, record.pod.container.name, code,
                                                record.conditions)
        rule_text = f"podFailurePolicy rule {rule}" if rule is not None else "no podFailurePolicy rule"
        if action == "Ignore":
            record.outcome = "ignored"
            state.ignored += 1
            self.restarts += 1
            state.next_start = now
            self.cluster.event(f"{self.ref}: {where} exited {record.exit_description()}: {rule_text} "
                               "-> Ignore: replaced, not counted")
            return
        if action == "FailJob":
            record.outcome = "FailJob"
            self._finish("Failed", "PodFailurePolicy",
                         f"Container {record.pod.container.name} for pod {self.cluster.namespace}/"
                         f"{record.pod.name} failed with exit code {code} matching FailJob rule at "
                         f"index {rule}")
            return
        if action == "FailIndex":
            record.outcome = "FailIndex"
            self._fail_index(state, f"{where}: {rule_text} -> FailIndex")
            return
        record.outcome = "counted"
        state.counted += 1
        self.total_counted += 1
        if self.per_index_limit is not None:
            limit_text = f"{state.counted} of backoffLimitPerIndex {self.per_index_limit}"
            if state.counted > int(self.per_index_limit):
                self._fail_index(state, f"{where} exited {record.exit_description()}: {limit_text}")
                return
        else:
            limit_text = f"{self.total_counted} of backoffLimit {self.backoff_limit}"
            if self.total_counted > self.backoff_limit:
                self._finish("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
                return
        self.restarts += 1
        delay = self.cluster.backoff(state.counted)
        state.next_start = now + delay
        self.cluster.event(f"{self.ref}: {where} exited {record.exit_description()}: {rule_text} -> "
                           f"counted ({limit_text}); replacement in {delay:g} s")

    def _fail_index(self, state: IndexState, why: str) -> None:
        state.failed = True
        failed = sum(1 for s in self.indexes if s.failed)
        self.cluster.event(f"{self.ref}: index {state.index} failed: {why}")
        if self.max_failed_indexes is not None and failed > int(self.max_failed_indexes):
            self._finish("Failed", "MaxFailedIndexesExceeded",
                         f"Job has exceeded the specified maximal number of failed indexes ({why})")
        elif all(s.succeeded or s.failed for s in self.indexes):
            self._finish("Failed", "FailedIndexes", f"Job has failed indexes ({why})")

    def describe(self) -> dict:
        out = super().describe()
        out["indexes"] = [{"index": s.index, "succeeded": s.succeeded, "failed": s.failed,
                           "counted_failures": s.counted, "ignored_failures": s.ignored,
                           "pods": [r.pod.name for r in s.pods]} for s in self.indexes]
        return out


# JobSet v0.12.0 (kubernetes-sigs/jobset): the failure policy actions the runner reproduces
# (pkg/controllers/failure_policy.go, actionFunctionMap). RestartJob and
# RestartJobAndIgnoreMaxRestarts (behind the RestartJob feature gate) restart one child Job in
# place; they are refused rather than approximated.
JOBSET_ACTIONS = ("FailJobSet", "RestartJobSet", "RestartJobSetAndIgnoreMaxRestarts")


class JobSetController(Workload):
    """jobset.x-k8s.io JobSet, as kubernetes-sigs/jobset v0.12.0 runs it.

    Child Jobs are named <jobset>-<replicatedJob>-<index> (pkg/util/placement/placement.go
    GenJobName) and labelled with the restart attempt (pkg/constants/constants.go RestartsKey).
    A failed child Job: without a failurePolicy the JobSet fails (reason FailedJobs); else the
    first rule (in order) matching the Job's failure reason, message pattern and replicated Job
    decides, RestartJobSet when none does; a counted restart past maxRestarts fails it
    (ReachedMaxRestarts) (pkg/controllers/failure_policy.go). The successPolicy's operator
    All/Any over its targetReplicatedJobs (all when empty) completes it
    (pkg/controllers/success_policy.go)."""

    kind = "JobSet"

    def __init__(self, cluster: Cluster, doc: dict):
        meta, spec = doc["metadata"], doc["spec"]
        rjobs = spec.get("replicatedJobs") or []
        labels = {}
        if rjobs:
            labels = rjobs[0]["template"]["spec"]["template"].get("metadata", {}).get("labels", {})
        super().__init__(cluster, meta["name"], labels.get("app.kubernetes.io/component") or meta["name"])
        self.spec = spec
        network = spec.get("network") or {}
        self.subdomain = network.get("subdomain") or self.name
        self.dns_hostnames = network.get("enableDNSHostnames", True)
        self.failure_policy = spec.get("failurePolicy")
        failure = self.failure_policy or {}
        self.max_restarts = int(failure.get("maxRestarts", 0))
        self.rules = failure.get("rules") or []
        for rule in self.rules:
            if rule.get("action") not in JOBSET_ACTIONS:
                raise ValueError(f"failurePolicy rule {rule.get('name')!r}: action {rule.get('action')!r} is "
                                 f"not supported locally (supported: {', '.join(JOBSET_ACTIONS)})")
        success = spec.get("successPolicy") or {}
        self.success_operator = success.get("operator", "All")
        self.success_targets = success.get("targetReplicatedJobs") or [r["name"] for r in rjobs]
        self.restarts_counted = 0  # status.restartsCountTowardsMax
        self.restarting = False
        self.jobs: list[tuple[str, JobController]] = []
        self._make_jobs()

    def _make_jobs(self) -> None:
        self.jobs = []
        for rjob in self.spec.get("replicatedJobs") or []:
            for j in range(int(rjob.get("replicas", 1))):
                job_name = f"{self.name}-{rjob['name']}-{j}"
                doc = {"metadata": {"name": job_name}, "spec": rjob["template"]["spec"]}
                marks = {"jobset.sigs.k8s.io/jobset-name": self.name,
                         "jobset.sigs.k8s.io/replicatedjob-name": rjob["name"],
                         "jobset.sigs.k8s.io/job-index": str(j),
                         "jobset.sigs.k8s.io/restart-attempt": str(self.restarts)}
                job = JobController(self.cluster, doc, name=job_name, component=self.component,
                                    subdomain=self.subdomain if self.dns_hostnames else None,
                                    extra_labels=marks, extra_annotations=marks, owner_kind="Job")
                self.jobs.append((rjob["name"], job))

    def slots(self) -> list[NetworkSlot]:
        return [s for _, job in self.jobs for s in job.slots()]

    def start(self) -> None:
        super().start()
        for _, job in self.jobs:
            job.start()

    def active(self) -> list[PodRecord]:
        return [r for _, job in self.jobs for r in job.active()]

    def tick(self) -> None:
        if self.terminal:
            return
        if self.restarting:
            if self.active():
                return
            self.restarting = False
            self._make_jobs()
            for _, job in self.jobs:
                job.start()
            self.cluster.event(f"{self.ref}: recreated its Jobs (restart {self.restarts})")
        for _, job in self.jobs:
            job.tick()
            self.records.extend(r for r in job.records if r not in self.records)
        failed = [(rname, job) for rname, job in self.jobs if job.status == "Failed"]
        if failed:
            self._on_job_failure(*failed[0])
            return
        done = [job.status == "Complete" for rname, job in self.jobs if rname in self.success_targets]
        if done and (all(done) if self.success_operator == "All" else any(done)):
            self._finish("Complete", "AllJobsCompleted", "")

    def templates(self) -> list[dict]:
        return [rjob["template"]["spec"]["template"] for rjob in self.spec.get("replicatedJobs") or []]

    @staticmethod
    def _rule_applies(rule: dict, rjob: str, job: JobController) -> bool:
        """failure_policy.go ruleIsApplicable: empty lists match everything; message patterns are
        Go regexp.MatchString, i.e. unanchored searches."""
        reasons = rule.get("onJobFailureReasons") or []
        patterns = rule.get("onJobFailureMessagePatterns") or []
        targets = rule.get("targetReplicatedJobs") or []
        return ((not reasons or job.reason in reasons)
                and (not patterns or any(re.search(p, job.message) for p in patterns))
                and (not targets or rjob in targets))

    def _on_job_failure(self, rjob: str, job: JobController) -> None:
        why = f"Job {job.name} failed ({job.reason}): {job.message}"
        if self.failure_policy is None:
            self._finish("Failed", "FailedJobs", why)
            return
        rule = next((r for r in self.rules if self._rule_applies(r, rjob, job)), None)
        action = rule["action"] if rule else "RestartJobSet"
        if action == "FailJobSet":
            self._finish("Failed", "FailJobSetFailurePolicyAction", why)
            return
        if action == "RestartJobSet" and self.restarts_counted >= self.max_restarts:
            self._finish("Failed", "ReachedMaxRestarts", f"{why}; {self.restarts_counted} restart(s) "
                         f"counted of maxRestarts {self.max_restarts}")
            return
        self.restarts += 1
        if action == "RestartJobSet":
            self.restarts_counted += 1
        self.cluster.event(f"{self.ref}: Job {job.name} failed ({job.reason}) -> restarting the whole set "
                           f"({self.restarts_counted} of maxRestarts {self.max_restarts} counted)")
        for _, other in self.jobs:
            other.stop(f"{self.ref} restarting")
        self.restarting = True

    def on_exit(self, record: PodRecord) -> None:
        for _, job in self.jobs:
            if record in job.records:
                job.on_exit(record)

    def stop(self, reason: str) -> None:
        if not self.terminal:
            self.status, self.reason = "Stopped", reason
        for _, job in self.jobs:
            job.stop(reason)

    def _finish(self, status: str, reason: str, message: str) -> None:
        self.status, self.reason, self.message = status, reason, message
        self.finished_at = self.cluster.now()
        self.cluster.event(f"{self.ref}: {status} ({reason}){': ' + message if message else ''}")
        for _, job in self.jobs:
            if not job.terminal:
                job.stop(f"{self.ref} {status.lower()}")
            else:
                job._delete_active(f"{self.ref} {status.lower()}")

    def describe(self) -> dict:
        out = super().describe()
        out["jobs"] = [job.describe() for _, job in self.jobs]
        return out


# Kubeflow training operator v1.9.0: exit codes >= 128 (killed by a signal) are retryable under
# restartPolicy ExitCode (pkg/util/train/train_util.go IsRetryableExitCode).
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


CONTROLLERS = {"Job": JobController, "JobSet": JobSetController, "TFJob": TFJobController,
               "Deployment": DeploymentController}
# Kinds the runner reads or deliberately leaves alone (with what it does instead).
PASSIVE_KINDS = {
    "Service": "DNS names come from the pods' host names and subdomains",
    "PersistentVolumeClaim": "a directory under <run-dir>/volumes/",
    "ServiceAccount": "no API access locally", "Role": "no API access locally",
    "RoleBinding": "no API access locally", "NetworkPolicy": "only the workers share a network",
    "Ingress": "use the printed TensorBoard URL", "Secret": "read for secretKeyRef",
    "ConfigMap": "read for configMapKeyRef", "PodDisruptionBudget": "no evictions locally",
    "Namespace": "its name is used in the pods' DNS names",
}
