"""Inside a pod's fresh mount (and UTS) namespace: set up its view, then exec the container.

Run by the process launcher as

    [nsenter --net=/run/netns/<pod ns>] unshare --mount --uts --propagation private \\
        python -I podshim.py <spec.json>

with the pod's environment. Standard library only (it runs before anything of
the project). Steps, in an order that matters (a bind mount inherits the
read-only flag of its source, and remounting a mount leaves the mounts on
top of it alone):

1. die with the runner (PR_SET_PDEATHSIG), so no pod outlives it;
2. bind every volume's directory at its place (all read-write);
3. bind the pod's hosts file and resolv.conf over /etc/hosts and /etc/resolv.conf;
4. set the pod's host name;
5. remount read-only the volume mounts marked readOnly and, when the
   securityContext asks for readOnlyRootFilesystem, every other mount except
   /proc, /sys, /dev and the writable volumes;
6. exec the container's command through `setpriv`: no capabilities (bounding
   and inheritable sets emptied, so even uid 0 has none after exec), no new
   privileges, SIGKILL on the runner's death again.

Nothing here touches the host: the mount namespace is private.
"""

import ctypes
import json
import os
import signal
import socket
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME, MS_STRICTATIME = 16384, 1 << 18, 1 << 21, 1 << 24
PR_SET_PDEATHSIG = 1
OPTION_FLAGS = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
                "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME}
PSEUDO = ("/proc", "/sys", "/dev")

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]


def fail(message: str) -> None:
    print(f"local-runner | pod set-up failed: {message}", file=sys.stderr, flush=True)
    sys.exit(126)


def mount(source, target, flags, what):
    if libc.mount(source.encode() if source else None, target.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what} {target}: {os.strerror(err)}")


def unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    out, i = [], 0
    while i < len(field):
        code = field[i + 1:i + 4]
        if field[i] == "\\" and len(code) == 3 and code.isdigit():
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            yield unescape(fields[4]), fields[5].split(",")


def remount_read_only(target: str, options) -> None:
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY
    for option in options:
        flags |= OPTION_FLAGS.get(option, 0)
    mount(None, target, flags, "remount read-only")


def under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def main() -> None:
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        fail("prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != spec["parent_pid"]:  # the runner died before we armed the signal
        sys.exit(137)
    try:
        mount(None, "/", MS_REC | MS_PRIVATE, "make private")
        for bind in spec["binds"]:
            os.makedirs(bind["source"], exist_ok=True)
            os.makedirs(bind["target"], exist_ok=True)
            mount(bind["source"], bind["target"], MS_BIND, "bind")
        for target, source in spec.get("files", {}).items():
            mount(source, target, MS_BIND, "bind")
        if spec.get("hostname"):
            socket.sethostname(spec["hostname"])
        options = dict(mounts())
        for bind in spec["binds"]:
            if bind["read_only"]:
                remount_read_only(bind["target"], options.get(bind["target"], []))
        if spec.get("read_only_root"):
            ours = [b["target"] for b in spec["binds"]]
            for target, opts in list(mounts()):
                if target in ours or any(under(target, p) for p in PSEUDO) or "ro" in opts:
                    continue
                if any(under(target, o) for o in ours):
                    continue  # something mounted inside a volume: leave it as the volume is
                if not os.path.lexists(target):
                    continue  # shadowed by a mount on top (the rootless runner's /run/netns)
                try:
                    remount_read_only(target, opts)
                except OSError as e:
                    print(f"local-runner | warning: {e}", file=sys.stderr, flush=True)
        os.chdir(spec["cwd"])
    except OSError as e:
        fail(str(e))
    argv = ["setpriv", "--pdeathsig", "KILL"]
    if spec.get("drop_capabilities", True):
        argv += ["--no-new-privs", "--bounding-set", "-all", "--inh-caps", "-all"]
    argv += ["--", *spec["argv"]]
    try:
        os.execvp("setpriv", argv)
    except OSError as e:
        fail(f"exec setpriv: {e}")


if __name__ == "__main__":
    main()
