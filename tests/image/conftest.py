"""Fixtures of the image tests: the image built once per session, and clean-up checks.

These tests need root, podman + runc (+ netavark, aardvark-dns), debootstrap
and helm. Without them they are skipped with the reason, and fail instead
when CI=true. All are marked `slow` and `image` (`make image-test` runs
`pytest -m image tests/image`).

Images: the session builds `localhost/mnist-train:image-test` (warm: seconds)
and tags the dependency stage as `localhost/mnist-train-cache:runtime-cpu` so
the next session is warm too. At the end it removes the test images and
dangling layers and checks that no container, network or volume labelled by
scripts.image is left. The local base image and the cache anchor are kept
(`python -m scripts.image clean --all` removes them).
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from tests.requirements import in_ci, unavailable  # noqa: F401 (re-exported)

from scripts.image import podman

TEST_IMAGE = "localhost/mnist-train:image-test"
CACHE_ANCHOR = "localhost/mnist-train-cache:runtime-cpu"


def pytest_configure(config):
    config.addinivalue_line("markers", "image: builds and runs the container image with podman "
                            "(make image-test)")


def prerequisites() -> str | None:
    if os.geteuid() != 0:
        return ("the image tests need root: debootstrap builds the base image and podman runs rootful "
                "(rootless podman, with /etc/subuid and /etc/subgid ranges, is not supported by them); "
                "run `make image-test` as root, e.g. in a Linux VM (CI does)")
    reason = podman.unavailable_reason()
    if reason:
        return reason
    if shutil.which("debootstrap") is None:
        return "debootstrap is not installed (Debian: apt-get install debootstrap)"
    return None


def leftovers() -> dict[str, list[str]]:
    """Containers, networks and volumes labelled by scripts.image that still exist."""
    filt = ["--filter", f"label={podman.LABEL}"]
    return {
        "containers": podman.run("ps", "-a", "--format", "{{.Names}}", *filt, check=False).stdout.split(),
        "networks": podman.run("network", "ls", "--format", "{{.Name}}", *filt, check=False).stdout.split(),
        "volumes": podman.run("volume", "ls", "--format", "{{.Name}}", *filt, check=False).stdout.split(),
    }


@pytest.fixture(scope="session")
def image_ready() -> None:
    reason = prerequisites()
    if reason:
        unavailable(reason)


@pytest.fixture(scope="session")
def built_image(image_ready, tmp_path_factory) -> dict:
    """Build the Dockerfile on the local base (CPU TensorFlow); yields facts about the build."""
    from scripts.image import build
    from scripts.image.clean import clean

    logs = tmp_path_factory.mktemp("build")
    started = time.monotonic()
    build.build_image(TEST_IMAGE, log_file=logs / "build.log")
    seconds = time.monotonic() - started
    build.build_image(CACHE_ANCHOR, target="runtime", log_file=logs / "anchor.log")
    yield {"tag": TEST_IMAGE, "seconds": seconds, "log": logs / "build.log"}
    clean(log=lambda *_: None)
    left = {k: v for k, v in leftovers().items() if v}
    remaining = [t for t in (TEST_IMAGE,) if podman.image_exists(t)]
    assert not left and not remaining, f"left behind: {left} {remaining}"
