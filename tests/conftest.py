"""Shared test setup: MNIST loaded once, and one real short MLP training run that the
trainer, evaluator, export and CLI tests read."""

from __future__ import annotations

import pathlib

import pytest

from scripts.paths import MNIST_DIR


TRAINED_STEPS = (10, 20, 30)  # the checkpoints of `trained_dir`


def short_run_config(model_dir, max_steps: int, model: str = "mlp"):
    """The settings of `trained_dir`'s run (a checkpoint, summary and log line every 10 steps),
    for tests that train it further or train another like it."""
    import dataclasses

    from model import config as presets
    from model.train import TrainConfig

    return TrainConfig(model=model, model_dir=str(model_dir),
                       hparams=dataclasses.replace(presets.preset("default", model), max_steps=max_steps),
                       save_checkpoints_steps=10, save_summaries_steps=10, log_every_steps=10,
                       steps_per_loop=10)


@pytest.fixture(scope="session")
def mnist():
    """The bundled MNIST, loaded once per session (read it, do not change its arrays)."""
    from model.data import load_mnist

    return load_mnist(str(MNIST_DIR))


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, mnist) -> pathlib.Path:
    """A real 30-step MLP run on the bundled MNIST, checkpoints at 10, 20 and 30; trained once per session.

    Shared by every test of the session: read it, or change `model_dir` (a copy).
    """
    import tensorflow as tf

    from model import checkpointing
    from model.train import train

    model_dir = tmp_path_factory.mktemp("trained-mlp") / "model"
    result = train(short_run_config(model_dir, TRAINED_STEPS[-1]), strategy=tf.distribute.get_strategy(),
                   datasets=mnist)
    assert result.final_step == TRAINED_STEPS[-1]
    assert checkpointing.list_checkpoints(str(model_dir)) == [
        str(model_dir / f"ckpt-{s}") for s in TRAINED_STEPS]
    return model_dir


@pytest.fixture
def model_dir(trained_dir, tmp_path) -> pathlib.Path:
    """This test's own copy of `trained_dir`."""
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(trained_dir, copy)
    return copy


@pytest.fixture(scope="module")
def gcs_endpoint():
    """A Cloud Storage endpoint for TensorFlow's gs:// and google-cloud-storage, for processes
    started with its popen()/run() (scripts/gcs_endpoint.py); gone at the end of the module."""
    from tests.gcs_endpoint import start_endpoint

    endpoint = start_endpoint()
    try:
        yield endpoint
    finally:
        endpoint.close()
