"""What the JobSet and TFJob launchers must render for their controllers and webhooks
to do what the chart promises: rule names JobSet accepts, a deadline that fails a
JobSet, no TFJob restart policy that fails on the trainer's own retryable exit
codes, and the checkov skip annotations on the parent objects."""

from __future__ import annotations

import re

import pytest

from .conftest import CHART_DIR, CI_DIR, SCENARIOS

DEFAULTS = [CI_DIR / "default-values.yaml"]

# JobSet v0.12.0 pkg/webhooks/jobset_webhook.go: ruleNameFmt, minRuleNameLength,
# maxRuleNameLength, and rule names unique within a JobSet.
JOBSET_RULE_NAME = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
# The same file, validOnJobFailureReasons (batch/v1 Job failure reasons).
JOBSET_JOB_FAILURE_REASONS = {"BackoffLimitExceeded", "DeadlineExceeded", "FailedIndexes",
                              "MaxFailedIndexesExceeded", "PodFailurePolicy"}


def jobset_rule_errors(jobset: dict) -> list[str]:
    rules = (jobset["spec"].get("failurePolicy") or {}).get("rules") or []
    errors = []
    for rule in rules:
        name = rule.get("name", "")
        if not 1 <= len(name) <= 128 or not JOBSET_RULE_NAME.match(name):
            errors.append(f"failure policy rule name {name!r} does not match {JOBSET_RULE_NAME.pattern}")
        for reason in rule.get("onJobFailureReasons") or []:
            if reason not in JOBSET_JOB_FAILURE_REASONS:
                errors.append(f"rule {name!r}: unknown job failure reason {reason!r}")
    names = [r.get("name") for r in rules]
    if len(set(names)) != len(names):
        errors.append(f"failure policy rule names are not unique: {names}")
    return errors


def test_the_rule_check_rejects_what_the_webhook_rejects():
    def jobset(*rules):
        return {"spec": {"failurePolicy": {"rules": list(rules)}}}
    assert jobset_rule_errors(jobset({"name": "config-error", "onJobFailureReasons": ["PodFailurePolicy"]}))
    assert jobset_rule_errors(jobset({"name": "configError", "onJobFailureReasons": ["Evicted"]}))
    assert jobset_rule_errors(jobset({"name": "a"}, {"name": "a"}))
    assert jobset_rule_errors(jobset({"name": "_a"}))
    assert not jobset_rule_errors(jobset({"name": "configError", "onJobFailureReasons": ["PodFailurePolicy"]},
                                         {"name": "deadline_exceeded:1"}))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_jobset_failure_policy_rules_pass_the_webhook(renderer, scenario):
    rendering = renderer.render(values_files=[CI_DIR / f"{scenario}-values.yaml"],
                                set_values=["trainer.launcher=jobset"])
    assert jobset_rule_errors(rendering.one("JobSet")) == []


def test_the_deadline_fails_the_jobset_instead_of_restarting_it(renderer):
    """activeDeadlineSeconds sits on the child Job; without a rule on its DeadlineExceeded
    failure the JobSet would restart the group with a fresh deadline (JobSet v0.12.0
    pkg/controllers/failure_policy.go: an unmatched failure gets defaultFailurePolicyRuleAction,
    RestartJobSet)."""
    rendering = renderer.render(values_files=DEFAULTS, set_values=[
        "trainer.launcher=jobset", "trainer.activeDeadlineSeconds=3600"])
    spec = rendering.one("JobSet")["spec"]
    (rjob,) = spec["replicatedJobs"]
    assert rjob["template"]["spec"]["activeDeadlineSeconds"] == 3600
    rules = spec["failurePolicy"]["rules"]
    deadline = [r for r in rules if "DeadlineExceeded" in (r.get("onJobFailureReasons") or [])]
    assert [r["action"] for r in deadline] == ["FailJobSet"]
    assert not deadline[0].get("targetReplicatedJobs")  # any replicated job


def test_tfjob_exit_code_restart_policy_is_refused_with_the_reason(renderer):
    """training-operator v1.9.0 pkg/util/train/train_util.go IsRetryableExitCode: under
    ExitCode only exit codes >= 128 are retried; the trainer's 42 (preempted, checkpoint
    saved) and 1 (a peer died) would fail the TFJob at once."""
    args = ["template", "r", str(CHART_DIR), "-f", str(DEFAULTS[0]),
            "--set", "trainer.launcher=tfjob", "--set", "trainer.tfjob.restartPolicy=ExitCode"]
    schema = renderer.run(*args)
    assert schema.returncode != 0 and "tfjob/restartPolicy" in schema.stderr, schema.stderr
    template = renderer.run(*args, "--skip-schema-validation")
    assert template.returncode != 0
    message = template.stderr
    assert "trainer.tfjob.restartPolicy=ExitCode" in message and ">= 128" in message
    assert "OnFailure" in message, message


@pytest.mark.parametrize("launcher,kind", [("jobset", "JobSet"), ("tfjob", "TFJob")])
def test_jobset_and_tfjob_carry_the_checkov_skips(renderer, launcher, kind):
    """checkov reads a JobSet's or TFJob's pod template only once it is extracted; the skips
    and their reasons must then come from the parent, as on the Job launcher."""
    rendering = renderer.render(values_files=DEFAULTS, set_values=[f"trainer.launcher={launcher}"])
    job_launcher = renderer.render(values_files=DEFAULTS)
    trainer_job = next(d for d in job_launcher.find("Job")
                       if d["metadata"]["labels"]["app.kubernetes.io/component"] == "trainer")
    skips = checkov_skips(trainer_job)
    assert skips
    assert checkov_skips(rendering.one(kind)) == skips


def checkov_skips(doc: dict) -> dict:
    annotations = doc["metadata"].get("annotations") or {}
    return {k: v for k, v in annotations.items() if k.startswith("checkov.io/skip")}
