"""Security: Pod Security Standard "restricted" (and the chart's stricter
defaults) on every container of every scenario, with proof that the check
catches a removed field; checkov on the rendered manifests."""

from __future__ import annotations

import copy
import json
import subprocess

import pytest

from .conftest import CI_DIR, SCENARIOS
from .manifests import all_pods
from .pss import hardening_violations, restricted_violations


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pod_security_restricted(scenarios, scenario):
    pods = all_pods(scenarios[scenario].docs)
    assert pods
    for pod in pods:
        problems = restricted_violations(pod.spec) + hardening_violations(pod.spec)
        assert not problems, f"{scenario} {pod.where}: {problems}"


def trainer_pod_spec(default_render) -> dict:
    job = default_render.component("Job", "trainer")
    return copy.deepcopy(job["spec"]["template"]["spec"])


def drop(obj: dict, dotted: str) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        obj = obj[key]
    del obj[last]


CONTAINER_FIELDS = [
    "securityContext.allowPrivilegeEscalation",
    "securityContext.capabilities",
    "securityContext.capabilities.drop",
    "securityContext.readOnlyRootFilesystem",
]


@pytest.mark.parametrize("field", CONTAINER_FIELDS)
@pytest.mark.parametrize("where", ["containers", "initContainers"])
def test_check_fails_when_a_container_field_is_removed(default_render, field, where):
    """Removing a required field from a container, or from an init container,
    is reported."""
    spec = trainer_pod_spec(default_render)
    assert not restricted_violations(spec) + hardening_violations(spec)
    if where == "initContainers":
        init = copy.deepcopy(spec["containers"][0])
        init["name"] = "init"
        spec["initContainers"] = [init]
        target = init
    else:
        target = spec["containers"][0]
    drop(target, field)
    problems = restricted_violations(spec) + hardening_violations(spec)
    assert problems and all("container" in p for p in problems), problems


@pytest.mark.parametrize("field", ["runAsNonRoot", "seccompProfile"])
def test_check_fails_when_pod_and_container_level_are_removed(default_render, field):
    """runAsNonRoot and seccompProfile may be set at pod or container level:
    removing one level is fine, removing both is reported."""
    spec = trainer_pod_spec(default_render)
    drop(spec, f"securityContext.{field}")
    assert not restricted_violations(spec)
    drop(spec["containers"][0], f"securityContext.{field}")
    assert restricted_violations(spec)


@pytest.mark.parametrize("mutation", [
    lambda s: s.__setitem__("hostNetwork", True),
    lambda s: s["containers"][0]["securityContext"].__setitem__("privileged", True),
    lambda s: s["containers"][0]["securityContext"].__setitem__("runAsUser", 0),
    lambda s: s["containers"][0]["securityContext"]["capabilities"].__setitem__("add", ["SYS_ADMIN"]),
    lambda s: s["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
    lambda s: s["securityContext"].__setitem__("seccompProfile", {"type": "Unconfined"}),
    lambda s: s.__delitem__("automountServiceAccountToken"),
    lambda s: drop(s, "securityContext.fsGroup"),
    lambda s: s["containers"][0].__setitem__("volumeMounts", s["containers"][0]["volumeMounts"][1:]),
], ids=["hostNetwork", "privileged", "root", "caps-add", "hostPath", "unconfined",
        "sa-token", "fsGroup", "no-tmp"])
def test_check_fails_on_forbidden_settings(default_render, mutation):
    spec = trainer_pod_spec(default_render)
    mutation(spec)
    assert restricted_violations(spec) + hardening_violations(spec)


def test_removing_a_field_through_values_fails_the_check(renderer):
    """End to end: a values override that drops a field is caught."""
    rendering = renderer.render(values_files=[CI_DIR / "default-values.yaml"],
                                set_values=["securityContext.allowPrivilegeEscalation=null"])
    problems = [p for pod in all_pods(rendering.docs) for p in restricted_violations(pod.spec)]
    # trainer, evaluator, TensorBoard and the `helm test` hook
    assert len(problems) == 4 and all("allowPrivilegeEscalation" in p for p in problems)


def test_service_account_token_not_mounted(scenarios):
    for rendering in scenarios.values():
        for sa in rendering.find("ServiceAccount"):
            assert sa["automountServiceAccountToken"] is False
        # Nothing cluster-wide (a `helm test` hook may bring a namespaced Role).
        assert not rendering.find("ClusterRole") and not rendering.find("ClusterRoleBinding")


# ---------------------------------------------------------------- checkov

def run_checkov(checkov: str, directory) -> dict:
    result = subprocess.run(
        [checkov, "--framework", "kubernetes", "--skip-download", "--compact",
         "-o", "json", "-d", str(directory)],
        check=False, capture_output=True, text=True, timeout=600)
    assert result.returncode in (0, 1), result.stderr[-3000:]
    report = json.loads(result.stdout) if result.stdout.strip() else {}
    if isinstance(report, list):
        report = next(r for r in report if r.get("check_type") == "kubernetes")
    return report


@pytest.fixture(scope="session")
def checkov_reports(checkov, scenarios, tmp_path_factory) -> dict:
    """One checkov run over the defaults alone (for the exact resource count)
    and one over every scenario; both `passed/failed/skipped` reports."""
    default_dir = tmp_path_factory.mktemp("checkov-default")
    (default_dir / "default.yaml").write_text(scenarios["default"].text)
    all_dir = tmp_path_factory.mktemp("checkov-all")
    for name, rendering in scenarios.items():
        (all_dir / f"{name}.yaml").write_text(rendering.text)
    return {"default": run_checkov(checkov, default_dir), "all": run_checkov(checkov, all_dir)}


def failed_checks(report) -> list[str]:
    return [f"{c['check_id']} {c['resource']} ({c['file_path']})"
            for c in report.get("results", {}).get("failed_checks", [])]


def test_checkov_defaults_zero_failed(checkov_reports, default_render):
    report = checkov_reports["default"]
    summary = report["summary"]
    assert summary["failed"] == 0, failed_checks(report)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 100
    # checkov counts each rendered object once, plus one Pod it derives from
    # each workload's pod template (for its graph checks): nothing unscanned.
    rendered = len(default_render.docs)
    workloads = len(all_pods(default_render.docs))
    assert summary["resource_count"] == rendered + workloads, (summary, rendered, workloads)
    checked = {c["resource"].split(".")[0] + "/" + c["resource"].split(".")[2]
               for kind in ("passed_checks", "skipped_checks")
               for c in report["results"][kind] if not c["resource"].startswith("Pod.")}
    expected = {f"{d['kind']}/{d['metadata']['name']}" for d in default_render.docs
                if d["kind"] not in ("NetworkPolicy", "PersistentVolumeClaim")}
    assert expected <= checked, expected - checked


def test_checkov_all_scenarios_zero_failed(checkov_reports):
    report = checkov_reports["all"]
    assert report["summary"]["failed"] == 0, failed_checks(report)
    assert report["summary"]["parsing_errors"] == 0


def test_checkov_skips_carry_reasons(checkov_reports, scenarios):
    """Skips come only from the chart's annotations, each with a reason, and
    only while the reason holds (digest + Always leave just the uid skip)."""
    skipped = checkov_reports["all"]["results"]["skipped_checks"]
    assert skipped
    for check in skipped:
        assert check["check_id"] in {"CKV_K8S_40", "CKV_K8S_43", "CKV_K8S_15"}, check["check_id"]
        assert len(check["check_result"].get("suppress_comment") or "") > 40, check
    by_file: dict[str, set] = {}
    for check in skipped:
        by_file.setdefault(check["file_path"].rsplit("/", 1)[-1], set()).add(check["check_id"])
    assert by_file["ingress.yaml"] == {"CKV_K8S_40"}
    assert by_file["gcs.yaml"] == {"CKV_K8S_40", "CKV_K8S_15"}
    assert by_file["default.yaml"] == {"CKV_K8S_40", "CKV_K8S_43", "CKV_K8S_15"}
    for notes in (d["metadata"].get("annotations") or {} for d in scenarios["default"].docs):
        for key, value in notes.items():
            if key.startswith("checkov.io/skip"):
                _, reason = value.split("=", 1)
                assert reason and "=" not in reason
