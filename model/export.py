"""Export a checkpoint's moving-average weights as a SavedModel for serving.

Signatures:
  serving_default(images: float32 [N, 784] in [0, 1])  the tutorial's input
  predict_pixels(pixels: uint8 [N, 28, 28])            raw MNIST pixels
each returning logits [N, 10], probabilities [N, 10] and classes int64 [N].

What was exported is recorded twice: in the SavedModel itself, as the
variables `model_name` (string) and `trained_steps` (int64) of the loaded
object (`tf.saved_model.load(d).trained_steps.numpy()`), and in
`<export-dir>/export_info.json` (model, trained_steps, checkpoint, model_dir),
which also marks the directory as an export this library wrote.

An export never touches training state: an export directory that is,
contains or lies inside the model directory (or the evaluator's eval
directory) is refused, and `overwrite` replaces only a previous export,
recognised by its export_info.json (or gs:// export_complete.json) or by
holding nothing but a SavedModel's own files.

The SavedModel is written to a temporary sibling directory and renamed into
place, so a reader never sees half an export. A gs:// export directory is
written locally and published by model/gcs.py (reader contract there).
"""

from __future__ import annotations

import logging
import os
import posixpath
import tempfile
import uuid

import tensorflow as tf

from model import checkpointing, gcs, layout, log_lines
from model.atomic_write import write_json_atomically
from model.checkpointing import READ_ERRORS
from model.errors import CheckpointError, ConfigError
from model.evaluate import CheckpointScorer, EvalState
from model.gcs import SCHEME, is_gcs_uri
from model.layout import EXPORT_INFO, not_an_export

log = logging.getLogger(__name__)


class ServingModule(tf.Module):
    def __init__(self, network: tf.Module, step: int, model: str):
        super().__init__(name="mnist_serving")
        self.network = network
        # Variables, so that they are saved and readable after tf.saved_model.load.
        self.model_name = tf.Variable(model, trainable=False, name="model_name")
        self.trained_steps = tf.Variable(step, dtype=tf.int64, trainable=False,
                                         name="trained_steps")

    def _outputs(self, images):
        logits = self.network(images)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits),
                "classes": tf.argmax(logits, axis=1)}

    @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32, name="images")])
    def serve(self, images):
        return self._outputs(images)

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28], tf.uint8, name="pixels")])
    def serve_pixels(self, pixels):
        return self._outputs(tf.reshape(tf.cast(pixels, tf.float32) / 255.0, [-1, 784]))


def _replace_dir(new_dir: str, target: str) -> None:
    """Move `new_dir` to `target`; an existing target is kept aside until then,
    so a failed rename loses nothing."""
    backup = None
    if tf.io.gfile.exists(target):
        backup = f"{target.rstrip('/')}.old-{uuid.uuid4().hex[:8]}"
        tf.io.gfile.rename(target, backup)
    try:
        tf.io.gfile.rename(new_dir, target)
    except BaseException:
        if backup:
            tf.io.gfile.rename(backup, target)
        raise
    if backup:
        tf.io.gfile.rmtree(backup)


def _normalized(path: str) -> str:
    """An absolute spelling of a local path (symlinks and `..` resolved) or gs:// URI."""
    if is_gcs_uri(path):
        return SCHEME + posixpath.normpath("/" + path[len(SCHEME):]).lstrip("/")
    return os.path.realpath(os.path.abspath(path))


def refuse_training_state(export_dir: str, model_dir: str, eval_dir: str | None = None) -> None:
    """ConfigError if `export_dir` is, contains or lies inside the model or eval directory."""
    target = _normalized(export_dir)
    for what, directory in (("model directory", model_dir), ("eval directory", eval_dir)):
        if not directory:
            continue
        held = _normalized(directory)
        relation = ("is" if target == held else
                    "contains" if held.startswith(target.rstrip("/") + "/") else
                    "lies inside" if target.startswith(held.rstrip("/") + "/") else None)
        if relation:
            raise ConfigError(f"export directory {export_dir} {relation} the {what} {directory}: "
                              "an export must never replace or mix with training state; choose a "
                              "directory outside it")


def check_export_target(model_dir: str, export_dir: str, *, overwrite: bool,
                        eval_dir: str | None = None) -> None:
    """Refuse an export directory that holds training state or, unless `overwrite`,
    anything at all; with `overwrite` only a previous export may be replaced."""
    refuse_training_state(export_dir, model_dir, eval_dir)
    if is_gcs_uri(export_dir):
        gcs.check_publish_target(export_dir, overwrite=overwrite)
        return
    if not tf.io.gfile.exists(export_dir):
        return
    if not tf.io.gfile.isdir(export_dir):
        raise ConfigError(f"export directory {export_dir} is a file; refusing to replace it")
    if not overwrite:
        raise ConfigError(f"{export_dir} already exists; pass --overwrite to replace it")
    problem = not_an_export(set(p.rstrip("/") for p in tf.io.gfile.listdir(export_dir)))
    if problem:
        raise ConfigError(f"refusing to overwrite {export_dir}: {problem}; choose another "
                          "--export-dir or remove it yourself")


def write_saved_model(model_dir: str, target: str, *, model: str | None = None,
                      checkpoint_path: str | None = None) -> dict:
    """Write a SavedModel of the newest (or given) checkpoint's averaged weights
    into `target`, which must not exist; returns what export_info.json says."""
    model = model or checkpointing.run_model_name(model_dir)
    if model is None:
        raise ConfigError(f"--model not given and {model_dir} has no {layout.RUN_CONFIG}")
    if not checkpoint_path:
        # The newest checkpoint the state file lists, even if its files are gone
        # (restoring it then fails naming it, rather than exporting an older one).
        try:
            listed = checkpointing.list_checkpoints(model_dir)
        except (ValueError, tf.errors.OpError) as e:
            raise ConfigError(f"cannot read the checkpoint list in {model_dir}: {e}") from None
        checkpoint_path = listed[-1] if listed else None
    if not checkpoint_path:
        raise ConfigError(f"no checkpoint in {model_dir} to export")
    scorer = CheckpointScorer(model)
    try:
        step = scorer.restore(checkpoint_path)
    except READ_ERRORS as e:
        raise ConfigError(f"cannot read checkpoint {checkpoint_path}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None
    module = ServingModule(scorer.averaged, step, model)
    info = {"model": model, "trained_steps": step, "checkpoint": checkpoint_path,
            "model_dir": model_dir, "weights": "moving averages",
            "signatures": ["serving_default", "predict_pixels"]}
    tf.saved_model.save(module, target, signatures={
        "serving_default": module.serve, "predict_pixels": module.serve_pixels})
    write_json_atomically(layout.child(target, EXPORT_INFO), info)
    return info


def publish_export(model_dir: str, export_dir: str, *, model: str | None = None,
                   checkpoint_path: str | None = None, overwrite: bool = False) -> str:
    """Export to gs://: a local SavedModel, then model/gcs.py's two-phase publish."""
    client = gcs.make_client()
    gcs.check_publish_target(export_dir, overwrite=overwrite, client=client)
    with tempfile.TemporaryDirectory(prefix="mnist-export-") as tmp:
        local = os.path.join(tmp, "saved_model")
        written = write_saved_model(model_dir, local, model=model, checkpoint_path=checkpoint_path)
        info = {"model_dir": model_dir, "checkpoint": checkpoint_path or "newest",
                "model": written["model"], "trained_steps": written["trained_steps"]}
        return gcs.publish_dir(local, str(gcs.parse_uri(export_dir)), overwrite=overwrite, client=client,
                               info=info)


def export(model_dir: str, export_dir: str, *, model: str | None = None,
           checkpoint_path: str | None = None, overwrite: bool = False,
           eval_dir: str | None = None) -> str:
    """Write a SavedModel of the newest (or given) checkpoint's averaged weights
    to `export_dir` (see the module docstring for what is refused)."""
    check_export_target(model_dir, export_dir, overwrite=overwrite, eval_dir=eval_dir)
    if is_gcs_uri(export_dir):
        return publish_export(model_dir, export_dir, model=model, checkpoint_path=checkpoint_path,
                              overwrite=overwrite)
    tmp_dir = f"{export_dir.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        info = write_saved_model(model_dir, tmp_dir, model=model, checkpoint_path=checkpoint_path)
        _replace_dir(tmp_dir, export_dir)
    except BaseException:  # leave no half-written temporary directory behind
        try:
            if tf.io.gfile.exists(tmp_dir):
                tf.io.gfile.rmtree(tmp_dir)
        except tf.errors.OpError as cleanup_error:
            log.warning("export | could not remove %s: %s", tmp_dir, cleanup_error)
        raise
    log.info(log_lines.EXPORTED_FORMAT, info["model"], info["trained_steps"], export_dir)
    return export_dir


def export_best(model_dir: str, eval_dir: str, export_dir: str, *, model: str | None = None) -> str:
    """Export the evaluated checkpoint with the best validation accuracy (the
    newest on ties), replacing a previous export at `export_dir`. A best
    checkpoint that the trainer has since deleted (it keeps the newest few)
    gives way to the next best."""
    check_export_target(model_dir, export_dir, overwrite=True, eval_dir=eval_dir)
    results = EvalState(eval_dir).results
    ranked = sorted(results.items(), key=lambda kv: (kv[1]["validation_accuracy"], kv[0]), reverse=True)
    for rank, (step, result) in enumerate(ranked):
        path = result["checkpoint"]
        if not tf.io.gfile.exists(path + ".index"):
            log.warning("export | best-but-%d checkpoint %s (step %d) is gone; trying the next",
                        rank, path, step)
            continue
        try:
            tf.train.load_checkpoint(path)  # a damaged one is skipped; other errors propagate
        except READ_ERRORS as e:
            log.warning("export | cannot read %s (%s); trying the next", path, type(e).__name__)
            continue
        export(model_dir, export_dir, model=model, checkpoint_path=path, overwrite=True,
               eval_dir=eval_dir)
        log.info(log_lines.EXPORTED_BEST_FORMAT, step, result["validation_accuracy"],
                 "" if rank == 0 else log_lines.BEST_RANK_FORMAT % (rank + 1), export_dir)
        return export_dir
    raise CheckpointError(f"no evaluated checkpoint of {model_dir} is left to export "
                          f"({len(ranked)} evaluated, see {eval_dir})")
