# syntax=docker/dockerfile:1
# mnist-train image: `python -m model train|evaluate|export`, plus `tensorboard`.
#
#   docker build -t mnist-train:0.1.0 .                       # GPU: tensorflow[and-cuda]
#   docker build --build-arg TF_EXTRA=cpu -t mnist-train:0.1.0-cpu .   # CPU only, ~1/3 the size
#
# BASE_IMAGE can point at a local or mirrored Python 3.11 image.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# Which pyproject extra provides TensorFlow: gpu (tensorflow[and-cuda]), cpu (tensorflow-cpu), tf.
ARG TF_EXTRA=gpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from pyproject.toml alone, so editing model/ does not
# reinstall TensorFlow.
COPY pyproject.toml ./
RUN python -c "import tomllib, sys; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies'][sys.argv[1]]))" "${TF_EXTRA}" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY README.md ./
COPY model ./model
RUN pip install --no-deps . && rm -rf /src/build

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="mnist-train" \
      org.opencontainers.image.description="MNIST MLP and LeNet-5 on MultiWorkerMirroredStrategy"
RUN groupadd --gid 1000 mnist && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /tmp mnist
COPY --from=build /opt/venv /opt/venv
COPY data/mnist /app/data/mnist
# HOME=/tmp: the root filesystem is read-only in the chart; /tmp is an emptyDir.
ENV PATH=/opt/venv/bin:$PATH \
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
