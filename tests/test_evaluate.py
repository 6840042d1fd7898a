"""Tests of model/evaluate.py: the polling evaluator (issue 2).

Real checkpoints are made once per test session (tests/conftest.py) by training the MLP in-process for
30 steps on the bundled MNIST (checkpoints at steps 10, 20 and 30); each test
works on its own copy of that model directory, damaging it as it likes.
Accuracies are checked against an independent numpy forward pass over the
tensors read straight out of the checkpoint files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from model import goodput, layout, log_lines, summaries
from model.errors import CheckpointError
from model.evaluate import (FINAL_METRICS, MAX_READ_ATTEMPTS, STATE_FILE, EvalConfig, Evaluator,
                            evaluate)
from model.networks import build_network
from tests.conftest import TRAINED_STEPS
from model.train_state import MovingAverages
from scripts.paths import REPO_ROOT

STEPS = list(TRAINED_STEPS)
FINAL = STEPS[-1]
EVAL_LOGGER = "model.evaluate"


# --------------------------------------------------------------------------
# Fixtures (tests/conftest.py): `trained_dir`, one real training run per
# session, and `model_dir`, one copy of it per test.


def eval_config(model_dir: Path, **overrides) -> EvalConfig:
    kwargs = dict(model_dir=str(model_dir), model="mlp", eval_interval_secs=0.01,
                  timeout_secs=60.0)
    kwargs.update(overrides)
    return EvalConfig(**kwargs)


def make_evaluator(model_dir: Path, mnist, **overrides) -> Evaluator:
    return Evaluator(eval_config(model_dir, **overrides), mnist)


# --------------------------------------------------------------------------
# Independent reference: numpy over the raw checkpoint tensors

_MLP_SHAPES = {(784, 500): "w1", (500,): "b1", (500, 10): "w2", (10,): "b2"}


def checkpoint_weights(path: str, prefix: str) -> dict[str, np.ndarray]:
    """The MLP's weights under `prefix` ("averages/" or "network/"), found by shape."""
    reader = tf.train.load_checkpoint(path)
    weights = {}
    for key, shape in reader.get_variable_to_shape_map().items():
        if key.startswith(prefix) and key.endswith("/.ATTRIBUTES/VARIABLE_VALUE"):
            weights[_MLP_SHAPES[tuple(shape)]] = reader.get_tensor(key)
    assert sorted(weights) == ["b1", "b2", "w1", "w2"], weights.keys()
    return weights


def numpy_logits(weights: dict[str, np.ndarray], images_uint8: np.ndarray) -> np.ndarray:
    x = images_uint8.reshape(len(images_uint8), 784).astype(np.float32) / np.float32(255.0)
    hidden = np.maximum(x @ weights["w1"] + weights["b1"], 0.0)
    return hidden @ weights["w2"] + weights["b2"]


def numpy_accuracy(path: str, split, prefix: str = "averages/") -> float:
    logits = numpy_logits(checkpoint_weights(path, prefix), split.images)
    return float(np.mean(np.argmax(logits, axis=1) == split.labels))


def assert_close_accuracy(actual: float, expected: float, n: int) -> None:
    # Allow a couple of float near-ties to break differently in numpy and TF.
    assert abs(actual - expected) <= 2.0 / n, (actual, expected)


# --------------------------------------------------------------------------
# Helpers


def tree_digest(root: Path, *, exclude: Path | None = None) -> dict[str, str]:
    """sha256 of every file under root (relative path -> digest), optionally minus a subtree."""
    digests = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if exclude is not None:
            dirnames[:] = [d for d in dirnames if here / d != exclude]
        for name in filenames:
            path = here / name
            digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def validation_lines(out: str) -> list[tuple[int, str]]:
    return [(int(m["step"]), m["accuracy"]) for line in out.splitlines()
            if (m := log_lines.EVAL_VALIDATION.match(line))]


def json_events(out: str) -> list[dict]:
    return [e for line in out.splitlines() if (e := log_lines.parse_eval_event(line)) is not None]


def eval_state(model_dir: Path) -> dict:
    return json.loads((model_dir / "eval" / STATE_FILE).read_text())


def warnings_from(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == EVAL_LOGGER and r.levelno == logging.WARNING]


def summary_scalars(eval_dir: Path) -> dict[str, dict[int, float]]:
    scalars: dict[str, dict[int, float]] = {}
    for events_file in sorted(eval_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events_file)):
            for value in event.summary.value:
                if value.tensor.dtype == tf.float32.as_datatype_enum and not value.tensor.tensor_shape.dim:
                    scalars.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return scalars


def numpy_scores(path: str, split, regularization_rate: float) -> tuple[float, float, np.ndarray]:
    """(accuracy, loss, predictions) of the moving-average weights: the trainer's objective,
    mean cross-entropy + rate * sum(w**2) / 2 over the fc weights."""
    weights = checkpoint_weights(path, "averages/")
    logits = numpy_logits(weights, split.images).astype(np.float64)
    labels = split.labels.astype(int)
    shifted = logits - logits.max(axis=1, keepdims=True)
    cross_entropy = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(labels)), labels]
    l2 = sum(float(np.sum(weights[w].astype(np.float64) ** 2)) / 2 for w in ("w1", "w2"))
    predictions = np.argmax(logits, axis=1)
    return (float(np.mean(predictions == labels)), float(cross_entropy.mean()) + regularization_rate * l2,
            predictions)


class StopAfterFirstPoll(threading.Event):
    """A stop event whose first wait (the end of the first poll) stops the run."""

    def wait(self, timeout=None):
        self.set()
        return True


# --------------------------------------------------------------------------
# The happy path


def test_evaluates_each_checkpoint_once_in_order_and_writes_final_metrics(model_dir, mnist, capsys):
    metrics = evaluate(eval_config(model_dir), datasets=mnist)
    out = capsys.readouterr().out

    # The tutorial's line, once per checkpoint, in step order.
    lines = validation_lines(out)
    assert [step for step, _ in lines] == STEPS
    test_lines = [m for line in out.splitlines() if (m := log_lines.EVAL_TEST.match(line))]
    assert [(int(m["step"]), m["already"]) for m in test_lines] == [(FINAL, None)]

    # A JSON twin for each line.
    events = json_events(out)
    evals = [e for e in events if e["event"] == "eval"]
    finals = [e for e in events if e["event"] == "final"]
    assert [e["step"] for e in evals] == STEPS
    assert len(finals) == 1 and finals[0]["test_accuracy"] == metrics["test_accuracy"]
    # The run's goodput and this evaluator's lag per checkpoint (model/goodput.py; tests/test_goodput.py).
    assert metrics["goodput"] is not None
    assert metrics["goodput"] == goodput.read_summary(str(model_dir))["goodput"]
    assert metrics["eval_lag"]["count"] == len(STEPS) and metrics["eval_lag"]["worst_step"] in STEPS

    n_val = len(mnist.validation)
    assert n_val == 5000
    for (step, printed), event in zip(lines, evals):
        path = str(model_dir / f"ckpt-{step}")
        assert event["checkpoint"] == path
        assert printed == f"{event['validation_accuracy']:g}"
        # Moving-average and raw-weight accuracies both match numpy's.
        assert_close_accuracy(event["validation_accuracy"], numpy_accuracy(path, mnist.validation),
                              n_val)
        assert_close_accuracy(event["raw_validation_accuracy"],
                              numpy_accuracy(path, mnist.validation, prefix="network/"), n_val)
        assert 0.5 < event["validation_accuracy"] < 1.0  # really trained, really scored
        assert event["validation_accuracy"] * n_val == pytest.approx(
            round(event["validation_accuracy"] * n_val))  # a count of correct images over 5,000

    # final_metrics.json
    saved = json.loads((model_dir / "eval" / FINAL_METRICS).read_text())
    assert saved == metrics
    by_step = {e["step"]: e["validation_accuracy"] for e in evals}
    best_step = max(by_step, key=lambda s: (by_step[s], s))
    assert metrics["best_step"] == best_step
    assert metrics["best_validation_accuracy"] == by_step[best_step]
    assert metrics["final_step"] == FINAL
    assert metrics["final_validation_accuracy"] == by_step[FINAL]
    assert metrics["checkpoints_evaluated"] == len(STEPS)
    assert_close_accuracy(metrics["test_accuracy"],
                          numpy_accuracy(str(model_dir / f"ckpt-{FINAL}"), mnist.test),
                          len(mnist.test))
    assert_close_accuracy(metrics["raw_test_accuracy"],
                          numpy_accuracy(str(model_dir / f"ckpt-{FINAL}"), mnist.test, "network/"),
                          len(mnist.test))
    assert 0.5 < metrics["test_accuracy"] < 1.0

    # eval_state.json remembers every checkpoint.
    assert sorted(int(k) for k in eval_state(model_dir)["results"]) == STEPS

    # TensorBoard summaries in the eval dir.
    scalars = summary_scalars(model_dir / "eval")
    assert scalars[summaries.ACCURACY] == pytest.approx(by_step)
    assert sorted(scalars[summaries.RAW_WEIGHTS_ACCURACY]) == STEPS
    assert scalars[summaries.TEST_ACCURACY] == pytest.approx({FINAL: metrics["test_accuracy"]})
    # ... and the dashboard's loss, per-class accuracy, images and HParams (tests/test_summaries.py).
    from tests.test_summaries import assert_eval_dashboard

    record = json.loads((model_dir / layout.RUN_CONFIG).read_text())
    rate = record["hparams"]["regularization_rate"]
    assert_eval_dashboard(model_dir / "eval", mnist, STEPS, record, {
        step: numpy_scores(str(model_dir / f"ckpt-{step}"), mnist.validation, rate) for step in STEPS})


def test_numpy_reference_pairs_averages_like_moving_averages(trained_dir, mnist):
    """The reference reads shadows by shape; check that agrees with tf.train.Checkpoint."""
    path = str(trained_dir / f"ckpt-{FINAL}")
    network = build_network("mlp")
    averages = MovingAverages(network)
    tf.train.Checkpoint(network=network, averages=averages).read(path).expect_partial()
    averages.copy_into(network)
    images = mnist.validation.images[:200]
    tf_logits = network(tf.constant(images.reshape(-1, 784).astype(np.float32) / 255.0)).numpy()
    np.testing.assert_allclose(numpy_logits(checkpoint_weights(path, "averages/"), images),
                               tf_logits, rtol=1e-4, atol=1e-4)
    # The moving averages really differ from the raw weights (else the test proves nothing).
    assert not np.allclose(checkpoint_weights(path, "averages/")["w2"],
                           checkpoint_weights(path, "network/")["w2"])


# --------------------------------------------------------------------------
# Restarts


def test_restart_reevaluates_nothing(model_dir, mnist, capsys):
    first = evaluate(eval_config(model_dir), datasets=mnist)
    capsys.readouterr()

    # A new evaluator on the same dirs: nothing to poll, straight to the final metrics.
    again = make_evaluator(model_dir, mnist).run()
    out = capsys.readouterr().out
    assert validation_lines(out) == []
    assert [e["event"] for e in json_events(out)] == ["final"]
    assert again == first

    # evaluate() short-circuits on final_metrics.json without scoring anything.
    third = evaluate(eval_config(model_dir), datasets=mnist)
    out = capsys.readouterr().out
    assert validation_lines(out) == []
    assert "(already evaluated)" in out
    assert third == first


def test_a_marker_below_max_steps_is_a_run_about_to_be_extended(model_dir, mnist, capsys):
    """`helm upgrade --set training.maxSteps=<more>`: the new evaluator may start before the new
    trainer clears the old completion marker; with --max-steps beyond it, it waits for the new
    checkpoints instead of re-printing the old result and exiting."""
    first = evaluate(eval_config(model_dir, max_steps=FINAL), datasets=mnist)
    capsys.readouterr()
    assert evaluate(eval_config(model_dir, max_steps=FINAL), datasets=mnist) == first
    assert "(already evaluated)" in capsys.readouterr().out

    assert evaluate(eval_config(model_dir, max_steps=2 * FINAL), datasets=mnist,
                    stop_event=StopAfterFirstPoll()) is None
    out = capsys.readouterr().out
    assert "(already evaluated)" not in out and "test accuracy" not in out
    assert make_evaluator(model_dir, mnist, max_steps=2 * FINAL).run(StopAfterFirstPoll()) is None
    # A lowered --max-steps: the run is over at its (higher) marker.
    assert evaluate(eval_config(model_dir, max_steps=FINAL // 2), datasets=mnist) == first


def test_restart_with_partial_state_evaluates_only_the_missing_checkpoint(model_dir, mnist, capsys):
    first = evaluate(eval_config(model_dir), datasets=mnist)
    capsys.readouterr()
    state_path = model_dir / "eval" / STATE_FILE
    state = json.loads(state_path.read_text())
    del state["results"]["20"]
    state_path.write_text(json.dumps(state))
    (model_dir / "eval" / FINAL_METRICS).unlink()

    again = evaluate(eval_config(model_dir), datasets=mnist)
    out = capsys.readouterr().out
    assert [step for step, _ in validation_lines(out)] == [20]
    assert again == first
    assert sorted(int(k) for k in eval_state(model_dir)["results"]) == STEPS


def test_stopped_after_the_first_poll_then_resumed(model_dir, tmp_path, mnist, capsys):
    # Training in progress: only ckpt-10 and ckpt-20 are written, no completion marker.
    state_file = model_dir / "checkpoint"
    full_state = state_file.read_text()
    state_file.write_text('model_checkpoint_path: "ckpt-20"\n'
                          'all_model_checkpoint_paths: "ckpt-10"\n'
                          'all_model_checkpoint_paths: "ckpt-20"\n')
    final_files = list(model_dir.glob(f"ckpt-{FINAL}.*"))
    for f in final_files:
        f.rename(tmp_path / f.name)
    marker = model_dir / layout.COMPLETE_MARKER
    marker_text = marker.read_text()
    marker.unlink()

    assert evaluate(eval_config(model_dir), datasets=mnist, stop_event=StopAfterFirstPoll()) is None
    assert [s for s, _ in validation_lines(capsys.readouterr().out)] == [10, 20]
    assert not (model_dir / "eval" / FINAL_METRICS).exists()

    # Training finishes; a restarted evaluator scores only ckpt-30, then the test set.
    for f in final_files:
        (tmp_path / f.name).rename(f)
    state_file.write_text(full_state)
    marker.write_text(marker_text)
    metrics = evaluate(eval_config(model_dir), datasets=mnist)
    out = capsys.readouterr().out
    assert [s for s, _ in validation_lines(out)] == [30]
    assert metrics["checkpoints_evaluated"] == 3 and metrics["final_step"] == FINAL


def test_unreadable_eval_state_starts_afresh(model_dir, mnist, capsys, caplog):
    (model_dir / "eval").mkdir()
    (model_dir / "eval" / STATE_FILE).write_text("{not json")
    metrics = evaluate(eval_config(model_dir), datasets=mnist)
    assert [s for s, _ in validation_lines(capsys.readouterr().out)] == STEPS
    assert metrics["checkpoints_evaluated"] == 3
    assert any("ignoring unreadable" in m for m in warnings_from(caplog))


# --------------------------------------------------------------------------
# Damage matrix: damage ckpt-20 (or the `checkpoint` state file), poll, repair, poll


def _data(model_dir: Path, step: int = 20) -> Path:
    return model_dir / f"ckpt-{step}.data-00000-of-00001"


def _index(model_dir: Path, step: int = 20) -> Path:
    return model_dir / f"ckpt-{step}.index"


def _flip_byte(path: Path, where: str) -> None:
    size = path.stat().st_size
    offset = {"start": 0, "middle": size // 2, "end": size - 1}[where]
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0xFF]))


def truncate_data(d):
    os.truncate(_data(d), _data(d).stat().st_size // 2)


def zero_byte_index(d):
    _index(d).write_bytes(b"")


def delete_checkpoint(d):
    _data(d).unlink()
    _index(d).unlink()


def delete_data(d):
    _data(d).unlink()


def empty_state(d):
    (d / "checkpoint").write_bytes(b"")


def garbage_state_text(d):
    (d / "checkpoint").write_text("this is not {a checkpoint state\n")


def garbage_state_binary(d):
    (d / "checkpoint").write_bytes(bytes(range(256)) * 4)


@dataclasses.dataclass
class Damage:
    damage: object
    errors: tuple[str, ...]  # the exception class name(s) TF 2.21 raises, as logged
    state_file: bool = False  # the `checkpoint` state file rather than ckpt-20
    vanished: bool = False  # given up at once, never retried


DAMAGES = {
    "truncated-data": Damage(truncate_data, ("IndexError",)),
    "zero-byte-index": Damage(zero_byte_index, ("OpError",)),
    # Checksum mismatches, found by the scorer's tensor reader (a plain OpError) or the restore.
    "bit-flip-data-start": Damage(lambda d: _flip_byte(_data(d), "start"),
                                  ("OpError", "DataLossError")),
    "bit-flip-data-middle": Damage(lambda d: _flip_byte(_data(d), "middle"),
                                   ("OpError", "DataLossError")),
    "bit-flip-data-end": Damage(lambda d: _flip_byte(_data(d), "end"),
                                ("OpError", "DataLossError")),
    "bit-flip-index": Damage(lambda d: _flip_byte(_index(d), "middle"), ("OpError", "DataLossError")),
    "deleted-while-listed": Damage(delete_checkpoint, (), vanished=True),
    "index-without-data": Damage(delete_data, ("OpError", "NotFoundError")),
    "empty-state-file": Damage(empty_state, (), state_file=True),
    "garbage-state-file": Damage(garbage_state_text, (), state_file=True),
    "binary-garbage-state-file": Damage(garbage_state_binary, (), state_file=True),
}


@pytest.mark.parametrize("case", list(DAMAGES))
def test_damage_is_logged_skipped_and_recoverable(case, model_dir, trained_dir, mnist, capsys,
                                                  caplog):
    spec = DAMAGES[case]
    spec.damage(model_dir)
    damaged = tree_digest(model_dir, exclude=model_dir / "eval")
    evaluator = make_evaluator(model_dir, mnist)
    caplog.clear()

    evaluator.poll_once()  # must not raise

    warnings = warnings_from(caplog)
    assert warnings, "no warning logged"
    out = capsys.readouterr().out
    if spec.state_file:  # the checkpoint files are found by listing the directory instead
        assert sorted(evaluator.state.results) == STEPS
        assert [s for s, _ in validation_lines(out)] == STEPS
        [warning] = warnings
        assert str(model_dir / "checkpoint") in warning and "listing the ckpt-*.index" in warning
    elif spec.vanished:  # nothing to read, nothing remembered
        assert sorted(evaluator.state.results) == [10, 30]
        assert warnings == [f"eval | skipping {model_dir / 'ckpt-20'}: its files are gone"]
        assert eval_state(model_dir)["failures"] == {}
    else:
        assert sorted(evaluator.state.results) == [10, 30]
        assert [s for s, _ in validation_lines(out)] == [10, 30]
        [warning] = warnings
        assert "ckpt-20" in warning
        assert any(f" {name}: " in warning for name in spec.errors), warning
        assert "vanished" not in warning
        [(identity, attempts)] = eval_state(model_dir)["failures"].items()
        assert identity.startswith("ckpt-20@") and attempts == 1
    # Reading never writes beside the checkpoints.
    assert tree_digest(model_dir, exclude=model_dir / "eval") == damaged

    # Repair: put the original files back.
    for name in ("checkpoint", _data(trained_dir).name, _index(trained_dir).name):
        shutil.copy2(trained_dir / name, model_dir / name)
    caplog.clear()
    evaluator.poll_once()
    out = capsys.readouterr().out
    assert warnings_from(caplog) == []
    if spec.state_file:
        assert validation_lines(out) == []  # all were scored already
    else:
        assert [s for s, _ in validation_lines(out)] == [20]
        assert sorted(evaluator.state.results) == STEPS
        ref = numpy_accuracy(str(model_dir / "ckpt-20"), mnist.validation)
        assert_close_accuracy(evaluator.state.results[20]["validation_accuracy"], ref,
                              len(mnist.validation))


def test_damaged_checkpoint_is_given_up_after_max_attempts(model_dir, trained_dir, mnist, caplog):
    truncate_data(model_dir)
    evaluator = make_evaluator(model_dir, mnist)
    for attempt in range(1, MAX_READ_ATTEMPTS + 1):
        caplog.clear()
        assert evaluator.poll_once() is True  # ckpt-20 is still pending
        assert len(warnings_from(caplog)) == 1
        [(identity, attempts)] = eval_state(model_dir)["failures"].items()
        assert identity.startswith("ckpt-20@") and attempts == attempt
    caplog.clear()
    assert evaluator.poll_once() is False  # given up: not even read
    assert warnings_from(caplog) == []
    # Nor by a restarted evaluator, while the files are the same.
    assert make_evaluator(model_dir, mnist).poll_once() is False


def test_given_up_checkpoint_rewritten_by_the_trainer_is_scored(model_dir, trained_dir, mnist, capsys):
    """Issue 16, defect 2: the evaluator gives up on a damaged final ckpt-30; the
    trainer falls back and writes ckpt-30 again, bit for bit the same weights
    (training resumes exactly). A restarted evaluator scores it and finishes."""
    os.truncate(_data(model_dir, FINAL), _data(model_dir, FINAL).stat().st_size // 2)
    with pytest.raises(CheckpointError, match=f"ckpt-{FINAL}"):
        evaluate(eval_config(model_dir), datasets=mnist)
    capsys.readouterr()
    time.sleep(0.01)  # a later modification time, as a real rewrite has
    for path in (_data(model_dir, FINAL), _index(model_dir, FINAL)):
        path.unlink()
        shutil.copyfile(trained_dir / path.name, path)  # new files, the same bytes as before
    metrics = evaluate(eval_config(model_dir), datasets=mnist)
    assert metrics["final_step"] == FINAL and metrics["checkpoints_evaluated"] == 3
    assert [s for s, _ in validation_lines(capsys.readouterr().out)] == [FINAL]


def test_first_format_eval_state_is_read(model_dir, mnist, capsys):
    """An eval_state.json written before checkpoint identities (failures keyed on
    file names, here the final checkpoint given up): its scores are kept, its
    failures forgotten, and the run finishes."""
    first = evaluate(eval_config(model_dir), datasets=mnist)
    capsys.readouterr()
    state_path = model_dir / "eval" / STATE_FILE
    state = json.loads(state_path.read_text())
    results = {k: {f: v for f, v in r.items() if f != "identity"} for k, r in state["results"].items()
               if k != str(FINAL)}
    state_path.write_text(json.dumps({"results": results, "failures": {f"ckpt-{FINAL}": 3}}))
    (model_dir / "eval" / FINAL_METRICS).unlink()

    again = evaluate(eval_config(model_dir), datasets=mnist)
    assert [s for s, _ in validation_lines(capsys.readouterr().out)] == [FINAL]
    assert again == first
    saved = eval_state(model_dir)
    assert saved["format"] == 2 and saved["failures"] == {}
    assert all(r["identity"].startswith(f"ckpt-{k}@") for k, r in saved["results"].items())


def test_eval_state_of_an_unknown_format_is_set_aside(model_dir, mnist, capsys, caplog):
    (model_dir / "eval").mkdir()
    (model_dir / "eval" / STATE_FILE).write_text('{"format": 99, "results": {"30": "?"}}')
    metrics = evaluate(eval_config(model_dir), datasets=mnist)
    assert metrics["checkpoints_evaluated"] == 3
    assert any("unknown format 99" in w for w in warnings_from(caplog))
    [aside] = (model_dir / "eval").glob(f"{STATE_FILE}.unreadable-*")
    assert json.loads(aside.read_text())["format"] == 99


def test_full_run_over_damage_finishes_and_never_touches_the_checkpoints(model_dir, mnist):
    truncate_data(model_dir)
    _flip_byte(_data(model_dir, 10), "middle")
    before = tree_digest(model_dir)
    metrics = evaluate(eval_config(model_dir), datasets=mnist)
    assert metrics["final_step"] == FINAL and metrics["checkpoints_evaluated"] == 1
    assert metrics["best_step"] == FINAL
    # Everything outside eval/ is byte-for-byte what it was; eval/ is all that is new.
    after = tree_digest(model_dir, exclude=model_dir / "eval")
    assert after == before
    assert {p.name for p in model_dir.iterdir()} - {Path(k).parts[0] for k in before} == {"eval"}


def test_separate_eval_dir_leaves_the_model_dir_untouched(model_dir, tmp_path, mnist):
    before = tree_digest(model_dir)
    names_before = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*"))
    eval_dir = tmp_path / "elsewhere" / "eval"
    metrics = evaluate(eval_config(model_dir, eval_dir=str(eval_dir)), datasets=mnist)
    assert metrics["final_step"] == FINAL
    assert tree_digest(model_dir) == before
    assert sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*")) == names_before
    assert (eval_dir / FINAL_METRICS).exists() and (eval_dir / STATE_FILE).exists()
    assert list(eval_dir.glob("events.out.tfevents.*"))


def test_read_only_model_dir(model_dir, tmp_path, mnist):
    before = tree_digest(model_dir)
    eval_dir = tmp_path / "eval"
    paths = [model_dir, *model_dir.rglob("*")]
    for path in paths:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        probe = model_dir / "write-probe"
        try:
            probe.write_text("x")
            writes_refused = False
            probe.unlink()
        except PermissionError:
            writes_refused = True
        metrics = evaluate(eval_config(model_dir, eval_dir=str(eval_dir)), datasets=mnist)
    finally:
        for path in paths:
            path.chmod(path.stat().st_mode | 0o200)
    assert metrics["final_step"] == FINAL and metrics["checkpoints_evaluated"] == 3
    assert tree_digest(model_dir) == before
    if not writes_refused:
        pytest.skip("running as root: chmod a-w does not stop writes, so the evaluation above "
                    "passed but did not prove it needs no write access to the model dir")


# --------------------------------------------------------------------------
# Termination


@pytest.mark.parametrize("damage, attempts", [(truncate_data, MAX_READ_ATTEMPTS),
                                              (delete_checkpoint, 1)],
                         ids=["damaged", "vanished"])
def test_unreadable_final_checkpoint_raises(damage, attempts, model_dir, mnist, caplog):
    # Damage ckpt-30, the one training_complete.json names.
    data, index = _data(model_dir, FINAL), _index(model_dir, FINAL)
    if damage is truncate_data:
        os.truncate(data, data.stat().st_size // 2)
    else:
        data.unlink()
        index.unlink()
    evaluator = make_evaluator(model_dir, mnist)
    t0 = time.monotonic()
    with pytest.raises(CheckpointError, match=f"final checkpoint {model_dir / 'ckpt-30'} "):
        evaluator.run()
    assert time.monotonic() - t0 < 20
    assert sum("ckpt-30" in w for w in warnings_from(caplog)) == attempts
    assert not (model_dir / "eval" / FINAL_METRICS).exists()


def test_final_checkpoint_damaged_after_its_validation_raises(model_dir, mnist, capsys):
    # Scored on the validation set while training was still "running"...
    marker = model_dir / layout.COMPLETE_MARKER
    marker_text = marker.read_text()
    marker.unlink()
    assert evaluate(eval_config(model_dir), datasets=mnist, stop_event=StopAfterFirstPoll()) is None
    assert [s for s, _ in validation_lines(capsys.readouterr().out)] == STEPS
    # ...then damaged before the test-set pass of a restarted evaluator.
    os.truncate(_data(model_dir, FINAL), _data(model_dir, FINAL).stat().st_size // 2)
    marker.write_text(marker_text)
    with pytest.raises(CheckpointError, match=f"ckpt-{FINAL}"):
        make_evaluator(model_dir, mnist).run()
    assert not (model_dir / "eval" / FINAL_METRICS).exists()


def test_timeout_without_checkpoints_returns_none(tmp_path, mnist, caplog):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    evaluator = make_evaluator(model_dir, mnist, timeout_secs=0.3, eval_interval_secs=0.02)
    t0 = time.monotonic()
    assert evaluator.run() is None
    assert time.monotonic() - t0 < 5
    assert any("giving up" in w for w in warnings_from(caplog))


def test_timeout_after_training_stalls_returns_none(model_dir, mnist, capsys):
    (model_dir / layout.COMPLETE_MARKER).unlink()  # training never finishes
    t0 = time.monotonic()
    assert evaluate(eval_config(model_dir, timeout_secs=0.5, eval_interval_secs=0.02),
                    datasets=mnist) is None
    assert time.monotonic() - t0 < 15
    assert [s for s, _ in validation_lines(capsys.readouterr().out)] == STEPS
    assert not (model_dir / "eval" / FINAL_METRICS).exists()


def test_waits_for_run_config_when_model_not_given(tmp_path, mnist, caplog):
    caplog.set_level(logging.INFO, logger=EVAL_LOGGER)
    empty = tmp_path / "not-started"
    empty.mkdir()
    stop = threading.Event()
    timer = threading.Timer(0.3, stop.set)
    timer.start()
    t0 = time.monotonic()
    try:
        assert evaluate(eval_config(empty, model=None, eval_interval_secs=0.02),
                        datasets=mnist, stop_event=stop) is None
    finally:
        timer.cancel()
    assert 0.25 < time.monotonic() - t0 < 5
    assert any("waiting for run_config.json" in r.getMessage() for r in caplog.records)
    assert not (empty / "eval").exists()  # nothing written while waiting


def test_model_comes_from_run_config(model_dir, mnist, capsys):
    run_config = model_dir / layout.RUN_CONFIG
    saved = run_config.read_text()
    run_config.unlink()
    timer = threading.Timer(0.3, lambda: run_config.write_text(saved))  # the trainer starts
    timer.start()
    config = eval_config(model_dir, model=None, eval_interval_secs=0.02)
    try:
        metrics = evaluate(config, datasets=mnist)
    finally:
        timer.cancel()
    assert config.model == "mlp"
    assert metrics["final_step"] == FINAL
    assert [s for s, _ in validation_lines(capsys.readouterr().out)] == STEPS


# --------------------------------------------------------------------------
# The CLI (issue 16): real processes, exit codes, what the log says


def run_evaluate_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO_ROOT)}
    for name in ("TF_LOGDIR", "MNIST_MODEL"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "model", "evaluate", "--eval-interval-secs", "0.2",
                           *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_cli_finishes_over_a_garbage_state_file_after_training(model_dir):
    """Issue 16, defect 3: `head -c 200 /dev/urandom > D/checkpoint; rm -r D/eval;
    python -m model evaluate --model-dir D` used to print "cannot list
    checkpoints yet" forever; the checkpoint files are found by listing D."""
    (model_dir / "checkpoint").write_bytes(os.urandom(200))
    shutil.rmtree(model_dir / "eval", ignore_errors=True)
    result = run_evaluate_cli("--model-dir", str(model_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert [int(m["step"]) for m in log_lines.EVAL_VALIDATION.finditer(result.stdout)] == STEPS
    assert [int(m["step"]) for m in log_lines.EVAL_TEST.finditer(result.stdout)] == [FINAL]


def test_cli_scoring_over_damage_logs_no_unrestored_optimizer_values(model_dir):
    """A checkpoint damaged in its tensors used to leave an abandoned restore
    behind that logged "Value in checkpoint could not be found in the restored
    object: (root).optimizer.velocities.N" (TensorFlow logs it when the status
    is garbage collected, so only a real process shows it)."""
    _flip_byte(_data(model_dir, 20), "middle")
    shutil.rmtree(model_dir / "eval", ignore_errors=True)
    result = run_evaluate_cli("--model-dir", str(model_dir))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert f"skipping {model_dir / 'ckpt-20'}" in out
    assert [int(m["step"]) for m in log_lines.EVAL_VALIDATION.finditer(result.stdout)] == [10, 30]
    assert "could not be found in the restored object" not in out
    assert "unrestored values" not in out


def test_cli_unreadable_final_checkpoint_exits_2_naming_it(model_dir):
    """Training is complete but its final checkpoint is damaged: no restart can
    help, so exit 2 (the chart fails the Job at once) with the file's name."""
    os.truncate(_data(model_dir, FINAL), _data(model_dir, FINAL).stat().st_size // 2)
    result = run_evaluate_cli("--model-dir", str(model_dir))
    assert result.returncode == 2, result.stdout + result.stderr
    [error] = [m["message"] for m in log_lines.ERROR.finditer(result.stderr)]
    assert f"final checkpoint {model_dir / f'ckpt-{FINAL}'} cannot be read" in error
    assert "Traceback" not in result.stdout + result.stderr


def test_timeout_while_waiting_for_run_config(tmp_path, mnist, caplog):
    """Issue 16, defect 7: --timeout-secs bounds the wait for run_config.json too."""
    empty = tmp_path / "not-started"
    empty.mkdir()
    t0 = time.monotonic()
    assert evaluate(eval_config(empty, model=None, timeout_secs=2.0, eval_interval_secs=10.0),
                    datasets=mnist) is None
    assert 2.0 <= time.monotonic() - t0 < 4.0
    assert any("giving up after 2 s" in w and "run_config.json" in w for w in warnings_from(caplog))
    assert not (empty / "eval").exists()


def test_cli_timeout_while_waiting_for_run_config_exits_1(tmp_path):
    empty = tmp_path / "not-started"
    empty.mkdir()
    result = run_evaluate_cli("--model-dir", str(empty), "--timeout-secs", "3", timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"giving up after 3 s (--timeout-secs): no run_config.json appeared in {empty}" \
        in result.stdout
