"""The container image, built and run for real (issue 5).

    python -m scripts.image base        # local Debian base image (debootstrap), cached
    python -m scripts.image build       # podman build of ./Dockerfile on that base, CPU TensorFlow
    python -m scripts.image check       # what the image contains: user, tools, caches, size
    python -m scripts.image rehearse    # the rendered chart's pods as podman containers
    python -m scripts.image clean       # remove what these commands made (--all: the base too)

Modules:
  podman.py     running podman with the project-local containers.conf and runc
  base.py       debootstrap -> `localhost/mnist-train-base:bookworm` (cached by recipe hash)
  build.py      `podman build` with BASE_IMAGE/TF_EXTRA build args, timings, image checks
  launcher.py   a `scripts.local_runner` Launcher that runs each pod as a podman container
  rehearse.py   the local runner with that launcher: chart -> containers -> summary
  clean.py      removes what these made (labelled containers, networks, volumes; test images)
See README.md beside this file for the figures measured here.
"""
