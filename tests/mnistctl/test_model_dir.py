"""mnistctl/model_dir.py: a model dir read without TensorFlow, through model/layout.py.

The first test writes the directory with the trainer's own checkpoint code
(model/checkpointing.py on TensorFlow), so the reader and the writer are held
to the same layout.
"""

from __future__ import annotations

import json

from mnistctl import model_dir
from tests.mnistctl.api_shapes import write_model_dir


def test_reads_what_the_trainers_checkpoint_code_writes(tmp_path):
    """The state file as TensorFlow writes it (absolute paths), the marker as the chief writes it."""
    import tensorflow as tf

    from model import checkpointing

    directory = str(tmp_path / "m")
    writer = checkpointing.CheckpointWriter(tf.train.Checkpoint(v=tf.Variable(1.0)), directory,
                                            is_chief=True, task_index=0, max_to_keep=2)
    for step in (10, 20, 30):
        path = writer.save(step)
    state = model_dir.read_model_dir(directory)
    assert state.checkpoints == [20, 30] and not state.started and state.final_step is None
    checkpointing.write_complete_marker(directory, 30, path)
    assert model_dir.read_model_dir(directory).final_step == 30
    assert model_dir.newest_checkpoint(directory) == 30


def test_a_damaged_state_file_or_marker_hides_nothing_else(tmp_path):
    directory = write_model_dir(tmp_path / "m", steps=(100,))
    (directory / "training_complete.json").write_text("{not json")
    state = model_dir.read_model_dir(str(directory))
    assert (state.started, state.checkpoints, state.final_step) == (True, [100], None)
    (directory / "checkpoint").write_bytes(b"\x00garbage")
    (directory / "training_complete.json").write_text(json.dumps({"final_step": 100}))
    state = model_dir.read_model_dir(str(directory))
    assert (state.checkpoints, state.final_step) == ([], 100)


def test_a_missing_model_dir_is_not_started(tmp_path):
    state = model_dir.read_model_dir(str(tmp_path / "absent"))
    assert (state.started, state.checkpoints, state.final_step) == (False, [], None)
    assert model_dir.newest_checkpoint(str(tmp_path / "absent")) is None
