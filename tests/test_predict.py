"""`python -m model predict`: digits of the MNIST test set, rendered as PNG and JPEG files at other
sizes, black on white, off-centre, in colour or with transparency, are converted back the way
MNIST digits are made and predicted by a model exported from the shared trained run; files that
cannot be used get an error naming them and exit 2 while the others are still predicted.

The gs:// export is served by an in-memory Cloud Storage emulator on 127.0.0.1 (gcp-storage-emulator),
as in tests/test_gcs.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from model import gcs, log_lines, predict
from model.errors import ConfigError, DataError
from model.export import export
from scripts.paths import REPO_ROOT
from scripts.ports import free_port
from tests.requirements import unavailable

N_DIGITS = 6


@pytest.fixture(scope="module")
def exported(trained_dir, tmp_path_factory):
    export_dir = tmp_path_factory.mktemp("predict") / "serving"
    export(str(trained_dir), str(export_dir))
    return export_dir


@pytest.fixture(scope="module")
def digits(exported, mnist):
    """(images uint8 [N, 28, 28], labels): test digits the exported 30-step MLP gets right with
    confidence as they are, so a wrong answer below is the conversion's fault."""
    loaded = tf.saved_model.load(str(exported))
    images, labels = mnist.test.images[:200], mnist.test.labels[:200]
    probabilities = loaded.signatures["predict_pixels"](pixels=tf.constant(images))["probabilities"].numpy()
    sure = np.nonzero((probabilities.argmax(1) == labels) & (probabilities.max(1) > 0.9))[0]
    chosen = [int(next(i for i in sure if labels[i] == d)) for d in np.unique(labels[sure])[:N_DIGITS]]
    assert len(chosen) == N_DIGITS, "the trained fixture is too weak to pick test digits from"
    return images[chosen], labels[chosen]


def render(digit: np.ndarray, path, *, scale: int, fmt: str, dark_on_light: bool, pad=(0, 0, 0, 0),
           mode: str = "L") -> str:
    """`digit` (28x28 white on black) drawn `scale` times larger with margins (top, bottom, left,
    right) in pixels of the large image, saved as PNG or JPEG in grayscale, RGB or RGBA."""
    ink = tf.image.resize(digit[..., None].astype(np.float32) / 255.0, (28 * scale, 28 * scale),
                          method="bilinear").numpy()[..., 0].clip(0, 1)
    top, bottom, left, right = pad
    ink = np.pad(ink, ((top, bottom), (left, right)))
    gray = 1.0 - ink if dark_on_light else ink
    if mode == "L":
        pixels = gray[..., None]
    elif mode == "RGB":  # blue ink on yellowish paper
        paper, pen = np.array([1.0, 0.97, 0.8]), np.array([0.1, 0.1, 0.5])
        pixels = paper * (1 - ink[..., None]) + pen * ink[..., None]
    else:  # RGBA: black strokes on a transparent background, as drawing programs save them
        pixels = np.concatenate([np.zeros(ink.shape + (3,)), ink[..., None]], axis=-1)
    data = tf.constant(np.round(pixels * 255).astype(np.uint8))
    encoded = tf.io.encode_png(data) if fmt == "png" else tf.io.encode_jpeg(data, quality=90)
    with open(path, "wb") as f:
        f.write(encoded.numpy())
    return str(path)


RENDERINGS = [  # (file name, scale, format, dark on light, margins, colour mode)
    ("big-black-on-white.png", 4, "png", True, (10, 60, 90, 5), "L"),
    ("photo.jpg", 3, "jpeg", True, (30, 30, 5, 40), "RGB"),
    ("small-white-on-black.png", 1, "png", False, (2, 9, 0, 6), "L"),
    ("drawn.png", 5, "png", True, (0, 20, 20, 0), "RGBA"),
]


@pytest.fixture(scope="module")
def rendered(digits, tmp_path_factory):
    """{path: (label, the original 28x28)} for every digit in every rendering."""
    out = tmp_path_factory.mktemp("images")
    images, labels = digits
    found = {}
    for i, (image, label) in enumerate(zip(images, labels)):
        for name, scale, fmt, dark, pad, mode in RENDERINGS:
            path = render(image, out / f"{i}-{label}-{name}", scale=scale, fmt=fmt, dark_on_light=dark,
                          pad=pad, mode=mode)
            found[path] = (int(label), image)
    return found


def test_conversion_gives_back_the_mnist_digit(rendered):
    """Drawn large, inverted, moved and saved lossy, a digit converts back to (nearly) itself."""
    for path, (_, original) in rendered.items():
        converted = predict.image_to_pixels(path)
        assert converted.shape == (28, 28) and converted.dtype == np.uint8
        assert converted.max() >= 200 and converted[0].max() == 0 and converted[:, -1].max() == 0, path
        difference = np.abs(converted.astype(float) - original.astype(float)).mean() / 255
        assert difference < 0.08, f"{path}: mean difference {difference:.3f} from the MNIST digit"


def test_every_rendering_is_predicted_as_its_digit(rendered, exported):
    results = predict.predict(str(exported), list(rendered))
    for result, (path, (label, _)) in zip(results, rendered.items()):
        assert isinstance(result, predict.Prediction), result
        assert result.path == path and result.digit == label, (path, result)
        assert result.probability == max(result.probabilities) and abs(sum(result.probabilities) - 1) < 1e-4


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return env


def test_cli_predicts_each_image_and_names_each_bad_one(rendered, exported, tmp_path):
    """One real `python -m model predict` over good and bad files: a line per good image in
    order, an error naming each bad file, exit 2, and nothing else on the output."""
    good = list(rendered)[:3]
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("a digit, honestly\n")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(open(good[0], "rb").read()[:60])
    blank = tmp_path / "blank.png"
    blank.write_bytes(tf.io.encode_png(tf.fill([40, 30, 1], tf.constant(255, tf.uint8))).numpy())
    missing = tmp_path / "missing.jpg"
    args = [good[0], str(not_an_image), good[1], str(truncated), str(missing), str(blank), str(tmp_path),
            good[2]]
    result = subprocess.run([sys.executable, "-m", "model", "predict", "--export-dir", str(exported), *args],
                            cwd=REPO_ROOT, env=_cli_env(), stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=240)
    report = f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    assert result.returncode == 2, report
    lines = result.stdout.splitlines()
    assert [log_lines.PREDICTION.match(line)["path"] for line in lines] == good, report
    assert [int(log_lines.PREDICTION.match(line)["digit"]) for line in lines] == [
        rendered[p][0] for p in good], report
    errors = result.stderr.splitlines()
    expected = [(not_an_image, "not a PNG or JPEG image"), (truncated, "corrupt"), (missing, "no such file"),
                (blank, "no digit found"), (tmp_path, "is a directory")]
    assert len(errors) == len(expected), report
    for line, (path, needle) in zip(errors, expected):
        assert line.startswith(f"error: {path}: ") and needle in line, report


def test_a_directory_that_is_not_an_export_is_a_config_error(tmp_path, rendered):
    image = next(iter(rendered))
    for export_dir, needle in ((tmp_path / "nothing", "does not exist"),
                               (tmp_path, "holds no saved_model.pb")):
        with pytest.raises(ConfigError, match=needle):
            predict.predict(str(export_dir), [image])


def test_a_gcs_export_is_downloaded_and_predicts_the_same(exported, rendered, monkeypatch):
    try:
        from gcp_storage_emulator.server import create_server
    except ImportError:
        unavailable("gcp-storage-emulator is not installed (pip install -e '.[test]')")
    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    server.start()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
        client = gcs.make_client()
        bucket = client.create_bucket("predict-exports")
        uri = f"gs://{bucket.name}/mnist/1"
        gcs.publish_dir(str(exported), uri, client=client, info={"model": "mlp"})
        paths = list(rendered)[:4]
        remote = predict.predict(uri, paths)
        local = predict.predict(str(exported), paths)
        assert [(r.digit, r.probability) for r in remote] == [(r.digit, r.probability) for r in local]
        with pytest.raises(DataError, match="no complete export"):
            predict.predict(f"gs://{bucket.name}/nothing-here", paths)
    finally:
        server.stop()
