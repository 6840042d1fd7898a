"""Run podman the way every script here does: project-local containers.conf, runc.

Nothing here edits /etc: `CONTAINERS_CONF` points podman at containers.conf
beside this file, and every call passes `--runtime runc`. Everything this
package creates carries the label `io.mnist-train.made-by=scripts.image`, so
clean-up finds it without guessing names.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

CONF = Path(__file__).resolve().with_name("containers.conf")
LABEL_KEY = "io.mnist-train.made-by"
LABEL_VALUE = "scripts.image"
LABEL = f"{LABEL_KEY}={LABEL_VALUE}"


class PodmanError(RuntimeError):
    """A podman command failed; the message holds its command line and stderr."""


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["CONTAINERS_CONF"] = str(CONF)
    return e


def base_cmd() -> list[str]:
    return ["podman", "--runtime", "runc"]


def run(*args: str, check: bool = True, capture: bool = True, timeout: float | None = 600,
        input: str | None = None, stdout=None, stderr=None) -> subprocess.CompletedProcess:
    """`podman ARGS`; raises PodmanError with stderr when check and it fails."""
    cmd = base_cmd() + list(args)
    if capture and stdout is None and stderr is None:
        stdout = stderr = subprocess.PIPE
    proc = subprocess.run(cmd, env=env(), text=True, timeout=timeout, input=input,
                          stdout=stdout, stderr=stderr, check=False)
    if check and proc.returncode != 0:
        err = (proc.stderr or "").strip()
        raise PodmanError(f"{' '.join(cmd)} exited {proc.returncode}: {err[-2000:]}")
    return proc


def unavailable_reason() -> str | None:
    """None when podman can run containers here, else why not (for skips and errors)."""
    if shutil.which("podman") is None:
        return "podman is not installed (Debian: apt-get install podman runc netavark aardvark-dns)"
    if shutil.which("runc") is None:
        return "runc is not installed (Debian: apt-get install runc)"
    try:
        proc = run("info", "--format", "json", check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"podman info failed: {exc}"
    if proc.returncode != 0:
        return f"podman info failed: {proc.stderr.strip()[-500:]}"
    return None


def image_exists(ref: str) -> bool:
    return run("image", "exists", ref, check=False).returncode == 0


def image_inspect(ref: str) -> dict:
    return json.loads(run("image", "inspect", ref).stdout)[0]


def image_size(ref: str) -> int:
    """Uncompressed size in bytes, as `podman images` reports it."""
    return int(image_inspect(ref)["Size"])


def remove_labelled(kind: str, extra_filter: str | None = None) -> list[str]:
    """Remove every container/network/volume/pod carrying our label (and `extra_filter`)."""
    filters = ["--filter", f"label={LABEL}"]
    if extra_filter:
        filters += ["--filter", extra_filter]
    if kind == "container":
        ids = run("ps", "-a", "-q", *filters, check=False).stdout.split()
        if ids:
            run("rm", "-f", "-t", "0", *ids, check=False)
    elif kind == "network":
        ids = run("network", "ls", "-q", *filters, check=False).stdout.split()
        if ids:
            run("network", "rm", "-f", *ids, check=False)
    elif kind == "volume":
        ids = run("volume", "ls", "-q", *filters, check=False).stdout.split()
        if ids:
            run("volume", "rm", "-f", *ids, check=False)
    else:
        raise ValueError(kind)
    return ids
