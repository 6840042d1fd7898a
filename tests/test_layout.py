"""model/layout.py: the model directory's names and parsers, without TensorFlow.

These tests import no TensorFlow; that the names agree with what TensorFlow
writes is checked against a real checkpoint in tests/mnistctl/test_model_dir.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from model import layout
from scripts.paths import REPO_ROOT


def test_importing_layout_does_not_import_tensorflow():
    code = "import sys, model.layout; print(sorted(m for m in sys.modules if m.startswith('tensorflow')))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_checkpoint_names_and_steps():
    assert layout.checkpoint_name(300) == "ckpt-300"
    assert layout.step_of("/m/ckpt-300") == 300
    assert layout.step_of("gs://b/m/" + layout.checkpoint_name(7)) == 7
    for not_a_checkpoint in ("/m/ckpt-300.index", "/m/ckpt-", "/m/model-300", "/m/ckpt-3_temp"):
        assert layout.step_of(not_a_checkpoint) is None, not_a_checkpoint
    assert layout.by_step(["/m/ckpt-1000", "/m/ckpt-20", "/m/odd", "/m/ckpt-300"]) == \
        ["/m/odd", "/m/ckpt-20", "/m/ckpt-300", "/m/ckpt-1000"]
    assert layout.checkpoint_glob("gs://b/m/") == "gs://b/m/ckpt-*.index"


def test_child_joins_local_paths_and_gcs_uris():
    assert layout.child("/m", layout.RUN_CONFIG) == "/m/run_config.json"
    assert layout.child("gs://b/m/", layout.LEASE_FILE) == "gs://b/m/lease.json"
    assert layout.resolve("/m", "ckpt-5") == "/m/ckpt-5"
    assert layout.resolve("/m", "/elsewhere/ckpt-5") == "/elsewhere/ckpt-5"
    assert layout.resolve("gs://b/m", "gs://b/x/ckpt-5") == "gs://b/x/ckpt-5"


# What tf.train.CheckpointManager writes (tensorflow/python/checkpoint/
# checkpoint_management.py, TF 2.21: a CheckpointState text proto, relative paths).
STATE_TEXT = '''model_checkpoint_path: "ckpt-30"
all_model_checkpoint_paths: "ckpt-10"
all_model_checkpoint_paths: "ckpt-20"
all_model_checkpoint_paths: "ckpt-30"
all_model_checkpoint_timestamps: 1796170000.5
last_preserved_timestamp: 1796169990.1
'''


def test_state_file_paths():
    assert layout.state_file_paths("/m", STATE_TEXT) == ["/m/ckpt-30", "/m/ckpt-10", "/m/ckpt-20"]
    assert layout.by_step(layout.state_file_paths("gs://b/m", STATE_TEXT)) == \
        ["gs://b/m/ckpt-10", "gs://b/m/ckpt-20", "gs://b/m/ckpt-30"]
    assert layout.state_file_paths("/m", 'model_checkpoint_path: "/abs/ckpt-4"\n') == ["/abs/ckpt-4"]
    for garbage in ("", "\x00\x01", "model_checkpoint_path: ckpt-4\n"):
        assert layout.state_file_paths("/m", garbage) == []


def test_completion_marker_round_trip():
    marker = layout.complete_marker(300, "/m/ckpt-300")
    assert marker == {"final_step": 300, "checkpoint": "ckpt-300"}
    assert layout.final_step_of(marker) == 300
    assert layout.final_step_of(json.dumps(marker)) == 300


@pytest.mark.parametrize("marker", [None, "", "{not json", "[]", '{"final_step": "300"}',
                                    '{"final_step": true}', {"checkpoint": "ckpt-3"}])
def test_an_unreadable_completion_marker_means_not_finished(marker):
    assert layout.final_step_of(marker) is None


def test_failed_save_names():
    assert layout.FAILED_SAVE_DIR_RE.fullmatch("ckpt-300_temp")
    assert not layout.FAILED_SAVE_DIR_RE.fullmatch("ckpt-300")
    for part in ("part-0-of-2.index", "part-1-of-2.data-00000-of-00001", "part-0-of-2.index.tempstate123"):
        assert layout.FAILED_SAVE_PART_RE.fullmatch(part), part
    assert not layout.FAILED_SAVE_PART_RE.fullmatch("notes.txt")


def test_worker_temp_prefix_is_fixed_per_worker_and_model_dir():
    prefix = layout.worker_temp_prefix("/m", 1)
    assert prefix == layout.worker_temp_prefix("/m", 1) and prefix.startswith("mnist-train-worker1-")
    assert prefix != layout.worker_temp_prefix("/m", 2)
    assert prefix != layout.worker_temp_prefix("/other", 1)


@pytest.mark.parametrize("entries, is_export", [
    (set(), True),
    ({layout.EXPORT_INFO, "notes"}, True),
    ({layout.EXPORT_MARKER}, True),
    ({"saved_model.pb", "variables", "fingerprint.pb"}, True),
    ({"variables"}, False),  # no saved_model.pb
    ({"saved_model.pb", "variables", layout.RUN_CONFIG}, False),
    ({layout.CHECKPOINT_STATE, "ckpt-1.index"}, False),
])
def test_not_an_export(entries, is_export):
    problem = layout.not_an_export(entries)
    assert (problem is None) == is_export, problem
    if problem:
        assert "not a previous export" in problem
