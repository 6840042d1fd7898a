"""Shared test setup: MNIST loaded once, one real short MLP training run that the
trainer, evaluator, export and CLI tests read, and one real 2-worker run that the
multi-process resume tests start from."""

from __future__ import annotations

import pathlib

import pytest

from scripts.paths import MNIST_DIR


TRAINED_STEPS = (10, 20, 30)  # the checkpoints of `trained_dir`


def pytest_collection_modifyitems(items):
    """The modules with a slow test first, each module's tests in their own order: `make test`'s
    parallel phase hands whole modules to its xdist workers in this order, and a 1-2 minute
    module handed out last ran on one worker while the other had nothing left to do."""
    slow_modules = {item.nodeid.split("::")[0] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in slow_modules)  # stable


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


TWO_WORKER_STEPS = 100  # `two_worker_dir`'s run; a checkpoint every 50 steps
TWO_WORKER_ARGS = ["--model", "mlp", "--save-checkpoints-steps", "50", "--log-every-steps", "50",
                   "--steps-per-loop", "50"]


@pytest.fixture(scope="session")
def two_worker_dir(tmp_path_factory) -> pathlib.Path:
    """A real 2-worker MLP run (`python -m model train` processes on 127.0.0.1, tests/multiworker.py)
    to step 100, checkpoints at 50 and 100; trained once per session for the tests that resume it
    (on one worker, past a live lease). Read it, or train on a copy."""
    from tests.multiworker import Cluster, done_line

    cluster = Cluster(tmp_path_factory.mktemp("two-workers"), workers=2,
                      train_args=[*TWO_WORKER_ARGS, "--max-steps", str(TWO_WORKER_STEPS)])
    try:
        workers = cluster.start_workers()
        assert [w.wait(240) for w in workers] == [0, 0]
    finally:
        cluster.stop_all()
    assert done_line(workers[0]) == done_line(workers[1])
    assert done_line(workers[0])[0] == TWO_WORKER_STEPS
    return cluster.model_dir


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
