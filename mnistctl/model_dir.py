"""What the trainer has left in a model dir, read without TensorFlow (local path or gs://).

Names and parsers come from model/layout.py, the layout the checkpoint code
writes; gs:// objects are read through model/gcs.py.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from model import gcs, layout


@dataclasses.dataclass
class ModelDirState:
    started: bool  # run_config.json exists: the chief has started
    checkpoints: list[int]  # steps the state file lists whose .index exists
    final_step: int | None  # the completion marker's


def _local_reader(model_dir: str) -> tuple[Callable[[str], str | None], Callable[[str], bool]]:
    def read(name: str) -> str | None:
        try:
            with open(os.path.join(model_dir, name)) as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    return read, os.path.exists


def _gcs_reader(model_dir: str) -> tuple[Callable[[str], str | None], Callable[[str], bool]]:
    client = gcs.make_client()

    def read(name: str) -> str | None:
        return gcs.read_text(layout.child(model_dir, name), client)

    def exists(path: str) -> bool:
        return gcs.object_exists(path, client)

    return read, exists


def read_model_dir(model_dir: str) -> ModelDirState:
    """What the trainer has left in a model dir (local path or gs://)."""
    read, exists = (_gcs_reader if gcs.is_gcs_uri(model_dir) else _local_reader)(model_dir)
    steps = []
    for path in layout.state_file_paths(model_dir, read(layout.CHECKPOINT_STATE) or ""):
        step = layout.step_of(path)
        if step is not None and exists(path + ".index"):
            steps.append(step)
    return ModelDirState(started=read(layout.RUN_CONFIG) is not None, checkpoints=sorted(steps),
                         final_step=layout.final_step_of(read(layout.COMPLETE_MARKER)))


def newest_checkpoint(model_dir: str) -> int | None:
    """The newest checkpoint's step in `model_dir`, or None."""
    steps = read_model_dir(model_dir).checkpoints
    return steps[-1] if steps else None
