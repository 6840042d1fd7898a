"""Tests of the badput cuts (issue 14, part 3): the evaluator's cheap wait for a new
checkpoint.

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
