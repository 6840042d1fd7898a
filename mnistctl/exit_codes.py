"""What a trainer's or evaluator's exit code means, and the tool's own exit codes.

The codes come from model/errors.py and signals; the chart's pod failure
policy acts on the same codes (tests/chart/test_helm_test_hook.py holds
them together).
"""

from __future__ import annotations

from model.errors import EXIT_PREEMPTED, MnistTrainError

EXIT_TIMEOUT = 124
EXIT_MEANINGS = {
    0: "completed",
    1: "failed: unexpected error (e.g. a peer worker died); the group is retried",
    2: "configuration or data error: retrying cannot help, the Job fails at once (bad flags or "
       "data, an unusable model directory, a directory holding another run or held by another "
       "live trainer); see the log's `error:` line",
    EXIT_PREEMPTED: "preempted: SIGTERM received and a checkpoint saved; the pod is replaced "
                    "without counting as a failure and training resumes",
    130: "interrupted by Ctrl-C (SIGINT): a checkpoint saved; run it again to resume",
    137: "killed by SIGKILL (no checkpoint at exit; resumes from the last one): the kubelet "
         "after the grace period, the OOM killer, or the start-up guard (a peer never joined, "
         "or SIGTERM while waiting for peers)",
    143: "stopped by SIGTERM before it could save",
}
JOB_FAILURE_REASONS = {
    "PodFailurePolicy": "a pod failure policy rule failed the Job",
    "BackoffLimitExceeded": "too many failed pods (backoffLimit)",
    "FailedIndexes": "a worker index used up its retries (backoffLimitPerIndex)",
    "MaxFailedIndexesExceeded": "a worker index used up its retries (backoffLimitPerIndex)",
    "DeadlineExceeded": "activeDeadlineSeconds reached",
}


class OpsError(MnistTrainError):
    """Bad usage, an unreachable API, or a release that cannot be found (exit 2)."""


def describe_exit(code: int | None, reason: str | None = None) -> str:
    if code is None:
        return reason or "unknown"
    if reason == "OOMKilled":
        return f"exit {code}: out of memory (OOMKilled): raise the memory limit"
    meaning = EXIT_MEANINGS.get(code, "failed")
    if reason and reason not in ("Error", "Completed"):
        meaning = f"{meaning} ({reason})"
    return f"exit {code}: {meaning}"
