"""Pods as the rendered manifests describe them, resolved the way Kubernetes would.

`PodBuilder.build()` turns a pod template (from a Job, JobSet, TFJob or
Deployment) plus what the controller adds (name, host name, index
annotations, TF_CONFIG) into a `Pod`: the container's command, args and
environment with `valueFrom` resolved and `$(VAR)` references expanded, and
each volume mount with the local directory backing it. Nothing here depends
on how the pod is then run.

`claim_paths()` says which PersistentVolumeClaim directories a pod template
reads (read-only mounts) and writes; the engine derives from it which Jobs
consume another's output. `remote_urls()` finds remote-store URLs (gs://, s3://)
a template's containers are given: the launcher decides whether its pods can reach
them (the process launcher: gs:// with --local-gcs, cloud_storage.py; nothing else).
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import math
import os
import re
from pathlib import Path

CLUSTER_DOMAIN = "cluster.local"
NODE_NAME = "local-runner"
HOST_IP = "127.0.0.1"


class ManifestError(Exception):
    """The rendered manifest uses something the local runner cannot reproduce."""


@dataclasses.dataclass(frozen=True)
class NetworkSlot:
    """A stable network identity (a worker's host name), shared by its successive pods."""

    key: str  # e.g. "mnist-train-trainer-0.mnist-train-workers"
    hostname: str
    dns_names: tuple[str, ...]  # every name that must resolve to this slot
    address: str = ""  # filled by the launcher


@dataclasses.dataclass(frozen=True)
class Port:
    name: str
    container_port: int
    protocol: str = "TCP"


@dataclasses.dataclass(frozen=True)
class Mount:
    """One volumeMount, with the local directory that backs it."""

    volume: str
    kind: str  # "pvc" or "emptyDir"
    container_path: str
    host_path: Path
    read_only: bool


@dataclasses.dataclass
class Container:
    name: str
    image: str
    command: list[str]
    args: list[str]
    env: dict[str, str]  # in manifest order, resolved and expanded
    ports: list[Port]
    mounts: list[Mount]
    security_context: dict
    resources: dict
    probes: dict  # startupProbe/readinessProbe/livenessProbe as rendered
    working_dir: str | None = None


@dataclasses.dataclass
class Pod:
    name: str
    namespace: str
    hostname: str
    subdomain: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    component: str  # app.kubernetes.io/component, else the workload name
    display: str  # short name for the terminal, e.g. "trainer-0"
    owner: str  # "Job/mnist-train-trainer"
    index: int | None
    attempt: int  # 0 for the first pod of this index, 1 for its replacement, ...
    container: Container
    grace_seconds: float
    restart_policy: str
    slot: NetworkSlot | None  # None: no cluster network identity (host network)
    pod_dir: Path
    service_account: str
    uid: str

    def host_path(self, container_path: str) -> Path | None:
        """The local path backing `container_path` (through the deepest mount holding it), or None."""
        for m in sorted(self.container.mounts, key=lambda m: -len(m.container_path)):
            base = m.container_path.rstrip("/")
            if container_path == m.container_path or container_path.startswith(base + "/"):
                return Path(str(m.host_path) + container_path[len(base):])
        return None


# -- quantities ---------------------------------------------------------------

_SUFFIXES = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
             "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "P": 1e15, "E": 1e18}


def parse_quantity(text) -> float:
    """A Kubernetes resource quantity ("500m", "2Gi", "1e3", 4) as a number."""
    match = re.fullmatch(r"([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)", str(text).strip())
    if not match or match.group(2) not in _SUFFIXES:
        raise ManifestError(f"cannot parse the resource quantity {text!r}")
    return float(match.group(1)) * _SUFFIXES[match.group(2)]


# -- $(VAR) expansion ---------------------------------------------------------

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: known variables are replaced, unknown
    references stay as written, $$ is a literal $."""
    def repl(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))
    return _REF.sub(repl, text)


# -- field references ---------------------------------------------------------

_SUBSCRIPT = re.compile(r"metadata\.(labels|annotations)\['([^']*)'\]")


def resolve_field_ref(path: str, pod_fields: dict) -> str:
    """The value of a downward-API fieldRef for this pod, or ManifestError."""
    match = _SUBSCRIPT.fullmatch(path)
    if match:
        mapping = pod_fields["labels" if match.group(1) == "labels" else "annotations"]
        if match.group(2) not in mapping:
            raise ManifestError(f"fieldRef {path}: the pod has no such {match.group(1)[:-1]} "
                                f"(it has {sorted(mapping)})")
        return mapping[match.group(2)]
    simple = {
        "metadata.name": pod_fields["name"], "metadata.namespace": pod_fields["namespace"],
        "metadata.uid": pod_fields["uid"], "spec.nodeName": NODE_NAME,
        "spec.serviceAccountName": pod_fields["service_account"],
        "status.hostIP": HOST_IP, "status.hostIPs": HOST_IP,
        "status.podIP": pod_fields["pod_ip"], "status.podIPs": pod_fields["pod_ip"],
    }
    if path in simple:
        return simple[path]
    raise ManifestError(f"fieldRef {path!r} is not supported by the local runner "
                        f"(supported: {', '.join(sorted(simple))}, metadata.labels['k'], "
                        "metadata.annotations['k'])")


def _resource_field_ref(ref: dict, container: dict) -> str:
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise ManifestError(f"resourceFieldRef {resource!r} is not supported")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(name)
    if raw is None:  # no limit: Kubernetes reports the node's allocatable amount
        if name == "cpu":
            value = float(os.cpu_count() or 1)
        elif name == "memory":
            value = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
        else:
            raise ManifestError(f"resourceFieldRef {resource}: no value set")
    else:
        value = parse_quantity(raw)
    divisor = parse_quantity(ref.get("divisor", "1"))
    return str(max(1, math.ceil(value / divisor)) if name == "cpu" else math.ceil(value / divisor))


# -- the builder ----------------------------------------------------------------


@dataclasses.dataclass
class PodRequest:
    """What a controller adds to a pod template for one pod."""

    template: dict  # the pod template (metadata + spec)
    name: str
    hostname: str
    subdomain: str | None
    owner: str
    index: int | None
    attempt: int
    display: str
    container_name: str | None = None  # which container (default: the only one)
    labels: dict = dataclasses.field(default_factory=dict)
    annotations: dict = dataclasses.field(default_factory=dict)
    injected_env: dict = dataclasses.field(default_factory=dict)  # e.g. TF_CONFIG from an operator
    slot: NetworkSlot | None = None


class PodBuilder:
    """Resolves pod templates against the rendering (Secrets, ConfigMaps) and the run directory."""

    def __init__(self, namespace: str, run_dir: Path, docs: list[dict]):
        self.namespace = namespace
        self.run_dir = run_dir
        self.secrets = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "Secret"}
        self.config_maps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
        self._uids = 0

    def claim_dir(self, claim: str) -> Path:
        return self.run_dir / "volumes" / claim

    def build(self, req: PodRequest) -> Pod:
        template = copy.deepcopy(req.template)
        meta = template.get("metadata") or {}
        spec = template.get("spec") or {}
        containers = spec.get("containers") or []
        if spec.get("initContainers"):
            raise ManifestError(f"{req.owner}: init containers are not supported by the local runner")
        if req.container_name:
            chosen = [c for c in containers if c.get("name") == req.container_name]
        else:
            chosen = containers
        if len(chosen) != 1:
            raise ManifestError(f"{req.owner}: expected one container"
                                f"{' named ' + req.container_name if req.container_name else ''}, "
                                f"found {[c.get('name') for c in containers]}")
        if len(containers) != 1:
            raise ManifestError(f"{req.owner}: pods with several containers are not supported")
        c = chosen[0]
        labels = {**(meta.get("labels") or {}), **req.labels}
        annotations = {**(meta.get("annotations") or {}), **req.annotations}
        self._uids += 1
        uid = f"local-{self._uids:06d}"
        pod_dir = self.run_dir / "pods" / req.name
        fields = {"name": req.name, "namespace": self.namespace, "uid": uid, "labels": labels,
                  "annotations": annotations,
                  "service_account": spec.get("serviceAccountName") or "default",
                  "pod_ip": req.slot.address if req.slot and req.slot.address else HOST_IP}
        env = self._env(c, fields, req)
        command = [expand(str(a), env) for a in (c.get("command") or [])]
        args = [expand(str(a), env) for a in (c.get("args") or [])]
        if not command:
            raise ManifestError(f"{req.owner}: container {c.get('name')} has no command; the local "
                                "runner cannot know the image's entrypoint")
        mounts = self._mounts(c, spec, pod_dir, req.owner)
        ports = [Port(p.get("name", ""), int(p["containerPort"]), p.get("protocol", "TCP"))
                 for p in c.get("ports") or []]
        security = {**(spec.get("securityContext") or {}), **(c.get("securityContext") or {})}
        component = labels.get("app.kubernetes.io/component") or req.owner.split("/", 1)[-1]
        return Pod(
            name=req.name, namespace=self.namespace, hostname=req.hostname, subdomain=req.subdomain,
            labels=labels, annotations=annotations, component=component, display=req.display,
            owner=req.owner, index=req.index, attempt=req.attempt,
            container=Container(
                name=c.get("name", ""), image=c.get("image", ""), command=command, args=args, env=env,
                ports=ports, mounts=mounts, security_context=security,
                resources=c.get("resources") or {},
                probes={k: c[k] for k in ("startupProbe", "readinessProbe", "livenessProbe") if k in c},
                working_dir=c.get("workingDir")),
            grace_seconds=float(spec.get("terminationGracePeriodSeconds", 30)),
            restart_policy=spec.get("restartPolicy", "Always"), slot=req.slot, pod_dir=pod_dir,
            service_account=fields["service_account"], uid=uid)

    # -- environment ------------------------------------------------------------

    def _lookup(self, kind: str, ref: dict, owner: str) -> str | None:
        store = self.secrets if kind == "Secret" else self.config_maps
        name, key = ref.get("name"), ref.get("key")
        doc = store.get(name)
        if doc is None:
            if ref.get("optional"):
                return None
            raise ManifestError(f"{owner}: the {kind} {name!r} is not part of the rendered chart; the "
                                "local runner cannot read objects that live only in a cluster")
        if kind == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in (doc.get("data") or {}).items()}
            data.update(doc.get("stringData") or {})
        else:
            data = dict(doc.get("data") or {})
        if key not in data:
            if ref.get("optional"):
                return None
            raise ManifestError(f"{owner}: the {kind} {name!r} has no key {key!r}")
        return data[key]

    def _env(self, c: dict, fields: dict, req: PodRequest) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in c.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                if field in source:
                    ref = source[field]
                    store = self.secrets if kind == "Secret" else self.config_maps
                    if ref.get("name") not in store:
                        if ref.get("optional"):
                            continue
                        raise ManifestError(f"{req.owner}: envFrom {kind} {ref.get('name')!r} is not "
                                            "part of the rendered chart")
                    for key in store[ref["name"]].get("data") or {}:
                        env[prefix + key] = self._lookup(kind, {"name": ref["name"], "key": key}, req.owner)
        # An operator's variables (TF_CONFIG) come first, as the training
        # operator prepends them; the manifest's own entries override them.
        env.update(req.injected_env)
        for item in c.get("env") or []:
            name = item["name"]
            if "value" in item or "valueFrom" not in item:
                env[name] = expand(str(item.get("value", "")), env)
                continue
            source = item["valueFrom"]
            if "fieldRef" in source:
                env[name] = resolve_field_ref(source["fieldRef"]["fieldPath"], fields)
            elif "resourceFieldRef" in source:
                env[name] = _resource_field_ref(source["resourceFieldRef"], c)
            elif "secretKeyRef" in source:
                value = self._lookup("Secret", source["secretKeyRef"], req.owner)
                if value is not None:
                    env[name] = value
            elif "configMapKeyRef" in source:
                value = self._lookup("ConfigMap", source["configMapKeyRef"], req.owner)
                if value is not None:
                    env[name] = value
            else:
                raise ManifestError(f"{req.owner}: env {name}: valueFrom {sorted(source)} is not supported")
        return env

    # -- volumes ------------------------------------------------------------------

    def _mounts(self, c: dict, spec: dict, pod_dir: Path, owner: str) -> list[Mount]:
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        mounts = []
        for m in c.get("volumeMounts") or []:
            volume = volumes.get(m["name"])
            if volume is None:
                raise ManifestError(f"{owner}: volumeMount {m['name']!r} names no volume of the pod")
            if "subPathExpr" in m:
                raise ManifestError(f"{owner}: volumeMount {m['name']!r}: subPathExpr is not supported")
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]
                base = self.claim_dir(claim["claimName"])
                kind = "pvc"
                read_only = bool(m.get("readOnly")) or bool(claim.get("readOnly"))
            elif "emptyDir" in volume:
                base = pod_dir / "volumes" / m["name"]
                kind = "emptyDir"
                read_only = bool(m.get("readOnly"))
            else:
                kinds = sorted(k for k in volume if k != "name")
                raise ManifestError(f"{owner}: volume {m['name']!r} of type {kinds} is not supported by "
                                    "the local runner (only persistentVolumeClaim and emptyDir)")
            sub = m.get("subPath", "")
            if sub and (os.path.isabs(sub) or ".." in Path(sub).parts):
                raise ManifestError(f"{owner}: volumeMount subPath {sub!r} must be relative without '..'")
            mounts.append(Mount(m["name"], kind, m["mountPath"].rstrip("/") or "/",
                                (base / sub) if sub else base, read_only))
        return mounts


# -- what a pod template reads and writes ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class ClaimPath:
    """A directory of a PersistentVolumeClaim: the claim and the subPath within it."""

    claim: str
    sub_path: str

    def overlaps(self, other: ClaimPath) -> bool:
        """One holds the other (the same directory, or one is inside the other)."""
        if self.claim != other.claim:
            return False
        mine, theirs = Path(self.sub_path).parts, Path(other.sub_path).parts
        return mine[:len(theirs)] == theirs or theirs[:len(mine)] == mine

    def __str__(self) -> str:
        return f"{self.claim}/{self.sub_path}" if self.sub_path else self.claim


def claim_paths(template: dict) -> tuple[list[ClaimPath], list[ClaimPath]]:
    """The claim directories a pod template's containers mount (read-only, writable)."""
    spec = template.get("spec") or {}
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    reads, writes = [], []
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for m in c.get("volumeMounts") or []:
            claim = (volumes.get(m["name"]) or {}).get("persistentVolumeClaim")
            if not claim:
                continue
            path = ClaimPath(claim["claimName"], str(m.get("subPath", "")).strip("/"))
            (reads if m.get("readOnly") or claim.get("readOnly") else writes).append(path)
    return reads, writes


# A URL of a remote store (gs://, s3://, hdfs://, ...) in a container's command, args or env: such
# a pod needs a network the runner's pods do not have (cloud_storage.py serves gs:// on request).
# http(s) and file URLs may be local.
REMOTE_URL = re.compile(r"^(?!https?://|file://)([a-z][a-z0-9+.-]*)://\S")


def remote_urls(template: dict) -> list[str]:
    """The remote-store URLs a pod template's containers are given."""
    spec = template.get("spec") or {}
    found = []
    for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        values = [*(c.get("command") or []), *(c.get("args") or []),
                  *(e.get("value", "") for e in c.get("env") or [])]
        found += [str(v) for v in values if REMOTE_URL.match(str(v))]
    return found
