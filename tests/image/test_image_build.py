"""The Dockerfile builds on the local Debian base with podman, and the image is what the chart expects."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest

from scripts.image import build, podman
from scripts.paths import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.image]


def cache_report(log_text: str) -> list[tuple[str, bool]]:
    """[(step instruction, taken from the layer cache)] from `podman build` output."""
    steps: list[list] = []
    for line in log_text.splitlines():
        m = re.match(r"\[\d+/\d+\] STEP \d+/\d+: (.*)", line)
        if m:
            steps.append([m.group(1), False])
        elif line.startswith("--> Using cache") and steps:
            steps[-1][1] = True
    return [(s, c) for s, c in steps]


def test_image_builds_on_the_local_base(built_image):
    info = podman.image_inspect(built_image["tag"])
    config = info["Config"]
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == ["python", "-m", "model"]
    assert "MNIST_DATA_DIR=/app/data/mnist" in config["Env"]
    print(f"\nbuild: {built_image['seconds']:.1f} s; size {info['Size'] / 1e9:.2f} GB")


def test_help_runs_as_the_non_root_user(built_image):
    proc = podman.run("run", "--rm", "--network", "none", built_image["tag"], "--help")
    assert "usage: python -m model" in proc.stdout
    assert "{train,evaluate,export,predict}" in proc.stdout
    ids = podman.run("run", "--rm", "--network", "none", "--entrypoint", "id", built_image["tag"]).stdout
    assert re.search(r"uid=1000\b", ids) and re.search(r"gid=1000\b", ids), ids
    sub = podman.run("run", "--rm", "--network", "none", built_image["tag"], "train", "--help").stdout
    assert "--max-steps" in sub
    ops = podman.run("run", "--rm", "--network", "none", "--entrypoint", "python", built_image["tag"],
                     "-m", "mnistctl", "--help").stdout  # the chart's helm test hook runs it
    assert "{status,logs,wait,check,scaling}" in ops


def test_image_has_no_build_tools_or_caches(built_image):
    facts = build.inspect_contents(built_image["tag"])
    assert build.problems(facts) == [], facts
    assert facts["uid"] == 1000 and facts["writable_root"] == "no"
    assert facts["tensorboard"] == "/opt/venv/bin/tensorboard"
    assert facts["model"] == "/opt/mnist-train/model"
    print(f"\nimage: {facts['size_bytes'] / 1e9:.2f} GB; venv {facts['venv_mb']} MB "
          f"(TensorFlow {facts['tf_mb']} MB); package {facts['app_kb']} kB")


def test_a_source_edit_rebuilds_only_the_package_layers(built_image, tmp_path):
    """Edit a model/ file in a copy of the build context: TensorFlow is not reinstalled."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, ctx / name)
    for package in ("model", "mnistctl"):
        shutil.copytree(REPO_ROOT / package, ctx / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO_ROOT / "data" / "mnist", ctx / "data" / "mnist")
    with open(ctx / "model" / "__init__.py", "a") as f:
        f.write(f"# edited by the layer-order test at {time.time()}\n")
    tag = "localhost/mnist-train:image-test-edit"
    log = tmp_path / "build.log"
    seconds = build.build_image(tag, context=ctx, log_file=log, log=lambda *_: None)
    try:
        steps = cache_report(log.read_text())
        deps = [c for s, c in steps if "pip install -r /tmp/requirements.txt" in s]
        copy_model = [c for s, c in steps if s.startswith("COPY model")]
        assert deps == [True], f"the dependency layer was rebuilt: {steps}"
        assert copy_model == [False], f"the edited source was not copied: {steps}"
        proc = podman.run("run", "--rm", "--network", "none", "--entrypoint", "python", tag, "-c",
                          "import model, pathlib; print(pathlib.Path(model.__file__).read_text()[-80:])")
        assert "edited by the layer-order test" in proc.stdout
        print(f"\nwarm rebuild after a model/ edit: {seconds:.1f} s")
        assert seconds < 120, f"a source edit took {seconds:.0f} s to rebuild"
    finally:
        podman.run("rmi", "-f", tag, check=False)


def test_host_pip_settings_become_a_mounted_pip_conf(tmp_path, monkeypatch):
    monkeypatch.setattr(build, "host_pip_config", lambda: {
        "index-url": "https://user:pw@mirror.invalid/simple", "cert": str(REPO_ROOT / "pyproject.toml"),
        "extra-index-url": f"file://{tmp_path}/simple https://x.invalid/simple", "default-timeout": "60"})
    (tmp_path / "simple").mkdir()
    work = tmp_path / "work"
    work.mkdir()
    args, mounts = build.host_pip_conf(work)
    assert args == {"PIP_CONFIG_FILE": "/run/pip/pip.conf"}
    text = (work / "pip.conf").read_text()
    assert "cert = /run/pip/ca.pem" in text and (work / "ca.pem").is_file()
    assert f"extra-index-url = file://{tmp_path}/simple https://x.invalid/simple" in text
    assert f"{work}:/run/pip:ro" in mounts and f"{tmp_path}:{tmp_path}:ro" in mounts
    args, mounts = build.host_pip_conf(work, local_indexes=False)
    assert "file://" not in (work / "pip.conf").read_text()
    assert build._redact("https://user:pw@mirror.invalid/simple") == "https://***@mirror.invalid/simple"
    monkeypatch.setattr(build, "host_pip_config", lambda: {})
    assert build.host_pip_conf(work) == ({}, [])


def test_dockerfile_defaults_are_the_public_base_and_gpu_tensorflow():
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", text, re.M)
    assert re.search(r"^ARG TF_EXTRA=gpu$", text, re.M)
    assert Path(REPO_ROOT / ".dockerignore").read_text().count("\ntests\n") == 1
