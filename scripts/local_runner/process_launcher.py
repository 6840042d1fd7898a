"""Run each pod as local processes, isolated the way the pod would be (root, or a normal user
with unprivileged user namespaces).

- Privilege: as root, namespaces are created directly. As a normal user the
  runner first starts a holder (userns.py): a user + mount namespace the
  user owns, where it is uid 0 with capabilities over its own namespaces
  only; every `ip` command and every pod enters it first, and the rest
  below is the same in both modes.

- Network: pods with a network identity (the workers: host name + headless
  Service) run in their own network namespace (netns.py), so each listens
  on the chart's port at its own private address and resolves its peers'
  DNS names through its own /etc/hosts. The others (evaluator, TensorBoard)
  need no cluster network and share the host's, where TensorBoard's
  `--bind_all` becomes `--host 127.0.0.1` and its `--port` a free port:
  nothing listens beyond 127.0.0.0/8 on the host. With --local-gcs or
  --helm-test they share one private namespace instead, keep their ports,
  and the runner reaches those through relays (cloud_storage.py says why;
  portrelay.py); with --local-gcs every pod namespace has the Cloud Storage
  front on 127.0.0.1:443 and every pod its names and environment.
- Files: each pod gets a private mount namespace (podshim.py). A volume
  mount cannot appear at its container path (/models/... does not exist on
  the host and is not created), so its directory is bind-mounted at its own
  host path, read-only when the manifest says so, and every container path in
  the command, args and env is translated to that host path. The /tmp
  emptyDir is mounted over /tmp when the run directory lies outside /tmp
  (else translated and passed as TMPDIR). With readOnlyRootFilesystem every
  other mount is read-only in the pod, so a pod can write only to its
  writable volumes, exactly as in the cluster.
- Identity: the pod's host name (UTS namespace); no capabilities, no new
  privileges. The process keeps the runner's uid (the chart's runAsUser
  1000 is not applied: the repository and run directory belong to the
  invoking user).
- Image: the repository's virtualenv stands in for the image: its
  environment (IMAGE_ENV, as the Dockerfile sets it) with paths mapped to
  the repository, and the repository root as the working directory.
- Lifetime: every pod is its own session and process group; it receives
  SIGKILL if the runner dies (PR_SET_PDEATHSIG), and the runner kills its
  group on every exit path.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from scripts.local_runner import cloud_storage, netns, procfs, userns
from scripts.local_runner.launcher import Endpoint, Launcher, LauncherError, PodHandle
from scripts.local_runner.manifest import NetworkSlot, Pod
from scripts.local_runner.portrelay import Relay
from scripts.paths import MNIST_DIR, REPO_ROOT
from scripts.ports import free_ports

SHIM = Path(__file__).resolve().with_name("podshim.py")
REQUIRED_TOOLS = userns.TOOLS


def image_env(python: str) -> dict[str, str]:
    """The image's environment (the Dockerfile's ENV), for the repository's virtualenv."""
    venv_bin = str(Path(python).parent)
    return {
        "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "MNIST_DATA_DIR": str(MNIST_DIR),
        "HOME": "/tmp",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "LANG": "C.UTF-8",
    }


def under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def translate(value: str, mapping: list[tuple[str, str]]) -> str:
    """Replace a leading container path (also after `--flag=`) by its host path."""
    def one(text: str) -> str:
        for container_path, host_path in mapping:  # longest first
            if text == container_path:
                return host_path
            if text.startswith(container_path.rstrip("/") + "/"):
                return host_path.rstrip("/") + text[len(container_path.rstrip("/")):]
        return text
    if value.startswith("-") and "=" in value:
        flag, _, rest = value.partition("=")
        return f"{flag}={one(rest)}"
    return one(value)


def rewrite_listen_args(args: list[str], ports: dict[int, int]) -> list[str]:
    """For a pod on the host's network: listen on 127.0.0.1 and the chosen free ports."""
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--bind_all":
            out += ["--host", "127.0.0.1"]
        elif arg == "--host" and i + 1 < len(args):
            out += ["--host", "127.0.0.1"]
            i += 1
        elif arg.startswith("--host="):
            out.append("--host=127.0.0.1")
        elif arg == "--port" and i + 1 < len(args) and args[i + 1].isdigit() and int(args[i + 1]) in ports:
            out += ["--port", str(ports[int(args[i + 1])])]
            i += 1
        elif arg.startswith("--port=") and arg[7:].isdigit() and int(arg[7:]) in ports:
            out.append(f"--port={ports[int(arg[7:])]}")
        else:
            out.append(arg)
        i += 1
    return out


class ProcessPodHandle(PodHandle):
    def __init__(self, pod: Pod, log_path: Path, popen: subprocess.Popen, endpoints: dict[int, Endpoint],
                 cleanup_dirs: list[Path]):
        self.pod = pod
        self.log_path = log_path
        self.popen = popen
        self._endpoints = endpoints
        self._cleanup_dirs = cleanup_dirs

    def poll(self) -> int | None:
        code = self.popen.poll()
        if code is None:
            return None
        return 128 - code if code < 0 else code

    def send_signal(self, sig: int) -> None:
        if self.popen.poll() is not None and (sig != signal.SIGKILL or not self.pids()):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)  # the pod's session: the process and anything it started

    def endpoints(self) -> dict[int, Endpoint]:
        return dict(self._endpoints)

    def pids(self) -> list[int]:
        return process_group_members(self.popen.pid)

    def release(self) -> None:
        # Like the kubelet deleting a finished pod: its emptyDirs go away.
        for d in self._cleanup_dirs:
            shutil.rmtree(d, ignore_errors=True)


def process_group_members(pgid: int) -> list[int]:
    return procfs.live_pids(lambda _, fields: int(fields[2]) == pgid)  # pgrp is stat's field 5


class ProcessLauncher(Launcher):
    name = "process"

    def __init__(self, python: str = sys.executable, keep_pod_dirs: bool = False, local_gcs: bool = False,
                 helm_test: bool = False):
        self.python = python
        self.keep_pod_dirs = keep_pod_dirs
        self.local_gcs = local_gcs  # serve the pods' gs:// buckets locally (cloud_storage.py)
        self.helm_test = helm_test  # the hook reaches TensorBoard by its Service: the shared namespace
        self.network: netns.PodNetwork | None = None
        self.holder: userns.Holder | None = None
        self.run_dir: Path | None = None
        self.namespace = "default"
        self.buckets: list[str] = []
        self.services: list[str] = []
        self.storage: cloud_storage.LocalCloudStorage | None = None
        self.relays: dict[int, Relay] = {}  # containerPort -> its relay from the shared namespace
        self._end_lines: list[str] = []

    @staticmethod
    def check() -> None:
        """Raise LauncherError unless this machine can run pods: iproute2 and util-linux, and
        root or unprivileged user namespaces (the error then names the setting that forbids them)."""
        missing = sorted({pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None})
        if missing:
            raise LauncherError(f"missing tools: install the Debian package(s) {', '.join(missing)} "
                                f"(needs {', '.join(sorted(REQUIRED_TOOLS))})")
        if os.geteuid() != 0:
            reason = userns.unavailable_reason()
            if reason:
                raise LauncherError(reason)

    def accept_rendering(self, remote_urls: list[str], services: list[str]) -> None:
        refusal = cloud_storage.refusal(remote_urls, self.local_gcs)
        if refusal:
            raise LauncherError(refusal)
        self.buckets = cloud_storage.buckets(remote_urls)
        self.services = list(services)

    @property
    def shared_network(self) -> bool:
        return bool(self.buckets) or self.helm_test

    def setup(self, run_id: str, run_dir: Path, slots: list[NetworkSlot], namespace: str = "default"
              ) -> list[NetworkSlot]:
        self.check()
        self.run_dir = run_dir
        self.namespace = namespace
        wrap: list[str] = []
        if os.geteuid() != 0:
            try:
                self.holder = userns.Holder(run_id, run_dir / "network" / "host-run")
            except userns.UsernsError as e:
                raise LauncherError(str(e)) from e
            wrap = self.holder.prefix
        self.network = netns.PodNetwork(
            run_id, run_dir / "network", namespace, wrap=wrap, services=self.services,
            shared=self.shared_network,
            extra_hosts=cloud_storage.LocalCloudStorage.hosts_lines() if self.buckets else "")
        try:
            ready = self.network.create(slots)
            if self.buckets:
                self.storage = cloud_storage.LocalCloudStorage(run_dir / "network" / "gcs", self.buckets)
                for path in self.network.namespace_paths():
                    self.storage.serve_in([*wrap, "nsenter", f"--net={path}", "--"])
            return ready
        except (netns.NetnsError, cloud_storage.CloudStorageError) as e:
            self.teardown()
            what = "the pod network" if isinstance(e, netns.NetnsError) else "the local Cloud Storage"
            raise LauncherError(f"cannot create {what}: {e}") from e

    def describe_network(self) -> list[str]:
        if not self.network or not (self.network.slots or self.network.shared):
            return ["no pod needs a cluster network"]
        net = self.network
        lines = [f"{len(net.slots)} pod network namespace(s) {netns.PREFIX}-{net.run_id}-p* "
                 f"on a bridge in {net.bridge_ns}; addresses exist only inside them:"]
        lines += [f"  {s.dns_names[0] if s.dns_names else s.hostname} -> {s.address}" for s in net.slots]
        if net.shared:
            lines.append(f"the pods without a network identity share {net.shared_ns} (loopback only; "
                         "the runner reaches their ports through relays on 127.0.0.1)")
        if self.storage is not None:
            lines += self.storage.describe()
        return lines

    def _tmp_in_place(self, pod: Pod) -> bool:
        """Mount the /tmp emptyDir over /tmp unless something the pod needs lives under /tmp."""
        needed = [str(self.run_dir), str(REPO_ROOT), sys.prefix, os.path.realpath(self.python),
                  *(str(m.host_path) for m in pod.container.mounts)]
        return not any(under(os.path.realpath(p), "/tmp") for p in needed)

    def plan(self, pod: Pod) -> dict:
        """How the pod will run: the shim's spec, the process env and the port map (no side effects
        besides choosing free ports)."""
        c = pod.container
        tmp_in_place = self._tmp_in_place(pod)
        binds, mapping = [], []
        for m in sorted(c.mounts, key=lambda m: m.container_path.count("/")):
            if m.container_path == "/tmp" and tmp_in_place:
                binds.append({"source": str(m.host_path), "target": "/tmp", "read_only": m.read_only})
                continue
            # Visible at the host path of its parent mount, if nested, else at its own.
            target = translate(m.container_path, sorted(mapping, key=lambda x: -len(x[0])))
            if target == m.container_path:
                target = str(m.host_path)
            binds.append({"source": str(m.host_path), "target": target, "read_only": m.read_only})
            mapping.append((m.container_path, target))
        mapping.sort(key=lambda x: -len(x[0]))
        # The image's PATH and data dir are already host paths (the repo may well
        # live under /tmp): only container paths, the manifest's and HOME, move.
        env = {**image_env(self.python), "HOSTNAME": pod.hostname}
        if self.storage is not None:
            env.update(self.storage.env())
        env["HOME"] = translate(env["HOME"], mapping)
        env.update({k: translate(v, mapping) for k, v in c.env.items()})
        tmp = dict(mapping).get("/tmp")
        if tmp and "TMPDIR" not in c.env:
            env["TMPDIR"] = tmp
        command = [translate(a, mapping) for a in c.command]
        args = [translate(a, mapping) for a in c.args]
        if self.storage is not None:
            args = cloud_storage.tensorboard_args(command, args)
        ports: dict[int, int] = {}
        shared = pod.slot is None and self.network is not None and self.network.shared
        if pod.slot is None and not shared:  # host network: never listen beyond loopback
            # One call for all of the container's ports, so they differ.
            ports = dict(zip([p.container_port for p in c.ports], free_ports(len(c.ports))))
            args = rewrite_listen_args(args, ports)
        cwd = c.working_dir if c.working_dir and os.path.isdir(c.working_dir) else str(REPO_ROOT)
        files = {}
        if pod.slot is not None and self.network is not None:
            files = {"/etc/hosts": str(self.network.hosts_file(pod.slot.key)),
                     "/etc/resolv.conf": str(self.network.resolv_conf)}
        elif shared:
            files = {"/etc/hosts": str(self.network.shared_hosts_file),
                     "/etc/resolv.conf": str(self.network.resolv_conf)}
        spec = {"parent_pid": os.getpid(), "hostname": pod.hostname, "binds": binds, "files": files,
                "read_only_root": bool(c.security_context.get("readOnlyRootFilesystem")),
                "drop_capabilities": True, "cwd": cwd, "argv": command + args}
        return {"spec": spec, "env": env, "ports": ports, "mapping": mapping, "shared_network": shared}

    def start(self, pod: Pod, log_path: Path) -> ProcessPodHandle:
        plan = self.plan(pod)
        for bind in plan["spec"]["binds"]:
            Path(bind["source"]).mkdir(parents=True, exist_ok=True)
        pod.pod_dir.mkdir(parents=True, exist_ok=True)
        spec_path = pod.pod_dir / f"podshim-{pod.attempt}.json"
        spec_path.write_text(json.dumps(plan["spec"], indent=1))
        env_path = pod.pod_dir / f"env-{pod.attempt}.json"
        env_path.write_text(json.dumps(plan["env"], indent=1, sort_keys=True))
        argv = ["unshare", "--mount", "--uts", "--propagation", "private", "--",
                self.python, "-I", str(SHIM), str(spec_path)]
        if pod.slot is not None:
            argv = ["nsenter", f"--net={self.network.netns_path(pod.slot.key)}", "--", *argv]
        elif plan["shared_network"]:
            argv = ["nsenter", f"--net={self.network.shared_netns_path()}", "--", *argv]
        if self.holder is not None:
            argv = [*self.holder.prefix, *argv]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     env=plan["env"], cwd=str(REPO_ROOT), start_new_session=True,
                                     close_fds=True)
        endpoints = {cp: Endpoint("127.0.0.1", hp) for cp, hp in plan["ports"].items()}
        if plan["shared_network"]:
            endpoints = {p.container_port: Endpoint("127.0.0.1", self._relay(p.container_port).host_port)
                         for p in pod.container.ports}
        empty_dirs = [] if self.keep_pod_dirs else [
            Path(m.host_path) for m in pod.container.mounts if m.kind == "emptyDir"]
        return ProcessPodHandle(pod, log_path, popen, endpoints, empty_dirs)

    def _relay(self, port: int) -> Relay:
        """The relay to `port` in the shared namespace (one per port, kept for the pod's successors)."""
        if port not in self.relays:
            wrap = self.holder.prefix if self.holder is not None else []
            self.relays[port] = Relay([*wrap, "nsenter", f"--net={self.network.shared_netns_path()}", "--"],
                                      port)
        return self.relays[port]

    def end_lines(self) -> list[str]:
        return list(self._end_lines)

    def local_copy(self, url: str) -> Path | None:
        if self.run_dir is None:
            return None
        return cloud_storage.local_copy(url, self.run_dir / cloud_storage.COPY_DIR)

    def teardown(self) -> None:
        for relay in self.relays.values():
            relay.stop()
        self.relays = {}
        if self.storage is not None:  # before the namespaces: its listening sockets keep them
            self._end_lines = self.storage.close(self.run_dir / cloud_storage.COPY_DIR)
            self.storage = None
        if self.network is not None:
            self.network.teardown()
        if self.holder is not None:
            self.holder.stop()  # its mount namespace, and all left in it, goes with the last pod
            self.holder = None
