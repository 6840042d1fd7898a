"""batch/v1 Job (Indexed or not): the semantics in the package docstring."""

from __future__ import annotations

from scripts.local_runner.controllers.base import (Cluster, IndexState, PodRecord,
                                                   Workload, headless_dns_names, match_pod_failure_policy)
from scripts.local_runner.manifest import NetworkSlot, PodRequest


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
