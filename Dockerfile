# syntax=docker/dockerfile:1
# mnist-train image: `python -m model train|evaluate|export`, plus `tensorboard` and
# `python -m mnistctl check` (the chart's helm test hook).
#
#   docker build -t mnist-train:0.1.0 .                       # GPU: tensorflow[and-cuda]
#   docker build --build-arg TF_EXTRA=cpu -t mnist-train:0.1.0-cpu .   # CPU only
#
# BASE_IMAGE can point at a local or mirrored Python 3.11 image that has
# `python` on PATH, `groupadd` and `useradd` (scripts/image/base.py makes one
# from Debian packages; `python -m scripts.image build` builds this file on it).
# PIP_CONFIG_FILE can name a pip configuration file (a PyPI mirror or proxy, a
# CA bundle) that the build mounts into the RUN steps, e.g. `podman build -v
# ./pip.conf:/run/pip.conf:ro --build-arg PIP_CONFIG_FILE=/run/pip.conf`; only
# its path is recorded, never its contents.
#
# Layers: the dependencies (TensorFlow) are installed from pyproject.toml alone,
# and the package on its own under /opt/mnist-train, so a source edit rebuilds
# only a layer of a few hundred kB, never the multi-GB virtualenv.
ARG BASE_IMAGE=python:3.11-slim

# -- The runtime: the user, and a virtualenv with the dependencies, without what
# nothing needs at run time: pip, setuptools, and TensorFlow's C++ headers
# (tensorflow/include, ~290 MB, for compiling custom ops). A .pth file puts
# /opt/mnist-train (the package, below) on sys.path.
FROM ${BASE_IMAGE} AS runtime
# Which pyproject extra provides TensorFlow: gpu (tensorflow[and-cuda]), cpu (tensorflow-cpu), tf.
ARG TF_EXTRA=gpu
ARG PIP_CONFIG_FILE
RUN groupadd --gid 1000 mnist && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp mnist
COPY pyproject.toml /tmp/pyproject.toml
RUN python -m venv /opt/venv \
    && python -c "import tomllib, sys; p = tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies'][sys.argv[1]]))" "${TF_EXTRA}" \
        > /tmp/requirements.txt \
    && PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 /opt/venv/bin/pip install -r /tmp/requirements.txt \
    && /opt/venv/bin/pip uninstall -y -q pip setuptools wheel \
    && site="$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" \
    && echo /opt/mnist-train > "$site/mnist_train.pth" \
    && rm -rf "$site/tensorflow/include" /tmp/requirements.txt /tmp/pyproject.toml /root/.cache

# -- The package alone (seconds; the only stage a source edit rebuilds), built
# with a throwaway virtualenv at the runtime's path, so that the `mnist-train`
# script starts with #!/opt/venv/bin/python.
FROM ${BASE_IMAGE} AS build
ARG PIP_CONFIG_FILE
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
RUN python -m venv /opt/venv \
    && python -c "import tomllib; \
print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires']))" \
        > /tmp/build-requirements.txt \
    && /opt/venv/bin/pip install -r /tmp/build-requirements.txt
COPY README.md ./
COPY model ./model
COPY mnistctl ./mnistctl
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation --target /opt/mnist-train .

FROM runtime
LABEL org.opencontainers.image.title="mnist-train" \
      org.opencontainers.image.description="MNIST MLP and LeNet-5 on MultiWorkerMirroredStrategy"
COPY data/mnist /app/data/mnist
COPY --from=build /opt/mnist-train /opt/mnist-train
# HOME=/tmp: the root filesystem is read-only in the chart; /tmp is an emptyDir.
ENV PATH=/opt/mnist-train/bin:/opt/venv/bin:$PATH \
    MNIST_DATA_DIR=/app/data/mnist \
    HOME=/tmp \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2
WORKDIR /app
USER 1000:1000
EXPOSE 2222 6006
ENTRYPOINT ["python", "-m", "model"]
CMD ["--help"]
