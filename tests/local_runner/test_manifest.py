"""Pods resolved from the rendered chart the way Kubernetes resolves them (manifest.py)."""

from __future__ import annotations

import copy

import pytest

from scripts.local_runner.manifest import (ClaimPath, ManifestError, PodBuilder, PodRequest, claim_paths,
                                           expand, remote_urls)
from tests.local_runner.fakes import name, one, started_job


def test_worker_pods_resolve_field_refs_and_volumes_like_kubernetes(tmp_path, rendered):
    cluster, job = started_job(tmp_path, rendered["job"])
    pod = cluster.running()[1].pod
    env = pod.container.env
    trainer = name(rendered["job"], "Job", "trainer")
    assert env == {"JOB_COMPLETION_INDEX": "1", "MNIST_NUM_WORKERS": "2",
                   "MNIST_WORKER_HOSTNAME_PREFIX": trainer,
                   "MNIST_WORKER_SERVICE": "mnist-train-workers", "MNIST_WORKER_PORT": "2222"}
    assert pod.hostname == f"{trainer}-1" and pod.subdomain == "mnist-train-workers"
    assert pod.container.command == ["python", "-m", "model"]
    assert pod.container.args[:5] == ["train", "--model", "lenet5", "--model-dir", "/models/mnist-train"]
    mounts = {m.container_path: m for m in pod.container.mounts}
    assert mounts["/models/mnist-train"].host_path == tmp_path / "volumes/mnist-train-models/mnist-train"
    assert not mounts["/models/mnist-train"].read_only
    assert mounts["/tmp"].kind == "emptyDir" and mounts["/tmp"].host_path.parent.parent == pod.pod_dir
    assert pod.container.security_context["readOnlyRootFilesystem"] is True


def test_evaluator_and_tensorboard_mount_the_model_dir_read_only(tmp_path, rendered):
    builder = PodBuilder("mnist-train", tmp_path, rendered["job"].docs)
    expected = (("evaluator", {"/tmp", "/models/mnist-train/eval"}), ("tensorboard", {"/tmp"}))
    for component, writable in expected:
        kind = "Job" if component == "evaluator" else "Deployment"
        template = one(rendered["job"], kind, component)["spec"]["template"]
        pod = builder.build(PodRequest(template=template, name=f"{component}-0", hostname=f"{component}-0",
                                       subdomain=None, owner=f"{kind}/x", index=None, attempt=0,
                                       display=component))
        assert {m.container_path for m in pod.container.mounts if not m.read_only} == writable


def test_unresolvable_references_fail_clearly(tmp_path, rendered):
    template = copy.deepcopy(one(rendered["job"], "Job", "trainer")["spec"]["template"])
    env = template["spec"]["containers"][0]["env"]
    builder = PodBuilder("ns", tmp_path, [])
    request = dict(name="p", hostname="p", subdomain=None, owner="Job/x", index=0, attempt=0, display="p")
    # Without the Job controller's annotation, JOB_COMPLETION_INDEX cannot be resolved.
    with pytest.raises(ManifestError, match="job-completion-index"):
        builder.build(PodRequest(template=template, **request))
    env.append({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}}})
    with pytest.raises(ManifestError, match="status.phase"):
        builder.build(PodRequest(template=template, annotations={
            "batch.kubernetes.io/job-completion-index": "0"}, **request))
    env[-1] = {"name": "X", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "k"}}}
    with pytest.raises(ManifestError, match="Secret 'creds' is not part of the rendered chart"):
        builder.build(PodRequest(template=template, annotations={
            "batch.kubernetes.io/job-completion-index": "0"}, **request))


def test_var_expansion_follows_kubernetes():
    env = {"A": "x", "B": "y"}
    assert expand("$(A)-$(B)/$(C)", env) == "x-y/$(C)"
    assert expand("$$(A) costs $$5", env) == "$(A) costs $5"


def test_a_pod_maps_container_paths_to_the_directories_backing_them(tmp_path, rendered):
    cluster, job = started_job(tmp_path, rendered["job"])
    pod = cluster.running()[0].pod
    model = tmp_path / "volumes/mnist-train-models/mnist-train"
    assert pod.host_path("/models/mnist-train") == model
    assert pod.host_path("/models/mnist-train/eval/x") == model / "eval/x"
    assert pod.host_path("/models/mnist-trainer") is None and pod.host_path("/etc") is None


def test_templates_say_which_claim_directories_they_read_and_write(rendered):
    def paths(component):
        kind = "Deployment" if component == "tensorboard" else "Job"
        return claim_paths(one(rendered["job"], kind, component)["spec"]["template"])
    assert paths("trainer") == ([], [ClaimPath("mnist-train-models", "mnist-train")])
    assert paths("evaluator") == ([ClaimPath("mnist-train-models", "mnist-train")],
                                  [ClaimPath("mnist-train-models", "mnist-train/eval")])
    assert paths("tensorboard") == ([ClaimPath("mnist-train-models", "mnist-train")], [])
    assert ClaimPath("c", "a").overlaps(ClaimPath("c", "a/b"))
    assert ClaimPath("c", "").overlaps(ClaimPath("c", "x"))
    assert not ClaimPath("c", "a").overlaps(ClaimPath("c", "ab"))
    assert not ClaimPath("c", "a").overlaps(ClaimPath("d", "a"))


def test_remote_store_urls_are_found_in_args_and_env():
    template = {"spec": {"containers": [{"name": "c", "command": ["run"],
                                         "args": ["--model-dir", "gs://b/x", "--url", "http://tb:6006/"],
                                         "env": [{"name": "D", "value": "s3://bucket/data"},
                                                 {"name": "F", "value": "file:///tmp/x"}]}]}}
    assert remote_urls(template) == ["gs://b/x", "s3://bucket/data"]
    assert remote_urls({"spec": {"containers": [{"name": "c", "args": ["/models/x"]}]}}) == []
