"""The process launcher (process_launcher.py, netns.py): path and listen rewriting, the image's
environment, and the isolation of tiny real pods (namespaces: as root, or as a normal user in the
runner's own user namespace, userns.py)."""

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
from scripts.local_runner.controllers import headless_dns_names
from scripts.local_runner.manifest import NetworkSlot, PodBuilder, PodRequest
from scripts.local_runner.process_launcher import (ProcessLauncher, image_env, rewrite_listen_args,
                                                   translate)
from scripts.local_runner import userns
from scripts.paths import REPO_ROOT
from tests.e2e.conftest import ROOTLESS, runner_prerequisites, unavailable
from tests.local_runner.fakes import one


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
    network.slots = [NetworkSlot(f"w-{i}.svc", f"w-{i}", headless_dns_names(f"w-{i}", "svc", "mnist-train"),
                                 f"10.244.0.{10 + i}") for i in range(2)]
    network._write_files()
    hosts = network.hosts_file("w-1.svc").read_text()
    assert "10.244.0.11\tw-1.svc.mnist-train.svc.cluster.local w-1\n" in hosts
    assert "10.244.0.10\tw-0.svc w-0.svc.mnist-train w-0.svc.mnist-train.svc " in hosts
    assert "nameserver 127.0.0.1" in network.resolv_conf.read_text()


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
    owner = os.stat(f"/proc/{launcher.holder.pid}/ns/user").st_ino if ROOTLESS else None
    try:
        assert len(netns.runner_namespaces(run_id, launcher.network.wrap)) == 3
        if ROOTLESS:  # the names exist only in the runner's private /run/netns
            assert not netns.runner_namespaces(run_id)
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
    if ROOTLESS:  # nothing is left in the runner's user namespace, so nothing it owned remains
        assert not userns.processes_in(owner)
    host_links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert "br0" not in host_links and not re.search(r"\bp\d+@", host_links)
