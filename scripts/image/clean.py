"""Remove what scripts/image made.

    python -m scripts.image clean          # containers, networks, volumes, test images, stale build layers
    python -m scripts.image clean --all    # also the layer-cache anchors and the base image

Default: every container, network and volume labelled
io.mnist-train.made-by=scripts.image (rehearsals, image checks), the images
tagged localhost/mnist-train:image-test*, and the dangling (untagged, unused)
build layers derived from the local base (they carry its label). Kept: the
local base image (localhost/mnist-train-base:bookworm, about a minute to
rebuild) and the layer-cache anchors (localhost/mnist-train-cache:*: the
dependency stage, a few minutes to rebuild), so the next build is warm, and
any image you tagged yourself (e.g. localhost/mnist-train:0.1.0-cpu).
`--all` removes those too (except images you tagged yourself: `podman rmi` them).
"""

from __future__ import annotations

import argparse
import sys

from scripts.image import podman
from scripts.image.base import BASE_IMAGE

TEST_REPO = "localhost/mnist-train"
TEST_TAG_PREFIX = "image-test"
CACHE_REPO = "localhost/mnist-train-cache"


def _images(reference: str) -> list[str]:
    out = podman.run("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference={reference}",
                     check=False).stdout
    return sorted({line for line in out.split() if line and "<none>" not in line})


def prune_layers() -> None:
    """Dangling images from our base (our label), repeatedly: removing one can free its parent."""
    for _ in range(10):
        proc = podman.run("image", "prune", "-f", "--filter", f"label={podman.LABEL}", check=False,
                          timeout=600)
        if not proc.stdout.strip():
            break


def clean(*, everything: bool = False, log=print) -> None:
    removed = {kind: podman.remove_labelled(kind) for kind in ("container", "volume", "network")}
    images = _images(f"{TEST_REPO}:{TEST_TAG_PREFIX}*")
    if everything:
        images += _images(f"{CACHE_REPO}:*")
    if images:
        podman.run("rmi", "-f", *images, check=False, timeout=600)
    prune_layers()
    if everything and podman.image_exists(BASE_IMAGE):
        podman.run("rmi", "-f", BASE_IMAGE, check=False, timeout=600)
        prune_layers()
    log(f"removed {len(removed['container'])} container(s), {len(removed['volume'])} volume(s), "
        f"{len(removed['network'])} network(s), image(s): {' '.join(images) or 'none'}"
        + (f", {BASE_IMAGE}" if everything else f"; kept {BASE_IMAGE} and {CACHE_REPO}:*"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.image clean", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--all", action="store_true", help="also the layer-cache anchors and the base image")
    args = p.parse_args(argv)
    clean(everything=args.all)
    return 0


if __name__ == "__main__":
    sys.exit(main())
