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


from scripts.local_runner.controllers.base import (EXIT_SIGNAL_BASE, Cluster, IndexState,  # noqa: F401
                                                   PodRecord, Workload, headless_dns_names,
                                                   match_pod_failure_policy, service_dns_names)
from scripts.local_runner.controllers.deployment import DeploymentController
from scripts.local_runner.controllers.job import JobController
from scripts.local_runner.controllers.jobset import JOBSET_ACTIONS, JobSetController  # noqa: F401
from scripts.local_runner.controllers.tfjob import TFJobController

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
