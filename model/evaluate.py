"""The evaluator: polls the model directory and scores each new checkpoint once.

It reads checkpoints and never writes beside them: everything it writes goes
to its own eval directory (TensorBoard summaries, `eval_state.json` so a
restart does not redo work, `final_metrics.json`). A checkpoint that vanishes
or is damaged while being read is logged and skipped; polling goes on.

Training is over when the model dir's completion marker names a step at or
beyond --max-steps (when given): a marker below it is a finished run that a
trainer with more steps is about to extend (e.g. `helm upgrade --set
training.maxSteps=...`), so the evaluator waits for the new checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time

import tensorflow as tf

from model import checkpointing
from model.checkpointing import READ_ERRORS
from model.data import MnistSplits, Split, load_mnist
from model.errors import ConfigError
from model.input_pipeline import eval_dataset
from model.networks import build_network
from model.train_state import MovingAverages

log = logging.getLogger(__name__)

STATE_FILE = "eval_state.json"
FINAL_METRICS = "final_metrics.json"
MAX_READ_ATTEMPTS = 3  # a checkpoint that fails this often is given up on



@dataclasses.dataclass
class EvalConfig:
    model_dir: str
    model: str | None = None  # None: from the model dir's run_config.json
    data_dir: str | None = None
    eval_dir: str | None = None  # None: <model-dir>/eval
    eval_interval_secs: float = 10.0
    timeout_secs: float | None = None  # give up if no new checkpoint for this long
    verify_data: bool = True
    max_steps: int | None = None  # the step training runs to (None: whatever the marker says)

    def resolved_eval_dir(self) -> str:
        return self.eval_dir or checkpointing.join(self.model_dir, checkpointing.EVAL_SUMMARY_DIR)

    def validate(self) -> None:
        if not self.model_dir:
            raise ConfigError("a model directory is required (--model-dir or TF_LOGDIR)")
        if self.eval_interval_secs <= 0:
            raise ConfigError(f"eval-interval-secs must be > 0, got {self.eval_interval_secs}")
        if self.timeout_secs is not None and self.timeout_secs <= 0:
            raise ConfigError(f"timeout-secs must be > 0, got {self.timeout_secs}")
        if self.max_steps is not None and self.max_steps < 0:
            raise ConfigError(f"max-steps must be >= 0, got {self.max_steps}")

    def training_final_step(self) -> int | None:
        """The final step if training is over (its marker reaches max_steps), else None."""
        final_step = checkpointing.read_complete_marker(self.model_dir)
        if final_step is not None and self.max_steps is not None and final_step < self.max_steps:
            return None  # a finished run about to be extended to max_steps
        return final_step


class CheckpointScorer:
    """Restores a checkpoint's raw and moving-average weights and scores a split."""

    def __init__(self, model: str):
        self.network = build_network(model)  # raw weights
        self.averaged = build_network(model)  # moving-average weights
        self.averages = MovingAverages(self.network)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        # Only what evaluation needs; the optimizer slots are left unread.
        self.checkpoint = tf.train.Checkpoint(network=self.network, averages=self.averages,
                                              step=self.step)

        @tf.function
        def count_correct(images, labels):
            raw = tf.argmax(self.network(images), 1, output_type=tf.int32)
            avg = tf.argmax(self.averaged(images), 1, output_type=tf.int32)
            return (tf.reduce_sum(tf.cast(raw == labels, tf.int64)),
                    tf.reduce_sum(tf.cast(avg == labels, tf.int64)))

        self._count_correct = count_correct

    def restore(self, path: str) -> int:
        """Load `path`; raises one of READ_ERRORS if it is missing or damaged."""
        self.checkpoint.read(path).assert_existing_objects_matched().expect_partial()
        self.averages.copy_into(self.averaged)
        return int(self.step.numpy())

    def accuracy(self, dataset: tf.data.Dataset, size: int) -> tuple[float, float]:
        """(moving-average accuracy, raw accuracy) over a dataset of `size` examples."""
        raw_total = avg_total = 0
        for images, labels in dataset:
            raw, avg = self._count_correct(images, labels)
            raw_total += int(raw)
            avg_total += int(avg)
        return avg_total / size, raw_total / size


class EvalState:
    """What has been evaluated, persisted in the eval dir so restarts skip it."""

    def __init__(self, eval_dir: str):
        self.path = checkpointing.join(eval_dir, STATE_FILE)
        try:
            saved = checkpointing.read_json(self.path) or {}
        except (ValueError, tf.errors.OpError) as e:
            log.warning("eval | ignoring unreadable %s (%s); starting afresh", self.path, e)
            saved = {}
        self.results: dict[int, dict] = {int(k): v for k, v in saved.get("results", {}).items()}
        self.failures: dict[str, int] = dict(saved.get("failures", {}))

    def done(self, path: str, step: int | None) -> bool:
        return (step is not None and step in self.results) or self.given_up(path)

    def given_up(self, path: str) -> bool:
        return self.failures.get(os.path.basename(path), 0) >= MAX_READ_ATTEMPTS

    def record_failure(self, path: str, permanent: bool) -> None:
        name = os.path.basename(path)
        self.failures[name] = MAX_READ_ATTEMPTS if permanent else self.failures.get(name, 0) + 1

    def best(self) -> tuple[int, dict] | None:
        if not self.results:
            return None
        return max(self.results.items(), key=lambda kv: (kv[1]["validation_accuracy"], kv[0]))

    def save(self) -> None:
        checkpointing.write_json_atomic(self.path, {
            "results": {str(k): v for k, v in sorted(self.results.items())},
            "failures": self.failures})


def _emit(event: dict) -> None:
    """The machine-readable twin of each human line."""
    print(json.dumps(event, sort_keys=True), flush=True)


class Evaluator:
    def __init__(self, config: EvalConfig, datasets: MnistSplits):
        self.config = config
        self.eval_dir = config.resolved_eval_dir()
        tf.io.gfile.makedirs(self.eval_dir)
        self.scorer = CheckpointScorer(config.model)
        self.validation: Split = datasets.validation
        self.test: Split = datasets.test
        self.validation_ds = eval_dataset(datasets.validation)
        self.state = EvalState(self.eval_dir)
        self.writer = tf.summary.create_file_writer(self.eval_dir)

    def evaluate_checkpoint(self, path: str) -> dict | None:
        """Score one checkpoint on the validation set; None if it could not be read."""
        try:
            t0 = time.monotonic()
            step = self.scorer.restore(path)
            accuracy, raw_accuracy = self.scorer.accuracy(self.validation_ds, len(self.validation))
            seconds = time.monotonic() - t0
        except READ_ERRORS as e:
            gone = not tf.io.gfile.exists(path + ".index")
            self.state.record_failure(path, permanent=gone)
            self.state.save()
            log.warning("eval | skipping %s: %s%s: %s", path, "vanished, " if gone else "",
                        type(e).__name__, str(e).splitlines()[0][:300] if str(e) else "")
            return None
        result = {"validation_accuracy": accuracy, "raw_validation_accuracy": raw_accuracy,
                  "checkpoint": path, "eval_seconds": round(seconds, 3)}
        self.state.results[step] = result
        self.state.save()
        with self.writer.as_default(step=step):
            tf.summary.scalar("accuracy", accuracy)
            tf.summary.scalar("accuracy_raw_weights", raw_accuracy)
        self.writer.flush()
        print(f"After {step} training step(s), validation accuracy = {accuracy:g}", flush=True)
        _emit({"event": "eval", "step": step, **result})
        return result

    def poll_once(self) -> bool:
        """Evaluate every new checkpoint listed now; True if any was new."""
        try:
            paths = checkpointing.list_checkpoints(self.config.model_dir)
        except (ValueError, tf.errors.OpError) as e:
            log.warning("eval | cannot list checkpoints yet: %s", e)
            return False
        new = [p for p in paths if not self.state.done(p, checkpointing.step_of(p))]
        for path in new:
            self.evaluate_checkpoint(path)
        return bool(new)

    def finish(self, final_step: int) -> dict:
        """Score the final checkpoint on the test set and write final_metrics.json."""
        final = self.state.results.get(final_step)
        if final is None:
            raise RuntimeError(f"the final checkpoint (step {final_step}) could not be evaluated")
        try:
            self.scorer.restore(final["checkpoint"])
            test_accuracy, raw_test_accuracy = self.scorer.accuracy(eval_dataset(self.test),
                                                                    len(self.test))
        except READ_ERRORS as e:  # damaged or removed since its validation pass
            raise RuntimeError(f"the final checkpoint (step {final_step}) is unreadable: "
                               f"{type(e).__name__}: {e}") from e
        best_step, best = self.state.best()
        metrics = {"final_step": final_step,
                   "final_validation_accuracy": final["validation_accuracy"],
                   "best_step": best_step, "best_validation_accuracy": best["validation_accuracy"],
                   "test_accuracy": test_accuracy, "raw_test_accuracy": raw_test_accuracy,
                   "checkpoints_evaluated": len(self.state.results)}
        with self.writer.as_default(step=final_step):
            tf.summary.scalar("test_accuracy", test_accuracy)
        self.writer.flush()
        checkpointing.write_json_atomic(checkpointing.join(self.eval_dir, FINAL_METRICS), metrics)
        print(f"After {final_step} training step(s), test accuracy = {test_accuracy:g}", flush=True)
        _emit({"event": "final", **metrics})
        return metrics

    def run(self, stop_event: threading.Event | None = None) -> dict | None:
        """Poll until training is complete and its final checkpoint is scored.

        Returns the final metrics, or None if stopped or timed out first.
        """
        stop_event = stop_event or threading.Event()
        last_new = time.monotonic()
        while not stop_event.is_set():
            # Read the marker before listing: a checkpoint listed after seeing it
            # is at least as new as the final one.
            final_step = self.config.training_final_step()
            if self.poll_once():
                last_new = time.monotonic()
            if final_step is not None and final_step in self.state.results:
                return self.finish(final_step)
            if final_step is not None and self.state.given_up(
                    f"{checkpointing.CHECKPOINT_PREFIX}-{final_step}"):
                raise RuntimeError(f"the final checkpoint (step {final_step}) is unreadable")
            if self.config.timeout_secs and time.monotonic() - last_new > self.config.timeout_secs:
                log.warning("eval | no new checkpoint for %.0f s; giving up", self.config.timeout_secs)
                return None
            stop_event.wait(self.config.eval_interval_secs)
        return None


def evaluate(config: EvalConfig, *, datasets: MnistSplits | None = None,
             stop_event: threading.Event | None = None) -> dict | None:
    """Run the evaluator until training finishes (see Evaluator.run)."""
    config.validate()
    stop_event = stop_event or threading.Event()
    while config.model is None:  # the trainer writes run_config.json when it starts
        config.model = checkpointing.run_model_name(config.model_dir)
        if config.model is None:
            log.info("eval | --model not given; waiting for %s to appear in %s",
                     checkpointing.RUN_CONFIG, config.model_dir)
            if stop_event.wait(config.eval_interval_secs):
                return None
    try:
        existing = checkpointing.read_json(checkpointing.join(config.resolved_eval_dir(), FINAL_METRICS))
    except (ValueError, tf.errors.OpError):
        existing = None
    final_step = config.training_final_step()
    if existing is not None and final_step is not None and existing.get("final_step") == final_step:
        print(f"After {existing['final_step']} training step(s), test accuracy = "
              f"{existing['test_accuracy']:g} (already evaluated)", flush=True)
        return existing
    if datasets is None:
        datasets = load_mnist(config.data_dir, verify=config.verify_data)
    evaluator = Evaluator(config, datasets)
    log.info("eval | watching %s every %g s; writing %s", config.model_dir,
             config.eval_interval_secs, evaluator.eval_dir)
    return evaluator.run(stop_event)
