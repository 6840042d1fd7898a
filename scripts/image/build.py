"""Build the project's Dockerfile with podman on the local base image, and inspect the result.

    python -m scripts.image build [--tag REF] [--tf-extra cpu] [--no-cache] [--log FILE]
    python -m scripts.image check [--tag REF] [--json]

`build` makes sure the debootstrap base exists (base.py), then runs

    podman build --pull=never --network host \\
        --build-arg BASE_IMAGE=localhost/mnist-train-base:bookworm --build-arg TF_EXTRA=cpu ...

The same Dockerfile defaults to the public `python:3.11-slim` and GPU TensorFlow.
pip inside the build uses the host's network namespace (the build reaches the
package registry exactly as pip on the host does) and pip's settings on the host
(`pip config list`: files and PIP_* variables): index URLs, find-links, trusted
hosts and timeout as build arguments, and the host files among them (a CA
bundle, file:// indexes) bind-mounted read-only into the RUN steps; nothing
about registries is hard-coded here. `--pypi-only` leaves the host's local
indexes out.

`check` runs the image the way the chart does (uid 1000, read-only root,
no capabilities, no new privileges, /tmp a tmpfs, no network) and reports what
it contains: the user, `--help`, compilers and build tools, caches, apt lists,
pip, sizes.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.image import base, podman
from scripts.paths import REPO_ROOT

DEFAULT_TAG = "localhost/mnist-train:0.1.0-cpu"
PIP_KEYS = {"index-url": "PIP_INDEX_URL", "extra-index-url": "PIP_EXTRA_INDEX_URL",
            "find-links": "PIP_FIND_LINKS", "trusted-host": "PIP_TRUSTED_HOST",
            "cert": "PIP_CERT", "default-timeout": "PIP_DEFAULT_TIMEOUT"}
LOCAL_KEYS = ("index-url", "extra-index-url", "find-links")


def host_pip_config() -> dict[str, str]:
    """pip's settings on this host for PIP_KEYS (`pip config list`; environment over files)."""
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                             text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    # Lines look like  global.index-url='https://...'  or  :env:.cert='/etc/...'; the
    # environment wins over files and `install.` over `global.`, as in pip.
    rank = {":env:": 3, "install": 2, "global": 1}
    found: dict[str, str] = {}
    best: dict[str, int] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        section, _, name = key.rpartition(".")
        if not sep or name not in PIP_KEYS or section not in rank:
            continue
        if rank[section] >= best.get(name, 0):
            best[name] = rank[section]
            found[name] = " ".join(value.strip().strip("'\"").split())
    return found


def host_pip_conf(workdir: Path, *, local_indexes: bool = True) -> tuple[dict[str, str], list[str]]:
    """A pip.conf with what pip has on this host, and the mounts that make it work in a build.

    Writes `workdir/pip.conf` (and a copy of the host's CA bundle, `cert`); returns
    (build args, `podman build -v` mounts): PIP_CONFIG_FILE=/run/pip/pip.conf with
    workdir mounted read-only at /run/pip, plus the host's local indexes (file:// URLs,
    find-links directories) read-only at their own paths. Mounts are seen by the RUN
    steps only: nothing of them is committed to a layer, and the image's history holds
    only the path of the file. `local_indexes=False` leaves the local indexes out.
    Returns ({}, []) when pip here has none of these settings.
    """
    config = host_pip_config()
    settings: dict[str, str] = {}
    mounts: list[str] = []
    for name, value in config.items():
        if name in LOCAL_KEYS:
            kept = []
            for item in value.split():
                path = item[len("file://"):] if item.startswith("file://") else item
                if "://" in item and not item.startswith("file://"):
                    kept.append(item)
                elif local_indexes and Path(path).exists():
                    # An index's pages link to files beside it (../files/...): mount its parent.
                    top = Path(path).parent if item.startswith("file://") else Path(path)
                    mounts.append(f"{top}:{top}:ro")
                    kept.append(item)
            if kept:
                settings[name] = " ".join(kept)
        elif name == "cert":
            if Path(value).is_file():
                shutil.copyfile(value, workdir / "ca.pem")
                settings[name] = "/run/pip/ca.pem"
        else:
            settings[name] = value
    if not settings:
        return {}, []
    text = "[global]\n" + "".join(f"{k} = {v}\n" for k, v in settings.items())
    (workdir / "pip.conf").write_text(text)
    return {"PIP_CONFIG_FILE": "/run/pip/pip.conf"}, [f"{workdir}:/run/pip:ro", *mounts]


def _redact(value: str) -> str:
    """https://user:secret@host/ -> https://***@host/ for logs."""
    return re.sub(r"//[^/@\s]+@", "//***@", value)


def build_image(tag: str = DEFAULT_TAG, *, tf_extra: str = "cpu", base_image: str | None = None,
                no_cache: bool = False, local_indexes: bool = True, log_file: Path | None = None,
                context: Path = REPO_ROOT, target: str | None = None, timeout: float = 3600,
                log=print) -> float:
    """podman build of context/Dockerfile; returns the build's wall time in seconds.

    `target` builds one stage (e.g. "runtime", tagged as the layer cache's anchor)."""
    base_image = base_image or base.ensure_base(log=log)
    args = ["build", "--pull=never", "--network", "host", "--layers", "-f", str(context / "Dockerfile"),
            "--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", f"TF_EXTRA={tf_extra}",
            "-t", tag]
    if target:
        args += ["--target", target]
    pipdir = Path(tempfile.mkdtemp(prefix="mnist-train-pip-", dir="/var/tmp"))
    pip_args, mounts = host_pip_conf(pipdir, local_indexes=local_indexes)
    for key, value in pip_args.items():
        args += ["--build-arg", f"{key}={value}"]
    for mount in mounts:
        args += ["-v", mount]
    if pip_args:
        log("  pip settings from this host: " + _redact((pipdir / "pip.conf").read_text()
                                                        .replace("[global]\n", "").replace("\n", "; ")))
    if no_cache:
        args.append("--no-cache")
    args.append(str(context))
    log(f"podman build -t {tag} (BASE_IMAGE={base_image}, TF_EXTRA={tf_extra}"
        f"{', no cache' if no_cache else ''}) ...")
    started = time.monotonic()
    try:
        proc = _run_build(args, log_file, timeout)
    finally:
        shutil.rmtree(pipdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        where = f"; see {log_file}" if log_file else ""
        raise podman.PodmanError(f"podman build failed (exit {proc.returncode}){where}")
    log(f"built {tag} in {elapsed:.1f} s, {podman.image_size(tag) / 1e9:.2f} GB")
    return elapsed


def _run_build(args: list[str], log_file: Path | None, timeout: float) -> subprocess.CompletedProcess:
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a") as out:
            proc = podman.run(*args, check=False, capture=False, stdout=out, stderr=subprocess.STDOUT,
                              timeout=timeout)
    else:
        proc = podman.run(*args, check=False, capture=False, timeout=timeout)
    return proc


# What must not be in the runtime image: compilers and build tools on any PATH-like
# directory, caches, apt lists, pip. Printed as `key value` lines by a POSIX shell.
_CHECK_SCRIPT = r"""
echo "uid $(id -u)"
echo "gid $(id -g)"
echo "user $(id -un 2>/dev/null || echo -)"
for t in gcc cc c++ g++ cpp clang make cmake ld as gfortran pip pip3 dpkg-buildpackage; do
  p=$(command -v "$t" 2>/dev/null) && echo "tool $t $p"
done
for d in /usr/lib/gcc /usr/libexec/gcc /usr/include/c++; do
  [ -e "$d" ] && echo "builddir $d"
done
for d in /root/.cache /tmp/.cache /var/cache/apt/archives /src /opt/venv/lib/*/site-packages/pip \
         /opt/venv/lib/*/site-packages/setuptools /opt/venv/lib/*/site-packages/wheel; do
  [ -e "$d" ] && [ -n "$(ls -A "$d" 2>/dev/null | grep -v -x -e partial -e lock)" ] && echo "cache $d"
done
n=$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v -x -e partial -e lock | wc -l)
echo "apt_lists $n"
echo "pip_cache_dirs $(find / -xdev \( -path /proc -o -path /sys \) -prune -o -type d \
  \( -path '*/.cache/pip' -o -name 'pip-wheel-*' -o -name 'pip-req-build-*' \) -print 2>/dev/null | wc -l)"
echo "whl_files $(find / -xdev -name '*.whl' -not -path '/usr/share/python-wheels/*' 2>/dev/null | wc -l)"
echo "writable_root $( (touch /probe && echo yes) 2>/dev/null || echo no)"
echo "python $(command -v python) $(python -c 'import sys; print(sys.version.split()[0])')"
echo "tensorboard $(command -v tensorboard)"
echo "mnist_train $(command -v mnist-train)"
echo "model $(python -c 'import model, os; print(os.path.dirname(model.__file__))')"
echo "venv_mb $(du -sm /opt/venv | cut -f1)"
echo "tf_mb $(du -sm /opt/venv/lib/*/site-packages/tensorflow | cut -f1)"
echo "app_kb $(du -sk /opt/mnist-train | cut -f1)"
"""

# The chart's securityContext, as podman options (shared with the rehearsal's launcher).
RESTRICTED = ["--user", "1000:1000", "--read-only", "--read-only-tmpfs=false", "--cap-drop", "ALL",
              "--security-opt", "no-new-privileges", "--tmpfs", "/tmp:rw,size=1g,mode=1777"]


def inspect_contents(ref: str = DEFAULT_TAG) -> dict:
    """Run the check script in the image under the chart's restrictions; parsed findings."""
    proc = podman.run("run", "--rm", "--network", "none", *RESTRICTED, "--entrypoint", "sh", ref,
                      "-c", _CHECK_SCRIPT, timeout=300)
    facts: dict = {"tools": {}, "builddirs": [], "caches": []}
    for line in proc.stdout.splitlines():
        key, _, rest = line.partition(" ")
        if key == "tool":
            name, _, path = rest.partition(" ")
            facts["tools"][name] = path
        elif key == "builddir":
            facts["builddirs"].append(rest)
        elif key == "cache":
            facts["caches"].append(rest)
        elif key in ("apt_lists", "pip_cache_dirs", "whl_files", "uid", "gid", "venv_mb", "tf_mb", "app_kb"):
            facts[key] = int(rest) if rest.strip().isdigit() else rest
        else:
            facts[key] = rest
    facts["size_bytes"] = podman.image_size(ref)
    return facts


def problems(facts: dict) -> list[str]:
    """What the image should not have; [] when it is clean."""
    out = []
    if facts.get("uid") != 1000 or facts.get("gid") != 1000:
        out.append(f"runs as uid {facts.get('uid')} gid {facts.get('gid')}, not 1000:1000")
    for name, path in facts["tools"].items():
        out.append(f"build/installer tool on PATH: {name} ({path})")
    out += [f"build directory present: {d}" for d in facts["builddirs"]]
    out += [f"cache present: {c}" for c in facts["caches"]]
    if facts.get("apt_lists"):
        out.append(f"apt lists present ({facts['apt_lists']} files)")
    if facts.get("pip_cache_dirs"):
        out.append(f"pip cache/build directories present ({facts['pip_cache_dirs']})")
    if facts.get("whl_files"):
        out.append(f"{facts['whl_files']} .whl files left in the image")
    if facts.get("writable_root") != "no":
        out.append("the root filesystem was writable under --read-only")
    return out


def check_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.image check",
                                description="Inspect a built image under the chart's restrictions.")
    p.add_argument("--tag", default=DEFAULT_TAG)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    facts = inspect_contents(args.tag)
    issues = problems(facts)
    if args.json:
        print(json.dumps({"facts": facts, "problems": issues}, indent=2))
    else:
        for key, value in facts.items():
            print(f"{key}: {value}")
        print("problems: " + ("none" if not issues else "\n  " + "\n  ".join(issues)))
    return 1 if issues else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.image build", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tag", default=DEFAULT_TAG, help="image reference to build (default: %(default)s)")
    p.add_argument("--tf-extra", default="cpu", choices=["cpu", "gpu", "tf"],
                   help="pyproject extra that provides TensorFlow (default: %(default)s)")
    p.add_argument("--base-image", default=None, help="base image (default: build/reuse the local one)")
    p.add_argument("--no-cache", action="store_true", help="rebuild every layer (a cold build)")
    p.add_argument("--pypi-only", action="store_true",
                   help="ignore the host's local package indexes (file:// URLs, find-links dirs)")
    p.add_argument("--log", type=Path, default=None, help="append podman's build output to this file")
    args = p.parse_args(argv)
    build_image(args.tag, tf_extra=args.tf_extra, base_image=args.base_image, no_cache=args.no_cache,
                local_indexes=not args.pypi_only, log_file=args.log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
