"""Export a checkpoint's moving-average weights as a SavedModel for serving.

Signatures:
  serving_default(images: float32 [N, 784] in [0, 1])  the tutorial's input
  predict_pixels(pixels: uint8 [N, 28, 28])            raw MNIST pixels
each returning logits [N, 10], probabilities [N, 10] and classes int64 [N].

The SavedModel is written to a temporary sibling directory and renamed into
place, so a reader never sees half an export. A gs:// export directory is
written locally and published by model/gcs.py (reader contract there).
"""

from __future__ import annotations

import logging
import uuid

import tensorflow as tf

from model import checkpointing
from model.errors import CheckpointError, ConfigError
from model.checkpointing import READ_ERRORS
from model.evaluate import CheckpointScorer, EvalState

log = logging.getLogger(__name__)


class ServingModule(tf.Module):
    def __init__(self, network: tf.Module, step: int, model: str):
        super().__init__(name="mnist_serving")
        self.network = network
        self.trained_steps = tf.constant(step, tf.int64)
        self.model_name = tf.constant(model)

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


def export(model_dir: str, export_dir: str, *, model: str | None = None,
           checkpoint_path: str | None = None, overwrite: bool = False) -> str:
    """Write a SavedModel of the newest (or given) checkpoint's averaged weights."""
    if export_dir.startswith("gs://"):
        from model.gcs import publish_export
        return publish_export(model_dir, export_dir, model=model, checkpoint_path=checkpoint_path,
                              overwrite=overwrite)
    model = model or checkpointing.run_model_name(model_dir)
    if model is None:
        raise ConfigError(f"--model not given and {model_dir} has no {checkpointing.RUN_CONFIG}")
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
    if tf.io.gfile.exists(export_dir) and not overwrite:
        raise ConfigError(f"{export_dir} already exists; pass --overwrite to replace it")
    scorer = CheckpointScorer(model)
    try:
        step = scorer.restore(checkpoint_path)
    except READ_ERRORS as e:
        raise ConfigError(f"cannot read checkpoint {checkpoint_path}: {type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}") from None
    module = ServingModule(scorer.averaged, step, model)
    tmp_dir = f"{export_dir.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tf.saved_model.save(module, tmp_dir, signatures={
            "serving_default": module.serve, "predict_pixels": module.serve_pixels})
        _replace_dir(tmp_dir, export_dir)
    except BaseException:  # leave no half-written temporary directory behind
        try:
            if tf.io.gfile.exists(tmp_dir):
                tf.io.gfile.rmtree(tmp_dir)
        except tf.errors.OpError as cleanup_error:
            log.warning("export | could not remove %s: %s", tmp_dir, cleanup_error)
        raise
    log.info("export | %s at step %d (moving-average weights) -> %s", model, step, export_dir)
    return export_dir


def export_best(model_dir: str, eval_dir: str, export_dir: str, *, model: str | None = None) -> str:
    """Export the evaluated checkpoint with the best validation accuracy (the
    newest on ties), replacing `export_dir`. A best checkpoint that the trainer
    has since deleted (it keeps the newest few) gives way to the next best."""
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
        export(model_dir, export_dir, model=model, checkpoint_path=path, overwrite=True)
        log.info("export | best checkpoint: step %d, validation accuracy %g%s -> %s", step,
                 result["validation_accuracy"], "" if rank == 0 else f" (rank {rank + 1})", export_dir)
        return export_dir
    raise CheckpointError(f"no evaluated checkpoint of {model_dir} is left to export "
                          f"({len(ranked)} evaluated, see {eval_dir})")
