"""mnistctl/status.py: a whole release summarized, judged and rendered."""

from __future__ import annotations

from mnistctl.status import render, summarize, verdict
from tests.mnistctl.api_shapes import (CONFIG_ERROR_LOG, FAIL_JOB_MESSAGE, FINAL_EVALUATOR_LOG, NS, RELEASE,
                                         condition, container_status, evaluator_pod, in_progress_release,
                                         job, job_list, pod, pod_list, preempted_worker)


def test_status_of_a_run_in_progress():
    status = summarize(NS, RELEASE, **in_progress_release())
    assert [(p.name, p.index) for p in status.trainer_pods] == [
        ("mnist-train-trainer-0-aaaaa", 0), ("mnist-train-trainer-0-7xk2p", 0),
        ("mnist-train-trainer-1-q9d4w", 1), ("mnist-train-trainer-1-m3kdz", 1)]
    assert status.progress.checkpoint_step == 2000 and status.progress.step == 2500
    assert status.progress.eval_accuracy == 0.9733
    assert status.tensorboard[0].ready_pods == 1
    v = verdict(status)
    assert not v.done and not v.failed and v.reason == "trainer running"
    text = render(status)
    assert "trainer      Job/mnist-train-trainer: running (2 active, 0 succeeded, 0 failed)" in text
    assert "checkpoint   newest at step 2000 (from the chief's log); training at step 2500" in text
    assert "After 2000 training step(s), validation accuracy = 0.9733" in text
    assert "Service/mnist-train-tensorboard ClusterIP 10.8.3.21:6006, 1/1 pod(s) ready" in text
    assert "kubectl port-forward -n mnist-train svc/mnist-train-tensorboard 6006:6006" in text
    assert "exit 42: preempted" in text and "disrupted: PreemptionByScheduler" in text


def test_model_dir_step_wins_when_newer():
    status = summarize(NS, RELEASE, **in_progress_release(), model_dir_step=3000)
    assert (status.progress.checkpoint_step, status.progress.checkpoint_source) == (3000, "model dir")


def test_finished_release():
    status = summarize(
        NS, RELEASE,
        pods=pod_list(pod("mnist-train-trainer-0-7xk2p", "trainer", index=0, phase="Succeeded",
                          statuses=[container_status(terminated={"exitCode": 0, "reason": "Completed"})]),
                      evaluator_pod(running=False, exit_code=0)),
        jobs=job_list(job("mnist-train-trainer", "trainer", succeeded=2,
                          conditions=[condition("SuccessCriteriaMet"), condition("Complete")]),
                      job("mnist-train-evaluator", "evaluator", succeeded=1, completions=1,
                          conditions=[condition("Complete")])),
        logs={"mnist-train-evaluator-5hq2n": FINAL_EVALUATOR_LOG})
    v = verdict(status)
    assert v.done and v.reason == ("trainer succeeded; evaluator finished; after 30000 training step(s), "
                                   "test accuracy = 0.9839")
    assert "tensorboard  no Service" in render(status)


def test_config_error_fails_the_run_with_the_reason():
    message = FAIL_JOB_MESSAGE
    status = summarize(
        NS, RELEASE,
        pods=pod_list(pod("mnist-train-trainer-0-b7c1d", "trainer", index=0, phase="Failed",
                          statuses=[container_status(terminated={"exitCode": 2, "reason": "Error"})]),
                      preempted_worker()),
        jobs=job_list(job("mnist-train-trainer", "trainer", failed=1, conditions=[
            condition("FailureTarget", "PodFailurePolicy", message),
            condition("Failed", "PodFailurePolicy", message)])),
        logs={"mnist-train-trainer-0-b7c1d": CONFIG_ERROR_LOG})
    v = verdict(status)
    assert v.failed and not v.done
    assert v.reason.startswith("trainer Job/mnist-train-trainer: failed")
    assert "[exit 2: configuration or data error" in v.reason
    # The culprit is the exit-2 pod, not the preempted one.
    assert "pod mnist-train-trainer-0-b7c1d: exit 2" in v.reason
    assert "error: MNIST file not found in gs://example-bucket/mnist-data" in v.reason


def test_nothing_found():
    v = verdict(summarize(NS, "other", pods=[]))
    assert not v.found and "no trainer of release 'other'" in v.reason
