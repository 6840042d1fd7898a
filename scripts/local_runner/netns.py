"""Per-run network namespaces: one per worker pod plus a bridge, nothing on the host.

Like Kubernetes, every worker gets its own network namespace, so all of them
can listen on the chart's port (2222) at once. The namespaces of a run are

    mlr-<pid>-<start>-net   a bridge `br0` (and loopback), no address
    mlr-<pid>-<start>-p<i>  the pod's `eth0` (a veth whose peer sits on br0,
                            address 10.244.0.<10+i>/24) and loopback

where <pid> and <start> identify the runner process (its pid and start time
in clock ticks), so a later run can tell a dead runner's leftovers from a
live one's. Both ends of every veth are created directly inside those
namespaces (`ip -n`): no link, address or route is ever added to the host's
namespace, and the 10.244.0.0/24 addresses exist only in them. Pods reach
each other through the bridge and nothing else.

With a shared namespace (`shared=True`: --local-gcs or --helm-test, cloud_storage.py),

    mlr-<pid>-<start>-svc   loopback only: the pods without a network identity
                            (evaluator, TensorBoard, the helm test hook), together

whose hosts file maps the rendering's Service names to 127.0.0.1 (their pods are
there). `extra_hosts` lines (the Cloud Storage names) go into every pod's hosts file.

Name resolution: each pod gets a hosts file, bind-mounted over /etc/hosts in
its private mount namespace, with the headless Service's records for every
worker (and its own name, as the kubelet writes it), and a resolv.conf whose
only nameserver is the pod's own loopback, where nothing listens.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import subprocess
from collections.abc import Sequence
from pathlib import Path

from scripts.local_runner.controllers.base import service_dns_names
from scripts.local_runner.manifest import NetworkSlot

PREFIX = "mlr"
# How every hosts file the runner writes starts.
LOCALHOST_LINES = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
NETNS_DIR = Path("/run/netns")
SUBNET = "10.244.0"
FIRST_HOST = 10
MAX_SLOTS = 200


class NetnsError(Exception):
    pass


def _start_ticks(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[19])  # field 22 of stat, counted after pid and comm


def new_run_id() -> str:
    """<pid>-<start time base 36>-<4 hex>: unique, and tells whether its runner still lives."""
    pid = os.getpid()
    return f"{pid}-{_b36(_start_ticks(pid) or 0)}-{secrets.token_hex(2)}"


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


_NAME = re.compile(rf"^{PREFIX}-(\d+)-([0-9a-z]+)-([0-9a-f]+)-(\w+)$")


def run_alive(run_id: str) -> bool:
    match = re.fullmatch(r"(\d+)-([0-9a-z]+)-[0-9a-f]+", run_id)
    if not match:
        return False
    ticks = _start_ticks(int(match.group(1)))
    return ticks is not None and _b36(ticks) == match.group(2)


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
    return result


def _ip(*args: str, check: bool = True, wrap: Sequence[str] = ()) -> subprocess.CompletedProcess:
    """`ip ...`, inside the rootless runner's user and mount namespaces when `wrap` says how
    (userns.Holder.prefix; empty as root)."""
    return _run([*wrap, "ip", *args], check=check)


def list_namespaces(wrap: Sequence[str] = ()) -> list[str]:
    result = _ip("netns", "list", check=False, wrap=wrap)
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def runner_namespaces(run_id: str | None = None, wrap: Sequence[str] = ()) -> list[str]:
    """Namespaces made by local runners (of one run, if given)."""
    out = []
    for name in list_namespaces(wrap):
        match = _NAME.match(name)
        if match and (run_id is None or "-".join(match.group(1, 2, 3)) == run_id):
            out.append(name)
    return out


def delete_run(run_id: str, wrap: Sequence[str] = ()) -> list[str]:
    """Delete every namespace of a run (idempotent). Returns what was deleted."""
    deleted = []
    # Pod namespaces first (deleting them removes their veths), the bridge last.
    for name in sorted(runner_namespaces(run_id, wrap), key=lambda n: n.endswith("-net")):
        if _ip("netns", "delete", name, check=False, wrap=wrap).returncode == 0:
            deleted.append(name)
    return deleted


def cleanup_stale() -> list[str]:
    """Delete the namespaces of runners that no longer exist (crashed or SIGKILLed)."""
    deleted = []
    runs = {"-".join(_NAME.match(n).group(1, 2, 3)) for n in runner_namespaces()}
    for run_id in sorted(runs):
        if not run_alive(run_id):
            deleted += delete_run(run_id)
    return deleted


@dataclasses.dataclass
class PodNetwork:
    run_id: str
    files_dir: Path
    namespace: str  # Kubernetes namespace, for the resolv.conf search list
    slots: list[NetworkSlot] = dataclasses.field(default_factory=list)
    # Rootless: the command prefix entering the runner's user + mount namespaces (userns.py).
    wrap: Sequence[str] = ()
    created: list[str] = dataclasses.field(default_factory=list)
    extra_hosts: str = ""  # appended to every hosts file (e.g. cloud_storage.py's names)
    services: Sequence[str] = ()  # Service names resolving to 127.0.0.1 in the shared namespace
    shared: bool = False  # create the shared namespace for the pods without a slot

    @property
    def shared_ns(self) -> str:
        return f"{PREFIX}-{self.run_id}-svc"

    @property
    def shared_hosts_file(self) -> Path:
        return self.files_dir / "hosts-svc"

    def shared_netns_path(self) -> str:
        return str(NETNS_DIR / self.shared_ns)

    def namespace_paths(self) -> list[str]:
        """Every pod namespace of the run (the slots', then the shared one)."""
        paths = [str(NETNS_DIR / self.pod_ns(i)) for i in range(len(self.slots))]
        return paths + ([self.shared_netns_path()] if self.shared else [])

    @property
    def bridge_ns(self) -> str:
        return f"{PREFIX}-{self.run_id}-net"

    def pod_ns(self, i: int) -> str:
        return f"{PREFIX}-{self.run_id}-p{i}"

    def netns_path(self, slot_key: str) -> str:
        return str(NETNS_DIR / self.pod_ns(self._index(slot_key)))

    def _index(self, slot_key: str) -> int:
        for i, slot in enumerate(self.slots):
            if slot.key == slot_key:
                return i
        raise KeyError(slot_key)

    def hosts_file(self, slot_key: str) -> Path:
        return self.files_dir / f"hosts-p{self._index(slot_key)}"

    @property
    def resolv_conf(self) -> Path:
        return self.files_dir / "resolv.conf"

    def create(self, slots: list[NetworkSlot]) -> list[NetworkSlot]:
        if len(slots) > MAX_SLOTS:
            raise NetnsError(f"at most {MAX_SLOTS} worker pods per run")
        self.slots = [dataclasses.replace(s, address=f"{SUBNET}.{FIRST_HOST + i}")
                      for i, s in enumerate(slots)]
        self._add(self.bridge_ns)
        _ip("-n", self.bridge_ns, "link", "set", "lo", "up", wrap=self.wrap)
        _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge", wrap=self.wrap)
        _ip("-n", self.bridge_ns, "link", "set", "br0", "up", wrap=self.wrap)
        for i, slot in enumerate(self.slots):
            ns = self.pod_ns(i)
            self._add(ns)
            _ip("-n", ns, "link", "set", "lo", "up", wrap=self.wrap)
            _ip("-n", self.bridge_ns, "link", "add", f"p{i}", "type", "veth", "peer", "name", "eth0",
                "netns", ns, wrap=self.wrap)
            _ip("-n", self.bridge_ns, "link", "set", f"p{i}", "master", "br0", wrap=self.wrap)
            _ip("-n", self.bridge_ns, "link", "set", f"p{i}", "up", wrap=self.wrap)
            _ip("-n", ns, "addr", "add", f"{slot.address}/24", "dev", "eth0", wrap=self.wrap)
            _ip("-n", ns, "link", "set", "eth0", "up", wrap=self.wrap)
        if self.shared:
            self._add(self.shared_ns)
            _ip("-n", self.shared_ns, "link", "set", "lo", "up", wrap=self.wrap)
        self._write_files()
        return self.slots

    def _add(self, name: str) -> None:
        if self.wrap:
            # `ip netns add` would fail to switch back to the host's namespace, which this user
            # namespace does not own; unshare binds the new namespace to the file and exits.
            path = str(NETNS_DIR / name)
            _run([*self.wrap, "touch", path])
            _run([*self.wrap, "unshare", f"--net={path}", "true"])
        else:
            _ip("netns", "add", name)
        self.created.append(name)

    def _write_files(self) -> None:
        self.files_dir.mkdir(parents=True, exist_ok=True)
        records = [f"{s.address}\t{' '.join(s.dns_names)}" for s in self.slots]
        for slot in self.slots:
            fqdn = max(slot.dns_names, key=len) if slot.dns_names else slot.hostname
            self.hosts_file(slot.key).write_text(
                f"# /etc/hosts of the pod {slot.hostname} (local runner {self.run_id}):\n"
                "# its own name as the kubelet writes it, then the headless Service's records.\n"
                + LOCALHOST_LINES
                + f"{slot.address}\t{fqdn} {slot.hostname}\n" + "\n".join(records) + "\n" + self.extra_hosts)
        if self.shared:
            names = [n for s in self.services for n in service_dns_names(s, self.namespace)]
            self.shared_hosts_file.write_text(
                f"# /etc/hosts of the pods without a network identity (local runner {self.run_id}):\n"
                "# the rendering's Services are served in this namespace.\n"
                + LOCALHOST_LINES
                + (f"127.0.0.1\t{' '.join(names)}\n" if names else "") + "\n".join(records) + "\n"
                + self.extra_hosts)
        self.resolv_conf.write_text(
            "# No DNS server: every name a pod needs is in its /etc/hosts; nothing listens on the\n"
            "# pod's loopback, so any other lookup fails at once and never leaves the namespace.\n"
            f"search {self.namespace}.svc.cluster.local svc.cluster.local cluster.local\n"
            "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")

    def teardown(self) -> list[str]:
        deleted = delete_run(self.run_id, self.wrap)
        self.created = []
        return deleted
