"""The chart's `helm test` hook (templates/tests/check-job.yaml) and the
labels mnistctl relies on (mnistctl/release.py).

The hook is a Job running `python -m mnistctl check`: TensorBoard answers
and, once training has started, the model directory holds a checkpoint. It
reads the model directory read-only and never calls the Kubernetes API, so
the chart renders no RBAC for it and mounts no token. The generic rules
(Pod Security, checkov, NetworkPolicies, failure policy, labels) cover the
hook through the other tests, which iterate over every rendered pod.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mnistctl import cli, exit_codes, release

from .conftest import CHART_DIR, CI_DIR, K8S_DIR, NAMESPACE, RELEASE, REPO_ROOT, SCENARIOS
from .manifests import all_pods, arg_value, by_component, only
from .test_rules import values_of

HOOK = "mnist-train-test"
RBAC_KINDS = ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")


def hook_job(rendering) -> dict:
    return rendering.one("Job", HOOK)


def hook_container(rendering) -> dict:
    return only(hook_job(rendering)["spec"]["template"]["spec"]["containers"], "hook container")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_hook_in_every_scenario(scenarios, scenario):
    rendering = scenarios[scenario]
    job = hook_job(rendering)
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    # Deleted whatever the outcome: test_hook_cleanup.py.
    assert "hook-failed" in annotations["helm.sh/hook-delete-policy"]
    assert job["spec"]["backoffLimit"] == 0
    container = hook_container(rendering)
    assert container["command"] == ["python", "-m", "mnistctl"]
    assert container["args"][0] == "check"
    # The same model dir as the trainer's.
    trainer = only(by_component(rendering.docs, "trainer"), "trainer pod")
    trainer_dir = arg_value(trainer.spec["containers"][0]["args"], "--model-dir")
    assert arg_value(container["args"], "--model-dir") == trainer_dir
    # Its own deadline outlasts the check's timeout.
    timeout = float(arg_value(container["args"], "--timeout-secs"))
    assert job["spec"]["activeDeadlineSeconds"] > timeout
    # The rendered arguments are ones the real command line accepts.
    parsed = cli.build_parser().parse_args(container["args"])
    assert parsed.command == "check" and parsed.model_dir == trainer_dir


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_hook_needs_no_api_access(scenarios, scenario):
    """No Role, binding or extra ServiceAccount; no token in the hook pod."""
    rendering = scenarios[scenario]
    for kind in RBAC_KINDS:
        assert not rendering.find(kind), f"{scenario}: the hook calls no API, so no {kind}"
    assert len(rendering.find("ServiceAccount")) <= 1
    spec = hook_job(rendering)["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    mounts = hook_container(rendering).get("volumeMounts", [])
    assert not any("serviceaccount" in m["mountPath"] for m in mounts)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_hook_reads_storage_read_only_with_the_release_credentials(scenarios, scenario):
    values = values_of(scenario)
    rendering = scenarios[scenario]
    spec = hook_job(rendering)["spec"]["template"]["spec"]
    container = hook_container(rendering)
    volumes = {v["name"]: v for v in spec["volumes"]}
    sa = rendering.find("ServiceAccount")
    if sa:
        assert spec["serviceAccountName"] == sa[0]["metadata"]["name"]
    if values["storage"]["type"] == "pvc":
        claim = only([v for v in volumes.values() if "persistentVolumeClaim" in v], "claim")
        assert claim["persistentVolumeClaim"]["readOnly"] is True
        mount = only([m for m in container["volumeMounts"] if m["name"] == claim["name"]], "mount")
        assert mount["readOnly"] is True
        assert mount["mountPath"] == arg_value(container["args"], "--model-dir")
    else:
        assert arg_value(container["args"], "--model-dir").startswith("gs://")
        env = {e["name"]: e.get("value") for e in container.get("env") or []}
        evaluator = only(by_component(rendering.docs, "evaluator"), "evaluator").spec
        assert spec.get("nodeSelector") == evaluator.get("nodeSelector")  # e.g. Workload Identity nodes
        if values["storage"]["gcs"].get("existingSecret"):
            assert env["GOOGLE_APPLICATION_CREDENTIALS"].startswith("/var/secrets/google/")
        else:
            assert "GOOGLE_APPLICATION_CREDENTIALS" not in env


def test_tensorboard_url_reaches_the_service(default_render):
    """The URL names the TensorBoard Service and port, and the TensorBoard
    NetworkPolicy admits the hook pod on the container port behind it."""
    url = arg_value(hook_container(default_render)["args"], "--tensorboard-url")
    service = default_render.one("Service", "mnist-train-tensorboard")
    port = only(service["spec"]["ports"], "port")
    assert url == f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{port['port']}/"
    deployment = only(by_component(default_render.docs, "tensorboard"), "tensorboard")
    container_port = only([p for p in deployment.spec["containers"][0]["ports"]
                           if p["name"] == port["targetPort"]], "named port")["containerPort"]
    hook_pod = only(by_component(default_render.docs, "test"), "hook pod")
    policy = default_render.one("NetworkPolicy", "mnist-train-tensorboard")
    admitted = [rule for rule in policy["spec"]["ingress"]
                for peer in rule["from"]
                if set(peer) == {"podSelector"}
                and peer["podSelector"]["matchLabels"].items() <= hook_pod.labels.items()
                and {"protocol": "TCP", "port": container_port} in rule["ports"]]
    assert admitted, "the hook pod cannot reach TensorBoard"


@pytest.mark.parametrize("settings,checks_tensorboard", [
    ([], True),
    (["tensorboard.enabled=false"], False),
    (["networkPolicy.tensorboard.allowSameRelease=false"], False),  # it could not get through
    (["networkPolicy.tensorboard.allowSameRelease=false", "networkPolicy.enabled=false"], True),
])
def test_tensorboard_checked_only_when_reachable(renderer, settings, checks_tensorboard):
    rendering = renderer.render(values_files=[CI_DIR / "default-values.yaml"], set_values=settings)
    args = hook_container(rendering)["args"]
    assert (arg_value(args, "--tensorboard-url") is not None) == checks_tensorboard


def test_hook_values(renderer):
    rendering = renderer.render(values_files=[CI_DIR / "default-values.yaml"],
                                set_values=["tests.timeoutSecs=100", "tests.resources.limits.memory=300Mi"])
    job = hook_job(rendering)
    container = hook_container(rendering)
    assert arg_value(container["args"], "--timeout-secs") == "100"
    assert job["spec"]["activeDeadlineSeconds"] == 220
    assert container["resources"]["limits"]["memory"] == "300Mi"
    rendering = renderer.render(values_files=[CI_DIR / "default-values.yaml"],
                                set_values=["tests.enabled=false"])
    assert not rendering.find("Job", HOOK)
    result = renderer.run("template", "t", str(CHART_DIR), "--set", "image.repository=x/y",
                          "--set", "tests.timeoutSecs=0")
    assert result.returncode != 0 and "'/tests/timeoutSecs'" in result.stderr


def test_skip_tests_and_k8s_leave_the_hook_out(renderer):
    result = renderer.run("template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE, "--skip-tests",
                          "--set", "image.repository=ghcr.io/example/mnist-train")
    assert result.returncode == 0, result.stderr
    assert "helm.sh/hook" not in result.stdout and f"name: {HOOK}\n" not in result.stdout
    assert "helm.sh/hook" not in (K8S_DIR / "mnist-train.yaml").read_text()


def test_rendered_hook_command_runs(default_render, tmp_path):
    """The hook's exact command line, with the model dir pointed at an empty
    local directory and no TensorBoard: `python -m mnistctl` starts and
    reports that training has not started."""
    args = list(hook_container(default_render)["args"])
    args[args.index("--model-dir") + 1] = str(tmp_path / "model")
    at = args.index("--tensorboard-url")
    del args[at:at + 2]
    args[args.index("--timeout-secs") + 1] = "0"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, *hook_container(default_render)["command"][1:], *args],
                            capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "skip | training has not started" in result.stdout


# ---------------------------------------------------------------- mnistctl and the chart's labels

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_mnistctl_selectors_match_the_chart(scenarios, scenario):
    """The label selectors `python -m mnistctl` queries with select exactly
    the rendered objects of each component."""
    rendering = scenarios[scenario]
    values = values_of(scenario)

    def selected(labels: dict, component: str | None = None) -> bool:
        query = release.selector(RELEASE, release.DEFAULT_CHART_NAME, component)
        wanted = dict(p.split("=", 1) for p in query.split(","))
        return wanted.items() <= labels.items()

    for pod in all_pods(rendering.docs):
        assert selected(pod.labels), pod.where
        for component in ("trainer", "evaluator", "tensorboard"):
            assert selected(pod.labels, component) == (pod.component == component), pod.where
    trainer_objects = [d for d in rendering.docs if selected(d["metadata"]["labels"], "trainer")
                       and d["kind"] in ("Job", "JobSet", "TFJob")]
    launcher = values["trainer"]["launcher"]
    kinds = {"job": "Job", "jobset": "JobSet", "tfjob": "TFJob"}
    assert [d["kind"] for d in trainer_objects] == [kinds[launcher]]
    if launcher == "jobset":
        assert (release.JOBSET[0], release.JOBSET[1]) == tuple(trainer_objects[0]["apiVersion"].split("/"))
    if launcher == "tfjob":
        assert (release.TFJOB[0], release.TFJOB[1]) == tuple(trainer_objects[0]["apiVersion"].split("/"))
    evaluators = [d for d in rendering.find("Job") if selected(d["metadata"]["labels"], "evaluator")]
    assert len(evaluators) == (1 if values["evaluator"]["enabled"] else 0)
    services = [d for d in rendering.find("Service") if selected(d["metadata"]["labels"], "tensorboard")]
    assert len(services) == (1 if values["tensorboard"]["enabled"] else 0)


def test_mnistctl_knows_the_chart_exit_codes(default_render):
    """The exit codes the pod failure policy acts on are the ones mnistctl explains."""
    rules = default_render.component("Job", "trainer")["spec"]["podFailurePolicy"]["rules"]
    codes = {r["action"]: r["onExitCodes"]["values"] for r in rules if "onExitCodes" in r}
    assert codes == {"Ignore": [42], "FailJob": [2]}
    assert exit_codes.EXIT_MEANINGS[42].startswith("preempted")
    assert exit_codes.EXIT_MEANINGS[2].startswith("configuration or data error")
