"""Tests of the badput cuts (issue 14, part 3): the evaluator's cheap wait for a new
checkpoint, asynchronous checkpoint saves that only ever show complete checkpoints, and
the chart's defaults for checkpoint cadence, evaluation interval and compute dtype.

Real files and real processes throughout; the checkpoints are `trained_dir`'s
(tests/conftest.py), copied in as the trainer would write them.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest

from model import checkpointing, layout
from tests.conftest import TRAINED_STEPS

FIRST, SECOND = TRAINED_STEPS[0], TRAINED_STEPS[1]


def _copy_checkpoint(source: Path, target: Path, step: int) -> None:
    """Copy ckpt-<step> in as TensorFlow writes it: the data, then the .index, then the state file."""
    import tensorflow as tf

    name = layout.checkpoint_name(step)
    for data in sorted(source.glob(f"{name}.data-*")):
        shutil.copyfile(data, target / data.name)
    shutil.copyfile(source / f"{name}.index", target / f"{name}.index")
    listed = [str(target / layout.checkpoint_name(s)) for s in TRAINED_STEPS if s <= step]
    tf.compat.v1.train.update_checkpoint_state(str(target), listed[-1], all_model_checkpoint_paths=listed)


def _wait_until(condition, deadline_secs: float) -> float | None:
    """Seconds until `condition()` held, None if it never did within the deadline."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_secs:
        if condition():
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def test_evaluator_notices_a_new_checkpoint_and_the_end_without_waiting_for_a_listing(
        trained_dir, tmp_path, mnist, monkeypatch):
    """With listings 120 s apart, a new checkpoint and then the completion marker are each acted on
    as soon as the cheap check sees them, and the waiting in between lists nothing."""
    from model.evaluate import EvalConfig, Evaluator

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    _copy_checkpoint(trained_dir, model_dir, FIRST)
    listings = []
    real_find = checkpointing.find_checkpoints

    def counting_find(path):
        listings.append(time.monotonic())
        return real_find(path)

    monkeypatch.setattr(checkpointing, "find_checkpoints", counting_find)
    config = EvalConfig(model_dir=str(model_dir), model="mlp", eval_interval_secs=120.0,
                        check_interval_secs=0.1)
    evaluator = Evaluator(config, mnist)
    stop = threading.Event()
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(metrics=evaluator.run(stop)), daemon=True)
    thread.start()
    try:
        assert _wait_until(lambda: FIRST in evaluator.state.results, 60) is not None
        time.sleep(1.0)  # idle: only the two small files are read meanwhile
        assert len(listings) == 1, f"listed {len(listings)} times while nothing changed"

        _copy_checkpoint(trained_dir, model_dir, SECOND)
        # Well inside the 120 s between listings, even on a loaded machine.
        assert _wait_until(lambda: SECOND in evaluator.state.results, 60) is not None
        assert len(listings) == 2

        checkpointing.write_complete_marker(str(model_dir), SECOND,
                                            str(model_dir / layout.checkpoint_name(SECOND)))
        thread.join(60)
        assert not thread.is_alive(), "the completion marker was not noticed"
        assert outcome["metrics"]["final_step"] == SECOND
    finally:
        stop.set()
        thread.join(10)


def test_plain_polling_at_the_eval_interval_is_still_available(tmp_path):
    """--check-interval-secs 0: the tutorial's polling, one listing per --eval-interval-secs."""
    from model.evaluate import change_signature, wait_for_change

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    since = change_signature(str(model_dir))
    assert since == (None, None)
    (model_dir / layout.CHECKPOINT_STATE).write_text('model_checkpoint_path: "ckpt-1"\n')
    start = time.monotonic()
    assert not wait_for_change(str(model_dir), since, check_interval=0, longest=0.3,
                               stop_event=threading.Event())
    assert time.monotonic() - start >= 0.3
    assert wait_for_change(str(model_dir), since, check_interval=0.05, longest=30,
                           stop_event=threading.Event())
    (model_dir / layout.COMPLETE_MARKER).write_text("{}")
    assert change_signature(str(model_dir)) != since


@pytest.mark.parametrize("bad", ["-1", "x"])
def test_cli_refuses_a_bad_check_interval(bad, capsys):
    from model import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["evaluate", "--model-dir", "/nonexistent", "--check-interval-secs", bad])
    assert exc.value.code == 2
    assert "--check-interval-secs" in capsys.readouterr().err


# --------------------------------------------------------------------------
# Asynchronous saves

_SAVER = """
import sys, tensorflow as tf
from model import checkpointing
from model.config import preset
from model.train_state import TrainState
state = TrainState("lenet5", preset("default", "lenet5"))  # 20 MB a checkpoint
writer = checkpointing.CheckpointWriter(state.checkpoint(), sys.argv[1], is_chief=True, task_index=0,
                                        max_to_keep=3, async_saves=True)
for step in range(1, 1000):
    state.step.assign(step)
    writer.save(step)  # returns while TensorFlow's thread writes; the next save waits for it
    print("dispatched", step, flush=True)
"""


def _complete(path: str) -> bool:
    """Whether every tensor of the checkpoint at `path` reads back (checksums checked)."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(path)
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)
    except checkpointing.READ_ERRORS:
        return False
    return True


def test_a_kill_during_asynchronous_saves_leaves_only_complete_checkpoints_visible(tmp_path):
    """SIGKILL a process that saves LeNet-5 asynchronously back to back, so the kill lands while
    a checkpoint is being written: the state file and the .index files name only complete
    checkpoints, and a restart restores the newest of them."""
    import os
    import signal
    import subprocess
    import sys

    model_dir = tmp_path / "model"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    saver = subprocess.Popen([sys.executable, "-c", _SAVER, str(model_dir)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        dispatched = 0
        for line in saver.stdout:
            dispatched = int(line.split()[1])
            if dispatched == 4:  # saves 1-3 are complete (each save waits for the one before)
                break
        saver.send_signal(signal.SIGKILL)  # while TensorFlow's thread writes 20 MB of ckpt-4
    finally:
        saver.kill()
        saver.wait()
    assert dispatched == 4, "the saver died before saving"
    listed = checkpointing.list_checkpoints(str(model_dir))
    indexed = [str(p)[: -len(".index")] for p in model_dir.glob("ckpt-*.index")]
    assert listed and indexed
    for path in {*listed, *indexed}:
        assert _complete(path), f"{path} is visible but not complete"
    # The kill landed during save 4: asked for, not visible.
    newest = layout.step_of(listed[-1])
    assert newest == 3, f"the kill did not land during the save of ckpt-4 (newest: {listed[-1]})"
    # A restart cleans up and restores the newest complete checkpoint.
    checkpointing.prepare_model_dir(str(model_dir), chief=True)
    assert not list(model_dir.glob("*_temp"))
    from model.config import preset
    from model.train_state import TrainState

    state = TrainState("lenet5", preset("default", "lenet5"))
    restored = checkpointing.restore_newest(state.checkpoint(), str(model_dir))
    assert restored == listed[-1] and int(state.step.numpy()) == newest
    # The check above can fail: a truncated copy of a complete checkpoint is not complete.
    data = next(model_dir.glob(f"{os.path.basename(listed[-1])}.data-*"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    assert not _complete(listed[-1])


# --------------------------------------------------------------------------
# Defaults


def test_auto_compute_dtype_is_bfloat16_only_for_lenet5_on_a_cpu_with_bfloat16_instructions(tmp_path):
    from model import precision

    bf16 = frozenset({"avx2", "avx512_bf16"})
    assert precision.auto_compute_dtype("lenet5", bf16, gpu=False) == "bfloat16"
    assert precision.auto_compute_dtype("lenet5", frozenset({"amx_bf16"}), gpu=False) == "bfloat16"
    assert precision.auto_compute_dtype("lenet5", frozenset({"avx2", "avx512f"}), gpu=False) == "float32"
    assert precision.auto_compute_dtype("lenet5", bf16, gpu=True) == "float32"
    assert precision.auto_compute_dtype("mlp", bf16, gpu=False) == "float32"  # not measured
    assert precision.resolve_compute_dtype("float32", "lenet5") == "float32"
    assert precision.resolve_compute_dtype("auto", "lenet5") == precision.auto_compute_dtype("lenet5")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512_bf16 amx_tile\n\nprocessor\t: 1\n")
    assert precision.cpu_flags(str(cpuinfo)) == {"fpu", "sse2", "avx512_bf16", "amx_tile"}
    assert precision.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_chart_defaults_are_the_measured_choices():
    """The chart's cadence, evaluator intervals and compute dtype are the ones the README's
    badput measurements chose; the library's own defaults stay the tutorial's where it had one."""
    import yaml

    from model import config
    from scripts.paths import REPO_ROOT

    values = yaml.safe_load((REPO_ROOT / "charts/mnist-train/values.yaml").read_text())
    assert values["training"]["saveCheckpointsSteps"] == 200
    assert values["training"]["computeDtype"] == config.COMPUTE_DTYPE_AUTO
    assert values["evaluator"]["evalIntervalSecs"] == config.EVAL_INTERVAL_SECS == 10
    assert values["evaluator"]["checkIntervalSecs"] == config.EVAL_CHECK_INTERVAL_SECS
    assert 0 < config.EVAL_CHECK_INTERVAL_SECS <= 1
