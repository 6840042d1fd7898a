"""Rootless mode: the user namespace a normal user's runner owns, or exactly why there is none.

As root the runner creates its namespaces directly (netns.py). As a normal
user it starts a *holder*: a process in a new user namespace (the user mapped
to uid 0 there, so it holds every capability over the namespaces it creates,
and none over the host's) and a new mount namespace, where a tmpfs is
mounted over /run/netns (over /run when /run/netns does not exist on the host,
since a normal user cannot create it; HOLDER_SCRIPT). `ip netns` then works there
unchanged: the pod network namespaces, bridge and veths live in namespaces
owned by the holder's user namespace, and their names only in its private
/run/netns. Every `ip` command and every pod enters the holder's user and
mount namespaces (`nsenter --target <holder> --user --mount`) first.

Nothing is left behind by construction: the holder reads its stdin, a pipe
from the runner, and exits at EOF, i.e. when the runner exits or is killed
(its command line names the run: `mlr-holder <run id>`);
the pods die with the runner (PR_SET_PDEATHSIG, podshim.py). Once the last
of these processes is gone the mount namespace is freed, with it the bind
mounts that kept the network namespaces, and with those the bridge, veths
and addresses. No name was ever visible on the host.

Where unprivileged user namespaces are not available, unavailable_reason()
says why, naming the setting to change; it detects by trying (`unshare -r -n -m
true`) and only then reads the sysctls to explain. `proc_sys` can point
those reads at a fake /proc/sys directory (the unit tests do so).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from scripts.local_runner import procfs

PROBE = ["unshare", "--user", "--map-root-user", "--net", "--mount", "true"]
TOOLS = {"ip": "iproute2", "nsenter": "util-linux", "unshare": "util-linux", "setpriv": "util-linux"}
PROC_SYS = Path("/proc/sys")

# In the holder ($1 the run id, $2 an empty directory of the user's): a private /run/netns. Where
# the host has none (a normal user cannot create it), a tmpfs over /run, whose entries are symlinks
# to the host's /run, bound at $2 (so /etc/resolv.conf -> /run/systemd/... still resolves).
HOLDER_SCRIPT = (
    "set -e\n"
    "if [ -d /run/netns ]; then mount -t tmpfs -o mode=755 mlr-netns /run/netns\n"
    "else\n"
    "  mount --rbind /run \"$2\"\n"
    "  mount -t tmpfs -o mode=755 mlr-run /run\n"
    "  for entry in \"$2\"/* \"$2\"/.[!.]*; do\n"
    "    [ -e \"$entry\" ] || [ -L \"$entry\" ] || continue\n"
    "    ln -s \"$entry\" \"/run/${entry##*/}\"\n"
    "  done\n"
    "  mkdir /run/netns\n"
    "fi\n"
    "mount --make-shared /run/netns 2>/dev/null || "
    "{ mount --bind /run/netns /run/netns; mount --make-shared /run/netns; }\n"
    "echo ready\n"
    "cat >/dev/null\n")  # not exec'd: the shell's command line names the run (HOLDER_NAME)
HOLDER_NAME = "mlr-holder"


class UsernsError(Exception):
    pass


def missing_tools(which=shutil.which) -> list[str]:
    return sorted(t for t in TOOLS if which(t) is None)


def probe() -> str | None:
    """Try to create a user, network and mount namespace; None if that works, else the error."""
    try:
        result = subprocess.run(PROBE, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return str(e)
    return None if result.returncode == 0 else (result.stderr.strip() or f"exit {result.returncode}")


def _read_int(proc_sys: Path, name: str) -> int | None:
    try:
        return int((proc_sys / name).read_text().strip())
    except (OSError, ValueError):
        return None


def explain(error: str, proc_sys: Path = PROC_SYS) -> str:
    """Why `unshare -r -n -m` failed with `error`, naming the setting to change (read from
    proc_sys, /proc/sys unless a test points it at a fake directory)."""
    head = (f"unprivileged user namespaces are not available here (`{' '.join(PROBE)}` failed: "
            f"{error}); the local runner needs them to run as a normal user.\n")
    max_userns = _read_int(proc_sys, "user/max_user_namespaces")
    if max_userns == 0:
        return head + ("user.max_user_namespaces is 0. Allow them: "
                       "`sudo sysctl -w user.max_user_namespaces=15000` (to keep it, put "
                       "user.max_user_namespaces=15000 in /etc/sysctl.d/99-userns.conf).")
    if _read_int(proc_sys, "kernel/unprivileged_userns_clone") == 0:
        return head + ("kernel.unprivileged_userns_clone is 0 (Debian / older Ubuntu kernels). Allow them: "
                       "`sudo sysctl -w kernel.unprivileged_userns_clone=1` (to keep it, put "
                       "kernel.unprivileged_userns_clone=1 in /etc/sysctl.d/99-userns.conf).")
    if _read_int(proc_sys, "kernel/apparmor_restrict_unprivileged_userns") == 1:
        return head + ("kernel.apparmor_restrict_unprivileged_userns is 1 (Ubuntu 24.04 and later: "
                       "AppArmor lets only profiled programs use them, and a namespace made anyway "
                       "has no capabilities). Allow them: "
                       "`sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` (to keep it, "
                       "put that setting in /etc/sysctl.d/99-userns.conf).")
    if max_userns is None and not (proc_sys / "user").exists():
        return head + "this kernel has no user namespaces (CONFIG_USER_NS); run the runner as root."
    return head + ("No sysctl forbids them, so something else does (a container without "
                   "user namespaces, seccomp, or an exhausted user.max_user_namespaces); "
                   "run the runner as root, or on a Linux machine or VM that allows them.")


def unavailable_reason(proc_sys: Path = PROC_SYS, which=shutil.which, try_it=probe) -> str | None:
    """Why a normal user's runner cannot run here, or None. Tools first, then the real probe."""
    missing = missing_tools(which)
    if missing:
        packages = sorted({TOOLS[t] for t in missing})
        return (f"missing tools: {', '.join(missing)} (install the Debian/Ubuntu package(s) "
                f"{', '.join(packages)})")
    error = try_it()
    return None if error is None else explain(error, proc_sys)


def start_holder(argv: list[str], what: str) -> subprocess.Popen:
    """Start a namespace holder: `argv` (an `unshare ... -- sh -c SCRIPT`) whose script prints
    "ready" once its namespaces are set up, then holds them until its stdin (a pipe from us)
    closes. UsernsError names `what` and the script's error if it never gets ready."""
    popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             close_fds=True)
    if popen.stdout.readline() != b"ready\n":
        popen.stdin.close()
        err = popen.stderr.read().decode(errors="replace").strip()
        popen.wait()
        raise UsernsError(f"cannot create {what}: {err or 'no output'}")
    return popen


def stop_holder(popen: subprocess.Popen, timeout: float = 10) -> None:
    """Let a holder (or any child that lives until its stdin closes) go and wait for it, killing
    it after `timeout`; its namespaces die with the last process in them."""
    if popen.poll() is None:
        popen.stdin.close()
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    for stream in (popen.stdin, popen.stdout, popen.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


class Holder:
    """The rootless runner's user + mount namespace, kept by one process until stop() or its death."""

    def __init__(self, run_id: str, scratch: Path) -> None:
        # `ps` shows `sh -c ... mlr-holder <run id>`: which run the process belongs to.
        self.scratch = scratch  # where the host's /run is bound if /run/netns is missing
        scratch.mkdir(parents=True, exist_ok=True)
        self.popen = start_holder(
            ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private",
             "--", "sh", "-c", HOLDER_SCRIPT, HOLDER_NAME, run_id, str(scratch)],
            "the runner's user namespace")
        self.pid = self.popen.pid
        self.userns = os.stat(f"/proc/{self.pid}/ns/user").st_ino

    @property
    def prefix(self) -> list[str]:
        """Run a command inside the holder's namespaces as its uid 0 (the invoking user outside).
        --preserve-credentials: the uid is already mapped, and setgroups is denied there."""
        return ["nsenter", f"--target={self.pid}", "--user", "--mount", "--preserve-credentials", "--"]

    def stop(self) -> None:
        stop_holder(self.popen)
        with contextlib.suppress(OSError):
            self.scratch.rmdir()  # empty again: the bind mount was only in the holder's namespace


def processes_in(userns_inode: int) -> list[int]:
    """Live processes (not zombies) in the user namespace with this inode: what must be gone."""
    return procfs.live_pids(lambda pid, _: os.stat(f"/proc/{pid}/ns/user").st_ino == userns_inode)
