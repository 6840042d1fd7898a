"""`python -m model predict`: ask an exported model which digit an image shows.

Any PNG or JPEG (a photo or scan of a digit, a drawing, any size, dark on light or
light on dark) is turned into what the network was trained on the way the MNIST
digits were made (LeCun et al.: "size normalized to fit in a 20x20 pixel box while
preserving their aspect ratio ... centered in a 28x28 image by computing the center of
mass of the pixels"):

1. grayscale (transparent pixels count as white paper);
2. white ink on black: inverted when the image's border is light, then the paper's
   own level (its border's median) subtracted and the darkest ink stretched to full white;
3. cropped to the digit's bounding box, scaled to fit 20x20 keeping its aspect ratio;
4. placed in a 28x28 black square with its centre of mass at the centre;
5. fed as uint8 pixels to the export's `predict_pixels` signature, which divides by
   255 exactly as training does (model/input_pipeline.py).

The export is a directory `python -m model export` (or `evaluate --export-best-to`) wrote,
local or gs:// (downloaded through model/gcs.py's reader contract first). Each image
gets one line (log_lines.PREDICTION_FORMAT); an image that cannot be read (missing,
unreadable, not a PNG or JPEG, corrupt, blank) gets an `error:` line naming it on stderr
and the others are still predicted: the exit code is then 2.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from model import gcs, layout, log_lines
from model.errors import ConfigError, DataError

IMAGE_SIZE = 28  # MNIST's frame
DIGIT_BOX = 20  # the digit is scaled to fit this box inside the frame
INK_THRESHOLD = 0.2  # of the strongest ink: weaker pixels (paper grain, JPEG ringing) do not widen the box
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass
class Prediction:
    path: str
    digit: int
    probability: float
    probabilities: list[float]


def read_image(path: str) -> bytes:
    """The bytes of a PNG or JPEG file; DataError naming the file otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not an image") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it: {e.strerror or e}") from None
    if not (data.startswith(PNG_MAGIC) or data.startswith(JPEG_MAGIC)):
        raise DataError(f"{path}: not a PNG or JPEG image")
    return data


def decode_grayscale(path: str, data: bytes) -> np.ndarray:
    """float [H, W] in [0, 1], 1 = white; transparent pixels are white paper."""
    try:
        image = tf.io.decode_image(data, expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, ValueError) as e:
        raise DataError(f"{path}: corrupt or unsupported image: {str(e).splitlines()[0]}") from None
    image = image.astype(np.float32) / 255.0
    channels = image.shape[-1]
    alpha = image[..., -1] if channels in (2, 4) else None
    color = image[..., :3] if channels >= 3 else image[..., :1]
    gray = color @ np.array([0.2989, 0.5870, 0.1140], np.float32) if color.shape[-1] == 3 else color[..., 0]
    if alpha is not None:
        gray = alpha * gray + (1.0 - alpha)
    return gray


def to_mnist(path: str, gray: np.ndarray) -> np.ndarray:
    """uint8 [28, 28]: the digit in `gray` as an MNIST digit (white on black, see the module doc)."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    ink = 1.0 - gray if np.median(border) > 0.5 else gray
    paper = float(np.median(np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])))
    ink = np.clip(ink - paper, 0.0, None)
    strongest = float(ink.max())
    if strongest < 0.1:
        raise DataError(f"{path}: no digit found (the image is blank or has no contrast)")
    ink = ink / strongest
    rows, cols = np.nonzero(ink >= INK_THRESHOLD)
    digit = ink[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    h, w = digit.shape
    scale = DIGIT_BOX / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    digit = tf.image.resize(digit[..., None], size, method="area" if scale < 1 else "bilinear",
                            antialias=True).numpy()[..., 0]
    digit = np.clip(digit, 0.0, 1.0)
    total = float(digit.sum())
    ys, xs = np.indices(digit.shape)
    centre_y, centre_x = (ys * digit).sum() / total, (xs * digit).sum() / total
    top = int(np.clip(round(IMAGE_SIZE / 2 - centre_y), 0, IMAGE_SIZE - digit.shape[0]))
    left = int(np.clip(round(IMAGE_SIZE / 2 - centre_x), 0, IMAGE_SIZE - digit.shape[1]))
    frame = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    frame[top:top + digit.shape[0], left:left + digit.shape[1]] = digit
    return np.round(frame * 255.0).astype(np.uint8)


def image_to_pixels(path: str) -> np.ndarray:
    """uint8 [28, 28] of the image at `path`; DataError naming it if it cannot be used."""
    return to_mnist(path, decode_grayscale(path, read_image(path)))


def load_export(export_dir: str, download_dir: str):
    """The SavedModel at `export_dir` (gs:// is downloaded into `download_dir` first)."""
    if gcs.is_gcs_uri(export_dir):
        export_dir = gcs.download_export(export_dir, download_dir)
    if not os.path.isfile(os.path.join(export_dir, "saved_model.pb")):
        what = "does not exist" if not os.path.exists(export_dir) else "holds no saved_model.pb"
        raise ConfigError(f"--export-dir {export_dir} {what}: give a directory written by "
                          f"`python -m model export` (it holds saved_model.pb and {layout.EXPORT_INFO})")
    loaded = tf.saved_model.load(export_dir)
    if "predict_pixels" not in loaded.signatures:
        raise ConfigError(f"--export-dir {export_dir}: the SavedModel has no predict_pixels signature "
                          "(not an export of this project)")
    return loaded


def predict(export_dir: str, paths: list[str]) -> list[Prediction | DataError]:
    """For each of `paths`, in order, its prediction or the error that kept it from one.
    ConfigError if `export_dir` is not an export."""
    with tempfile.TemporaryDirectory(prefix="mnist-predict-") as tmp:
        loaded = load_export(export_dir, tmp)
        results: list[Prediction | DataError] = []
        pixels = {}
        for i, path in enumerate(paths):
            try:
                pixels[i] = image_to_pixels(path)
            except DataError as e:
                results.append(e)
            else:
                results.append(None)
        if pixels:
            batch = tf.constant(np.stack(list(pixels.values())))
            probabilities = loaded.signatures["predict_pixels"](pixels=batch)["probabilities"].numpy()
            for i, p in zip(pixels, probabilities):
                results[i] = Prediction(paths[i], int(p.argmax()), float(p.max()), p.tolist())
    return results


def run(export_dir: str, paths: list[str]) -> bool:
    """Print a line per image, errors on stderr; True if every image was predicted."""
    results = predict(export_dir, paths)
    for result in results:
        if isinstance(result, Prediction):
            print(log_lines.PREDICTION_FORMAT % (result.digit, result.probability, result.path), flush=True)
        else:
            print(log_lines.ERROR_FORMAT % (result,), file=sys.stderr, flush=True)
    return all(isinstance(r, Prediction) for r in results)
