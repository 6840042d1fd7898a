"""The trainer's restore-before-the-loop on damaged model directories (in-process)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import pytest
import tensorflow as tf

from model import checkpointing
from model.errors import CheckpointError, ConfigError
from model.train import train
from tests.conftest import short_run_config

# `model_dir` (conftest.py): this test's copy of the session's 30-step MLP run, checkpoints 10, 20, 30.


def resume(model_dir, mnist, max_steps=40):
    return train(short_run_config(model_dir, max_steps), strategy=tf.distribute.get_strategy(),
                 datasets=mnist)


def test_resume_continues_from_the_newest_checkpoint(model_dir, mnist):
    result = resume(model_dir, mnist)
    assert (result.start_step, result.final_step) == (30, 40)
    assert checkpointing.read_complete_marker(str(model_dir)) == 40


@pytest.mark.parametrize("content", [b"", b"\x00\xff garbage \x13", b"model_checkpoint_path: {"])
def test_unreadable_state_file_falls_back_to_the_checkpoint_files(model_dir, mnist, content):
    (model_dir / "checkpoint").write_bytes(content)
    assert resume(model_dir, mnist).start_step == 30


def test_damaged_newest_checkpoint_falls_back_to_the_one_before(model_dir, mnist, caplog):
    data = next(model_dir.glob("ckpt-30.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    result = resume(model_dir, mnist)
    assert result.start_step == 20
    assert "cannot restore" in caplog.text and "ckpt-30" in caplog.text


def test_no_readable_checkpoint_is_an_error_not_a_silent_restart(model_dir, mnist):
    for index in model_dir.glob("ckpt-*.index"):
        index.write_bytes(b"")
    before = {p.name: p.read_bytes() for p in model_dir.glob("ckpt-*")}
    with pytest.raises(CheckpointError, match="none of the checkpoints"):
        resume(model_dir, mnist)
    assert {p.name: p.read_bytes() for p in model_dir.glob("ckpt-*")} == before


def test_resuming_with_another_network_is_refused(model_dir, mnist):
    with pytest.raises(ConfigError, match="holds another run .* model: mlp → lenet5"):
        train(short_run_config(model_dir, 40, model="lenet5"), strategy=tf.distribute.get_strategy(),
              datasets=mnist)


# --- compute dtype: the checkpoint is float32 either way ------------------------------------

def test_a_float32_run_resumes_in_bfloat16_compute(model_dir, mnist):
    cfg = dataclasses.replace(short_run_config(model_dir, 40), compute_dtype="bfloat16")
    result = train(cfg, strategy=tf.distribute.get_strategy(), datasets=mnist)
    assert (result.start_step, result.final_step) == (30, 40)


def test_bfloat16_training_learns_and_scores_in_float32(tmp_path, mnist):
    from model.evaluate import CheckpointScorer
    from model.input_pipeline import eval_dataset

    cfg = dataclasses.replace(short_run_config(tmp_path / "model", 200), compute_dtype="bfloat16",
                              save_checkpoints_steps=200)
    train(cfg, strategy=tf.distribute.get_strategy(), datasets=mnist)
    scorer = CheckpointScorer("mlp")
    assert scorer.restore(checkpointing.list_checkpoints(str(tmp_path / "model"))[-1]) == 200
    averaged, raw = scorer.accuracy(eval_dataset(mnist.validation, 500), len(mnist.validation))
    assert raw > 0.9 and averaged > 0.9, (raw, averaged)


@pytest.mark.parametrize("field, value, message", [
    ("compute_dtype", "float16", "compute-dtype must be one of float32, bfloat16, got 'float16'"),
    ("gradient_exchange", "ring",
     "gradient-exchange must be one of auto, all-reduce, factors, got 'ring'"),
])
def test_unknown_choices_are_config_errors(tmp_path, field, value, message):
    cfg = dataclasses.replace(short_run_config(tmp_path / "model", 10), **{field: value})
    with pytest.raises(ConfigError, match=message):
        cfg.validate()


# --- what failed saves and killed workers leave behind -------------------------------------

TEMP_PART = "part-00000-of-00001.data-00000-of-00001.tempstate8151906581"


def test_the_chief_removes_what_a_failed_save_left_and_nothing_else(model_dir, mnist):
    failed = model_dir / "ckpt-40_temp"
    failed.mkdir()
    (failed / TEMP_PART).write_bytes(b"\0" * 1000)
    (failed / "part-00000-of-00001.index").write_bytes(b"")
    foreign = model_dir / "ckpt-41_temp"  # holds a file no save writes: not ours to delete
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me\n")
    resume(model_dir, mnist)
    assert not failed.exists()
    assert (foreign / "notes.txt").read_text() == "keep me\n"


def test_a_non_chief_never_removes_anything_from_the_model_dir(model_dir):
    failed = model_dir / "ckpt-40_temp"
    failed.mkdir()
    (failed / TEMP_PART).write_bytes(b"")
    checkpointing.prepare_model_dir(str(model_dir), chief=False)
    assert (failed / TEMP_PART).exists()


def test_a_worker_removes_the_temporary_directory_its_killed_predecessor_left(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    killed = checkpointing.worker_temp_dir("/runs/a", task_index=1)
    (Path(killed) / TEMP_PART).write_bytes(b"")
    other_worker = checkpointing.worker_temp_dir("/runs/a", task_index=2)
    other_run = checkpointing.worker_temp_dir("/runs/b", task_index=1)
    restarted = checkpointing.worker_temp_dir("/runs/a", task_index=1)
    assert not Path(killed).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        Path(p).name for p in (restarted, other_worker, other_run))


# --- a completed run whose final checkpoint is damaged --------------------------------------

def test_a_damaged_final_checkpoint_of_a_finished_run_is_trained_again_exactly(model_dir, mnist):
    """The data order is a function of the step: the final checkpoint is rebuilt bit for bit."""
    final_weights = resume(model_dir, mnist, max_steps=40).weights_sha256
    data = next(model_dir.glob("ckpt-40.data-*"))
    data.write_bytes(data.read_bytes()[:100])
    result = resume(model_dir, mnist, max_steps=40)
    assert (result.start_step, result.final_step) == (30, 40)
    assert result.weights_sha256 == final_weights
    assert checkpointing.read_complete_marker(str(model_dir)) == 40


def test_a_finished_run_with_no_readable_checkpoint_is_refused(model_dir, mnist):
    for data in model_dir.glob("ckpt-*.data-*"):
        data.write_bytes(b"")
    with pytest.raises(CheckpointError, match="none of the checkpoints"):
        resume(model_dir, mnist, max_steps=30)


# --- stopping ---------------------------------------------------------------------------------

def test_a_stop_agreed_at_a_loop_call_runs_no_further_step(model_dir, mnist):
    """The stop flag is agreed at the start of a loop call; that call runs no step,
    so a signal is acted on where the call in progress ends (here: at once)."""
    import threading

    from model.train import Preempted

    stop = threading.Event()
    stop.set()
    with pytest.raises(Preempted) as raised:
        train(short_run_config(model_dir, 40), strategy=tf.distribute.get_strategy(), datasets=mnist,
              stop_event=stop)
    assert raised.value.step == 30
    assert sorted(p.name for p in model_dir.glob("ckpt-*.index"))[-1] == "ckpt-30.index"
    assert checkpointing.read_complete_marker(str(model_dir)) is None
