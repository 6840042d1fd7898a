"""The local runner's parts, without TensorFlow: Job semantics on a fake clock,
the manifest resolution of the rendered chart, fault specs, path and listen
rewriting, and the process launcher's isolation on tiny pods."""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import sys
import time

import pytest

from scripts.local_runner import netns
from scripts.local_runner.controllers import (PodRecord, JobController, JobSetController, TFJobController,
                                              match_pod_failure_policy)
from scripts.local_runner.faults import FaultSpecError, parse_fault
from scripts.local_runner.manifest import ManifestError, NetworkSlot, PodBuilder, PodRequest, expand
from scripts.local_runner.process_launcher import (ProcessLauncher, image_env, rewrite_listen_args,
                                                   translate)
from scripts.local_runner.render import find_helm, render
from tests.e2e.conftest import REPO_ROOT, runner_prerequisites, unavailable


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The chart rendered by the runner's own render(), per launcher."""
    if not find_helm():
        unavailable("helm not found (run `make tools`)")
    tmp = tmp_path_factory.mktemp("render")
    out = {}
    for launcher in ("job", "jobset", "tfjob"):
        out[launcher] = render(set_values=[f"trainer.launcher={launcher}"],
                               overlay_path=tmp / f"{launcher}.yaml")
    return out


def one(rendering, kind, component=None):
    docs = [d for d in rendering.docs if d["kind"] == kind and (
        component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component)]
    assert len(docs) == 1, [d["metadata"]["name"] for d in docs]
    return docs[0]


def name(rendering, kind, component):
    """An object's name: the trainer's and the evaluator's carry the chart's run generation."""
    return one(rendering, kind, component)["metadata"]["name"]


class FakeCluster:
    """The Cluster protocol with a hand-driven clock and no processes."""

    def __init__(self, tmp_path, docs, namespace="mnist-train"):
        self.namespace = namespace
        self.builder = PodBuilder(namespace, tmp_path, docs)
        self.clock = 0.0
        self.created: list[PodRecord] = []
        self.deleted: list[tuple[PodRecord, str]] = []
        self.events: list[str] = []
        self.numbers: dict[str, int] = {}

    def now(self):
        return self.clock

    def create(self, pod, restart_count=0):
        record = PodRecord(pod=pod, created_at=self.clock, restart_count=restart_count)
        self.created.append(record)
        return record

    def delete(self, record, reason, grace=None, disruption=False):
        record.deleting = True
        self.deleted.append((record, reason))

    def event(self, message):
        self.events.append(message)

    def backoff(self, failures):
        return 10.0 * 2 ** max(0, failures - 1)

    def slot(self, key):
        return NetworkSlot(key, key.split(".")[0], (key,), "10.244.0.99")

    def next_pod_number(self, key):
        self.numbers[key] = self.numbers.get(key, -1) + 1
        return self.numbers[key]

    def running(self):
        return [r for r in self.created if r.finished_at is None]

    def exit(self, controller, record, code, conditions=()):
        record.finished_at, record.exit_code = self.clock, code
        record.conditions |= set(conditions)
        controller.on_exit(record)


def started_job(tmp_path, rendering, component="trainer"):
    cluster = FakeCluster(tmp_path, rendering.docs)
    job = JobController(cluster, one(rendering, "Job", component))
    job.start()
    job.tick()
    return cluster, job


# -- podFailurePolicy and Job semantics ------------------------------------------------------------


def test_the_charts_pod_failure_policy_rules_apply_in_order(rendered):
    policy = one(rendered["job"], "Job", "trainer")["spec"]["podFailurePolicy"]
    assert match_pod_failure_policy(policy, "trainer", 42, set()) == ("Ignore", 1)
    assert match_pod_failure_policy(policy, "trainer", 2, set()) == ("FailJob", 2)
    assert match_pod_failure_policy(policy, "trainer", 1, set()) == ("Count", None)
    assert match_pod_failure_policy(policy, "trainer", 137, set()) == ("Count", None)
    # An evicted pod is ignored whatever its exit code: the condition rule comes first.
    assert match_pod_failure_policy(policy, "trainer", 2, {"DisruptionTarget"}) == ("Ignore", 0)
    assert match_pod_failure_policy(policy, "other", 2, set()) == ("Count", None)
    not_in = {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [1]}}]}
    assert match_pod_failure_policy(not_in, "c", 3, set())[0] == "FailJob"
    assert match_pod_failure_policy(not_in, "c", 1, set())[0] == "Count"


def test_indexed_job_retries_each_index_up_to_backoff_limit_per_index(tmp_path, rendered):
    cluster, job = started_job(tmp_path, rendered["job"])
    trainer = name(rendered["job"], "Job", "trainer")
    assert [r.pod.name for r in cluster.created] == [f"{trainer}-0-0", f"{trainer}-1-0"]
    limit = job.per_index_limit
    assert limit == 3 and job.max_failed_indexes == 0
    for attempt in range(limit):
        record = next(r for r in cluster.running() if r.pod.index == 0)
        assert record.pod.attempt == attempt
        cluster.exit(job, record, 1)
        assert job.status == "Running"
        job.tick()
        assert all(r.pod.index != 0 for r in cluster.running()), "replaced before the back-off"
        cluster.clock += 10.0 * 2 ** attempt  # Kubernetes' back-off: 10 s, 20 s, 40 s
        job.tick()
        assert any(r.pod.index == 0 for r in cluster.running())
    cluster.exit(job, next(r for r in cluster.running() if r.pod.index == 0), 1)
    assert job.status == "Failed" and job.reason == "MaxFailedIndexesExceeded"
    assert [r.pod.name for r, _ in cluster.deleted] == [f"{trainer}-1-0"]  # the rest is terminated


def test_preemption_is_replaced_at_once_and_not_counted(tmp_path, rendered):
    cluster, job = started_job(tmp_path, rendered["job"])
    for record in list(cluster.running()):
        cluster.exit(job, record, 42)
    job.tick()
    names = sorted(r.pod.name for r in cluster.running())
    trainer = name(rendered["job"], "Job", "trainer")
    assert names == [f"{trainer}-0-1", f"{trainer}-1-1"]
    assert [s.counted for s in job.indexes] == [0, 0] and [s.ignored for s in job.indexes] == [1, 1]
    assert cluster.running()[0].pod.annotations["batch.kubernetes.io/job-index-ignored-failure-count"] == "1"
    for record in list(cluster.running()):
        cluster.exit(job, record, 0)
    assert job.status == "Complete"


def test_configuration_error_fails_the_job_at_once(tmp_path, rendered):
    cluster, job = started_job(tmp_path, rendered["job"])
    cluster.exit(job, cluster.running()[1], 2)
    assert job.status == "Failed" and job.reason == "PodFailurePolicy"
    assert "exit code 2 matching FailJob rule at index 2" in job.message
    assert [r.pod.name for r, _ in cluster.deleted] == [f"{name(rendered['job'], 'Job', 'trainer')}-0-0"]
    job.tick()
    assert len(cluster.created) == 2, "a failed Job must not create pods"


def test_active_deadline_fails_the_job_and_terminates_its_pods(tmp_path, rendered):
    cluster, job = started_job(tmp_path, rendered["job"])
    cluster.clock = float(job.deadline) - 1
    job.tick()
    assert job.status == "Running"
    cluster.clock = float(job.deadline)
    job.tick()
    assert job.status == "Failed" and job.reason == "DeadlineExceeded"
    assert len(cluster.deleted) == 2


def test_evaluator_job_uses_its_backoff_limit(tmp_path, rendered):
    cluster, job = started_job(tmp_path, rendered["job"], "evaluator")
    assert not job.indexed and job.backoff_limit == 6
    (record,) = cluster.running()
    assert record.pod.name == f"{name(rendered['job'], 'Job', 'evaluator')}-0" and record.pod.slot is None
    for _ in range(6):
        cluster.exit(job, cluster.running()[0], 137)
        cluster.clock += 1000
        job.tick()
    assert job.status == "Running"
    cluster.exit(job, cluster.running()[0], 137)
    assert job.status == "Failed" and job.reason == "BackoffLimitExceeded"


def test_jobset_recreates_every_worker_when_one_fails_and_fails_on_a_config_error(tmp_path, rendered):
    cluster = FakeCluster(tmp_path, rendered["jobset"].docs)
    jobset = JobSetController(cluster, one(rendered["jobset"], "JobSet"))
    trainer = name(rendered["jobset"], "JobSet", "trainer")
    assert [s.key for s in jobset.slots()] == [f"{trainer}-worker-0-0.mnist-train-workers",
                                              f"{trainer}-worker-0-1.mnist-train-workers"]
    jobset.start()
    jobset.tick()
    first = list(cluster.running())
    assert first[0].pod.hostname == f"{trainer}-worker-0-0"
    env = first[1].pod.container.env
    assert env["JOB_COMPLETION_INDEX"] == "1"
    assert env["MNIST_WORKER_HOSTNAME_PREFIX"] == f"{trainer}-worker-0"
    jobset.on_exit(_exit(first[0], 137))
    jobset.tick()
    assert jobset.restarting and first[1].deleting
    jobset.tick()
    assert len(cluster.created) == 2, "recreated before every old pod was gone"
    jobset.on_exit(_exit(first[1], 143))
    jobset.tick()
    second = list(cluster.running())
    assert len(second) == 2 and jobset.restarts == 1
    assert second[0].pod.labels["jobset.sigs.k8s.io/restart-attempt"] == "1"
    jobset.on_exit(_exit(second[0], 2))
    jobset.tick()
    assert jobset.status == "Failed" and jobset.reason == "FailureRuleMatched"


def _exit(record, code):
    record.finished_at, record.exit_code = 0.0, code
    return record


def test_tfjob_pods_get_the_operators_tf_config(tmp_path, rendered):
    from model.cluster import resolve_cluster
    cluster = FakeCluster(tmp_path, rendered["tfjob"].docs)
    tfjob = TFJobController(cluster, one(rendered["tfjob"], "TFJob"))
    tfjob.start()
    tfjob.tick()
    pods = [r.pod for r in cluster.running()]
    trainer = name(rendered["tfjob"], "TFJob", "trainer")
    assert [p.name for p in pods] == [f"{trainer}-worker-0", f"{trainer}-worker-1"]
    config = json.loads(pods[1].container.env["TF_CONFIG"])
    assert config["cluster"]["worker"] == [f"{trainer}-worker-0.mnist-train.svc:2222",
                                           f"{trainer}-worker-1.mnist-train.svc:2222"]
    info = resolve_cluster(pods[1].container.env)
    assert (info.source, info.task_index, info.num_workers, info.is_chief) == ("TF_CONFIG", 1, 2, False)
    assert f"{trainer}-worker-0.mnist-train.svc" in tfjob.slots()[0].dns_names


# -- manifests -----------------------------------------------------------------------------------------


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


def test_gcs_storage_is_refused_before_anything_runs(tmp_path):
    if not find_helm():
        unavailable("helm not found")
    if runner_prerequisites():
        unavailable(runner_prerequisites())
    result = subprocess.run(
        [sys.executable, "-m", "scripts.local_runner", "--fresh", "--run-dir", str(tmp_path / "r"),
         "--set", "storage.type=gcs", "--set", "storage.gcs.uri=gs://bucket/x",
         "--set", "storage.gcs.workloadIdentity.enabled=true"],  # the chart wants credentials
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "storage.type=gcs is not supported by the local runner" in result.stdout


# -- faults, paths, listening, image --------------------------------------------------------------------


def test_fault_specs():
    f = parse_fault("kill:worker=1:step=300")
    assert (f.action, f.component, f.index, f.step, f.after) == ("kill", "trainer", 1, 300, None)
    f = parse_fault("stop:worker=0:after=1.5m:for=20s")
    assert (f.action, f.index, f.after, f.duration) == ("stop", 0, 90.0, 20.0)
    assert parse_fault("kill:evaluator:step=2").component == "evaluator"
    for bad in ("kill:worker=1", "boom:worker=1:step=3", "kill:chief:step=3", "term:worker=1:step=3:for=2s",
                "kill:worker=1:step=3:after=2", "kill:worker=1:step=x"):
        with pytest.raises(FaultSpecError):
            parse_fault(bad)


def test_container_paths_are_translated_to_their_host_paths():
    mapping = [("/models/r/eval", "/run/v/r/eval"), ("/models/r", "/run/v/r"), ("/tmp", "/run/p/tmp")]
    assert translate("/models/r", mapping) == "/run/v/r"
    assert translate("/models/r/eval/x", mapping) == "/run/v/r/eval/x"
    assert translate("--logdir=/models/r", mapping) == "--logdir=/run/v/r"
    assert translate("/models/rr", mapping) == "/models/rr"
    assert translate("/tmp", mapping) == "/run/p/tmp"


def test_host_network_pods_listen_on_loopback_only():
    args = ["--logdir", "/m", "--bind_all", "--port", "6006", "--reload_interval", "15"]
    assert rewrite_listen_args(args, {6006: 40001}) == [
        "--logdir", "/m", "--host", "127.0.0.1", "--port", "40001", "--reload_interval", "15"]
    rewritten = rewrite_listen_args(["--host=0.0.0.0", "--port=6006"], {6006: 5})
    assert rewritten == ["--host=127.0.0.1", "--port=5"]


def test_the_local_image_environment_matches_the_dockerfile():
    text = (REPO_ROOT / "Dockerfile").read_text()
    final_stage = text.rsplit("\nFROM ", 1)[1]
    keys = set()
    for block in re.findall(r"^ENV ((?:.*\\\n)*.*)$", final_stage, re.M):
        keys |= set(re.findall(r"(\w+)=", block))
    assert keys <= set(image_env(sys.executable)), keys - set(image_env(sys.executable))


def test_hosts_files_map_every_workers_dns_names(tmp_path):
    network = netns.PodNetwork("1-a-b", tmp_path, "mnist-train")
    from scripts.local_runner.controllers import headless_dns_names
    network.slots = [NetworkSlot(f"w-{i}.svc", f"w-{i}", headless_dns_names(f"w-{i}", "svc", "mnist-train"),
                                 f"10.244.0.{10 + i}") for i in range(2)]
    network._write_files()
    hosts = network.hosts_file("w-1.svc").read_text()
    assert "10.244.0.11\tw-1.svc.mnist-train.svc.cluster.local w-1\n" in hosts
    assert "10.244.0.10\tw-0.svc w-0.svc.mnist-train w-0.svc.mnist-train.svc " in hosts
    assert "nameserver 127.0.0.1" in network.resolv_conf.read_text()


def test_help_documents_the_runner():
    result = subprocess.run([sys.executable, "-m", "scripts.local_runner", "--help"], capture_output=True,
                            text=True, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0
    for text in ("--fault", "kill:worker=1:step=300", "exit codes", "summary.json", "--keep-tensorboard",
                 "--restart-backoff", "cleanup", "--resume", "--upgrade", "ttlSecondsAfterFinished",
                 "immutable", "rendered.previous.yaml"):
        assert text in result.stdout, text


# -- the process launcher's isolation, on tiny pods ---------------------------------------------------

PROBE = r"""
import json, os, socket, sys
out = {"hostname": socket.gethostname(), "uid": os.getuid(),
       "caps": [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]}
def try_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        os.remove(path)
        return "ok"
    except OSError as e:
        return e.strerror
for arg in sys.argv[1:]:
    name, _, path = arg[2:].partition("=")
    out[name] = try_write(os.path.expanduser(path))
print("PROBE " + json.dumps(out), flush=True)
"""


def _probe_pod(tmp_path, run_dir, rendering, kind, component, targets):
    template = copy.deepcopy(one(rendering, kind, component)["spec"]["template"])
    container = template["spec"]["containers"][0]
    container["command"] = ["python", "-c", PROBE]
    container["args"] = [f"--{name}={path}" for name, path in targets.items()]  # paths get translated
    builder = PodBuilder("mnist-train", run_dir, rendering.docs)
    name = f"{component}-probe"
    return builder.build(PodRequest(template=template, name=name, hostname=name, subdomain=None,
                                    owner=f"{kind}/probe", index=None, attempt=0, display=component))


@pytest.mark.parametrize("where", ["tmp", "repo"])
def test_pods_can_write_only_to_their_writable_volumes(tmp_path, rendered, where):
    """readOnly mounts and readOnlyRootFilesystem are enforced in the pod's mount namespace; /tmp is
    private (mounted over /tmp when the run dir is outside /tmp, else passed as TMPDIR)."""
    reason = runner_prerequisites()
    if reason:
        unavailable(reason)
    if where == "tmp":
        run_dir = tmp_path / "run"
    else:
        run_dir = REPO_ROOT / "runs" / f"unit-probe-{os.getpid()}"
    launcher = ProcessLauncher()
    launcher.setup(netns.new_run_id(), run_dir, [], "mnist-train")
    try:
        model_dir = "/models/mnist-train"
        targets = {"model_dir": f"{model_dir}/x", "eval_dir": f"{model_dir}/eval/x", "tmp": "/tmp/x",
                   "home": "~/x", "etc": "/etc/probe-x",
                   # relative to the pod's cwd, the repository: an absolute path would be
                   # taken for a container path (and moved) when the repo lives under /tmp
                   "repo": "probe-x"}
        results = {}
        for kind, component in (("Job", "evaluator"), ("Deployment", "tensorboard")):
            pod = _probe_pod(tmp_path, run_dir, rendered["job"], kind, component, targets)
            handle = launcher.start(pod, run_dir / "logs" / f"{component}.log")
            deadline = time.monotonic() + 60
            while handle.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            log = handle.log_path.read_text()
            assert handle.poll() == 0, log
            results[component] = json.loads(re.search(r"^PROBE (.*)$", log, re.M).group(1))
            handle.release()
    finally:
        launcher.teardown()
        if where == "repo":
            import shutil
            shutil.rmtree(run_dir, ignore_errors=True)
    ro = "Read-only file system"
    evaluator, tensorboard = results["evaluator"], results["tensorboard"]
    assert (evaluator["model_dir"], evaluator["eval_dir"], evaluator["tmp"]) == (ro, "ok", "ok"), evaluator
    tb = tensorboard
    assert (tb["model_dir"], tb["eval_dir"], tb["tmp"]) == (ro, ro, "ok"), tb
    for r in results.values():
        assert r["repo"] == ro and r["etc"] == ro and r["home"] == "ok", r
        assert int(r["caps"], 16) == 0, "a pod kept capabilities"
    assert evaluator["hostname"] == "evaluator-probe"
    assert not (REPO_ROOT / "probe-x").exists()


def test_each_worker_pod_has_its_own_network_and_resolves_its_peers(tmp_path):
    """Two tiny pods both listen on *:2222 (like the workers) and reach each other by DNS name;
    the host's namespace sees neither socket."""
    reason = runner_prerequisites()
    if reason:
        unavailable(reason)
    from scripts.local_runner.controllers import headless_dns_names
    slots = [NetworkSlot(f"w-{i}.workers", f"w-{i}", headless_dns_names(f"w-{i}", "workers", "ns"))
             for i in range(2)]
    server = ("import socket, sys, time\n"
              "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
              "s.bind(('', 2222)); s.listen(); time.sleep(1)\n"
              "peer = sys.argv[1]\n"
              "for _ in range(100):\n"
              "    try:\n"
              "        c = socket.create_connection((peer, 2222), timeout=1); break\n"
              "    except OSError:\n"
              "        time.sleep(0.1)\n"
              "print('CONNECTED', peer, socket.gethostbyname(peer), socket.gethostname(), flush=True)\n"
              "conn, _ = s.accept(); time.sleep(0.5)\n")
    run_dir = tmp_path / "run"
    launcher = ProcessLauncher()
    run_id = netns.new_run_id()
    ready = launcher.setup(run_id, run_dir, slots, "ns")
    try:
        assert len(netns.runner_namespaces(run_id)) == 3
        handles = []
        builder = PodBuilder("ns", run_dir, [])
        for i, slot in enumerate(ready):
            template = {"metadata": {}, "spec": {"containers": [{
                "name": "c", "command": ["python", "-c", server],
                "args": [f"w-{1 - i}.workers.ns.svc.cluster.local"]}]}}
            pod = builder.build(PodRequest(template=template, name=f"w-{i}-0", hostname=f"w-{i}",
                                           subdomain="workers", owner="Job/w", index=i, attempt=0,
                                           display=f"w-{i}", slot=slot))
            handles.append(launcher.start(pod, run_dir / "logs" / f"w-{i}.log"))
        deadline = time.monotonic() + 60
        while any(h.poll() is None for h in handles) and time.monotonic() < deadline:
            host = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout
            assert not re.search(r":2222\b", host), "a pod's socket is visible in the host's namespace"
            time.sleep(0.2)
        logs = [h.log_path.read_text() for h in handles]
        assert [h.poll() for h in handles] == [0, 0], logs
        assert f"CONNECTED w-1.workers.ns.svc.cluster.local {ready[1].address} w-0" in logs[0], logs
        assert f"CONNECTED w-0.workers.ns.svc.cluster.local {ready[0].address} w-1" in logs[1], logs
        # An unknown name does not resolve (no DNS server is reachable from a pod).
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("w-0.workers", 2222)  # the runner's own namespace knows none of them
    finally:
        launcher.teardown()
    assert not netns.runner_namespaces(run_id)
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "br0" not in host_links and not re.search(r"\bp\d+@", host_links)


# -- the launcher interface, with a scripted launcher (what a container launcher plugs into) ----------


class ScriptedHandle:
    def __init__(self, pod, log_path, code, after):
        self.pod, self.log_path = pod, log_path
        self.code, self.exit_at = code, time.monotonic() + after
        self.signals = []
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("train | start | model mlp | step 0 of 10 | global batch 2\n"
                            if pod.component == "trainer" else "hello\n")

    def poll(self):
        if self.code is not None and time.monotonic() >= self.exit_at:
            return self.code
        return None

    def send_signal(self, sig):
        self.signals.append(sig)
        if sig == 9 or (sig == 15 and self.code is None):  # TensorBoard exits on SIGTERM
            self.code, self.exit_at = 128 + sig, 0

    def kill(self):
        self.send_signal(9)

    def endpoints(self):
        return {}

    def pids(self):
        return []

    def release(self):
        pass


class ScriptedLauncher:
    """Trainers exit with `trainer_code`, the evaluator 0 a little later, TensorBoard on SIGTERM."""

    name = "scripted"

    def __init__(self, trainer_code=0):
        self.trainer_code = trainer_code
        self.setups, self.teardowns, self.started = [], 0, []

    def setup(self, run_id, run_dir, slots, namespace):
        self.setups.append([s.key for s in slots])
        return [NetworkSlot(s.key, s.hostname, s.dns_names, f"192.0.2.{i}") for i, s in enumerate(slots)]

    def start(self, pod, log_path):
        code, after = {"trainer": (self.trainer_code, 0.3), "evaluator": (0, 0.8),
                       "tensorboard": (None, 0)}[pod.component]
        self.started.append(pod)
        return ScriptedHandle(pod, log_path, code, after)

    def teardown(self):
        self.teardowns += 1

    def describe_network(self):
        return []


@pytest.mark.parametrize("trainer_code, expected", [(0, 0), (2, 1)])
def test_runner_drives_any_launcher_through_the_interface(tmp_path, rendered, trainer_code, expected):
    import io

    from scripts.local_runner.logs import Terminal
    from scripts.local_runner.runner import Runner, RunOptions
    launcher = ScriptedLauncher(trainer_code)
    out = io.StringIO()
    options = RunOptions(run_dir=tmp_path / "run", tick=0.05, shutdown_grace=2)
    code = Runner(rendered["job"], launcher, options, Terminal(None, False, stream=out)).run()
    assert code == expected, out.getvalue()
    trainer = name(rendered["job"], "Job", "trainer")
    assert launcher.setups == [[f"{trainer}-0.mnist-train-workers", f"{trainer}-1.mnist-train-workers"]]
    assert launcher.teardowns == 1
    workers = [p for p in launcher.started if p.component == "trainer"]
    assert [p.container.env["JOB_COMPLETION_INDEX"] for p in workers] == ["0", "1"]
    assert workers[1].slot.address == "192.0.2.1"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["launcher"] == "scripted" and summary["exit_code"] == expected
    jobs = {w["component"]: w for w in summary["workloads"]}
    if expected == 0:
        assert jobs["trainer"]["status"] == jobs["evaluator"]["status"] == "Complete"
    else:
        assert jobs["trainer"]["reason"] == "PodFailurePolicy" and len(workers) == 2
        assert jobs["evaluator"]["status"] == "Stopped"
    assert jobs["tensorboard"]["status"] == "Stopped"


# -- --upgrade: the plan from one rendering to the next, as Helm and the API server apply it ---------

def job_doc(name, args=("--max-steps", "100"), ttl=None, **spec):
    """A small Indexed Job with one container, named `name`."""
    doc = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {"completionMode": "Indexed", "completions": 1, "parallelism": 1,
                    "template": {"metadata": {"labels": {"app.kubernetes.io/component": name}},
                                 "spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "i", "command": ["run"],
                                                          "args": list(args)}]}},
                    **spec}}
    if ttl is not None:
        doc["spec"]["ttlSecondsAfterFinished"] = ttl
    return doc


def pvc_doc(name, keep=True):
    annotations = {"helm.sh/resource-policy": "keep"} if keep else {}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "annotations": annotations}, "spec": {}}


def summary_of(*states):
    return {"workloads": [{"kind": k, "name": n, "status": s, "finished_wall": t} for k, n, s, t in states]}


def plan_between(old, new, summary=None, now=1000.0):
    from scripts.local_runner.upgrade import existing_objects, plan_upgrade
    live, gone = existing_objects(old, summary, now_wall=now)
    return plan_upgrade(old, new, live, gone)


def verbs(plan):
    return {a.ref: a.verb for a in plan.actions}


def test_upgrade_plan_deletes_creates_and_leaves_identical_objects_alone():
    old = [job_doc("train-aaa"), job_doc("eval-aaa"), pvc_doc("models"), pvc_doc("scratch", keep=False)]
    new = [job_doc("train-bbb", args=("--max-steps", "200")), job_doc("eval-aaa"), pvc_doc("models")]
    plan = plan_between(old, new, summary_of(("Job", "train-aaa", "Complete", 990.0),
                                             ("Job", "eval-aaa", "Complete", 995.0)))
    assert verbs(plan) == {"Job/train-bbb": "create", "Job/eval-aaa": "unchanged",
                           "PersistentVolumeClaim/models": "unchanged", "Job/train-aaa": "delete",
                           "PersistentVolumeClaim/scratch": "delete"}
    assert not plan.refusals
    # The unchanged, finished Job runs nothing; the new one runs.
    assert plan.finished_unchanged("Job", "eval-aaa").status == "Complete"
    assert plan.finished_unchanged("Job", "train-bbb") is None


def test_upgrade_plan_keeps_objects_with_the_keep_resource_policy():
    plan = plan_between([job_doc("t"), pvc_doc("models")], [job_doc("t")])
    assert verbs(plan) == {"Job/t": "unchanged", "PersistentVolumeClaim/models": "keep"}


@pytest.mark.parametrize("change, field", [
    (lambda s: s["template"]["spec"]["containers"][0]["args"].append("--more"), "spec.template"),
    (lambda s: s["template"]["metadata"]["labels"].update({"helm.sh/chart": "c-2"}), "spec.template"),
    (lambda s: s.update(podFailurePolicy={"rules": []}), "spec.podFailurePolicy"),
    (lambda s: s.update(backoffLimitPerIndex=3), "spec.backoffLimitPerIndex"),
    (lambda s: s.update(completions=2, parallelism=2), "spec.completions"),
    (lambda s: s.update(completionMode="NonIndexed"), "spec.completionMode"),
])
def test_upgrade_refuses_a_change_to_an_immutable_job_field(change, field):
    old = job_doc("t")
    new = copy.deepcopy(old)
    change(new["spec"])
    plan = plan_between([old], [new], summary_of(("Job", "t", "Complete", 999.0)))
    assert len(plan.refusals) == 1 and plan.refusals[0].startswith(f"Job/t: {field}"), plan.refusals
    assert "immutable" in plan.refusals[0]


def test_upgrade_allows_the_mutable_job_fields_and_metadata():
    old = job_doc("t", ttl=100, activeDeadlineSeconds=600)
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"helm.sh/chart": "c-2"}
    new["spec"].update(ttlSecondsAfterFinished=50, activeDeadlineSeconds=900, backoffLimit=4)
    plan = plan_between([old], [new], summary_of(("Job", "t", "Complete", 999.0)))
    assert not plan.refusals and verbs(plan) == {"Job/t": "update"}
    assert plan.finished_unchanged("Job", "t").status == "Complete"  # updated in place: still finished


def test_upgrade_refuses_immutable_jobset_and_tfjob_fields():
    jobset = {"kind": "JobSet", "metadata": {"name": "js"},
              "spec": {"replicatedJobs": [{"name": "w", "template": job_doc("x")}],
                       "failurePolicy": {"maxRestarts": 1}, "ttlSecondsAfterFinished": 10}}
    changed = copy.deepcopy(jobset)
    changed["spec"]["failurePolicy"]["maxRestarts"] = 2
    changed["spec"]["ttlSecondsAfterFinished"] = 20  # mutable
    assert [r.split(":")[1].strip() for r in plan_between([jobset], [changed]).refusals] == [
        "spec.failurePolicy"]
    tfjob = {"kind": "TFJob", "metadata": {"name": "tf"},
             "spec": {"runPolicy": {"managedBy": "kubeflow.org/training-operator"}, "tfReplicaSpecs": {}}}
    changed = copy.deepcopy(tfjob)
    changed["spec"]["tfReplicaSpecs"] = {"Worker": {"replicas": 2}}  # training-operator v1.9 allows it
    assert not plan_between([tfjob], [changed]).refusals
    changed["spec"]["runPolicy"]["managedBy"] = "kueue.x-k8s.io/multikueue"
    assert plan_between([tfjob], [changed]).refusals == [
        "TFJob/tf: spec.runPolicy.managedBy: field is immutable (the API server refuses this update)"]


def test_upgrade_recreates_a_finished_job_its_ttl_deleted():
    old = [job_doc("t", ttl=60), job_doc("e", ttl=60)]
    summary = summary_of(("Job", "t", "Complete", 900.0), ("Job", "e", "Complete", 950.0))
    plan = plan_between(old, old, summary, now=980.0)  # t finished 80 s ago, e 30 s ago
    assert verbs(plan) == {"Job/t": "create", "Job/e": "unchanged"}
    assert plan.action("Job", "t").why == "in both renderings, but no longer exists"
    assert plan.gone == ["Job/t: deleted by its ttlSecondsAfterFinished (60 s) 80 s after it finished "
                         "(Complete)"]
    # A stopped (not finished) Job has no TTL running: it exists, unfinished, and runs on.
    plan = plan_between(old, old, summary_of(("Job", "t", "Stopped", None)), now=10**9)
    assert verbs(plan) == {"Job/t": "unchanged", "Job/e": "unchanged"}
    assert plan.finished_unchanged("Job", "t") is None


def test_upgrade_without_a_previous_summary_treats_every_workload_as_unfinished():
    plan = plan_between([job_doc("t", ttl=0)], [job_doc("t", ttl=0)], summary=None)
    assert verbs(plan) == {"Job/t": "unchanged"} and plan.finished_unchanged("Job", "t") is None


def test_runner_upgrade_runs_only_what_the_plan_starts(tmp_path, rendered):
    """The Runner with a plan (ScriptedLauncher, no processes): finished Jobs the upgrade leaves alone
    start no pod; a new one does; the plan lands in summary.json."""
    import io

    from scripts.local_runner.logs import Terminal
    from scripts.local_runner.runner import Runner, RunOptions
    from scripts.local_runner.upgrade import existing_objects, plan_upgrade
    rendering = rendered["job"]
    options = RunOptions(run_dir=tmp_path / "run", tick=0.05, shutdown_grace=2, progress_every=0)
    first = Runner(rendering, ScriptedLauncher(), options, Terminal(None, False, stream=io.StringIO()))
    assert first.run() == 0
    previous = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert all(w["finished_wall"] for w in previous["workloads"] if w["kind"] == "Job")

    live, gone = existing_objects(rendering.docs, previous)
    launcher, out = ScriptedLauncher(), io.StringIO()
    code = Runner(rendering, launcher, options, Terminal(None, False, stream=out),
                  upgrade=plan_upgrade(rendering.docs, rendering.docs, live, gone)).run()
    assert code == 0, out.getvalue()
    assert launcher.started == [] and launcher.setups == [[]], "an unchanged upgrade started pods"
    assert "summary | upgrade: " in out.getvalue() and "unchanged Job/mnist-train-trainer" in out.getvalue()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {a["verb"] for a in summary["upgrade"]["actions"]} == {"unchanged"}
    jobs = {w["name"]: w for w in summary["workloads"] if w["kind"] == "Job"}
    assert all(w["status"] == "Complete" for w in jobs.values())
    assert (tmp_path / "run" / "rendered.previous.yaml").read_text() == rendering.text

    # Both Jobs deleted by their TTL (finished long ago): re-created, so they run again.
    for w in previous["workloads"]:
        w["finished_wall"] = w["finished_wall"] and w["finished_wall"] - 10**6
    live, gone = existing_objects(rendering.docs, previous)
    evaluator = one(rendering, "Job", "evaluator")["metadata"]["name"]
    trainer = one(rendering, "Job", "trainer")["metadata"]["name"]
    assert sorted(line.split(":")[0] for line in gone) == sorted([f"Job/{trainer}", f"Job/{evaluator}"])
    launcher = ScriptedLauncher()
    code = Runner(rendering, launcher, options, Terminal(None, False, stream=io.StringIO()),
                  upgrade=plan_upgrade(rendering.docs, rendering.docs, live, gone)).run()
    assert code == 0 and {p.component for p in launcher.started} == {"trainer", "evaluator", "tensorboard"}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "scripts.local_runner", "--progress-every", "0", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_cli_upgrade_refusals_exit_2_and_change_nothing(tmp_path, runner_ready):
    import yaml
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    old = yaml.safe_dump_all([job_doc("t", args=("--max-steps", "100"))])
    (run_dir / "rendered.yaml").write_text(old)
    (run_dir / "summary.json").write_text(json.dumps(summary_of(("Job", "t", "Complete", 1.0))))
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump_all([job_doc("t", args=("--max-steps", "200"))]))
    result = run_cli("--upgrade", "--run-dir", str(run_dir), "--manifest", str(new))
    assert result.returncode == 2, result.stdout + result.stderr
    assert ("--upgrade refused, nothing was changed: Job/t: spec.template: field is immutable"
            in result.stdout), result.stdout
    assert (run_dir / "rendered.yaml").read_text() == old and not (run_dir / "logs").exists()

    result = run_cli("--upgrade", "--run-dir", str(tmp_path / "empty"), "--manifest", str(new))
    assert result.returncode == 2 and "holds no previous run (no rendered.yaml)" in result.stdout
    result = run_cli("--upgrade", "--fresh", "--run-dir", str(run_dir), "--manifest", str(new))
    assert result.returncode == 2 and "--upgrade applies a rendering to the previous run" in result.stdout
