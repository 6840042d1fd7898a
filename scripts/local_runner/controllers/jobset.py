"""JobSet (jobset.x-k8s.io, kubernetes-sigs/jobset v0.12.0): replicated Jobs as JobControllers."""

from __future__ import annotations

import re

from scripts.local_runner.controllers.base import Cluster, PodRecord, Workload
from scripts.local_runner.manifest import NetworkSlot
from scripts.local_runner.controllers.job import JobController


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
