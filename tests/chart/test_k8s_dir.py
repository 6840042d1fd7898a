"""k8s/ is the chart rendered with its defaults, byte for byte, plus a
kustomization (regenerate with `bash scripts/render_k8s.sh`)."""

from __future__ import annotations

import subprocess

import yaml

from .conftest import IMAGE_REPOSITORY, K8S_DIR, NAMESPACE, RELEASE, REPO_ROOT

RENDERED = K8S_DIR / "mnist-train.yaml"


def test_k8s_matches_helm_template(renderer):
    """The same command as scripts/render_k8s.sh (without writing)."""
    result = renderer.run("template", RELEASE, str(REPO_ROOT / "charts" / "mnist-train"),
                          "--namespace", NAMESPACE, "--skip-tests",
                          "--set", f"image.repository={IMAGE_REPOSITORY}")
    assert result.returncode == 0, result.stderr
    assert RENDERED.exists(), "k8s/mnist-train.yaml is missing: run bash scripts/render_k8s.sh"
    assert RENDERED.read_text() == result.stdout, \
        "k8s/mnist-train.yaml is stale: run `bash scripts/render_k8s.sh` and commit the result"


def test_render_script_check_mode(helm):
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "render_k8s.sh"), "--check"],
                            check=False, capture_output=True, text=True,
                            env={"HELM": helm, "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_kustomization_lists_the_rendering():
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert "mnist-train.yaml" in kustomization["resources"]
    for resource in kustomization["resources"]:
        assert (K8S_DIR / resource).exists(), resource
    namespace = yaml.safe_load((K8S_DIR / "namespace.yaml").read_text())
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_kustomize_build(kubectl):
    """`kubectl kustomize k8s/` yields the rendered objects plus the Namespace."""
    result = subprocess.run([kubectl, "kustomize", str(K8S_DIR)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    docs = [d for d in yaml.safe_load_all(RENDERED.read_text()) if d]
    def key(d):
        return d["kind"], d["metadata"]["name"]
    assert sorted(map(key, built)) == sorted([("Namespace", NAMESPACE)] + [key(d) for d in docs])
    rendered = {key(d): d for d in docs}
    for doc in built:
        if doc["kind"] != "Namespace":
            assert doc == rendered[key(doc)]
