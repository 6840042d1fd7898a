"""Rules that schema validation cannot see, checked on the rendered objects of
every ci/ scenario (and of a few --set variations)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from model import cluster

from .conftest import CI_DIR, IMAGE_REPOSITORY, NAMESPACE, RELEASE, SCENARIOS, Rendering
from .manifests import (
    COMPONENT,
    all_pods,
    arg_value,
    by_component,
    containers,
    env_values,
    job_specs,
    only,
)

CONFIG_ERROR_EXIT = 2  # model/errors.py EXIT_CONFIG_ERROR
PREEMPTED_EXIT = 42  # model/errors.py EXIT_PREEMPTED
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def values_of(scenario: str) -> dict:
    """The scenario's values merged over the chart defaults (shallow enough here)."""
    defaults = yaml.safe_load((CI_DIR.parent / "values.yaml").read_text())
    overrides = yaml.safe_load((CI_DIR / f"{scenario}-values.yaml").read_text()) or {}

    def merge(base, over):
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    return merge(defaults, overrides)


def trainer_container(pod) -> dict:
    return only([c for c in pod.spec["containers"] if c["name"] in ("trainer", "tensorflow")],
                "trainer container")


# ---------------------------------------------------------------- Job failure rules

def all_job_specs(rendering):
    return [(d, s) for d in rendering.docs for s in job_specs(d)]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_failure_policies_only_where_allowed(scenarios, scenario):
    """podFailurePolicy needs restartPolicy Never; backoffLimitPerIndex needs
    Indexed completion (and Never); podFailurePolicy needs
    podReplacementPolicy Failed."""
    for doc, spec in all_job_specs(scenarios[scenario]):
        where = f"{scenario}: {doc['kind']}/{doc['metadata']['name']}"
        restart = spec["template"]["spec"].get("restartPolicy")
        if "podFailurePolicy" in spec:
            assert restart == "Never", where
            assert spec.get("podReplacementPolicy") == "Failed", where
        if "backoffLimitPerIndex" in spec or "maxFailedIndexes" in spec:
            assert spec.get("completionMode") == "Indexed", where
            assert restart == "Never", where
            assert "backoffLimit" not in spec, f"{where}: backoffLimit with backoffLimitPerIndex"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pod_failure_policy_exit_codes(scenarios, scenario):
    """Every Job (trainer, evaluator, JobSet's) ignores disruptions and the
    preemption exit code, and fails at once on the configuration-error code."""
    specs = all_job_specs(scenarios[scenario])
    assert specs or scenario == "tfjob"
    for doc, spec in specs:
        where = f"{scenario}: {doc['kind']}/{doc['metadata']['name']}"
        rules = spec["podFailurePolicy"]["rules"]
        container = spec["template"]["spec"]["containers"][0]["name"]
        disruption = [r for r in rules if r["action"] == "Ignore" and "onPodConditions" in r]
        assert disruption and disruption[0]["onPodConditions"] == [
            {"type": "DisruptionTarget", "status": "True"}], where
        by_action = {}
        for r in rules:
            if "onExitCodes" in r:
                codes = r["onExitCodes"]
                assert codes["operator"] == "In" and codes["containerName"] == container, where
                by_action.setdefault(r["action"], set()).update(codes["values"])
        assert by_action.get("Ignore") == {PREEMPTED_EXIT}, where
        assert by_action.get("FailJob") == {CONFIG_ERROR_EXIT}, where
        assert spec.get("activeDeadlineSeconds", 1) > 0


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_graceful_termination_outlasts_a_checkpoint(scenarios, scenario):
    for pod in by_component(scenarios[scenario].docs, "trainer"):
        assert pod.spec["terminationGracePeriodSeconds"] > 30, pod.where


def test_indexed_job_failure_settings(default_render):
    job = default_render.component("Job", "trainer")["spec"]
    assert job["completionMode"] == "Indexed"
    assert job["completions"] == job["parallelism"] == 2
    assert job["backoffLimitPerIndex"] >= 1 and job["maxFailedIndexes"] == 0
    assert job["ttlSecondsAfterFinished"] > 0 and job["activeDeadlineSeconds"] > 0


def test_jobset_restarts_the_group(scenarios):
    jobset = scenarios["jobset"].one("JobSet")["spec"]
    assert jobset["failurePolicy"]["maxRestarts"] == 5
    assert jobset["failurePolicy"]["restartStrategy"] == "Recreate"
    # A configuration error and the deadline fail the JobSet; anything else restarts it.
    rules = {r["name"]: r for r in jobset["failurePolicy"]["rules"]}
    assert {name: (r["action"], r["onJobFailureReasons"]) for name, r in rules.items()} == {
        "configError": ("FailJobSet", ["PodFailurePolicy"]),
        "deadlineExceeded": ("FailJobSet", ["DeadlineExceeded"])}
    worker = only(jobset["replicatedJobs"], "replicated job")
    assert jobset["successPolicy"] == {"operator": "All", "targetReplicatedJobs": [worker["name"]]}
    assert worker["template"]["spec"]["backoffLimit"] == 0


def test_tfjob_shape(scenarios):
    tfjob = scenarios["tfjob"].one("TFJob")["spec"]
    assert set(tfjob["tfReplicaSpecs"]) == {"Worker"}
    worker = tfjob["tfReplicaSpecs"]["Worker"]
    assert worker["restartPolicy"] == "OnFailure"
    assert tfjob["runPolicy"]["backoffLimit"] == 4
    names = [c["name"] for c in worker["template"]["spec"]["containers"]]
    assert names == ["tensorflow"], "the training operator requires the container `tensorflow`"
    ports = worker["template"]["spec"]["containers"][0]["ports"]
    assert ports == [{"name": "tfjob-port", "containerPort": 2222, "protocol": "TCP"}]


# ---------------------------------------------------------------- worker addresses

def worker_addresses(rendering) -> tuple[list[str], dict]:
    """The addresses the training library computes from a trainer pod's env
    (model.cluster.worker_addresses, the one function for the scheme), checked
    against what Kubernetes will name the pods; returns them and the pod's env."""
    docs = rendering.docs
    pod = only(by_component(docs, "trainer"), "trainer pod template")
    env = env_values(trainer_container(pod))
    count = int(env[cluster.ENV_NUM_WORKERS])
    if pod.owner["kind"] == "TFJob":
        return [], env
    prefix, service = env[cluster.ENV_HOSTNAME_PREFIX], env[cluster.ENV_SERVICE]
    port = int(env.get(cluster.ENV_PORT) or cluster.DEFAULT_WORKER_PORT)
    index_env = only([e for e in trainer_container(pod)["env"] if e["name"] == cluster.ENV_INDEX],
                     cluster.ENV_INDEX)
    assert index_env["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"

    if pod.owner["kind"] == "Job":
        job = pod.owner
        # An Indexed Job's pod i has hostname <job>-<i> and the template's subdomain
        # (KEP-2214, kubernetes/enhancements keps/sig-apps/2214-indexed-job, "Pod detail").
        hostnames = [f"{job['metadata']['name']}-{i}" for i in range(job["spec"]["completions"])]
        subdomain = pod.spec["subdomain"]
        svc = rendering.one("Service", subdomain)
        assert svc["spec"]["clusterIP"] == "None", "the workers' Service must be headless"
        assert svc["spec"]["publishNotReadyAddresses"] is True
        selector = svc["spec"]["selector"]
        assert selector.items() <= pod.labels.items(), "the Service must select the worker pods"
        svc_ports = {p["port"] for p in svc["spec"]["ports"]}
        assert port in svc_ports
        # No other pod of the release is selected by the workers' Service.
        for other in all_pods(docs):
            if other.template is not pod.template:
                assert not selector.items() <= other.labels.items(), other.where
    else:  # JobSet: pod i of replicated job R (job index 0) is <jobset>-<R>-0-<i>.<subdomain>
        jobset = pod.owner
        rjob = only(jobset["spec"]["replicatedJobs"], "replicated job")
        assert rjob["replicas"] == 1
        assert jobset["spec"]["network"]["enableDNSHostnames"] is True
        subdomain = jobset["spec"]["network"]["subdomain"]
        hostnames = [f"{jobset['metadata']['name']}-{rjob['name']}-0-{i}"
                     for i in range(rjob["template"]["spec"]["completions"])]
    assert service == subdomain, f"{cluster.ENV_SERVICE} must be the pods' subdomain"
    library = cluster.worker_addresses(prefix, service, port, count)
    kubernetes = [f"{h}.{subdomain}:{port}" for h in hostnames]
    assert library == kubernetes, \
        f"the library would dial {library}, but Kubernetes names the workers {kubernetes}"
    for host in hostnames + [subdomain]:
        assert DNS_LABEL.match(host), f"{host} is not a DNS label"
    container_ports = {p["containerPort"] for p in trainer_container(pod)["ports"]}
    assert port in container_ports
    return library, env


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_worker_dns_and_count_match_values(scenarios, scenario):
    values = values_of(scenario)
    rendering = scenarios[scenario]
    addresses, env = worker_addresses(rendering)
    workers = values["trainer"]["workers"]
    assert int(env["MNIST_NUM_WORKERS"]) == workers
    pod = only(by_component(rendering.docs, "trainer"), "trainer pod template")
    if pod.owner["kind"] == "TFJob":
        assert pod.owner["spec"]["tfReplicaSpecs"]["Worker"]["replicas"] == workers
        assert not {k for k in env if k.startswith("MNIST_WORKER_")}, "TF_CONFIG comes from the operator"
    else:
        assert len(addresses) == workers
        for spec in job_specs(pod.owner):
            assert spec["completions"] == spec["parallelism"] == workers
            assert spec["completionMode"] == "Indexed"


@pytest.mark.parametrize("launcher,workers", [("job", 7), ("jobset", 5), ("job", 1)])
def test_worker_count_follows_values(renderer, launcher, workers):
    rendering = renderer.render(
        values_files=[CI_DIR / "default-values.yaml"],
        set_values=[f"trainer.launcher={launcher}", f"trainer.workers={workers}"])
    addresses, env = worker_addresses(rendering)
    assert len(addresses) == workers == int(env["MNIST_NUM_WORKERS"])


LONG_RELEASE = "a-very-long-release-name-for-training-mnist-on-k8s-xyz"[:53]


def test_long_release_names_keep_dns_labels(renderer):
    rendering = renderer.render(values_files=[CI_DIR / "default-values.yaml"],
                                set_values=["trainer.launcher=jobset"],
                                release=LONG_RELEASE)
    worker_addresses(rendering)
    rendering = renderer.render(values_files=[CI_DIR / "default-values.yaml"],
                                release=LONG_RELEASE)
    worker_addresses(rendering)


# The chart's definition of MNIST_WORKER_HOSTNAME_PREFIX, and a wrong one per launcher.
PREFIX_HELPER = re.compile(r'{{- define "mnist-train.workerHostnamePrefix" -}}.*?\n{{- end }}\n{{- end }}',
                           re.DOTALL)
WRONG_PREFIXES = {
    # JobSet pods are <jobset>-<rjob>-<job index>-<i>: forgetting the job index.
    "jobset": '{{- printf "%s-%s" (include "mnist-train.trainerName" .) '
              '(include "mnist-train.jobsetReplicatedJob" .) }}',
    # Indexed Job pods are <job>-<i>: a prefix that is not the Job's name.
    "job": '{{- printf "%s-worker" (include "mnist-train.trainerName" .) }}',
}


@pytest.mark.parametrize("launcher", sorted(WRONG_PREFIXES))
def test_worker_address_check_fails_on_a_wrong_prefix(helm, tmp_path, launcher):
    """worker_addresses() holds the chart's template against the library: a copy
    of the chart whose _helpers.tpl derives another hostname prefix is caught."""
    chart = tmp_path / "mnist-train"
    shutil.copytree(CI_DIR.parent, chart)
    helpers = chart / "templates" / "_helpers.tpl"
    text, found = PREFIX_HELPER.subn(
        '{{- define "mnist-train.workerHostnamePrefix" -}}\n' + WRONG_PREFIXES[launcher] + "\n{{- end }}",
        helpers.read_text())
    assert found == 1, "mnist-train.workerHostnamePrefix not found in _helpers.tpl"
    helpers.write_text(text)
    result = subprocess.run([helm, "template", RELEASE, str(chart), "--namespace", NAMESPACE,
                             "-f", str(CI_DIR / "default-values.yaml"),
                             "--set", f"trainer.launcher={launcher}"],
                            check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rendering = Rendering(result.stdout, chart, [d for d in yaml.safe_load_all(result.stdout) if d])
    with pytest.raises(AssertionError, match="Kubernetes names the workers"):
        worker_addresses(rendering)


# ---------------------------------------------------------------- image and model dir

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_image_and_model_dir_everywhere(scenarios, scenario):
    values = values_of(scenario)
    rendering = scenarios[scenario]
    image = values["image"]
    expected = (f"{image['repository']}@{image['digest']}" if image.get("digest")
                else f"{image['repository']}:{image.get('tag') or '0.1.0'}")
    images = {c["image"] for p in all_pods(rendering.docs) for c in containers(p.spec)}
    assert images == {expected}
    assert not any(i.endswith(":latest") for i in images)

    dirs = {}
    for pod in all_pods(rendering.docs):
        for c in pod.spec["containers"]:
            args = c["args"]
            if pod.component == "tensorboard":
                dirs["tensorboard"] = arg_value(args, "--logdir")
            else:
                dirs[pod.component] = arg_value(args, "--model-dir")
                if pod.component == "evaluator":
                    assert arg_value(args, "--eval-dir") == dirs["evaluator"] + "/eval"
    storage = values["storage"]
    name = storage.get("modelDirName") or "mnist-train"
    if storage["type"] == "gcs":
        model_dir = storage["gcs"]["uri"].rstrip("/") + "/" + name
        assert model_dir.startswith("gs://")
    else:
        model_dir = storage["mountPath"] + "/" + name
    assert set(dirs.values()) == {model_dir}, dirs
    expected_components = {"trainer"} | {c for c in ("evaluator", "tensorboard")
                                         if values[c]["enabled"]}
    if values["tests"]["enabled"]:  # the `helm test` hook checks the same model dir
        expected_components.add("test")
    assert set(dirs) == expected_components


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_commands_fully_in_manifest(scenarios, scenario):
    """Every container names its command and args (the local runner and
    `kubectl` users see exactly what runs; nothing depends on ENTRYPOINT)."""
    for pod in all_pods(scenarios[scenario].docs):
        for c in containers(pod.spec):
            assert c.get("command"), f"{pod.where}/{c['name']}"
            assert c.get("args"), f"{pod.where}/{c['name']}"
            assert all(isinstance(a, str) for a in c["command"] + c["args"])
            for e in c.get("env") or []:
                assert "value" in e or "fieldRef" in (e.get("valueFrom") or {}), e
            assert "envFrom" not in c


def test_training_flags(scenarios):
    trainer = trainer_container(only(by_component(scenarios["gpu"].docs, "trainer"), "trainer"))
    args = trainer["args"]
    assert args[0] == "train" and trainer["command"] == ["python", "-m", "model"]
    assert arg_value(args, "--model") == "lenet5"
    assert arg_value(args, "--batch-size") == "1024"
    assert arg_value(args, "--max-steps") == "1000"
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == 1
    default = trainer_container(only(by_component(scenarios["default"].docs, "trainer"), "t"))
    assert arg_value(default["args"], "--max-steps") is None  # the preset's
    assert arg_value(default["args"], "--batch-size") == "100"
    assert arg_value(default["args"], "--all-reduce-dtype") == "float32"
    assert arg_value(default["args"], "--gradient-exchange") == "auto"
    assert arg_value(default["args"], "--compute-dtype") == "auto"  # model/precision.py
    assert "nvidia.com/gpu" not in default["resources"]["limits"]
    evaluator = only(by_component(scenarios["tfjob"].docs, "evaluator"), "evaluator").spec
    assert evaluator["containers"][0]["args"][:3] == ["evaluate", "--model", "mlp"]
    # The evaluator knows the step training runs to: an older, lower completion marker (a run
    # that `helm upgrade --set training.maxSteps=<more>` extends) does not end its evaluation.
    for scenario, max_steps in (("gpu", "1000"), ("default", None)):
        evaluator = only(by_component(scenarios[scenario].docs, "evaluator"), "evaluator").spec
        assert arg_value(evaluator["containers"][0]["args"], "--max-steps") == max_steps, scenario


# ---------------------------------------------------------------- storage

def storage_volume_names(pod_spec) -> set[str]:
    return {v["name"] for v in pod_spec.get("volumes") or []
            if not ({"emptyDir", "secret", "configMap", "downwardAPI", "projected"} & set(v))}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_only_the_trainer_writes_the_model_dir(scenarios, scenario):
    """Only the trainer mounts storage writable; the evaluator writes only its
    eval subPath (mounted at its --eval-dir); TensorBoard reads."""
    values = values_of(scenario)
    name = values["storage"].get("modelDirName") or "mnist-train"
    pods = all_pods(scenarios[scenario].docs)
    for pod in pods:
        storage = storage_volume_names(pod.spec)
        volumes = {v["name"]: v for v in pod.spec.get("volumes") or []}
        for c in containers(pod.spec):
            for m in c.get("volumeMounts") or []:
                if m["name"] not in storage:
                    if "secret" in volumes[m["name"]]:
                        assert m.get("readOnly") is True, f"{pod.where}: secrets mount read-only"
                    continue
                claim_ro = volumes[m["name"]]["persistentVolumeClaim"].get("readOnly", False)
                writable = not m.get("readOnly", False) and not claim_ro
                # Every pod sees only this release's directory of the claim.
                assert m.get("subPath", "").split("/")[0] == name, f"{pod.where}: {m}"
                if not writable:
                    continue
                if pod.component == "trainer":
                    assert m["subPath"] == name
                elif pod.component == "evaluator":
                    eval_dir = arg_value(c["args"], "--eval-dir")
                    assert m["subPath"] == f"{name}/eval", f"{pod.where}: writes {m}"
                    assert m["mountPath"] == eval_dir
                else:
                    pytest.fail(f"{pod.where} mounts {m['name']} writable")
        if values["storage"]["type"] == "gcs":
            assert not storage, f"{pod.where}: no claim on gcs"
    trainers = [p for p in pods if p.component == "trainer"]
    if values["storage"]["type"] == "pvc":
        for pod in trainers:
            mounts = trainer_container(pod)["volumeMounts"]
            assert any(m["name"] in storage_volume_names(pod.spec) and not m.get("readOnly")
                       for m in mounts), "the trainer must write the model dir"


def test_the_writability_rule_catches_a_writable_reader(default_render):
    """The rule above fails if TensorBoard's mount were writable."""
    import copy
    from types import SimpleNamespace

    docs = copy.deepcopy(default_render.docs)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][1]["readOnly"] = False
    deployment["spec"]["template"]["spec"]["volumes"][1]["persistentVolumeClaim"]["readOnly"] = False
    with pytest.raises(pytest.fail.Exception):
        test_only_the_trainer_writes_the_model_dir(
            {"default": SimpleNamespace(docs=docs)}, "default")


def test_pvc_and_existing_claim(scenarios):
    pvc = scenarios["default"].one("PersistentVolumeClaim", "mnist-train-models")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    gpu_pvc = scenarios["gpu"].one("PersistentVolumeClaim")
    assert gpu_pvc["spec"]["storageClassName"] == "standard-rwx"
    shared = scenarios["trainer-only"]
    assert not shared.find("PersistentVolumeClaim")
    pod = only(by_component(shared.docs, "trainer"), "trainer")
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod.spec["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {"shared-models"}


SECRETISH = re.compile(r"(?i)(key|token|secret|passw|credential|auth)")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_credential_in_environment(scenarios, scenario):
    """No env var comes from a Secret, and an env var named like a credential
    only holds the path of a file in a mounted Secret volume."""
    for pod in all_pods(scenarios[scenario].docs):
        secret_volumes = {v["name"] for v in pod.spec.get("volumes") or [] if "secret" in v}
        for c in containers(pod.spec):
            assert "envFrom" not in c
            secret_dirs = [m["mountPath"] for m in c.get("volumeMounts") or []
                           if m["name"] in secret_volumes]
            for e in c.get("env") or []:
                assert "secretKeyRef" not in (e.get("valueFrom") or {}), f"{pod.where}: {e}"
                value = e.get("value") or ""
                assert "PRIVATE KEY" not in value and "private_key" not in value
                if SECRETISH.search(e["name"]):
                    assert any(value.startswith(d.rstrip("/") + "/") for d in secret_dirs), \
                        f"{pod.where}/{c['name']}: {e['name']} is not a path in a mounted Secret"


def test_gcs_credentials(scenarios):
    wi = scenarios["gcs"]
    sa = wi.one("ServiceAccount")
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == \
        "mnist-train@example-project.iam.gserviceaccount.com"
    for pod in all_pods(wi.docs):
        assert pod.spec["serviceAccountName"] == sa["metadata"]["name"]
        assert "GOOGLE_APPLICATION_CREDENTIALS" not in env_values(pod.spec["containers"][0])
    keyfile = scenarios["gcs-keyfile"]
    for pod in all_pods(keyfile.docs):
        env = env_values(pod.spec["containers"][0])
        assert env["GOOGLE_APPLICATION_CREDENTIALS"] == "/var/secrets/google/key.json"
        secret = only([v for v in pod.spec["volumes"] if "secret" in v], "secret volume")
        assert secret["secret"]["secretName"] == "mnist-train-gcp-key"


# ---------------------------------------------------------------- services, network, scheduling

@pytest.mark.parametrize("scenario", SCENARIOS)
def test_tensorboard_service_is_cluster_ip(scenarios, scenario):
    values = values_of(scenario)
    services = [s for s in scenarios[scenario].find("Service")
                if s["metadata"]["labels"].get("app.kubernetes.io/component") == "tensorboard"]
    if not values["tensorboard"]["enabled"]:
        assert not services and not by_component(scenarios[scenario].docs, "tensorboard")
        return
    svc = only(services, "TensorBoard Service")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"][0]["port"] == 6006
    deployment = only(by_component(scenarios[scenario].docs, "tensorboard"), "TensorBoard")
    assert svc["spec"]["selector"].items() <= deployment.labels.items()
    c = deployment.spec["containers"][0]
    assert c["command"] == ["tensorboard"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["port"] == "http"


def test_tensorboard_service_type_only_when_asked(renderer):
    # With NetworkPolicies on, a LoadBalancer needs an outside peer (test_tensorboard_exposure.py).
    rendering = renderer.render(values_files=[CI_DIR / "default-values.yaml"],
                                set_values=["tensorboard.service.type=LoadBalancer",
                                            "networkPolicy.tensorboard.from[0].ipBlock.cidr=203.0.113.0/24"])
    assert rendering.one("Service", "mnist-train-tensorboard")["spec"]["type"] == "LoadBalancer"


def test_ingress_off_by_default_and_on_when_asked(scenarios):
    assert not scenarios["default"].find("Ingress")
    ingress = scenarios["ingress"].one("Ingress")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "mnist-train-tensorboard", "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["hosts"] == ["tensorboard.example.com"]


def selected(policy, pod) -> bool:
    return policy["spec"]["podSelector"]["matchLabels"].items() <= pod.labels.items()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_network_policies(scenarios, scenario):
    """Every pod has ingress limited; only workers reach the worker port;
    TensorBoard is reachable only from the release (and configured peers)."""
    values = values_of(scenario)
    docs = scenarios[scenario].docs
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    for pod in all_pods(docs):
        mine = [p for p in policies if selected(p, pod)]
        assert mine and all("Ingress" in p["spec"]["policyTypes"] for p in mine), pod.where
        allowed = [rule for p in mine for rule in p["spec"].get("ingress") or []]
        if pod.component == "trainer":
            assert len(allowed) == 1
            peers = allowed[0]["from"]
            assert len(peers) == 1 and set(peers[0]) == {"podSelector"}
            assert peers[0]["podSelector"]["matchLabels"].items() <= pod.labels.items()
            assert peers[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "trainer"
            assert allowed[0]["ports"] == [{"protocol": "TCP", "port": values["trainer"]["port"]}]
        elif pod.component == "tensorboard":
            assert len(allowed) == 1
            assert allowed[0]["ports"] == [{"protocol": "TCP", "port": 6006}]
            for peer in allowed[0]["from"]:
                assert peer  # never an empty peer (= everyone)
                if set(peer) == {"podSelector"}:
                    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "mnist-train"
        else:
            assert not allowed, f"{pod.where} serves nothing"


def test_network_policies_can_be_disabled(renderer):
    rendering = renderer.render(values_files=[CI_DIR / "default-values.yaml"],
                                set_values=["networkPolicy.enabled=false"])
    assert not rendering.find("NetworkPolicy")


def test_kueue_and_scheduler(scenarios, renderer):
    gpu = scenarios["gpu"]
    for component in ("trainer", "evaluator"):
        labels = gpu.component("Job", component)["metadata"]["labels"]
        assert labels["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    trainer = only(by_component(gpu.docs, "trainer"), "trainer")
    assert trainer.spec["priorityClassName"] == "training-high"
    assert trainer.spec["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert scenarios["jobset"].one("JobSet")["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    for doc in scenarios["default"].docs:
        assert "kueue.x-k8s.io/queue-name" not in doc["metadata"]["labels"]
    rendering = renderer.render(values_files=[CI_DIR / "default-values.yaml"],
                                set_values=["scheduling.schedulerName=volcano"])
    trainer = only(by_component(rendering.docs, "trainer"), "trainer")
    assert trainer.spec["schedulerName"] == "volcano"


def test_evaluator_job_name_and_component_switches(scenarios):
    evaluator = scenarios["default"].component("Job", "evaluator")
    pod = evaluator["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["containers"][0]["args"][0] == "evaluate"
    only_trainer = scenarios["trainer-only"]
    assert {p.component for p in all_pods(only_trainer.docs)} == {"trainer", "test"}  # + helm test hook
    assert not [d for d in only_trainer.find("Job") if d["metadata"]["labels"][COMPONENT] == "evaluator"]


def test_names_with_another_release(renderer):
    rendering = renderer.render(values_files=[CI_DIR / "default-values.yaml"], release="exp1")
    # The chart name first (the scheme: mnist-train.fullname in _helpers.tpl).
    assert re.fullmatch(r"mnist-train-exp1-evaluator-[0-9a-f]{6}",
                        rendering.component("Job", "evaluator")["metadata"]["name"])
    assert re.fullmatch(r"mnist-train-exp1-trainer-[0-9a-f]{6}",
                        rendering.component("Job", "trainer")["metadata"]["name"])
    pod = only(by_component(rendering.docs, "trainer"), "trainer")
    assert arg_value(trainer_container(pod)["args"], "--model-dir") == "/models/exp1"
    assert IMAGE_REPOSITORY in trainer_container(pod)["image"]
