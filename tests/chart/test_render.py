"""The chart lints, every ci/ scenario renders, and everything it renders is
valid: built-in kinds by kubernetes-validate --strict (Kubernetes 1.31 and the
newest schema it has), JobSet and TFJob by their CRDs' schemas."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import CHART_DIR, CI_DIR, SCENARIOS

CUSTOM_KINDS = {("jobset.x-k8s.io/v1alpha2", "JobSet"), ("kubeflow.org/v1", "TFJob")}
OLDEST_KUBERNETES = "1.31"  # Chart.yaml kubeVersion


def test_scenarios_cover_the_issue():
    assert {"default", "gpu", "gcs", "jobset", "tfjob", "trainer-only"} <= set(SCENARIOS)


def test_chart_yaml():
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["kubeVersion"].startswith(">=1.31")
    assert chart["appVersion"] == "0.1.0"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(renderer, scenario):
    result = renderer.run("lint", "--strict", str(CHART_DIR),
                          "-f", str(CI_DIR / f"{scenario}-values.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_renders(scenarios, scenario):
    docs = scenarios[scenario].docs
    assert docs, f"{scenario} rendered nothing"
    for doc in docs:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc


def test_kube_version_constraint_enforced(renderer):
    """Chart.yaml's kubeVersion refuses clusters older than 1.31."""
    result = renderer.run("template", "t", str(CHART_DIR), "--set", "image.repository=x/y",
                          "--kube-version", "1.30.0")
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr or "compatible" in result.stderr, result.stderr


def test_one_resource_per_template_file(scenarios):
    templates = sorted(p.name for p in (CHART_DIR / "templates").iterdir()
                       if p.suffix == ".yaml")
    assert templates, "no templates"
    seen: dict[str, set] = {}
    for rendering in scenarios.values():
        sources = re.findall(r"^# Source: mnist-train/templates/(\S+)$", rendering.text, re.MULTILINE)
        counts = {s: sources.count(s) for s in sources}
        for source, n in counts.items():
            assert n == 1, f"{source} rendered {n} resources"
        for doc_text in rendering.text.split("\n---\n"):
            m = re.search(r"^# Source: mnist-train/templates/(\S+)$", doc_text, re.MULTILINE)
            if m:
                doc = yaml.safe_load(doc_text)
                seen.setdefault(m.group(1), set()).add(doc["kind"])
    for source, kinds in seen.items():
        assert len(kinds) == 1, f"{source} renders several kinds: {kinds}"
    # validate.yaml only runs the value checks of _validate.tpl: it renders no object.
    unused = set(templates) - set(seen) - {"validate.yaml"}
    assert not unused, f"templates never rendered by any ci/ scenario: {unused}"


def test_standard_labels_everywhere(scenarios):
    for name, rendering in scenarios.items():
        for doc in rendering.docs:
            labels = doc["metadata"].get("labels") or {}
            for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                        "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
                        "helm.sh/chart"):
                assert key in labels, f"{name}: {doc['kind']}/{doc['metadata']['name']} lacks {key}"
            assert doc["metadata"].get("namespace") == "mnist-train"


# ---------------------------------------------------------------- validation

@pytest.fixture(scope="session")
def newest_kubernetes(tools_python) -> str:
    out = subprocess.run(
        [tools_python, "-c", "import kubernetes_validate.utils as u; print(u.latest_version())"],
        check=True, capture_output=True, text=True)
    return ".".join(out.stdout.strip().split(".")[:2])


def run_kubernetes_validate(tool: str, version: str, files: list) -> subprocess.CompletedProcess:
    return subprocess.run([tool, "--strict", "-k", version, *map(str, files)],
                          check=False, capture_output=True, text=True)


@pytest.mark.parametrize("which", ["oldest", "newest"])
def test_kubernetes_validate_strict(scenarios, kubernetes_validate, newest_kubernetes, which):
    version = OLDEST_KUBERNETES if which == "oldest" else newest_kubernetes
    files = [r.path for r in scenarios.values()]
    result = run_kubernetes_validate(kubernetes_validate, version, files)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "ERROR" not in output, output
    builtin = sum(1 for r in scenarios.values() for d in r.docs
                  if (d["apiVersion"], d["kind"]) not in CUSTOM_KINDS)
    passed = len(re.findall(r"passed for resource .* against version", output))
    assert passed == builtin, f"{passed} of {builtin} built-in resources passed:\n{output}"
    # What it cannot check is exactly the custom resources (checked below).
    for line in output.splitlines():
        if "Couldn't find schema" in line:
            assert re.search(r"kind (JobSet|TFJob) ", line), line


def test_kubernetes_validate_is_strict(default_render, kubernetes_validate, tmp_path):
    """An unknown field in the trainer's pod template is rejected (not a no-op)."""
    job = copy.deepcopy(default_render.component("Job", "trainer"))
    job["spec"]["template"]["spec"]["containers"][0]["bogusField"] = True
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(job))
    result = run_kubernetes_validate(kubernetes_validate, OLDEST_KUBERNETES, [bad])
    assert result.returncode != 0, result.stdout


def run_crd_validate(tools_python, crd_dir, files) -> tuple[int, dict]:
    script = Path(__file__).with_name("crd_validate.py")
    result = subprocess.run([tools_python, str(script), str(crd_dir), *map(str, files)],
                            check=False, capture_output=True, text=True)
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_custom_resources_match_crd_schemas(scenarios, tools_python, crd_dir):
    files = [r.path for r in scenarios.values()]
    rc, report = run_crd_validate(tools_python, crd_dir, files)
    assert rc == 0 and not report["errors"], json.dumps(report["errors"], indent=1)
    custom = sum(1 for r in scenarios.values() for d in r.docs
                 if (d["apiVersion"], d["kind"]) in CUSTOM_KINDS)
    assert custom >= 2, "expected the jobset and tfjob scenarios to render custom resources"
    assert len(report["validated"]) == custom


def test_crd_validation_is_strict(scenarios, tools_python, crd_dir, tmp_path):
    """Unknown or ill-typed fields in a JobSet/TFJob are reported."""
    jobset = copy.deepcopy(scenarios["jobset"].one("JobSet"))
    jobset["spec"]["failurePolicy"]["maxRestartz"] = 1
    tfjob = copy.deepcopy(scenarios["tfjob"].one("TFJob"))
    tfjob["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] = "two"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump_all([jobset, tfjob]))
    rc, report = run_crd_validate(tools_python, crd_dir, [bad])
    assert rc == 1
    paths = {e[3] for e in report["errors"]}
    assert any("failurePolicy" in p or "maxRestartz" in e[4] for e in report["errors"] for p in [e[3]])
    assert "spec/tfReplicaSpecs/Worker/replicas" in paths
