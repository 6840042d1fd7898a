"""JobSet semantics (controllers.JobSetController) held against kubernetes-sigs/jobset v0.12.0.

Each test names the upstream source it reproduces (github.com/kubernetes-sigs/jobset, tag
v0.12.0). Behaviour the runner does not reproduce is refused, not approximated: the RestartJob
actions (feature gate RestartJob), in-place restarts, startup and volume claim policies."""

from __future__ import annotations

import pytest

from scripts.local_runner.controllers import JobSetController
from tests.local_runner.fakes import FakeCluster, job_doc, name, one

FAIL_ON_2 = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2]}}]}


def jobset_doc(failure_policy=None, success_policy=None, replicated=(("w", 1),)):
    """A JobSet of single-pod child Jobs: exit 2 fails a Job (PodFailurePolicy), any other failure
    fails it at once (backoffLimit 0: BackoffLimitExceeded)."""
    spec = {"replicatedJobs": [{"name": rjob, "replicas": replicas,
                                "template": job_doc("x", backoffLimit=0, podFailurePolicy=FAIL_ON_2)}
                               for rjob, replicas in replicated]}
    if failure_policy is not None:
        spec["failurePolicy"] = failure_policy
    if success_policy is not None:
        spec["successPolicy"] = success_policy
    return {"kind": "JobSet", "metadata": {"name": "js"}, "spec": spec}


def started(tmp_path, doc):
    cluster = FakeCluster(tmp_path, [])
    jobset = JobSetController(cluster, doc)
    jobset.start()
    jobset.tick()
    return cluster, jobset


def fail(cluster, jobset, record, code):
    """A pod exits with `code`; the JobSet controller then reconciles."""
    record.finished_at, record.exit_code = cluster.clock, code
    jobset.on_exit(record)
    jobset.tick()


def drain(cluster, jobset):
    """The deleted pods exit (SIGTERM), and the JobSet recreates its Jobs."""
    for record in [r for r in cluster.running() if r.deleting]:
        fail(cluster, jobset, record, 143)
    jobset.tick()


def test_child_jobs_are_named_and_labelled_as_upstream(tmp_path):
    """pkg/util/placement/placement.go GenJobName: <jobset>-<replicatedJob>-<index>;
    pkg/constants/constants.go RestartsKey (jobset.sigs.k8s.io/restart-attempt) = status.restarts."""
    cluster, jobset = started(tmp_path, jobset_doc({"maxRestarts": 1}, replicated=(("a", 2), ("b", 1))))
    assert [job.name for _, job in jobset.jobs] == ["js-a-0", "js-a-1", "js-b-0"]
    assert {r.pod.labels["jobset.sigs.k8s.io/restart-attempt"] for r in cluster.running()} == {"0"}
    fail(cluster, jobset, cluster.running()[0], 1)
    drain(cluster, jobset)
    assert {r.pod.labels["jobset.sigs.k8s.io/restart-attempt"] for r in cluster.running()} == {"1"}
    assert [job.name for _, job in jobset.jobs] == ["js-a-0", "js-a-1", "js-b-0"]


def test_without_a_failure_policy_the_first_failed_job_fails_the_jobset(tmp_path):
    """pkg/controllers/failure_policy.go executeFailurePolicy: FailurePolicy == nil ->
    setJobSetFailedCondition(FailedJobsReason)."""
    cluster, jobset = started(tmp_path, jobset_doc(None))
    fail(cluster, jobset, cluster.running()[0], 1)
    assert jobset.status == "Failed" and jobset.reason == "FailedJobs" and jobset.restarts == 0


def test_the_whole_set_is_recreated_until_max_restarts(tmp_path):
    """failure_policy.go: no matching rule -> defaultFailurePolicyRuleAction RestartJobSet;
    restartJobSetActionApplier fails with ReachedMaxRestarts once restartsCountTowardsMax >=
    maxRestarts; a restart recreates every child Job (failurePolicyRecreateAll)."""
    cluster, jobset = started(tmp_path, jobset_doc({"maxRestarts": 2}, replicated=(("w", 2),)))
    for restart in (1, 2):
        first, second = cluster.running()
        fail(cluster, jobset, first, 137)
        assert second.deleting, "the survivors are deleted with the failed Job's set"
        jobset.tick()
        assert len(cluster.running()) == 1, "recreated before every old pod was gone"
        drain(cluster, jobset)
        assert jobset.restarts == restart and len(cluster.running()) == 2
    fail(cluster, jobset, cluster.running()[0], 137)
    assert jobset.status == "Failed" and jobset.reason == "ReachedMaxRestarts"


def test_rules_apply_in_order_on_reason_message_and_replicated_job(tmp_path):
    """failure_policy.go findFirstFailedPolicyRuleAndJob / ruleIsApplicable: the first rule whose
    onJobFailureReasons, onJobFailureMessagePatterns (regexp.MatchString: unanchored) and
    targetReplicatedJobs all match (empty: any); FailJobSet fails with FailJobSetFailurePolicyAction."""
    rules = [{"name": "other", "action": "FailJobSet", "targetReplicatedJobs": ["driver"]},
             {"name": "message", "action": "FailJobSet", "onJobFailureMessagePatterns": ["exit code 2 "]},
             {"name": "any", "action": "RestartJobSet"}]
    cluster, jobset = started(tmp_path, jobset_doc({"maxRestarts": 5, "rules": rules}))
    fail(cluster, jobset, cluster.running()[0], 1)  # BackoffLimitExceeded: only "any" matches
    assert jobset.status == "Running" and jobset.restarts == 1
    drain(cluster, jobset)
    fail(cluster, jobset, cluster.running()[0], 2)  # PodFailurePolicy, message names exit code 2
    assert jobset.status == "Failed" and jobset.reason == "FailJobSetFailurePolicyAction"


def test_restarts_that_ignore_max_restarts_are_not_counted(tmp_path):
    """failure_policy.go restartJobSetAndIgnoreMaxRestartsActionApplier: status.restarts grows,
    restartsCountTowardsMax does not."""
    rules = [{"name": "preempted", "action": "RestartJobSetAndIgnoreMaxRestarts",
              "onJobFailureReasons": ["BackoffLimitExceeded"]}]
    cluster, jobset = started(tmp_path, jobset_doc({"maxRestarts": 0, "rules": rules}))
    for _ in range(3):
        fail(cluster, jobset, cluster.running()[0], 1)
        drain(cluster, jobset)
    assert jobset.status == "Running" and jobset.restarts == 3 and jobset.restarts_counted == 0
    fail(cluster, jobset, cluster.running()[0], 2)  # PodFailurePolicy: no rule -> RestartJobSet
    assert jobset.status == "Failed" and jobset.reason == "ReachedMaxRestarts"


@pytest.mark.parametrize("operator, finish, expected", [
    ("All", ["w"], "Running"), ("All", ["w", "d"], "Complete"), ("Any", ["d"], "Complete")])
def test_success_policy(tmp_path, operator, finish, expected):
    """pkg/controllers/success_policy.go: operator All needs every Job of the targeted replicated
    Jobs (all of them when targetReplicatedJobs is empty), Any one of them (reason AllJobsCompleted)."""
    targets = [] if operator == "All" else ["d"]
    cluster, jobset = started(tmp_path, jobset_doc(
        {"maxRestarts": 0}, {"operator": operator, "targetReplicatedJobs": targets},
        replicated=(("w", 1), ("d", 1))))
    for record in list(cluster.running()):
        if record.pod.labels["jobset.sigs.k8s.io/replicatedjob-name"] in finish:
            fail(cluster, jobset, record, 0)
    assert jobset.status == expected
    if expected == "Complete":
        assert jobset.reason == "AllJobsCompleted"


def test_restart_job_actions_are_refused(tmp_path):
    """RestartJob / RestartJobAndIgnoreMaxRestarts (failure_policy.go actionFunctionMap, behind the
    RestartJob feature gate) restart one child Job: not reproduced, so refused with the rule named."""
    doc = jobset_doc({"maxRestarts": 1, "rules": [{"name": "one", "action": "RestartJob"}]})
    with pytest.raises(ValueError, match="'one': action 'RestartJob' is not supported locally"):
        JobSetController(FakeCluster(tmp_path, []), doc)


def test_the_charts_jobset_recreates_every_worker_and_fails_on_a_config_error(tmp_path, rendered):
    """The chart's rendering: workers under the JobSet's subdomain with the Indexed Job's
    environment; its configError rule (FailJobSet on PodFailurePolicy) stops restarts."""
    cluster = FakeCluster(tmp_path, rendered["jobset"].docs)
    jobset = JobSetController(cluster, one(rendered["jobset"], "JobSet"))
    trainer = name(rendered["jobset"], "JobSet", "trainer")
    assert [s.key for s in jobset.slots()] == [f"{trainer}-worker-0-0.mnist-train-workers",
                                              f"{trainer}-worker-0-1.mnist-train-workers"]
    jobset.start()
    jobset.tick()
    first = list(cluster.running())
    assert first[0].pod.hostname == f"{trainer}-worker-0-0"
    env = first[1].pod.container.env
    assert env["JOB_COMPLETION_INDEX"] == "1"
    assert env["MNIST_WORKER_HOSTNAME_PREFIX"] == f"{trainer}-worker-0"
    fail(cluster, jobset, first[0], 137)
    assert jobset.restarting and first[1].deleting
    drain(cluster, jobset)
    second = list(cluster.running())
    assert len(second) == 2 and jobset.restarts == 1
    fail(cluster, jobset, second[0], 2)
    assert jobset.status == "Failed" and jobset.reason == "FailJobSetFailurePolicyAction"
