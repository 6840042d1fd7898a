"""A local Python 3.11 base image from Debian packages, for machines that cannot pull images.

    python -m scripts.image base [--rebuild] [--mirror URL]

`debootstrap --variant=minbase` makes a Debian bookworm root filesystem with
python3.11 and its venv module (plus ca-certificates and netbase, which the
public `python:3.11-slim` also has), trimmed of apt lists, docs and locales,
and `podman import`s it as `localhost/mnist-train-base:bookworm`.

The Dockerfile runs `python -m venv` in its build stage and copies the venv
into its final stage, so both stages must find Python at the same path:
`/usr/local/bin/python` (and `python3`) point at `/usr/bin/python3.11` here,
as `python` is on PATH in `python:3.11-slim`.

The image is cached: it carries the hash of its recipe (this file's recipe
constants) as a label, and a run whose image already has that hash does
nothing (about a second). `--rebuild` makes it anew.

The Debian mirror is the one apt on this machine uses (read from
/etc/apt/sources.list and /etc/apt/sources.list.d/), or `--mirror` /
$DEBIAN_MIRROR.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.image import podman

BASE_IMAGE = "localhost/mnist-train-base:bookworm"
SUITE = "bookworm"
# python3-distutils provides python3.11-distutils, a dependency of python3.11-venv that
# debootstrap does not resolve (it is a virtual package).
PACKAGES = ["python3.11", "python3.11-venv", "python3-distutils", "ca-certificates", "netbase"]
# Shell run in the new root filesystem (chroot) after debootstrap.
TRIM = r"""
set -eu
ln -sf /usr/bin/python3.11 /usr/local/bin/python
ln -sf /usr/bin/python3.11 /usr/local/bin/python3
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old \
       /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/* \
       /usr/share/lintian /var/log/* /root/.cache /tmp/* /var/tmp/*
find / -xdev -name __pycache__ -type d -prune -exec rm -rf {} +
"""
IMAGE_CHANGES = [
    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
    'CMD ["python3"]',
]
RECIPE_LABEL = "io.mnist-train.base-recipe"
RECIPE_VERSION = 1


def recipe_hash() -> str:
    text = repr((RECIPE_VERSION, SUITE, PACKAGES, TRIM, IMAGE_CHANGES))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _sources_entries() -> list[tuple[str, list[str], list[str]]]:
    """(uri, suites, components) of apt's deb entries on this machine."""
    entries = []
    apt = Path("/etc/apt")
    one_line = [apt / "sources.list"] + sorted((apt / "sources.list.d").glob("*.list"))
    for path in one_line:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] == "deb":
                entries.append((line[1], [line[2]], line[3:]))
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes") == "no":
                continue
            for uri in fields.get("uris", "").split():
                entries.append((uri, fields.get("suites", "").split(), fields.get("components", "").split()))
    return entries


def find_mirror() -> str:
    """The Debian archive apt uses here for `bookworm main` (not the security archive)."""
    for uri, suites, components in _sources_entries():
        if SUITE in suites and "main" in components and "security" not in uri:
            return uri
    raise SystemExit(f"no apt source for '{SUITE} main' found in /etc/apt; "
                     "pass --mirror URL or set DEBIAN_MIRROR")


def current_recipe(ref: str = BASE_IMAGE) -> str | None:
    if not podman.image_exists(ref):
        return None
    return (podman.image_inspect(ref).get("Labels") or {}).get(RECIPE_LABEL)


def ensure_base(*, rebuild: bool = False, mirror: str | None = None, log=print) -> str:
    """Build the base image unless an image with this recipe exists; returns its reference."""
    want = recipe_hash()
    if not rebuild and current_recipe() == want:
        log(f"base image {BASE_IMAGE} is up to date (recipe {want})")
        return BASE_IMAGE
    if shutil.which("debootstrap") is None:
        raise SystemExit("debootstrap is not installed (Debian: apt-get install debootstrap)")
    mirror = mirror or find_mirror()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mnist-train-base-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "rootfs"
        log(f"debootstrap {SUITE} (minbase + {', '.join(PACKAGES)}) from {mirror} ...")
        subprocess.run(["debootstrap", "--variant=minbase", "--components=main",
                        "--include=" + ",".join(PACKAGES), SUITE, str(root), mirror],
                       check=True, stdout=subprocess.DEVNULL if log is None else None)
        subprocess.run(["chroot", str(root), "/bin/sh", "-c", TRIM], check=True,
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"})
        _unmount_below(root)
        changes = [*IMAGE_CHANGES, f"LABEL {RECIPE_LABEL}={want}",
                   f"LABEL {podman.LABEL_KEY}={podman.LABEL_VALUE}"]
        args = ["import"]
        for change in changes:
            args += ["--change", change]
        tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-cf", "-", "."],
                               stdout=subprocess.PIPE)
        try:
            proc = subprocess.run(podman.base_cmd() + args + ["-", BASE_IMAGE], stdin=tar.stdout,
                                  env=podman.env(), text=True, capture_output=True)
        finally:
            tar.stdout.close()
            tar.wait()
        if proc.returncode != 0 or tar.returncode != 0:
            raise podman.PodmanError(f"podman import failed: {proc.stderr.strip()}")
    log(f"built {BASE_IMAGE} in {time.monotonic() - started:.0f} s, "
        f"{podman.image_size(BASE_IMAGE) / 1e6:.0f} MB")
    return BASE_IMAGE


def _unmount_below(root: Path) -> None:
    """debootstrap can leave /proc or /sys mounted inside the root on failure paths."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mnt in sorted((m for m in mounts if m.startswith(str(root) + "/")), reverse=True):
        subprocess.run(["umount", "-l", mnt], check=False)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.image base", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rebuild", action="store_true", help="build even if the cached image is current")
    p.add_argument("--mirror", default=None, help="Debian archive URL (default: apt's, or $DEBIAN_MIRROR)")
    args = p.parse_args(argv)
    import os
    ensure_base(rebuild=args.rebuild, mirror=args.mirror or os.environ.get("DEBIAN_MIRROR"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
