"""Tests of model/summaries.py: the dashboard's images and tables (numpy, no training), and
what the session's one trained run (tests/conftest.py `trained_dir`) wrote to its `train` run.

`assert_eval_dashboard` is called by tests/test_evaluate.py's happy path, on the `eval` run
its evaluator wrote, so that no test scores the checkpoints a second time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model import summaries
from model.summaries import (FONT, GLYPH_HEIGHT, GLYPH_WIDTH, confusion_matrix, draw_text,
                             misclassified_indices, per_class_accuracy, render_confusion_matrix,
                             render_misclassified, text_size)

# -- numbers ------------------------------------------------------------------------------------


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    labels = np.array([0, 0, 0, 1, 1, 2, 9], np.uint8)
    predictions = np.array([0, 0, 1, 1, 2, 2, 0])
    matrix = confusion_matrix(labels, predictions)
    expected = np.zeros((10, 10), np.int64)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[1, 2], expected[2, 2], expected[9, 0] = \
        2, 1, 1, 1, 1, 1
    np.testing.assert_array_equal(matrix, expected)
    accuracy = per_class_accuracy(matrix)
    np.testing.assert_allclose(accuracy[[0, 1, 2, 9]], [2 / 3, 0.5, 1.0, 0.0])
    assert np.isnan(accuracy[3:9]).all()  # no images of those digits: no number, not zero
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix(labels, predictions[:3])


def test_misclassified_indices_are_the_first_wrong_ones_in_order():
    labels = np.array([1, 2, 3, 4, 5, 6])
    predictions = np.array([1, 0, 3, 0, 0, 6])
    assert misclassified_indices(labels, predictions).tolist() == [1, 3, 4]
    assert misclassified_indices(labels, predictions, limit=2).tolist() == [1, 3]


# -- the font and the images ---------------------------------------------------------------------


def read_text(image: np.ndarray, top: int, left: int, length: int, color, scale: int = 2) -> str:
    """The characters drawn at (top, left) in `color`, matched glyph by glyph against FONT."""
    mask = np.all(image == np.asarray(color, np.uint8), axis=-1)
    found = ""
    for i in range(length):
        x = left + i * (GLYPH_WIDTH + 1) * scale
        cell = mask[top:top + GLYPH_HEIGHT * scale:scale, x:x + GLYPH_WIDTH * scale:scale]
        matches = [c for c, glyph in FONT.items() if np.array_equal(glyph, cell)]
        assert len(matches) == 1, f"character {i} at ({top}, {x}) matches {matches}"
        found += matches[0]
    return found


def test_every_glyph_is_distinct_and_text_reads_back():
    glyphs = [g.tobytes() for g in FONT.values()]
    assert len(set(glyphs)) == len(glyphs)
    image = np.zeros((30, 200, 3), np.uint8)
    draw_text(image, "0123456789", 5, 3, (255, 0, 0))
    assert read_text(image, 5, 3, 10, (255, 0, 0)) == "0123456789"
    assert text_size("12", 2) == (14, 22)
    with pytest.raises(KeyError):
        draw_text(image, "x", 0, 0, (255, 255, 255))


def find_text(image: np.ndarray, text: str, color, scale: int = 2) -> list[tuple[int, int]]:
    """Every (top, left) where `text` is drawn in `color`, pixel for pixel (its box's other
    pixels not in `color`)."""
    mask = np.all(image == np.asarray(color, np.uint8), axis=-1)
    drawn = np.zeros((*text_size(text, scale), 3), np.uint8)
    draw_text(drawn, text, 0, 0, (1, 1, 1), scale)
    expected = drawn[..., 0] == 1
    h, w = expected.shape
    rows, cols = mask.shape[0] - h + 1, mask.shape[1] - w + 1
    if rows < 1 or cols < 1:
        return []
    hit = np.ones((rows, cols), bool)
    for dy in range(h):
        for dx in range(w):
            hit &= mask[dy:dy + rows, dx:dx + cols] == expected[dy, dx]
    return [(int(y), int(x)) for y, x in zip(*np.nonzero(hit))]


def test_confusion_matrix_image_shows_each_count_in_its_cell_and_each_row_accuracy():
    matrix = np.zeros((10, 10), np.int64)
    matrix[np.arange(10), np.arange(10)] = 100
    matrix[3, 5] = 17  # true 3 read as 5
    matrix[7, 1] = 400  # most of the 7s read as 1: a dark cell, white text
    image = render_confusion_matrix(matrix)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    margin, cell = summaries._MARGIN, summaries.CELL
    assert image.shape[0] >= margin + 10 * cell and image.shape[1] >= margin + 10 * cell

    def cell_of(hit):
        return (hit[0] - margin) // cell, (hit[1] - margin) // cell

    assert [cell_of(h) for h in find_text(image, "17", summaries.BLACK)] == [(3, 5)]
    assert [cell_of(h) for h in find_text(image, "400", summaries.WHITE)] == [(7, 1)]
    # The darkest cell is the one holding most of its row; an empty cell stays white.
    centre = (margin + 7 * cell + 4, margin + 1 * cell + 4)
    assert image[centre].tolist() == [round(255 * 0.2 + b * 0.8) for b in summaries.BLUE]
    assert image[margin + 4 * cell + 4, margin + 2 * cell + 4].tolist() == [255, 255, 255]
    # The right-hand column: each row's accuracy in per cent (3: 100 / 117, 7: 100 / 500).
    assert len(find_text(image, "85.5", summaries.BLACK)) == 1
    assert len(find_text(image, "20.0", summaries.BLACK)) == 1
    assert len(find_text(image, "100.0", summaries.BLACK)) == 8
    assert find_text(image, "PREDICTED", summaries.BLACK) and find_text(image, "TRUE", summaries.BLACK)
    with pytest.raises(ValueError, match="square"):
        render_confusion_matrix(np.zeros((10, 9)))


def test_misclassified_grid_labels_each_digit_with_predicted_and_true(mnist):
    images, labels = mnist.validation.images[:10], mnist.validation.labels[:10].astype(int)
    predictions = (labels + 1) % 10
    grid = render_misclassified(images, labels, predictions, columns=4)
    side = 28 * summaries.TILE_SCALE
    gap, label_height = summaries._TILE_GAP, summaries._LABEL_HEIGHT
    width = max(side, text_size("P0 T0", 2)[1] + 2)
    assert grid.shape == (3 * (side + label_height + gap) + gap, 4 * (width + gap) + gap, 3)
    for i in range(10):
        y = gap + (i // 4) * (side + label_height + gap)
        x = gap + (i % 4) * (width + gap)
        # The digit itself, enlarged, white on black as MNIST stores it.
        step, left = summaries.TILE_SCALE, x + (width - side) // 2
        np.testing.assert_array_equal(grid[y:y + side:step, left:left + side:step, 0], images[i])
        below = grid[y + side:y + side + label_height, x:x + width]
        assert [h for h in find_text(below, f"P{predictions[i]}", summaries.RED)], i
        assert [h for h in find_text(below, f"T{labels[i]}", summaries.GREEN)], i
    empty = render_misclassified(images[:0], labels[:0], predictions[:0])
    assert empty.ndim == 3 and find_text(empty, "-", summaries.WHITE)


# -- the configuration ----------------------------------------------------------------------------


RECORD = {"format": 2, "run_id": "abc123", "model": "lenet5",
          "hparams": {"batch_size": 100, "learning_rate_base": 0.02, "learning_rate_decay": 0.95,
                      "momentum": 0.9, "regularization_rate": 1e-4, "moving_average_decay": 0.99,
                      "seed": 0},
          "num_workers": 2, "global_batch": 200, "compute_dtype": "bfloat16",
          "all_reduce_dtype": "float32", "gradient_exchange": "auto", "data_sha256": "f" * 64,
          "created": {"utc": "2026-12-02T00:00:00Z", "host": "h", "max_steps": 8000}}


def test_run_configuration_reads_a_run_record_and_renders_a_markdown_table():
    values = summaries.run_configuration(RECORD)
    assert list(values)[:5] == ["model", "workers", "batch_size", "global_batch", "max_steps"]
    assert values["model"] == "lenet5" and values["workers"] == 2 and values["max_steps"] == 8000
    assert values["learning_rate_base"] == 0.02 and values["compute_dtype"] == "bfloat16"
    assert "data_sha256" not in values and "host" not in values
    assert summaries.run_configuration(RECORD, max_steps=9000)["max_steps"] == 9000
    # An old record without the fields: what is there, nothing made up.
    assert summaries.run_configuration({"model": "mlp"}) == {"model": "mlp"}
    table = summaries.markdown_table(values).splitlines()
    assert table[:2] == ["| setting | value |", "|---|---|"]
    assert "| workers | `2` |" in table and len(table) == 2 + len(values)


# -- what the trainer wrote (the session's trained run) ---------------------------------------------


def read_events(run_dir: Path) -> dict[str, dict[int, object]]:
    """tag -> step -> value of a run's event files: scalars as float, text as str, images as
    the decoded (H, W, 3) uint8 array, the HParams plugin's entries as their plugin content."""
    import tensorflow as tf

    found: dict[str, dict[int, object]] = {}
    for events_file in sorted(run_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events_file)):
            for value in event.summary.value:
                plugin = value.metadata.plugin_data.plugin_name or found.get(f"{value.tag}#plugin")
                found[f"{value.tag}#plugin"] = plugin
                array = tf.make_ndarray(value.tensor)
                if plugin == "scalars":
                    decoded = float(array)
                elif plugin == "text":
                    decoded = array.item().decode()
                elif plugin == "images":  # [width, height, PNG...]
                    decoded = tf.io.decode_png(array[2]).numpy()
                else:
                    decoded = value.metadata.plugin_data.content
                found.setdefault(value.tag, {})[event.step] = decoded
    return {tag: values for tag, values in found.items() if not tag.endswith("#plugin")}


def test_the_train_run_holds_the_shared_tags_and_the_configuration_table(trained_dir):
    train = read_events(trained_dir / "train")
    for tag in summaries.TRAIN_SCALARS:
        assert sorted(train[tag]) == [10, 20, 30], tag
    assert all(0 <= a <= 1 for a in train[summaries.ACCURACY].values())
    assert train[summaries.LEARNING_RATE][10] == pytest.approx(0.1)
    [table] = train[summaries.RUN_CONFIGURATION].values()
    record = json.loads((trained_dir / "run_config.json").read_text())
    assert "| model | `mlp` |" in table and "| max_steps | `30` |" in table
    assert f"| run_id | `{record['run_id']}` |" in table
    assert "| steps_per_loop | `10` |" in table and "| workers | `1` |" in table


def assert_eval_dashboard(eval_dir: Path, mnist, steps: list[int], record: dict, expected: dict) -> None:
    """What the evaluator wrote to its run: the shared scalars, per-class accuracy, both images
    at every evaluated step, and one HParams session whose values are the run's configuration.
    `expected[step]` is (validation accuracy, validation loss, predictions) computed elsewhere."""
    from tensorboard.plugins.hparams import metadata as hparams_metadata

    events = read_events(eval_dir)
    for tag in (*summaries.EVAL_SCALARS, *summaries.EVAL_IMAGES):
        assert sorted(events[tag]) == steps, tag
    labels = mnist.validation.labels.astype(int)
    for step in steps:
        accuracy, loss, predictions = expected[step]
        assert events[summaries.ACCURACY][step] == pytest.approx(accuracy, abs=2.5e-4)
        assert events[summaries.LOSS][step] == pytest.approx(loss, rel=1e-3)
        wanted = per_class_accuracy(confusion_matrix(labels, predictions))
        got = [events[summaries.per_class_accuracy_tag(d)][step] for d in range(10)]
        np.testing.assert_allclose(got, wanted, atol=3 / 400)  # a near-tie or two may break otherwise
        matrix_image = events[summaries.CONFUSION_MATRIX][step]
        assert matrix_image.shape == render_confusion_matrix(np.eye(10, dtype=int)).shape
        grid = events[summaries.MISCLASSIFIED][step]
        assert grid.shape == render_misclassified(*[a[:summaries.MISCLASSIFIED_SHOWN] for a in (
            mnist.validation.images, labels, predictions)]).shape
    # One session: its hyperparameters are the record's.
    [session] = events[hparams_metadata.SESSION_START_INFO_TAG].values()
    start = hparams_metadata.parse_session_start_info_plugin_data(session)
    assert start.hparams["model"].string_value == record["model"]
    assert start.hparams["batch_size"].number_value == record["hparams"]["batch_size"]
    assert start.group_name == record["run_id"]
    [experiment] = events[hparams_metadata.EXPERIMENT_TAG].values()
    metrics = {m.name.tag for m in hparams_metadata.parse_experiment_plugin_data(experiment).metric_infos}
    assert {summaries.ACCURACY, summaries.LOSS, summaries.TEST_ACCURACY} <= metrics
