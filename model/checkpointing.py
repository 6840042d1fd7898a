"""Checkpoints and the small files trainer and evaluator share, with TensorFlow.

The model directory's layout (every name written there) is model/layout.py.
Checkpoints are numbered by global step. As in TF's official/core/train_lib,
only the chief writes the real directory; other workers save too (saving a
mirrored variable may need collectives) but into a private temporary
directory that they delete. That directory's name is fixed per worker and
model directory, so the next start of a worker that was killed removes what
it left behind. A save that fails half-way (a full disk) leaves TensorFlow's
`ckpt-<step>_temp/` directory: it is removed at once, and again at the
chief's next start.

All I/O goes through tf.io.gfile so gs:// model directories work.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import uuid

import tensorflow as tf

from model import layout
from model.atomic_write import write_json_atomically
from model.errors import CheckpointError, ModelDirError
from model.layout import CHECKPOINT_PREFIX, COMPLETE_MARKER, RUN_CONFIG
from model.layout import child as join

log = logging.getLogger(__name__)

# Errors that say the model directory itself is unusable: no restart helps.
_UNUSABLE_DIR_ERRORS = (tf.errors.PermissionDeniedError, tf.errors.FailedPreconditionError,
                        tf.errors.NotFoundError, tf.errors.InvalidArgumentError,
                        tf.errors.UnauthenticatedError, tf.errors.AlreadyExistsError,
                        tf.errors.ResourceExhaustedError, tf.errors.UnimplementedError)

# What reading a damaged or vanishing checkpoint raises: truncated .data gives
# IndexError, a zero-byte .index an OpError, a bit flip DataLossError (an
# OpError), deletion NotFoundError, a mismatched file ValueError/AssertionError.
READ_ERRORS = (tf.errors.OpError, IndexError, ValueError, AssertionError, KeyError)




def read_json(path: str) -> dict | None:
    """The JSON object at `path`, or None if it does not exist."""
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "r") as f:
        return json.loads(f.read())


def _set_aside_unreadable_state(model_dir: str) -> None:
    """Rename a damaged `checkpoint` state file so CheckpointManager can start a new one.

    Kept, not deleted, for whoever wants to see what happened to it.
    """
    try:
        list_checkpoints(model_dir)
    except ValueError as e:
        aside = join(model_dir, f"{layout.UNREADABLE_STATE_PREFIX}{uuid.uuid4().hex[:8]}")
        log.warning("train | %s; renaming it to %s", e, aside)
        tf.io.gfile.rename(join(model_dir, layout.CHECKPOINT_STATE), aside)


def _reason(error: tf.errors.OpError) -> str:
    """TensorFlow's message without the path it starts with ("<path>; Read-only file system")."""
    message = str(error.message).strip().splitlines()[0] if error.message else type(error).__name__
    return message.rsplit("; ", 1)[-1]


def prepare_model_dir(model_dir: str, *, chief: bool) -> None:
    """Refuse a model directory no restart can make usable (ModelDirError: exit 2).

    Every worker checks that it is not a file; the chief, which writes there,
    removes what failed saves left behind (see `remove_failed_saves`) and
    then creates the directory and writes and removes a small file in it.
    """
    try:
        if tf.io.gfile.exists(model_dir) and not tf.io.gfile.isdir(model_dir):
            raise ModelDirError(f"the model directory {model_dir} is not a directory")
        if not chief:
            return
        if tf.io.gfile.isdir(model_dir):
            remove_failed_saves(model_dir)  # first: they may be what filled the disk
        tf.io.gfile.makedirs(model_dir)
        probe = join(model_dir, f"{layout.WRITE_PROBE_PREFIX}{uuid.uuid4().hex[:8]}")
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("ok\n")
        tf.io.gfile.remove(probe)
    except _UNUSABLE_DIR_ERRORS as e:
        raise ModelDirError(f"cannot use {model_dir} as the model directory: cannot create or "
                            f"write files there ({_reason(e)})") from None


def remove_failed_saves(model_dir: str) -> list[str]:
    """Remove the `ckpt-<step>_temp` directories that failed saves left; return their paths.

    Only directories holding nothing but TensorFlow's temporary part files
    are removed; anything else there is left alone, with a warning.
    """
    removed = []
    for name in tf.io.gfile.listdir(model_dir):
        name = name.rstrip("/")
        path = join(model_dir, name)
        if not layout.FAILED_SAVE_DIR_RE.fullmatch(name) or not tf.io.gfile.isdir(path):
            continue
        strangers = [f for f in tf.io.gfile.listdir(path) if not layout.FAILED_SAVE_PART_RE.fullmatch(f)]
        if strangers:
            log.warning("train | not removing %s: it holds files a checkpoint save does not "
                        "write (%s)", path, ", ".join(sorted(strangers)[:5]))
            continue
        tf.io.gfile.rmtree(path)
        removed.append(path)
        log.warning("train | removed %s, left by a checkpoint save that failed", path)
    return removed


def worker_temp_dir(model_dir: str, task_index: int) -> str:
    """A non-chief worker's private checkpoint directory, emptied of an earlier run's leftovers.

    Named by worker and model directory, so a worker that was killed finds
    and removes its old directory when it starts again; created with
    mkdtemp (mode 0700, a new name) so nothing another user put in a shared
    /tmp is ever used.
    """
    prefix = layout.worker_temp_prefix(model_dir, task_index)
    parent = tempfile.gettempdir()
    for name in os.listdir(parent):
        path = os.path.join(parent, name)
        if name.startswith(prefix) and not os.path.islink(path) and os.path.isdir(path) \
                and os.stat(path).st_uid == os.getuid():
            shutil.rmtree(path, ignore_errors=True)
            log.info("train | removed %s, left by an earlier run of this worker", path)
    return tempfile.mkdtemp(prefix=prefix)


class _AsyncSaveChatter(logging.Filter):
    """Drops the INFO lines TensorFlow's asynchronous checkpointing logs at every save
    ("Starting async checkpoint save on the device ...", "Sync on ongoing save/restore.");
    its warnings and errors pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.module != "async_checkpoint_helper"


_ASYNC_SAVE_CHATTER = _AsyncSaveChatter()


class CheckpointWriter:
    """Saves on every worker, into the real directory only on the chief.

    With `async_saves` a save returns once the variables are copied (on the
    calling thread, so every worker copies at the same step) and TensorFlow's
    checkpoint thread writes the files (tf.train.CheckpointOptions(enable_async=True)):
    the step goes on meanwhile. The write is the same as a synchronous one
    (data, then the .index moved into place, then the `checkpoint` state file),
    so the state file and the .index files still only ever name complete
    checkpoints. `wait()` returns when the last save is complete and raises
    if it failed; `close()` waits too, so a checkpoint saved on SIGTERM or at
    the end is on disk before the process exits or the completion marker is written.
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, model_dir: str, *,
                 is_chief: bool, task_index: int, max_to_keep: int = 5, async_saves: bool = False,
                 on_saved=None):
        self.is_chief = is_chief
        # on_saved(step, path) once a checkpoint is complete (on TensorFlow's thread when async).
        self._on_saved = on_saved
        self.model_dir = model_dir
        if is_chief:
            tf.io.gfile.makedirs(model_dir)
            self.directory = model_dir
            _set_aside_unreadable_state(model_dir)
        else:
            # Local disk, not the shared volume: non-chief copies are thrown away.
            self.directory = worker_temp_dir(model_dir, task_index)
        self.async_saves = async_saves
        if async_saves:
            tf.get_logger().addFilter(_ASYNC_SAVE_CHATTER)  # once: a filter is added only once
        # A non-chief keeps only its last copy: an asynchronous write cannot be
        # deleted the moment it is requested, as a synchronous one is.
        self.manager = tf.train.CheckpointManager(
            checkpoint, self.directory, max_to_keep=max_to_keep if is_chief else 1,
            checkpoint_name=CHECKPOINT_PREFIX)
        self._pending: int | None = None  # the step of a save that may still be being written
        self._completed: str | None = None  # the last path TensorFlow reported written

    def _written(self, step: int, path: str) -> None:
        self._completed = path
        if self._on_saved is not None and self.is_chief:
            self._on_saved(step, path)

    def _options(self, step: int) -> tf.train.CheckpointOptions | None:
        if not self.async_saves:
            return None
        # Called on TensorFlow's checkpoint thread once the files are complete,
        # just before the `checkpoint` state file is rewritten.
        return tf.train.CheckpointOptions(enable_async=True, experimental_write_callbacks=[
            lambda save_path: self._written(step, save_path)])

    def save(self, step: int) -> str:
        """Save at `step`; the path it will have (empty on a non-chief)."""
        self.wait()  # TensorFlow waits for the previous write anyway; this names its failure
        with self._translating_errors(step):
            path = self.manager.save(checkpoint_number=step, options=self._options(step))
            self._pending = step
            if not self.async_saves:
                self._written(step, path)
        if not self.is_chief and not self.async_saves:
            tf.io.gfile.rmtree(self.directory)
            tf.io.gfile.makedirs(self.directory)
        return path if self.is_chief else ""

    def wait(self) -> None:
        """Return once the last save is complete; raise if it failed."""
        if self._pending is None:
            return
        step, self._pending = self._pending, None
        with self._translating_errors(step):
            self.manager.sync()
            expected = join(self.directory, layout.checkpoint_name(step))
            if self._completed != expected:
                # TensorFlow keeps the thread's error for the next save; surface it now.
                check = getattr(getattr(self.manager.checkpoint, "_async_checkpointer_impl", None),
                                "_check_async_thread_error", None)
                if check is not None:
                    check()
                raise CheckpointError(f"the asynchronous save of {expected} did not complete")

    @contextlib.contextmanager
    def _translating_errors(self, step: int):
        try:
            yield
        except tf.errors.OpError as e:
            remove_failed_saves(self.directory)
            if isinstance(e, tf.errors.ResourceExhaustedError):
                raise ModelDirError(f"no space left on the device saving checkpoint "
                                    f"{layout.checkpoint_name(step)} in {self.directory}; free space or "
                                    "use a larger volume, then run again to resume from the last "
                                    "checkpoint") from None
            raise

    def close(self) -> None:
        self.wait()
        if not self.is_chief and tf.io.gfile.exists(self.directory):
            tf.io.gfile.rmtree(self.directory)


def run_record(model_dir: str) -> dict:
    """The model directory's run_config.json (model/run_identity.py); {} if absent or unreadable."""
    try:
        config = read_json(join(model_dir, RUN_CONFIG))
    except (tf.errors.OpError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def run_model_name(model_dir: str) -> str | None:
    """The network a model directory was trained with, if it says."""
    return run_record(model_dir).get("model")


def read_complete_marker(model_dir: str) -> int | None:
    """The final step if training has finished, else None."""
    try:
        marker = read_json(join(model_dir, COMPLETE_MARKER))
    except (tf.errors.OpError, ValueError) as e:
        log.warning("unreadable %s (%s); treating training as not finished", COMPLETE_MARKER, e)
        return None
    return layout.final_step_of(marker)


def write_complete_marker(model_dir: str, final_step: int, checkpoint_path: str) -> None:
    write_json_atomically(join(model_dir, COMPLETE_MARKER),
                          layout.complete_marker(final_step, checkpoint_path))


def clear_complete_marker(model_dir: str) -> None:
    path = join(model_dir, COMPLETE_MARKER)
    if tf.io.gfile.exists(path):
        tf.io.gfile.remove(path)


def list_checkpoints(model_dir: str) -> list[str]:
    """Checkpoint paths the `checkpoint` state file lists, oldest first.

    The state file is rewritten only after a checkpoint is complete, so it is
    the commit point. Raises ValueError if it is unreadable (empty or garbage),
    tf.errors.OpError on I/O failure; returns [] if there is none yet.
    """
    state_path = join(model_dir, layout.CHECKPOINT_STATE)
    if not tf.io.gfile.exists(state_path):
        return []
    try:
        state = tf.train.get_checkpoint_state(model_dir)
    except ValueError as e:  # an empty file parses to a state naming nothing
        raise ValueError(f"{state_path} names no checkpoint: {e}") from None
    if state is None:  # garbage: TensorFlow logs the parse error and returns None
        raise ValueError(f"{state_path} is not a readable checkpoint state file")
    paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    paths = [layout.resolve(model_dir, p) for p in paths]
    return layout.by_step(paths)


def find_checkpoints(model_dir: str) -> tuple[list[str], str | None]:
    """Every checkpoint in `model_dir`, oldest first, and why the state file
    could not be read (None if it could).

    The state file's list joined with every `ckpt-*.index` found by listing the
    directory, so a damaged or stale state file hides nothing. (TensorFlow
    moves a checkpoint's .index into place after its data, so an .index names
    a whole checkpoint or a damaged one, not one still being written.)
    Raises tf.errors.OpError on I/O failure.
    """
    try:
        listed, unreadable_state = list_checkpoints(model_dir), None
    except ValueError as e:
        listed, unreadable_state = [], str(e)
    found = [path[: -len(".index")] for path in tf.io.gfile.glob(layout.checkpoint_glob(model_dir))]
    paths = layout.by_step({*listed, *found})
    return paths, unreadable_state


def restore_newest(checkpoint: tf.train.Checkpoint, model_dir: str) -> str | None:
    """Restore the newest readable checkpoint in `model_dir`; None if there is none.

    A damaged newest checkpoint (storage that lost its last write) falls back
    to the one before it, loudly. If checkpoints exist but none can be read,
    raise instead of starting again from step 0 over the top of them.
    """
    candidates, unreadable_state = find_checkpoints(model_dir)
    if unreadable_state:
        log.warning("train | %s; looking for checkpoint files directly", unreadable_state)
    for path in reversed(candidates):
        try:
            checkpoint.restore(path).assert_existing_objects_matched()
            return path
        except READ_ERRORS as e:
            log.warning("train | cannot restore %s (%s: %s); trying an older checkpoint", path,
                        type(e).__name__, str(e).splitlines()[0][:300] if str(e) else "")
    if candidates:
        raise CheckpointError(f"none of the checkpoints in {model_dir} can be read "
                              f"({', '.join(os.path.basename(p) for p in candidates)}); "
                              "move them away to start afresh")
    return None
