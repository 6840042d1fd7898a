"""Tests of model/export.py: the SavedModel of the moving-average weights.

The checkpoints come from one real 30-step training run of the MLP on the
bundled MNIST per test session (tests/conftest.py); predictions are checked against an independent
numpy forward pass over the tensors read straight from the checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from model.errors import ConfigError
from model.export import export
from tests.conftest import TRAINED_STEPS

REPO = Path(__file__).resolve().parent.parent
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


def test_existing_export_dir_needs_overwrite(trained_dir, tmp_path):
    export_dir = tmp_path / "serving"
    export_dir.mkdir()
    (export_dir / "old-model.txt").write_text("previous export")
    with pytest.raises(ConfigError, match="already exists"):
        export(str(trained_dir), str(export_dir))
    assert sorted(p.name for p in export_dir.iterdir()) == ["old-model.txt"]

    export(str(trained_dir), str(export_dir), overwrite=True)
    assert not (export_dir / "old-model.txt").exists()
    assert (export_dir / "saved_model.pb").exists()
    assert "serving_default" in tf.saved_model.load(str(export_dir)).signatures
    assert leftovers(tmp_path) == []


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
    with pytest.raises(ConfigError, match="run_config.json"):
        export(str(tmp_path), str(tmp_path / "serving"))


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


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    env.pop("TF_LOGDIR", None)
    return subprocess.run([sys.executable, "-m", "model", "export", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)


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
