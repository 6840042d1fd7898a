"""Pod Security Standards "restricted" (Kubernetes 1.31+), checked offline on a
pod spec, plus this chart's stricter defaults ("and more").

`restricted_violations(pod_spec)` lists what the "restricted" level forbids
or requires, for every container: init, regular and ephemeral.
`hardening_violations(pod_spec)` lists the chart's extra rules.
An empty list means compliant.
"""

from __future__ import annotations

from .manifests import containers

ALLOWED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                        "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t",
                 "container_engine_t"}


def _ctx(obj: dict) -> dict:
    return obj.get("securityContext") or {}


def restricted_violations(pod_spec: dict) -> list[str]:
    out: list[str] = []
    pod_sc = _ctx(pod_spec)

    # Baseline: host namespaces, host paths and ports, sysctls, SELinux, AppArmor.
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod_spec.get(key):
            out.append(f"pod: {key} must not be true")
    for vol in pod_spec.get("volumes") or []:
        kinds = set(vol) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            out.append(f"volume {vol['name']}: type {sorted(kinds - ALLOWED_VOLUME_TYPES)} not allowed")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"pod: sysctl {sysctl.get('name')} is not safe")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("pod: windowsOptions.hostProcess must not be true")

    pod_non_root = pod_sc.get("runAsNonRoot")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp is not None and pod_seccomp not in ("RuntimeDefault", "Localhost"):
        out.append(f"pod: seccompProfile.type {pod_seccomp} not allowed")
    if pod_sc.get("runAsUser") == 0:
        out.append("pod: runAsUser must not be 0")
    for scope, sc in [("pod", pod_sc)] + [(c["name"], _ctx(c)) for c in containers(pod_spec)]:
        se = sc.get("seLinuxOptions") or {}
        if se.get("type") not in SELINUX_TYPES or se.get("user") or se.get("role"):
            out.append(f"{scope}: seLinuxOptions not allowed")
        apparmor = (sc.get("appArmorProfile") or {}).get("type")
        if apparmor not in (None, "RuntimeDefault", "Localhost"):
            out.append(f"{scope}: appArmorProfile.type {apparmor} not allowed")

    all_containers = containers(pod_spec)
    if not all_containers:
        out.append("pod: no containers")
    for c in all_containers:
        sc, name = _ctx(c), f"container {c['name']}"
        if sc.get("privileged"):
            out.append(f"{name}: privileged must not be true")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"{name}: windowsOptions.hostProcess must not be true")
        if sc.get("procMount") not in (None, "Default"):
            out.append(f"{name}: procMount must be Default")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"{name}: hostPort must not be set")
        # Restricted.
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}: allowPrivilegeEscalation must be false")
        non_root = sc.get("runAsNonRoot", pod_non_root)
        if non_root is not True:
            out.append(f"{name}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            out.append(f"{name}: runAsUser must not be 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{name}: seccompProfile.type must be RuntimeDefault or Localhost (pod or container)")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{name}: capabilities.drop must include ALL")
        extra = set(caps.get("add") or []) - {"NET_BIND_SERVICE"}
        if extra:
            out.append(f"{name}: capabilities.add {sorted(extra)} not allowed")
    return out


def hardening_violations(pod_spec: dict) -> list[str]:
    """The chart's defaults beyond "restricted"."""
    out: list[str] = []
    pod_sc = _ctx(pod_spec)
    if pod_spec.get("automountServiceAccountToken") is not False:
        out.append("pod: automountServiceAccountToken must be false (no pod calls the API)")
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        if not isinstance(pod_sc.get(key), int) or pod_sc[key] <= 0:
            out.append(f"pod: {key} must be a non-zero uid/gid")
    tmp_volumes = {v["name"] for v in pod_spec.get("volumes") or [] if "emptyDir" in v}
    for c in containers(pod_spec):
        sc, name = _ctx(c), f"container {c['name']}"
        if sc.get("readOnlyRootFilesystem") is not True:
            out.append(f"{name}: readOnlyRootFilesystem must be true")
        if not any(m["mountPath"] == "/tmp" and m["name"] in tmp_volumes
                   for m in c.get("volumeMounts") or []):
            out.append(f"{name}: needs an emptyDir at /tmp (read-only root filesystem)")
        for key in ("runAsUser", "runAsGroup"):
            if key in sc and (not isinstance(sc[key], int) or sc[key] <= 0):
                out.append(f"{name}: {key} must be non-zero")
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for what in ("cpu", "memory"):
                if what not in (res.get(kind) or {}):
                    out.append(f"{name}: resources.{kind}.{what} must be set")
    return out
