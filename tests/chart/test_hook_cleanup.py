"""No `helm test` Job outlives `helm uninstall`.

Hook resources are not part of the release's manifest, so `helm uninstall`
never deletes them (Helm v4.1, pkg/action/uninstall.go deletes
`rel.Manifest` only). The hook Job is therefore deleted by Helm whatever its
outcome (helm.sh/hook-delete-policy hook-succeeded and hook-failed), after
Helm has printed a failed Job's pod logs (helm.sh/hook-output-log-policy
hook-failed: pkg/action/hooks.go calls outputLogsByPolicy before
deleteHookByPolicy), and ttlSecondsAfterFinished lets the Job controller
delete one that Helm left behind, e.g. when `helm test` was interrupted.
"""

from __future__ import annotations

import pytest

from .conftest import CHART_DIR, CI_DIR, SCENARIOS

HOOK = "mnist-train-test"


def csv(value: str) -> set[str]:
    return {part.strip() for part in value.split(",")}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_hook_job_is_deleted_whatever_its_outcome(scenarios, scenario):
    job = scenarios[scenario].one("Job", HOOK)
    annotations = job["metadata"]["annotations"]
    assert csv(annotations["helm.sh/hook-delete-policy"]) == {
        "before-hook-creation", "hook-succeeded", "hook-failed"}
    assert "hook-failed" in csv(annotations["helm.sh/hook-output-log-policy"])
    # Long enough for Helm to see the result before the Job controller deletes it.
    assert job["spec"]["ttlSecondsAfterFinished"] >= 60


def test_hook_ttl_value(renderer):
    rendering = renderer.render(values_files=[CI_DIR / "default-values.yaml"],
                                set_values=["tests.ttlSecondsAfterFinished=900"])
    assert rendering.one("Job", HOOK)["spec"]["ttlSecondsAfterFinished"] == 900
    result = renderer.run("template", "t", str(CHART_DIR), "-f", str(CI_DIR / "default-values.yaml"),
                          "--set", "tests.ttlSecondsAfterFinished=10")
    assert result.returncode != 0 and "'/tests/ttlSecondsAfterFinished'" in result.stderr
