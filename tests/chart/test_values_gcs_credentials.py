"""storage.type=gcs renders only with exactly one source of credentials.

Workload Identity (storage.gcs.workloadIdentity.gcpServiceAccount, which the
chart puts on the ServiceAccount it creates; an iam.gke.io/gcp-service-account
annotation in serviceAccount.annotations; or storage.gcs.workloadIdentity.enabled
for a ServiceAccount that has access by other means) or a key file Secret
(storage.gcs.existingSecret). Neither would fail every pod at its first read
of the bucket; both would let the key file silently win.
"""

from __future__ import annotations

import pytest
import yaml

from .conftest import CHART_DIR, CI_DIR
from .manifests import all_pods, containers, env_values

GSA = "mnist-train@example-project.iam.gserviceaccount.com"
GCS = ["storage.type=gcs", "storage.gcs.uri=gs://example-bucket/mnist"]
WI_ANNOTATION = "iam.gke.io/gcp-service-account"


def template(renderer, *set_values: str):
    args = ["template", "t", str(CHART_DIR), "-f", str(CI_DIR / "default-values.yaml")]
    for s in [*GCS, *set_values]:
        args += ["--set", s]
    return renderer.run(*args)


def docs_of(result) -> list[dict]:
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_neither_says_how_to_set_either(renderer):
    result = template(renderer)
    assert result.returncode != 0
    for key in ("storage.type=gcs needs credentials", "storage.gcs.workloadIdentity.gcpServiceAccount=",
                "storage.gcs.workloadIdentity.enabled=true", "storage.gcs.existingSecret="):
        assert key in result.stderr, result.stderr


@pytest.mark.parametrize("workload_identity", [
    f"storage.gcs.workloadIdentity.gcpServiceAccount={GSA}",
    "storage.gcs.workloadIdentity.enabled=true",
    f"serviceAccount.annotations.iam\\.gke\\.io/gcp-service-account={GSA}",
])
def test_both_are_refused(renderer, workload_identity):
    result = template(renderer, workload_identity, "storage.gcs.existingSecret=gcp-key")
    assert result.returncode != 0
    assert "two sources of credentials" in result.stderr, result.stderr
    assert 'storage.gcs.existingSecret="gcp-key"' in result.stderr


def test_gcp_service_account_needs_the_charts_service_account(renderer):
    """The chart annotates only a ServiceAccount it creates: with
    serviceAccount.create=false the annotation would be silently lost."""
    result = template(renderer, f"storage.gcs.workloadIdentity.gcpServiceAccount={GSA}",
                      "serviceAccount.create=false", "serviceAccount.name=trainer")
    assert result.returncode != 0
    assert "serviceAccount.create is false" in result.stderr
    assert "storage.gcs.workloadIdentity.enabled=true" in result.stderr


def test_workload_identity_by_the_charts_annotation(renderer):
    docs = docs_of(template(renderer, f"storage.gcs.workloadIdentity.gcpServiceAccount={GSA}"))
    (sa,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert sa["metadata"]["annotations"][WI_ANNOTATION] == GSA
    for pod in all_pods(docs):
        assert pod.spec["serviceAccountName"] == sa["metadata"]["name"], pod.where
        for container in containers(pod.spec):
            assert "GOOGLE_APPLICATION_CREDENTIALS" not in env_values(container), pod.where


def test_workload_identity_of_your_own_service_account(renderer):
    docs = docs_of(template(renderer, "storage.gcs.workloadIdentity.enabled=true",
                            "serviceAccount.create=false", "serviceAccount.name=trainer"))
    assert not [d for d in docs if d["kind"] == "ServiceAccount"]
    for pod in all_pods(docs):
        assert pod.spec["serviceAccountName"] == "trainer", pod.where
        assert not [v for v in pod.spec["volumes"] if "secret" in v], pod.where


def test_workload_identity_by_your_annotation(renderer):
    docs = docs_of(template(renderer, f"serviceAccount.annotations.iam\\.gke\\.io/gcp-service-account={GSA}"))
    (sa,) = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert sa["metadata"]["annotations"][WI_ANNOTATION] == GSA


def test_key_file(renderer):
    docs = docs_of(template(renderer, "storage.gcs.existingSecret=gcp-key"))
    for pod in all_pods(docs):
        (volume,) = [v for v in pod.spec["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == "gcp-key", pod.where
        for container in containers(pod.spec):
            assert env_values(container)["GOOGLE_APPLICATION_CREDENTIALS"].endswith("/key.json"), pod.where


def test_gcs_settings_do_not_matter_on_a_claim(renderer):
    result = renderer.run("template", "t", str(CHART_DIR), "-f", str(CI_DIR / "default-values.yaml"),
                          "--set", f"storage.gcs.workloadIdentity.gcpServiceAccount={GSA}",
                          "--set", "storage.gcs.existingSecret=gcp-key")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("scenario", ["gcs", "gcs-keyfile"])
def test_gcs_scenarios_have_one_source(scenarios, scenario):
    values = yaml.safe_load((CI_DIR / f"{scenario}-values.yaml").read_text())
    gcs = values["storage"]["gcs"]
    assert bool(gcs.get("existingSecret")) != bool(gcs.get("workloadIdentity", {}).get("gcpServiceAccount"))
    assert scenarios[scenario].docs
