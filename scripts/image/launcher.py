"""A local-runner launcher that runs each pod as a podman container of the image, as a kubelet would.

It implements `scripts.local_runner.launcher.Launcher`; rendering, the Jobs'
failure semantics, faults, logs and the summary are the local runner's own.
`python -m scripts.image rehearse` registers it as `--launcher podman` (with
its options); `python -m scripts.local_runner --launcher
scripts.image.launcher:factory` uses it with the defaults.

What a pod becomes:

- Image, command, args, env: the pod's image as rendered (`--pull=never`:
  the image must be built locally; nothing is ever pulled), `command` as the
  entrypoint and `args` as its arguments, the resolved env as `-e`, the pod's
  host name as `--hostname`, `workingDir` as `--workdir`.
- Security context: runAsUser/runAsGroup -> `--user`, fsGroup ->
  `--group-add` (and the volume's group, below), readOnlyRootFilesystem ->
  `--read-only` (without podman's extra tmpfs mounts), capabilities.drop ALL
  -> `--cap-drop ALL`, allowPrivilegeEscalation false -> `--security-opt
  no-new-privileges`, seccomp RuntimeDefault -> podman's default profile;
  runAsNonRoot with uid 0 is refused, as the kubelet refuses it.
- Resources: limits.cpu -> `--cpus`, limits.memory -> `--memory`; no pids
  limit (the kubelet's default podPidsLimit is -1; podman's default 2048 is
  lifted; `--pids-limit N` sets one, as a cluster's podPidsLimit would).
- Volumes: each PersistentVolumeClaim is a podman volume (local driver,
  bind-backed by the run directory's `volumes/<claim>`, so the runner's
  summary and the tests read the same files). A mount without subPath mounts
  the volume; a subPath mount binds the volume's subdirectory, as the kubelet
  does (podman 4.3 has no volume subpath option); read-only where the
  manifest says so (TensorBoard; the evaluator's model dir, with its `eval`
  subPath writable). fsGroup is applied
  the kubelet's way (OnRootMismatch: group fsGroup, g+rwX, setgid
  directories; subPath directories created with the volume root's mode).
  An emptyDir (/tmp) is a directory of the pod's own (`pods/<pod>/volumes/
  <name>` in the run directory), bind-mounted: the kubelet's default medium
  is node disk, not memory (a tmpfs would count against the memory limit).
  Mode 0777 and the fsGroup, as the kubelet makes it; removed with the pod's
  container, or kept with the runner's --keep-pod-dirs (a test can then look
  at what a worker left in its /tmp).
- Network: one internal podman network per run (no route out, no NAT; podman
  picks a free subnet). A pod with a network identity (a worker: host name +
  headless Service) gets a fixed address and every DNS name of its slot as a
  network alias, resolved by podman's DNS (aardvark-dns), so
  `<trainer>-<i>.<workers service>` reaches worker i, also after it is
  replaced. Other pods get an address from the same network. A container
  port of a pod without a slot (TensorBoard's) is forwarded from a free port
  on 127.0.0.1 to the container, as `kubectl port-forward` does; nothing else
  is reachable from outside the network.
- Lifetime: `podman run` stays attached, so its exit code is the container's
  (128+N after signal N); signals go through `podman kill`. Containers,
  volumes and the network carry the labels `io.mnist-train.made-by` and
  `io.mnist-train.run-id`; teardown removes them, and setup removes those of
  runners that no longer live.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path

from scripts.image import podman
from scripts.local_runner import netns
from scripts.local_runner.launcher import Endpoint, Launcher, LauncherError, PodHandle
from scripts.local_runner.manifest import NetworkSlot, Pod, parse_quantity

RUN_LABEL = "io.mnist-train.run-id"
FIRST_SLOT_HOST = 10  # slot i gets <subnet>.<10+i>
FIRST_OTHER_HOST = 100  # other pods: <subnet>.100, .101, ...


def _podman_kill(name: str, sig: int) -> None:
    podman.run("kill", "--signal", signal.Signals(sig).name.removeprefix("SIG"), name, check=False,
               timeout=60)


class PortForward:
    """127.0.0.1:<free port> -> address:port, one thread per direction of each connection."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.port = self.server.getsockname()[1]
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True, name=f"forward-{self.port}").start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        sel = selectors.DefaultSelector()
        sel.register(client, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, client)
        try:
            while not self.closed.is_set():
                for key, _ in sel.select(timeout=1):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            sel.close()
            client.close()
            upstream.close()

    def close(self) -> None:
        self.closed.set()
        with contextlib.suppress(OSError):
            self.server.close()


class PodmanPodHandle(PodHandle):
    def __init__(self, pod: Pod, log_path: Path, name: str, popen: subprocess.Popen,
                 endpoints: dict[int, Endpoint], forwards: list[PortForward], empty_dirs: list[Path]):
        self.pod = pod
        self.log_path = log_path
        self.name = name
        self.popen = popen
        self._endpoints = endpoints
        self._forwards = forwards
        self._empty_dirs = empty_dirs
        self._released = False

    def poll(self) -> int | None:
        return self.popen.poll()

    def send_signal(self, sig: int) -> None:
        if self.popen.poll() is not None:
            return
        # In the background: `podman kill` takes ~0.1 s and the runner's loop must not stall.
        threading.Thread(target=_podman_kill, args=(self.name, sig), daemon=True).start()

    def endpoints(self) -> dict[int, Endpoint]:
        return dict(self._endpoints)

    def pids(self) -> list[int]:
        proc = podman.run("inspect", "--format", "{{.State.Pid}}", self.name, check=False, timeout=60)
        pid = int(proc.stdout.strip() or 0) if proc.returncode == 0 else 0
        return [pid] if pid > 0 else []

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        for forward in self._forwards:
            forward.close()
        podman.run("rm", "-f", "-t", "0", self.name, check=False, timeout=120)
        # Like the kubelet deleting a finished pod: its emptyDirs go away.
        for path in self._empty_dirs:
            shutil.rmtree(path, ignore_errors=True)


class PodmanLauncher(Launcher):
    name = "podman"

    def __init__(self, cpu_limits: bool = True, pids_limit: int = -1, keep_pod_dirs: bool = False):
        self.cpu_limits = cpu_limits
        self.pids_limit = pids_limit
        self.keep_pod_dirs = keep_pod_dirs
        self.run_id = ""
        self.network = ""
        self.run_dir: Path | None = None
        self.subnet: ipaddress.IPv4Network | None = None
        self.volumes: dict[str, str] = {}  # claim directory -> podman volume name
        self.handles: list[PodmanPodHandle] = []
        self.next_other = FIRST_OTHER_HOST
        self.counter = 0

    # -- checks and set-up --------------------------------------------------------

    @staticmethod
    def check() -> None:
        reason = podman.unavailable_reason()
        if reason:
            raise LauncherError(reason)
        if os.geteuid() != 0:
            raise LauncherError("the podman launcher runs rootful podman (networks with DNS, fsGroup "
                                "ownership of the volumes): run it as root")

    def labels(self) -> list[str]:
        return ["--label", podman.LABEL, "--label", f"{RUN_LABEL}={self.run_id}"]

    def setup(self, run_id: str, run_dir: Path, slots: list[NetworkSlot], namespace: str = "default"
              ) -> list[NetworkSlot]:
        self.check()
        cleanup_stale()
        self.run_id, self.run_dir = run_id, run_dir
        self.network = f"mnist-train-{run_id}"
        try:
            podman.run("network", "create", "--internal", *self.labels(), self.network)
            info = json.loads(podman.run("network", "inspect", self.network).stdout)[0]
            self.subnet = ipaddress.ip_network(info["subnets"][0]["subnet"])
        except (podman.PodmanError, KeyError, IndexError, ValueError) as e:
            self.teardown()
            raise LauncherError(f"cannot create the podman network: {e}") from e
        if len(slots) + FIRST_SLOT_HOST >= FIRST_OTHER_HOST or self.subnet.num_addresses < 256:
            self.teardown()
            raise LauncherError(f"{len(slots)} pods with a network identity do not fit the "
                                f"podman network {self.subnet}")
        first = self.subnet.network_address + FIRST_SLOT_HOST
        return [NetworkSlot(s.key, s.hostname, s.dns_names, str(first + i)) for i, s in enumerate(slots)]

    def describe_network(self) -> list[str]:
        return [f"podman network {self.network} ({self.subnet}, internal: no route out); "
                "workers resolve each other through podman's DNS (network aliases)"]

    def _other_address(self) -> str:
        """<subnet>.100 upwards, wrapping at .250 (a finished pod's container is removed)."""
        address = str(self.subnet.network_address + self.next_other)
        self.next_other = self.next_other + 1 if self.next_other < 250 else FIRST_OTHER_HOST
        return address

    # -- volumes ------------------------------------------------------------------

    def _claim_volume(self, claim_dir: Path, fs_group: int | None) -> str:
        """The podman volume backing one claim directory (created once per run)."""
        if str(claim_dir) in self.volumes:
            return self.volumes[str(claim_dir)]
        claim_dir.mkdir(parents=True, exist_ok=True)
        if fs_group is not None and claim_dir.stat().st_gid != fs_group:  # OnRootMismatch
            apply_fs_group(claim_dir, fs_group)
        name = f"mnist-train-{self.run_id}-{claim_dir.name}"[:120]
        podman.run("volume", "create", *self.labels(), "--opt", "type=none", "--opt", "o=bind",
                   "--opt", f"device={claim_dir}", name)
        self.volumes[str(claim_dir)] = name
        return name

    def _mount_args(self, pod: Pod, fs_group: int | None) -> list[str]:
        args = []
        for m in sorted(pod.container.mounts, key=lambda m: m.container_path.count("/")):
            if m.kind == "emptyDir":
                make_empty_dir(m.host_path, fs_group)
                ro = ",ro=true" if m.read_only else ""
                args += ["--mount", f"type=bind,source={m.host_path},target={m.container_path}{ro}"]
                continue
            claim_dir = self.run_dir / "volumes" / m.host_path.relative_to(self.run_dir / "volumes").parts[0]
            volume = self._claim_volume(claim_dir, fs_group)
            ro = ",ro=true" if m.read_only else ""
            if m.host_path == claim_dir:
                args += ["--mount", f"type=volume,source={volume},target={m.container_path}{ro}"]
            else:
                # subPath: the kubelet creates it with the volume root's mode, then binds it.
                if not m.host_path.exists():
                    make_sub_path(claim_dir, m.host_path)
                args += ["--mount", f"type=bind,source={m.host_path},target={m.container_path}{ro}"]
        return args

    # -- pods -----------------------------------------------------------------------

    def plan(self, pod: Pod) -> tuple[list[str], dict[int, int]]:
        """`podman run` arguments for the pod, and {container port: address port} to forward."""
        c = pod.container
        sc = c.security_context
        uid, gid = sc.get("runAsUser"), sc.get("runAsGroup")
        fs_group = sc.get("fsGroup")
        if sc.get("runAsNonRoot") and uid in (None, 0):
            if uid == 0:
                raise LauncherError(f"{pod.name}: runAsNonRoot with runAsUser 0 (the kubelet refuses)")
            uid = self._image_uid(c.image)
            if uid == 0:
                raise LauncherError(f"{pod.name}: runAsNonRoot, but the image {c.image} runs as root")
        self.counter += 1
        name = f"mnist-train-{self.run_id}-{pod.name}-{pod.attempt}-{self.counter}"[:250]
        args = ["run", "--name", name, "--pull=never", *self.labels(),
                "--label", f"io.mnist-train.pod={pod.name}", "--hostname", pod.hostname,
                "--network", self.network]
        if uid is not None:
            args += ["--user", f"{uid}:{gid}" if gid is not None else str(uid)]
        if fs_group is not None:
            args += ["--group-add", str(fs_group)]
        for group in sc.get("supplementalGroups") or []:
            args += ["--group-add", str(group)]
        if sc.get("readOnlyRootFilesystem"):
            args += ["--read-only", "--read-only-tmpfs=false"]
        drop = (sc.get("capabilities") or {}).get("drop") or []
        for cap in drop:
            args += ["--cap-drop", cap]
        for cap in (sc.get("capabilities") or {}).get("add") or []:
            args += ["--cap-add", cap]
        if sc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        if sc.get("privileged"):
            raise LauncherError(f"{pod.name}: privileged containers are not rehearsed")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp == "Unconfined":
            args += ["--security-opt", "seccomp=unconfined"]
        limits = c.resources.get("limits") or {}
        if self.cpu_limits and "cpu" in limits:
            args += ["--cpus", f"{min(parse_quantity(limits['cpu']), os.cpu_count() or 1):g}"]
        if "memory" in limits:
            args += ["--memory", str(int(parse_quantity(limits["memory"])))]
        # The kubelet's default podPidsLimit is -1 (none); podman's own default is 2048.
        args += ["--pids-limit", str(self.pids_limit)]
        args += self._mount_args(pod, fs_group)
        if pod.slot is not None:
            args += ["--ip", pod.slot.address]
            for alias in pod.slot.dns_names:
                args += ["--network-alias", alias]
            forward = {}
        else:
            args += ["--ip", self._other_address()]
            forward = {p.container_port: p.container_port for p in c.ports}
        for key, value in c.env.items():
            args += ["--env", f"{key}={value}"]
        if c.working_dir:
            args += ["--workdir", c.working_dir]
        args += ["--entrypoint", json.dumps(c.command), c.image, *c.args]
        return args, forward

    def _image_uid(self, image: str) -> int:
        user = (podman.image_inspect(image).get("Config") or {}).get("User") or "0"
        head = user.split(":", 1)[0]
        return int(head) if head.isdigit() else -1

    def start(self, pod: Pod, log_path: Path) -> PodmanPodHandle:
        if not podman.image_exists(pod.container.image):
            raise LauncherError(f"image {pod.container.image} is not in local storage (nothing is pulled): "
                                "build it with `python -m scripts.image build --tag ...` or set image.tag")
        args, forward = self.plan(pod)
        name = args[args.index("--name") + 1]
        address = args[args.index("--ip") + 1]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(podman.base_cmd() + args, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=podman.env(), start_new_session=True)
        forwards = [PortForward((address, port)) for port in forward.values()]
        endpoints = {cp: Endpoint("127.0.0.1", f.port) for cp, f in zip(forward, forwards)}
        empty_dirs = [] if self.keep_pod_dirs else [m.host_path for m in pod.container.mounts
                                                    if m.kind == "emptyDir"]
        handle = PodmanPodHandle(pod, log_path, name, popen, endpoints, forwards, empty_dirs)
        self.handles.append(handle)
        return handle

    # -- teardown ---------------------------------------------------------------------

    def teardown(self) -> None:
        for handle in self.handles:
            for forward in handle._forwards:
                forward.close()
        if self.run_id:
            remove_run(self.run_id)
        for handle in self.handles:
            with contextlib.suppress(subprocess.TimeoutExpired):
                handle.popen.wait(timeout=30)
        self.volumes.clear()


def factory(args) -> PodmanLauncher:
    """`python -m scripts.local_runner --launcher scripts.image.launcher:factory` (default options)."""
    return PodmanLauncher(keep_pod_dirs=args.keep_pod_dirs)


def apply_fs_group(root: Path, gid: int) -> None:
    """The kubelet's fsGroup ownership: group gid, group read/write, setgid directories."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        os.chown(path, -1, gid)
        mode = path.stat().st_mode & 0o7777
        if path.is_dir():
            os.chmod(path, mode | 0o2070)
        else:
            os.chmod(path, mode | 0o060 | (0o010 if mode & 0o100 else 0))


def make_empty_dir(path: Path, fs_group: int | None) -> None:
    """An emptyDir on the kubelet's default medium (node disk): a new directory of mode 0777 with
    the pod's fsGroup applied. Kubernetes pkg/volume/emptydir/empty_dir.go (commit 0379063):
    setupDir creates it with defaultPerm 0777, then SetUpAt applies the fsGroup ownership."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o777)  # not 1777: the sticky bit is the pod spec's opt-in (emptyDir.stickyBit)
    if fs_group is not None:
        apply_fs_group(path, fs_group)


def make_sub_path(root: Path, sub: Path) -> None:
    """Create a subPath directory the kubelet's way: each level with the volume root's mode and group."""
    st = root.stat()
    path = root
    for part in sub.relative_to(root).parts:
        path = path / part
        if not path.exists():
            path.mkdir()
            os.chown(path, -1, st.st_gid)
            os.chmod(path, st.st_mode & 0o7777)


def remove_run(run_id: str) -> None:
    """Remove the containers, volumes and network of one run (by label)."""
    label = f"label={RUN_LABEL}={run_id}"
    podman.remove_labelled("container", label)
    podman.remove_labelled("volume", label)
    podman.remove_labelled("network", label)


def cleanup_stale() -> list[str]:
    """Remove what runs of dead runners (crashed, SIGKILLed) left; returns their run ids."""
    proc = podman.run("ps", "-a", "--filter", f"label={podman.LABEL}", "--format",
                      "{{index .Labels \"" + RUN_LABEL + "\"}}", check=False, timeout=120)
    nets = podman.run("network", "ls", "--filter", f"label={podman.LABEL}", "--format",
                      "{{.Name}}", check=False, timeout=120)
    runs = {r for r in proc.stdout.split() if r and r != "<no"}
    runs |= {n.removeprefix("mnist-train-") for n in nets.stdout.split() if n.startswith("mnist-train-")}
    stale = sorted(r for r in runs if not netns.run_alive(r))
    for run_id in stale:
        remove_run(run_id)
    return stale
