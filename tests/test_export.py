"""Tests of model/export.py: the SavedModel of the moving-average weights.

The checkpoints come from one real 30-step training run of the MLP on the
bundled MNIST per test session (tests/conftest.py); predictions are checked against an independent
numpy forward pass over the tensors read straight from the checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from model.errors import ConfigError
from model.export import EXPORT_INFO, export, refuse_training_state
from scripts.paths import REPO_ROOT
from tests.conftest import TRAINED_STEPS

FINAL = TRAINED_STEPS[-1]


@pytest.fixture(scope="module")
def exported(trained_dir, tmp_path_factory):
    """(export dir, loaded SavedModel, model-dir digest before export)."""
    before = tree_digest(trained_dir)
    export_dir = tmp_path_factory.mktemp("exports") / "serving"
    assert export(str(trained_dir), str(export_dir)) == str(export_dir)
    return export_dir, tf.saved_model.load(str(export_dir)), before


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name]


# --------------------------------------------------------------------------
# Independent reference: numpy over the raw checkpoint tensors

_MLP_SHAPES = {(784, 500): "w1", (500,): "b1", (500, 10): "w2", (10,): "b2"}


def checkpoint_weights(path: str, prefix: str = "averages/") -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(path)
    weights = {}
    for key, shape in reader.get_variable_to_shape_map().items():
        if key.startswith(prefix) and key.endswith("/.ATTRIBUTES/VARIABLE_VALUE"):
            weights[_MLP_SHAPES[tuple(shape)]] = reader.get_tensor(key)
    assert sorted(weights) == ["b1", "b2", "w1", "w2"]
    return weights


def numpy_logits(weights, images_uint8: np.ndarray) -> np.ndarray:
    x = images_uint8.reshape(len(images_uint8), 784).astype(np.float32) / np.float32(255.0)
    return np.maximum(x @ weights["w1"] + weights["b1"], 0.0) @ weights["w2"] + weights["b2"]


def as_float(images_uint8: np.ndarray) -> tf.Tensor:
    return tf.constant(images_uint8.reshape(-1, 784).astype(np.float32) / 255.0)


def check_outputs(outputs: dict, n: int) -> None:
    assert set(outputs) == {"logits", "probabilities", "classes"}
    logits = outputs["logits"].numpy()
    probabilities = outputs["probabilities"].numpy()
    classes = outputs["classes"].numpy()
    assert logits.shape == probabilities.shape == (n, 10)
    assert logits.dtype == probabilities.dtype == np.float32
    assert classes.shape == (n,) and classes.dtype == np.int64
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities >= 0).all()
    np.testing.assert_array_equal(classes, np.argmax(logits, axis=1))


# --------------------------------------------------------------------------
# The SavedModel


def test_signatures(exported, mnist):
    _, loaded, _ = exported
    assert set(loaded.signatures) == {"serving_default", "predict_pixels"}
    serving = loaded.signatures["serving_default"]
    [images_spec] = serving.structured_input_signature[1].values()
    assert images_spec.dtype == tf.float32 and images_spec.shape.as_list() == [None, 784]
    pixels = loaded.signatures["predict_pixels"]
    [pixels_spec] = pixels.structured_input_signature[1].values()
    assert pixels_spec.dtype == tf.uint8 and pixels_spec.shape.as_list() == [None, 28, 28]

    images = mnist.test.images[:256]
    from_floats = serving(images=as_float(images))
    from_pixels = pixels(pixels=tf.constant(images))
    check_outputs(from_floats, 256)
    check_outputs(from_pixels, 256)
    np.testing.assert_allclose(from_pixels["logits"].numpy(), from_floats["logits"].numpy(),
                               rtol=1e-5, atol=1e-5)
    # Any batch size, including one image.
    check_outputs(serving(images=as_float(images[:1])), 1)


def test_predictions_are_the_moving_average_weights(exported, trained_dir, mnist):
    _, loaded, _ = exported
    images = mnist.test.images
    logits = loaded.signatures["predict_pixels"](pixels=tf.constant(images))["logits"].numpy()
    path = str(trained_dir / f"ckpt-{FINAL}")  # the newest checkpoint
    averaged = numpy_logits(checkpoint_weights(path, "averages/"), images)
    raw = numpy_logits(checkpoint_weights(path, "network/"), images)
    np.testing.assert_allclose(logits, averaged, rtol=1e-4, atol=1e-4)
    assert not np.allclose(logits, raw, atol=1e-2), "exported the raw weights"
    accuracy = float(np.mean(np.argmax(logits, axis=1) == mnist.test.labels))
    assert 0.5 < accuracy < 1.0


def test_export_never_touches_the_model_dir(exported, trained_dir):
    _, _, before = exported
    assert tree_digest(trained_dir) == before


def test_export_of_a_named_checkpoint(trained_dir, tmp_path, mnist):
    path = str(trained_dir / "ckpt-10")
    export(str(trained_dir), str(tmp_path / "e"), checkpoint_path=path)
    loaded = tf.saved_model.load(str(tmp_path / "e"))
    images = mnist.validation.images[:500]
    logits = loaded.signatures["predict_pixels"](pixels=tf.constant(images))["logits"].numpy()
    np.testing.assert_allclose(logits, numpy_logits(checkpoint_weights(path), images),
                               rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------
# Atomicity and overwrite


def test_export_dir_appears_atomically(trained_dir, tmp_path, monkeypatch):
    export_dir = tmp_path / "serving"
    real_save = tf.saved_model.save
    targets = []

    def watching_save(obj, target, *args, **kwargs):
        targets.append(Path(target))
        assert not export_dir.exists(), "the export dir exists before the SavedModel is complete"
        real_save(obj, target, *args, **kwargs)
        assert not export_dir.exists()

    monkeypatch.setattr(tf.saved_model, "save", watching_save)
    export(str(trained_dir), str(export_dir))
    [target] = targets
    assert target.parent == export_dir.parent and target.name.startswith("serving.tmp-")
    assert (export_dir / "saved_model.pb").exists()
    assert leftovers(tmp_path) == []


def test_failed_save_leaves_neither_export_nor_temporary_dir(trained_dir, tmp_path, monkeypatch):
    real_save = tf.saved_model.save

    def failing_save(obj, target, *args, **kwargs):
        real_save(obj, target, *args, **kwargs)  # half the work done...
        raise OSError("disk full")  # ...then the disk fills up

    monkeypatch.setattr(tf.saved_model, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        export(str(trained_dir), str(tmp_path / "serving"))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_existing_export_needs_overwrite(trained_dir, tmp_path):
    export_dir = tmp_path / "serving"
    export(str(trained_dir), str(export_dir), checkpoint_path=str(trained_dir / "ckpt-10"))
    (export_dir / "stale-file-of-that-export.txt").write_text("x")
    before = tree_digest(export_dir)
    with pytest.raises(ConfigError, match="already exists"):
        export(str(trained_dir), str(export_dir))
    assert tree_digest(export_dir) == before

    export(str(trained_dir), str(export_dir), overwrite=True)
    assert not (export_dir / "stale-file-of-that-export.txt").exists()
    assert json.loads((export_dir / EXPORT_INFO).read_text())["trained_steps"] == FINAL
    assert "serving_default" in tf.saved_model.load(str(export_dir)).signatures
    assert leftovers(tmp_path) == []


def test_overwrite_replaces_a_bare_saved_model(trained_dir, tmp_path):
    """An export from before export_info.json: a SavedModel's files and nothing else."""
    export_dir = tmp_path / "serving"
    export(str(trained_dir), str(export_dir))
    (export_dir / EXPORT_INFO).unlink()
    export(str(trained_dir), str(export_dir), overwrite=True)
    assert (export_dir / EXPORT_INFO).exists()


@pytest.mark.parametrize("contents", [["notes.txt"], ["saved_model.pb", "variables", "eval"],
                                      ["checkpoint", "ckpt-10.index"]],
                         ids=["a-file", "saved-model-and-more", "someone-elses-checkpoints"])
def test_overwrite_refuses_what_is_not_an_export(contents, trained_dir, tmp_path):
    export_dir = tmp_path / "serving"
    export_dir.mkdir()
    for name in contents:
        (export_dir / name).mkdir() if name in ("variables", "eval") else \
            (export_dir / name).write_text(name)
    before = tree_digest(export_dir)
    with pytest.raises(ConfigError, match="not a previous export") as excinfo:
        export(str(trained_dir), str(export_dir), overwrite=True)
    unexpected = [n for n in contents if n not in ("saved_model.pb", "variables")]
    assert all(name in str(excinfo.value) for name in unexpected), excinfo.value
    assert str(export_dir) in str(excinfo.value)
    assert tree_digest(export_dir) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["serving"]


# --------------------------------------------------------------------------
# Exports never touch training state (issue 16, defect 1)


def _targets(model_dir: Path) -> dict[str, str]:
    link = model_dir.parent / "link-to-model"
    link.symlink_to(model_dir)
    return {"the-model-dir": str(model_dir), "its-parent": str(model_dir.parent),
            "inside-it": str(model_dir / "serving"), "inside-its-eval-dir": str(model_dir / "eval" / "x"),
            "dot-dot": f"{model_dir}/../{model_dir.name}/./x/..", "trailing-slash": f"{model_dir}/",
            "symlink-to-it": str(link), "inside-a-symlink": str(link / "serving"),
            "relative": os.path.relpath(model_dir)}


@pytest.mark.parametrize("target", ["the-model-dir", "its-parent", "inside-it", "inside-its-eval-dir",
                                    "dot-dot", "trailing-slash", "symlink-to-it", "inside-a-symlink",
                                    "relative"])
@pytest.mark.parametrize("overwrite", [False, True], ids=["", "overwrite"])
def test_export_dir_overlapping_the_model_dir_is_refused(target, overwrite, model_dir):
    export_dir = _targets(model_dir)[target]
    before = tree_digest(model_dir)
    with pytest.raises(ConfigError, match="model directory") as excinfo:
        export(str(model_dir), export_dir, overwrite=overwrite)
    assert export_dir in str(excinfo.value) and str(model_dir) in str(excinfo.value)
    assert tree_digest(model_dir) == before
    assert sorted(p.name for p in model_dir.parent.iterdir()) == ["link-to-model", "model"]


@pytest.mark.parametrize("export_dir, model_dir, relation", [
    ("gs://b/runs/1", "gs://b/runs/1", "is"),
    ("gs://b/runs/1/", "gs://b/runs//1", "is"),
    ("gs://b/runs", "gs://b/runs/1", "contains"),
    ("gs://b", "gs://b/runs/1", "contains"),
    ("gs://b/runs/1/export", "gs://b/runs/1", "lies inside"),
    ("gs://b/runs/1/../1/x", "gs://b/runs/1", "lies inside"),
])
def test_gcs_export_dir_overlapping_the_model_dir_is_refused(export_dir, model_dir, relation):
    with pytest.raises(ConfigError, match=f"{re.escape(export_dir)} {relation} the model directory"):
        refuse_training_state(export_dir, model_dir)


@pytest.mark.parametrize("export_dir, model_dir", [
    ("gs://b/runs/10", "gs://b/runs/1"), ("gs://b/runs/1-export", "gs://b/runs/1"),
    ("gs://other/runs/1", "gs://b/runs/1"), ("/tmp/b/runs/1", "gs://b/runs/1"),
    ("gs://b/runs/1", "/b/runs/1")])
def test_disjoint_export_dirs_are_allowed(export_dir, model_dir):
    refuse_training_state(export_dir, model_dir)


def test_cli_data_loss_repros_are_refused(model_dir, tmp_path):
    """Issue 16, defect 1, as reported: `export --export-dir D --overwrite`, an
    export dir above D, and `evaluate --export-best-to D` used to replace D
    with a SavedModel, exit 0. Now: exit 2 naming both paths, every file of D
    byte-identical, nothing new beside it."""
    (model_dir / "eval").mkdir(exist_ok=True)
    before = tree_digest(model_dir)
    siblings = sorted(p.name for p in model_dir.parent.iterdir())
    for command in (["export", "--model-dir", str(model_dir), "--export-dir", str(model_dir),
                     "--overwrite"],
                    ["export", "--model-dir", str(model_dir), "--export-dir", str(model_dir.parent),
                     "--overwrite"],
                    ["evaluate", "--model-dir", str(model_dir), "--export-best-to", str(model_dir)]):
        result = run_model(*command)
        assert result.returncode == 2, (command, result.stdout + result.stderr)
        [error] = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert "model directory" in error and str(model_dir) in error, error
        assert "Traceback" not in result.stdout + result.stderr
        assert tree_digest(model_dir) == before, command
        assert sorted(p.name for p in model_dir.parent.iterdir()) == siblings


# --------------------------------------------------------------------------
# What the SavedModel says about itself


def test_saved_model_records_the_model_and_its_step(exported):
    export_dir, loaded, _ = exported
    assert loaded.model_name.numpy() == b"mlp"
    assert loaded.trained_steps.numpy() == FINAL and loaded.trained_steps.dtype == tf.int64
    info = json.loads((Path(export_dir) / EXPORT_INFO).read_text())
    assert info["model"] == "mlp" and info["trained_steps"] == FINAL
    assert info["checkpoint"].endswith(f"ckpt-{FINAL}")


def test_export_best_records_the_best_step(model_dir, tmp_path, mnist):
    from model.evaluate import EvalConfig, evaluate
    from model.export import export_best

    metrics = evaluate(EvalConfig(model_dir=str(model_dir), eval_interval_secs=0.01), datasets=mnist)
    export_dir = tmp_path / "best"
    export_best(str(model_dir), str(model_dir / "eval"), str(export_dir))
    loaded = tf.saved_model.load(str(export_dir))
    assert loaded.trained_steps.numpy() == metrics["best_step"]
    assert loaded.model_name.numpy() == b"mlp"
    assert json.loads((export_dir / EXPORT_INFO).read_text())["trained_steps"] == metrics["best_step"]


# --------------------------------------------------------------------------
# Errors


def test_no_checkpoint_is_a_config_error(trained_dir, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy2(trained_dir / "run_config.json", model_dir)
    with pytest.raises(ConfigError, match="no checkpoint"):
        export(str(model_dir), str(tmp_path / "serving"))
    assert not (tmp_path / "serving").exists()


def test_unknown_model_is_a_config_error(tmp_path):
    (tmp_path / "model").mkdir()
    with pytest.raises(ConfigError, match="run_config.json"):
        export(str(tmp_path / "model"), str(tmp_path / "serving"))
    assert not (tmp_path / "serving").exists()


@pytest.mark.parametrize("damage", ["truncated-data", "zero-byte-index", "bit-flip", "missing"])
def test_damaged_checkpoint_is_a_config_error_naming_it(damage, model_dir, tmp_path):
    data = model_dir / f"ckpt-{FINAL}.data-00000-of-00001"
    index = model_dir / f"ckpt-{FINAL}.index"
    if damage == "truncated-data":
        os.truncate(data, data.stat().st_size // 2)
    elif damage == "zero-byte-index":
        index.write_bytes(b"")
    elif damage == "bit-flip":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    else:
        data.unlink()
        index.unlink()
    before = tree_digest(model_dir)
    out = tmp_path / "exports"
    out.mkdir()
    with pytest.raises(ConfigError) as excinfo:
        export(str(model_dir), str(out / "serving"))
    assert f"cannot read checkpoint {model_dir / f'ckpt-{FINAL}'}" in str(excinfo.value)
    assert list(out.iterdir()) == []
    assert tree_digest(model_dir) == before


@pytest.mark.parametrize("content", [b"", b"garbage {{{\n", bytes(range(256))],
                         ids=["empty", "garbage", "binary"])
def test_unreadable_checkpoint_state_is_a_config_error(content, model_dir, tmp_path):
    (model_dir / "checkpoint").write_bytes(content)
    with pytest.raises(ConfigError, match="checkpoint"):
        export(str(model_dir), str(tmp_path / "serving"))
    assert not (tmp_path / "serving").exists()


# --------------------------------------------------------------------------
# The CLI


def run_model(*args: str) -> subprocess.CompletedProcess:
    """`python -m model ARGS` in a real process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("TF_LOGDIR", None)
    return subprocess.run([sys.executable, "-m", "model", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=180)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return run_model("export", *args)


def test_cli_export(trained_dir, tmp_path):
    export_dir = tmp_path / "serving"
    result = run_cli("--model-dir", str(trained_dir), "--export-dir", str(export_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (export_dir / "saved_model.pb").exists()
    assert leftovers(tmp_path) == []


def test_cli_export_errors_exit_2(trained_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy2(trained_dir / "run_config.json", empty)
    result = run_cli("--model-dir", str(empty), "--export-dir", str(tmp_path / "serving"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert any(line.startswith("error: ") and "no checkpoint" in line
               for line in result.stderr.splitlines()), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "serving").exists()
