"""What the TensorBoard dashboard shows: the tag names, the images, the HParams and configuration.

The trainer writes to the `train` run (`<model-dir>/train`) and the evaluator to the `eval` run
(`<model-dir>/eval`); the tags both write are the same names, so TensorBoard draws the two
runs on one card:

    loss, accuracy            both runs: the training objective (cross-entropy + the L2 term)
                              and the share of correct digits. train: means over the steps
                              since the last point, on the training batches, raw weights.
                              eval: the validation set, moving-average weights.
    learning_rate, images_per_sec                   train only
    raw_weights/accuracy      eval: validation accuracy of the raw (not averaged) weights
    per_class_accuracy/<d>    eval: validation accuracy on the images of digit d
    test/accuracy             eval: test accuracy of the final checkpoint
    confusion_matrix          eval image: true digit (rows) x predicted digit (columns), with
                              each row's accuracy in the right-hand column
    misclassified             eval image: the first validation digits the network gets wrong,
                              each labelled P<predicted> (red) T<true> (green)
    run_configuration         train text: the run's configuration as a Markdown table

The evaluator also fills the HParams dashboard: the `eval` run is the session, its
hyperparameters come from the run's `run_config.json` (model/run_identity.py) and its
metrics are the eval scalars above (the last value of each is the run's final result).

The images are drawn with numpy (a 5x7 bitmap font for the few characters they need), so
the library needs no plotting package; this module imports TensorFlow only in the
functions that write summaries, so the tag names are readable without it.
"""

from __future__ import annotations

import functools

import numpy as np

# -- the tags ----------------------------------------------------------------------------------
LOSS = "loss"
ACCURACY = "accuracy"
LEARNING_RATE = "learning_rate"
IMAGES_PER_SEC = "images_per_sec"
RAW_WEIGHTS_ACCURACY = "raw_weights/accuracy"
PER_CLASS_ACCURACY_PREFIX = "per_class_accuracy/"
TEST_ACCURACY = "test/accuracy"
CONFUSION_MATRIX = "confusion_matrix"
MISCLASSIFIED = "misclassified"
RUN_CONFIGURATION = "run_configuration"
TRAIN_SCALARS = (LOSS, ACCURACY, LEARNING_RATE, IMAGES_PER_SEC)
EVAL_SCALARS = (LOSS, ACCURACY, RAW_WEIGHTS_ACCURACY)  # and per_class_accuracy/*, test/accuracy
EVAL_IMAGES = (CONFUSION_MATRIX, MISCLASSIFIED)

NUM_CLASSES = 10
MISCLASSIFIED_SHOWN = 24  # digits in the misclassified grid (6 x 4)


def per_class_accuracy_tag(digit: int) -> str:
    return f"{PER_CLASS_ACCURACY_PREFIX}{digit}"


# -- numbers ---------------------------------------------------------------------------------


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray,
                     num_classes: int = NUM_CLASSES) -> np.ndarray:
    """[true, predicted] counts, int64 of shape (num_classes, num_classes)."""
    labels = np.asarray(labels, np.int64)
    predictions = np.asarray(predictions, np.int64)
    if labels.shape != predictions.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ in shape")
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Each row's share on the diagonal (NaN for a digit with no images)."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / np.maximum(totals, 1), np.nan)


# -- a 5x7 bitmap font: the characters the images need ---------------------------------------------
_GLYPHS = {
    "0": ["01110", "10001", "10011", "10101", "11001", "10001", "01110"],
    "1": ["00100", "01100", "00100", "00100", "00100", "00100", "01110"],
    "2": ["01110", "10001", "00001", "00010", "00100", "01000", "11111"],
    "3": ["11111", "00010", "00100", "00010", "00001", "10001", "01110"],
    "4": ["00010", "00110", "01010", "10010", "11111", "00010", "00010"],
    "5": ["11111", "10000", "11110", "00001", "00001", "10001", "01110"],
    "6": ["00110", "01000", "10000", "11110", "10001", "10001", "01110"],
    "7": ["11111", "00001", "00010", "00100", "01000", "01000", "01000"],
    "8": ["01110", "10001", "10001", "01110", "10001", "10001", "01110"],
    "9": ["01110", "10001", "10001", "01111", "00001", "00010", "01100"],
    " ": ["00000"] * 7,
    ".": ["00000", "00000", "00000", "00000", "00000", "01100", "01100"],
    "%": ["11000", "11001", "00010", "00100", "01000", "10011", "00011"],
    "-": ["00000", "00000", "00000", "11111", "00000", "00000", "00000"],
    "C": ["01110", "10001", "10000", "10000", "10000", "10001", "01110"],
    "D": ["11100", "10010", "10001", "10001", "10001", "10010", "11100"],
    "E": ["11111", "10000", "10000", "11110", "10000", "10000", "11111"],
    "I": ["01110", "00100", "00100", "00100", "00100", "00100", "01110"],
    "P": ["11110", "10001", "10001", "11110", "10000", "10000", "10000"],
    "R": ["11110", "10001", "10001", "11110", "10100", "10010", "10001"],
    "T": ["11111", "00100", "00100", "00100", "00100", "00100", "00100"],
    "U": ["10001", "10001", "10001", "10001", "10001", "10001", "01110"],
}
FONT = {c: np.array([[bit == "1" for bit in row] for row in rows]) for c, rows in _GLYPHS.items()}
GLYPH_HEIGHT, GLYPH_WIDTH = 7, 5


def text_size(text: str, scale: int) -> tuple[int, int]:
    """(height, width) in pixels of `text` drawn at `scale` (one column of space between glyphs)."""
    return GLYPH_HEIGHT * scale, max(len(text) * (GLYPH_WIDTH + 1) - 1, 0) * scale


@functools.cache
def _scaled_glyph(char: str, scale: int) -> np.ndarray:
    return np.kron(FONT[char], np.ones((scale, scale), bool))


def draw_text(image: np.ndarray, text: str, top: int, left: int, color, scale: int = 2) -> None:
    """Draw `text` into an (H, W, 3) uint8 image in place; raises KeyError for a character
    the font lacks (see FONT)."""
    for i, char in enumerate(text):
        mask = _scaled_glyph(char, scale)
        x = left + i * (GLYPH_WIDTH + 1) * scale
        region = image[top:top + mask.shape[0], x:x + mask.shape[1]]
        region[mask[:region.shape[0], :region.shape[1]]] = color


def _draw_centered(image, text, center_y, center_x, color, scale=2):
    height, width = text_size(text, scale)
    draw_text(image, text, center_y - height // 2, center_x - width // 2, color, scale)


# -- the images --------------------------------------------------------------------------------
WHITE, BLACK = (255, 255, 255), (0, 0, 0)
BLUE = np.array([31, 84, 160], np.float64)  # a full row's worth in one cell
RED, GREEN = (255, 96, 96), (96, 220, 96)
# Sizes: TensorBoard's Time Series cards scale an image down to the card's width (about
# 400-500 pixels), so the images are drawn about that wide and stay sharp.
CELL = 40  # pixels per confusion-matrix cell (3 digits at scale 2: no class has 1,000 validation images)
_MARGIN = 48  # the axis titles and digit labels


def render_confusion_matrix(matrix: np.ndarray) -> np.ndarray:
    """The confusion matrix as an (H, W, 3) uint8 image.

    Rows are the true digit, columns the predicted one; each cell holds its count on a
    background from white (none of the row) to blue (all of it), so the diagonal stands out
    and a mistake that is frequent for its digit is darker. The last column is the row's
    accuracy in per cent.
    """
    matrix = np.asarray(matrix, np.int64)
    n = matrix.shape[0]
    if matrix.shape != (n, n):
        raise ValueError(f"a confusion matrix must be square, got shape {matrix.shape}")
    accuracy_width = text_size("100.0", 2)[1] + 8
    height, width = _MARGIN + n * CELL + 8, _MARGIN + n * CELL + accuracy_width + 8
    image = np.full((height, width, 3), 255, np.uint8)
    totals = matrix.sum(axis=1)
    _draw_centered(image, "PREDICTED", 12, _MARGIN + n * CELL // 2, BLACK)
    _draw_centered(image, "%", 12 + 20, _MARGIN + n * CELL + accuracy_width // 2, BLACK)
    draw_text(image, "TRUE", 32 - GLYPH_HEIGHT, 1, BLACK)  # the corner above the row labels
    for d in range(n):
        _draw_centered(image, str(d), 32, _MARGIN + d * CELL + CELL // 2, BLACK)
        _draw_centered(image, str(d), _MARGIN + d * CELL + CELL // 2, _MARGIN - 12, BLACK)
    for t in range(n):
        for p in range(n):
            share = matrix[t, p] / totals[t] if totals[t] else 0.0
            color = np.round(255 * (1 - share) + BLUE * share).astype(np.uint8)
            y, x = _MARGIN + t * CELL, _MARGIN + p * CELL
            image[y + 1:y + CELL, x + 1:x + CELL] = color
            _draw_centered(image, str(matrix[t, p]), y + CELL // 2, x + CELL // 2,
                           WHITE if share > 0.5 else BLACK)
        row_accuracy = f"{100 * matrix[t, t] / totals[t]:.1f}" if totals[t] else "-"
        _draw_centered(image, row_accuracy, _MARGIN + t * CELL + CELL // 2,
                       _MARGIN + n * CELL + accuracy_width // 2, BLACK)
    return image


TILE_SCALE = 2  # each 28x28 digit drawn 56x56
COLUMNS = 6
_TILE_GAP = 6
_LABEL_HEIGHT = 22


def misclassified_indices(labels: np.ndarray, predictions: np.ndarray,
                          limit: int = MISCLASSIFIED_SHOWN) -> np.ndarray:
    """The first `limit` indices where the prediction is wrong, in order (so the grid shows the
    same digits from one evaluation to the next while they stay wrong)."""
    return np.flatnonzero(np.asarray(labels) != np.asarray(predictions))[:limit]


def render_misclassified(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                         columns: int = COLUMNS) -> np.ndarray:
    """A grid of digits (uint8, (k, 28, 28) or (k, 784), white on black as MNIST stores them),
    each over the label `P<predicted> T<true>` (predicted in red, true in green), as an
    (H, W, 3) uint8 image. An empty input gives a one-tile image saying `-`."""
    images = np.asarray(images)
    k = len(images)
    images = images.reshape(k, 28, 28) if k else np.zeros((0, 28, 28), np.uint8)
    side = 28 * TILE_SCALE
    rows = max(1, -(-k // columns))
    cols = min(columns, max(k, 1))
    tile_h, tile_w = side + _LABEL_HEIGHT, max(side, text_size("P0 T0", 2)[1] + 2)
    image = np.full((rows * (tile_h + _TILE_GAP) + _TILE_GAP, cols * (tile_w + _TILE_GAP) + _TILE_GAP, 3),
                    40, np.uint8)
    if k == 0:
        _draw_centered(image, "-", image.shape[0] // 2, image.shape[1] // 2, WHITE)
        return image
    for i in range(k):
        y = _TILE_GAP + (i // columns) * (tile_h + _TILE_GAP)
        x = _TILE_GAP + (i % columns) * (tile_w + _TILE_GAP)
        digit = np.kron(images[i].astype(np.uint8), np.ones((TILE_SCALE, TILE_SCALE), np.uint8))
        image[y:y + tile_h, x:x + tile_w] = 0
        image[y:y + side, x + (tile_w - side) // 2:x + (tile_w - side) // 2 + side] = digit[..., None]
        predicted, true = f"P{int(predictions[i])}", f"T{int(labels[i])}"
        _, width = text_size(f"{predicted} {true}", 2)
        left = x + (tile_w - width) // 2
        top = y + side + (_LABEL_HEIGHT - GLYPH_HEIGHT * 2) // 2
        draw_text(image, predicted, top, left, RED)
        draw_text(image, true, top, left + (len(predicted) + 1) * (GLYPH_WIDTH + 1) * 2, GREEN)
    return image


# -- the run's configuration ---------------------------------------------------------------------


def run_configuration(record: dict, max_steps: int | None = None) -> dict[str, bool | int | float | str]:
    """`name -> value` of a run_config.json record (model/run_identity.py), in reading order:
    what the HParams dashboard and the configuration table show. `max_steps` (the step
    training runs to now) wins over the one recorded when the run was created."""
    hparams = record.get("hparams") or {}
    created = record.get("created") or {}
    values = {
        "model": record.get("model"),
        "workers": record.get("num_workers"),
        "batch_size": hparams.get("batch_size"),
        "global_batch": record.get("global_batch"),
        "max_steps": max_steps if max_steps is not None else created.get("max_steps"),
        "learning_rate_base": hparams.get("learning_rate_base"),
        "learning_rate_decay": hparams.get("learning_rate_decay"),
        "momentum": hparams.get("momentum"),
        "regularization_rate": hparams.get("regularization_rate"),
        "moving_average_decay": hparams.get("moving_average_decay"),
        "seed": hparams.get("seed"),
        "compute_dtype": record.get("compute_dtype"),
        "all_reduce_dtype": record.get("all_reduce_dtype"),
        "gradient_exchange": record.get("gradient_exchange"),
        "run_id": record.get("run_id"),
    }
    return {k: v for k, v in values.items() if isinstance(v, (bool, int, float, str))}


def train_configuration(record: dict, config) -> dict[str, bool | int | float | str]:
    """`run_configuration` and how the trainer's loop runs (a model.train.TrainConfig)."""
    loop = {"steps_per_loop": config.steps_per_loop,
            "save_checkpoints_steps": config.save_checkpoints_steps,
            "save_checkpoints_secs": config.save_checkpoints_secs,
            "save_summaries_steps": config.save_summaries_steps,
            "keep_checkpoints": config.keep_checkpoints,
            "jit_compile": config.jit_compile}
    values = {**run_configuration(record, config.hparams.max_steps),
              # this start's execution settings (the record holds the run's first)
              "compute_dtype": config.compute_dtype, "all_reduce_dtype": config.all_reduce_dtype,
              "gradient_exchange": config.gradient_exchange}
    return {**values, **{k: v for k, v in loop.items() if v is not None}}


def markdown_table(values: dict) -> str:
    """A two-column Markdown table (TensorBoard's text dashboard renders Markdown)."""
    lines = ["| setting | value |", "|---|---|"]
    lines += [f"| {name} | `{value}` |" for name, value in values.items()]
    return "\n".join(lines)


# -- writing (TensorFlow) -------------------------------------------------------------------------


def write_train_scalars(*, loss: float, accuracy: float, learning_rate: float, images_per_sec: float) -> None:
    """The trainer's scalars, into the default summary writer at its step."""
    import tensorflow as tf

    tf.summary.scalar(LOSS, loss)
    tf.summary.scalar(ACCURACY, accuracy)
    tf.summary.scalar(LEARNING_RATE, learning_rate)
    tf.summary.scalar(IMAGES_PER_SEC, images_per_sec)


def write_run_configuration(values: dict) -> None:
    """The configuration table as a text summary, into the default writer at its step."""
    import tensorflow as tf

    tf.summary.text(RUN_CONFIGURATION, markdown_table(values))


def write_evaluation(*, loss: float, accuracy: float, raw_accuracy: float, labels: np.ndarray,
                     predictions: np.ndarray, images: np.ndarray) -> None:
    """One evaluation's scalars and images, into the default summary writer at its step.

    `labels`, `predictions` and `images` are the whole validation split's, in order (the
    predictions of the moving-average weights).
    """
    import tensorflow as tf

    tf.summary.scalar(LOSS, loss)
    tf.summary.scalar(ACCURACY, accuracy)
    tf.summary.scalar(RAW_WEIGHTS_ACCURACY, raw_accuracy)
    matrix = confusion_matrix(labels, predictions)
    for digit, value in enumerate(per_class_accuracy(matrix)):
        if not np.isnan(value):
            tf.summary.scalar(per_class_accuracy_tag(digit), float(value))
    tf.summary.image(CONFUSION_MATRIX, render_confusion_matrix(matrix)[None],
                     description="true digit (rows) x predicted digit (columns); last column: "
                                 "the row's accuracy in per cent")
    wrong = misclassified_indices(labels, predictions)
    grid = render_misclassified(images[wrong], labels[wrong], predictions[wrong])
    tf.summary.image(MISCLASSIFIED, grid[None],
                     description=f"the first {MISCLASSIFIED_SHOWN} validation digits the network "
                                 "gets wrong: P = predicted (red), T = true (green)")


def write_hparams(values: dict, trial_id: str | None = None) -> None:
    """The HParams dashboard's experiment and this session (the run the default writer writes),
    whose metrics are the evaluator's scalars."""
    import tensorflow as tf  # noqa: F401 (the hparams API writes with tf.summary)
    from tensorboard.plugins.hparams import api as hp

    metrics = [hp.Metric(ACCURACY, display_name="validation accuracy"),
               hp.Metric(LOSS, display_name="validation loss"),
               hp.Metric(RAW_WEIGHTS_ACCURACY, display_name="validation accuracy (raw weights)"),
               hp.Metric(TEST_ACCURACY, display_name="test accuracy")]
    hp.hparams_config(hparams=[hp.HParam(name) for name in values], metrics=metrics)
    hp.hparams(values, trial_id=trial_id)
