"""mnistctl/objects.py: pods, Jobs, JobSets and TFJobs as the API returns them, explained."""

from __future__ import annotations

from mnistctl import objects
from mnistctl.status import summarize, verdict
from tests.mnistctl.api_shapes import (CONFIG_ERROR_LOG, FAIL_JOB_MESSAGE, NS, RELEASE, condition,
                                         container_status, job, job_list, jobset, pod, pod_list,
                                         preempted_worker, running_chief, ts)


def test_running_chief():
    info = objects.pod_info(pod_list(running_chief())[0])
    assert (info.component, info.index, info.phase, info.state, info.ready, info.restarts) == \
        ("trainer", 0, "Running", "running", True, 0)
    assert info.summary() == "running"


def test_preempted_worker_is_explained():
    info = objects.pod_info(pod_list(preempted_worker())[0])
    assert info.exit_code == 42 and info.preempted and info.disruption == "EvictionByEvictionAPI"
    assert info.summary().startswith("exit 42: preempted: SIGTERM received and a checkpoint saved")
    assert "without counting as a failure" in info.summary()


def test_config_error_pod_with_its_log_line():
    failed = pod("mnist-train-trainer-0-b7c1d", "trainer", index=0, phase="Failed",
                 statuses=[container_status(terminated={"exitCode": 2, "reason": "Error"})])
    status = summarize(NS, RELEASE, pods=pod_list(failed),
                           logs={"mnist-train-trainer-0-b7c1d": CONFIG_ERROR_LOG})
    info = status.trainer_pods[0]
    assert info.summary().startswith("exit 2: configuration or data error: retrying cannot help")
    assert "error: MNIST file not found in gs://example-bucket/mnist-data" in info.summary()


def test_tfjob_worker_restarting_in_place():
    """restartPolicy OnFailure: the same pod, restarted 3 times, now backing off."""
    crashing = pod("mnist-train-trainer-worker-1", "trainer", container="tensorflow",
                   owner=("TFJob", "mnist-train-trainer"),
                   extra_labels={"training.kubeflow.org/replica-index": "1",
                                 "training.kubeflow.org/replica-type": "worker",
                                 "training.kubeflow.org/job-name": "mnist-train-trainer"},
                   statuses=[container_status(
                       "tensorflow", restarts=3,
                       waiting={"reason": "CrashLoopBackOff",
                                "message": "back-off 40s restarting failed container=tensorflow"},
                       last={"exitCode": 1, "reason": "Error"})])
    info = objects.pod_info(pod_list(crashing)[0])
    assert (info.index, info.restarts, info.state, info.reason) == (1, 3, "waiting", "CrashLoopBackOff")
    assert info.summary() == ("waiting: CrashLoopBackOff: back-off 40s restarting failed "
                              "container=tensorflow; last restart: exit 1: failed: unexpected error "
                              "(e.g. a peer worker died); the group is retried")


def test_oom_killed_and_evicted_and_unschedulable():
    oom = pod("w-0", "trainer", index=0, phase="Failed",
              statuses=[container_status(terminated={"exitCode": 137, "reason": "OOMKilled"})])
    evicted = pod("w-1", "trainer", index=1, phase="Failed", reason="Evicted",
                  message="The node was low on resource: memory.", statuses=[])
    pending = pod("w-2", "trainer", index=2, phase="Pending", statuses=[], conditions=[
        condition("PodScheduled", "Unschedulable",
                  "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.", status="False")])
    oom_i, evicted_i, pending_i = map(objects.pod_info, pod_list(oom, evicted, pending))
    assert oom_i.summary() == "exit 137: out of memory (OOMKilled): raise the memory limit"
    assert evicted_i.preempted and "Evicted: The node was low on resource: memory." in evicted_i.summary()
    assert pending_i.summary() == ("pending: Unschedulable: 0/3 nodes are available: "
                                   "3 Insufficient nvidia.com/gpu.")


# ---------------------------------------------------------------- Jobs, JobSets, TFJobs

def test_job_states():
    running, done, failed, suspended, pending = map(objects.job_info, job_list(
        job("a", "trainer", active=2),
        job("b", "trainer", succeeded=2, conditions=[condition("SuccessCriteriaMet"), condition("Complete")]),
        job("c", "trainer", failed=1, conditions=[
            condition("FailureTarget", "PodFailurePolicy", FAIL_JOB_MESSAGE),
            condition("Failed", "PodFailurePolicy", FAIL_JOB_MESSAGE)]),
        job("d", "trainer", conditions=[condition("Suspended", "JobSuspended", "Job suspended")]),
        job("e", "trainer")))
    assert [j.state for j in (running, done, failed, suspended, pending)] == \
        ["running", "succeeded", "failed", "suspended", "pending"]
    text = failed.summary()
    assert "PodFailurePolicy (a pod failure policy rule failed the Job)" in text
    assert "[exit 2: configuration or data error: retrying cannot help" in text


def test_jobset_decides_over_its_child_jobs():
    """The JobSet restarts its group by recreating child Jobs: a failed child
    Job is not the verdict while the JobSet itself runs."""
    child = job("mnist-train-trainer-worker-0", "trainer", failed=1, owner=("JobSet", "mnist-train-trainer"),
                conditions=[condition("Failed", "BackoffLimitExceeded",
                                      "Job has reached the specified backoff limit")])
    status = summarize(NS, RELEASE, pods=pod_list(running_chief()), jobs=job_list(child),
                           jobsets=[jobset([])])
    assert status.trainer.kind == "JobSet" and status.trainer.state == "pending"
    assert not verdict(status).failed
    failed = jobset([{"type": "Failed", "status": "True", "reason": "FailedJobs",
                      "message": "jobset failed due to reaching max number of restarts",
                      "lastTransitionTime": ts(40)}])
    status = summarize(NS, RELEASE, pods=pod_list(running_chief()), jobs=job_list(child),
                           jobsets=[failed])
    v = verdict(status)
    assert v.failed and "JobSet/mnist-train-trainer: failed: FailedJobs" in v.reason


def test_tfjob_conditions():
    tfjob = {"apiVersion": "kubeflow.org/v1", "kind": "TFJob", "metadata": {"name": "mnist-train-trainer"},
             "status": {"conditions": [
                 {"type": "Created", "status": "True", "reason": "TFJobCreated"},
                 {"type": "Running", "status": "False", "reason": "TFJobRestarting"},
                 {"type": "Restarting", "status": "True", "reason": "TFJobRestarting",
                  "message": "TFJob mnist-train/mnist-train-trainer is restarting because "
                             "1 Worker replica(s) failed."}]}}
    info = objects.custom_info(tfjob)
    assert (info.kind, info.state, info.reason) == ("TFJob", "running", "Restarting")
    tfjob["status"]["conditions"].append({"type": "Succeeded", "status": "True", "reason": "TFJobSucceeded"})
    assert objects.custom_info(tfjob).state == "succeeded"
