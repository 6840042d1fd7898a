"""The evaluator: polls the model directory and scores each new checkpoint once.

Waiting is cheap: every --check-interval-secs (default 0.5 s) it reads only
the `checkpoint` state file and the completion marker, two small files, and
lists the checkpoints (reading each one's .index) only when either changed,
or --eval-interval-secs (default 10 s, the tutorial's) after the last listing
so a change the state file does not show (a damaged one, a checkpoint
rewritten under the same name) is found too. `--check-interval-secs 0` is the
tutorial's plain polling every --eval-interval-secs.

It reads checkpoints and never writes beside them: everything it writes goes
to its own eval directory (TensorBoard summaries, `eval_state.json` so a
restart does not redo work, `final_metrics.json`). A checkpoint that vanishes
or is damaged while being read is logged and skipped; polling goes on.

Training is over when the model dir's completion marker names a step at or
beyond --max-steps (when given): a marker below it is a finished run that a
trainer with more steps is about to extend (e.g. `helm upgrade --set
training.maxSteps=...`), so the evaluator waits for the new checkpoints.

What it remembers is keyed on a checkpoint's identity, not its name (see
`checkpoint_identity`): a ckpt-300 that the trainer rewrites after falling
back past a damaged one is a new checkpoint and is scored. Checkpoints are
found by `checkpointing.find_checkpoints`, as the trainer finds them, so a
damaged `checkpoint` state file hides none of them. Once training is complete
the evaluator ends: exit 0 with the final metrics, or a CheckpointError
(exit 2) when the final checkpoint cannot be read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
import uuid

import numpy as np
import tensorflow as tf

from model import checkpointing, goodput, goodput_record, layout, log_lines, summaries
from model.atomic_write import write_json_atomically
from model.checkpointing import READ_ERRORS
from model.config import EVAL_CHECK_INTERVAL_SECS, EVAL_INTERVAL_SECS
from model.data import MnistSplits, Split, load_mnist
from model.errors import CheckpointError, ConfigError
from model.input_pipeline import eval_dataset
from model.networks import build_network
from model.train_state import MovingAverages

log = logging.getLogger(__name__)

STATE_FILE = layout.EVAL_STATE
FINAL_METRICS = layout.FINAL_METRICS
MAX_READ_ATTEMPTS = 3  # a checkpoint that fails this often is given up on
STATE_FORMAT = 2  # eval_state.json keyed on checkpoint identity (1: on names, no "format" key)


@dataclasses.dataclass
class EvalConfig:
    model_dir: str
    model: str | None = None  # None: from the model dir's run_config.json
    data_dir: str | None = None
    eval_dir: str | None = None  # None: <model-dir>/eval
    eval_interval_secs: float = EVAL_INTERVAL_SECS  # the longest between two listings of the checkpoints
    check_interval_secs: float = EVAL_CHECK_INTERVAL_SECS  # 0: no cheap checks between listings
    timeout_secs: float | None = None  # give up if no new checkpoint for this long
    verify_data: bool = True
    max_steps: int | None = None  # the step training runs to (None: whatever the marker says)

    def resolved_eval_dir(self) -> str:
        return self.eval_dir or layout.child(self.model_dir, layout.EVAL_SUMMARY_DIR)

    def validate(self) -> None:
        if not self.model_dir:
            raise ConfigError("a model directory is required (--model-dir or TF_LOGDIR)")
        if self.eval_interval_secs <= 0:
            raise ConfigError(f"eval-interval-secs must be > 0, got {self.eval_interval_secs}")
        if self.check_interval_secs < 0:
            raise ConfigError(f"check-interval-secs must be >= 0, got {self.check_interval_secs}")
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


@dataclasses.dataclass
class Scores:
    """One pass over a split."""

    accuracy: float  # moving-average weights
    raw_accuracy: float  # raw weights
    loss: float  # moving-average weights: mean cross-entropy + the L2 term (the training objective)
    predictions: np.ndarray  # moving-average weights: the digit predicted for each example, in order


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
        self._restored_names = {"network", "averages", "step", "_CHECKPOINTABLE_OBJECT_GRAPH"}

        @tf.function
        def score_batch(images, labels):
            raw = tf.argmax(self.network(images), 1, output_type=tf.int32)
            logits = self.averaged(images)
            avg = tf.argmax(logits, 1, output_type=tf.int32)
            cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            return (tf.reduce_sum(tf.cast(raw == labels, tf.int64)),
                    tf.reduce_sum(tf.cast(avg == labels, tf.int64)),
                    tf.reduce_sum(cross_entropy), avg)

        self._score_batch = score_batch

    def restore(self, path: str) -> int:
        """Load `path`; raises one of READ_ERRORS if it is missing or damaged.

        Every tensor the scorer needs is read through a plain reader first,
        which checks its checksum: a damaged file fails there rather than in
        the object-based restore, whose abandoned status would log "Value in
        checkpoint could not be found in the restored object" for each
        optimizer slot it was never meant to read.
        """
        reader = tf.train.load_checkpoint(path)
        for key in reader.get_variable_to_shape_map():
            if key.split("/", 1)[0] in self._restored_names:
                reader.get_tensor(key)
        status = self.checkpoint.read(path)
        status.expect_partial()  # the optimizer's slots and save counter stay unread on purpose
        status.assert_existing_objects_matched()  # a checkpoint of another network is an error
        self.averages.copy_into(self.averaged)
        return int(self.step.numpy())

    def score(self, dataset: tf.data.Dataset, size: int, regularization_rate: float = 0.0) -> Scores:
        """Accuracies, loss and predictions over a dataset of `size` examples, in one pass.

        The loss is the trainer's (model/train_state.py `loss_fn`): mean cross-entropy plus
        `regularization_rate` times the L2 term of the weights, so the `train` and `eval` runs'
        loss curves measure the same thing.
        """
        raw_total = avg_total = 0
        cross_entropy = 0.0
        predictions = []
        for images, labels in dataset:
            raw, avg, batch_cross_entropy, predicted = self._score_batch(images, labels)
            raw_total += int(raw)
            avg_total += int(avg)
            cross_entropy += float(batch_cross_entropy)
            predictions.append(predicted.numpy())
        l2 = sum(float(tf.nn.l2_loss(w)) for w in self.averaged.regularized_variables)
        return Scores(accuracy=avg_total / size, raw_accuracy=raw_total / size,
                      loss=cross_entropy / size + regularization_rate * l2,
                      predictions=np.concatenate(predictions) if predictions else np.zeros(0, np.int32))

    def accuracy(self, dataset: tf.data.Dataset, size: int) -> tuple[float, float]:
        """(moving-average accuracy, raw accuracy) over a dataset of `size` examples."""
        scores = self.score(dataset, size)
        return scores.accuracy, scores.raw_accuracy


def checkpoint_identity(path: str) -> str | None:
    """`ckpt-<step>@<digest>`: what tells one checkpoint from another of the same name.

    The digest covers the .index file's bytes (which hold every tensor's size
    and checksum) and the size and modification time of each of the
    checkpoint's files, so a checkpoint rewritten by the trainer, even with
    the same weights, is a new one. None if its .index cannot be read (gone).
    """
    index = path + ".index"
    try:
        with tf.io.gfile.GFile(index, "rb") as f:
            digest = hashlib.sha256(f.read())
        for name in sorted([index, *tf.io.gfile.glob(path + ".data-*")]):
            stat = tf.io.gfile.stat(name)
            digest.update(f"{os.path.basename(name)} {stat.length} {stat.mtime_nsec}\n".encode())
    except tf.errors.OpError:
        return None
    return f"{os.path.basename(path)}@{digest.hexdigest()[:16]}"


class EvalState:
    """What has been evaluated, persisted in the eval dir so restarts skip it.

    eval_state.json (format 2):
      {"format": 2,
       "results": {"<step>": {"identity": "ckpt-<step>@<digest>", "validation_accuracy": ...}},
       "failures": {"ckpt-<step>@<digest>": <failed reads>}}
    A file of the first format (no "format" key: failures keyed on file
    names) is read: its results are kept and adopt the identity of the files
    found at their step the next time they are listed; its failures are
    forgotten (those checkpoints are tried again). An unreadable file or one
    of an unknown format is set aside (renamed, kept) and evaluation starts afresh.
    """

    def __init__(self, eval_dir: str):
        self.path = layout.child(eval_dir, STATE_FILE)
        saved = self._load()
        self.results: dict[int, dict] = {int(k): v for k, v in saved.get("results", {}).items()}
        self.failures: dict[str, int] = {}
        if saved.get("format", 1) == STATE_FORMAT:
            self.failures = {str(k): int(v) for k, v in saved.get("failures", {}).items()}
        elif saved.get("failures"):
            log.info("eval | %s is of the first format: forgetting its failed reads (%s); "
                     "those checkpoints are tried again", self.path, sorted(saved["failures"]))

    def _load(self) -> dict:
        """The saved state, or {} after setting aside a file that cannot be used."""
        try:
            saved = checkpointing.read_json(self.path) or {}
            if not isinstance(saved, dict) or not isinstance(saved.get("results", {}), dict):
                raise ValueError("not a JSON object with a results object")
            if saved.get("format", 1) not in (1, STATE_FORMAT):
                raise ValueError(f"unknown format {saved.get('format')!r}")
            return saved
        except (ValueError, tf.errors.OpError) as e:
            problem = e
        aside = f"{self.path}.unreadable-{uuid.uuid4().hex[:8]}"
        log.warning("eval | ignoring unreadable %s (%s); starting afresh, keeping it as %s",
                    self.path, problem, aside)
        try:
            tf.io.gfile.rename(self.path, aside)
        except tf.errors.OpError as e:
            log.warning("eval | could not rename %s: %s", self.path, e)
        return {}

    def done(self, step: int | None, identity: str) -> bool:
        """Whether the checkpoint `identity` at `step` is scored or given up on."""
        result = self.results.get(step) if step is not None else None
        if result is not None and "identity" not in result:  # first format: adopt these files
            result["identity"] = identity
            self.save()
        scored = result is not None and result["identity"] == identity
        return scored or self.given_up(identity)

    def given_up(self, identity: str) -> bool:
        return self.failures.get(identity, 0) >= MAX_READ_ATTEMPTS

    def record_failure(self, identity: str, permanent: bool) -> None:
        self.failures[identity] = MAX_READ_ATTEMPTS if permanent else self.failures.get(identity, 0) + 1

    def best(self) -> tuple[int, dict] | None:
        if not self.results:
            return None
        return max(self.results.items(), key=lambda kv: (kv[1]["validation_accuracy"], kv[0]))

    def save(self) -> None:
        write_json_atomically(self.path, {
            "format": STATE_FORMAT,
            "results": {str(k): v for k, v in sorted(self.results.items())},
            "failures": self.failures})


def _small_file(path: str) -> bytes | str | None:
    """The bytes of a small file, None if it does not exist, the error's name if unreadable."""
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            return f.read()
    except tf.errors.NotFoundError:
        return None
    except tf.errors.OpError as e:
        return type(e).__name__


def change_signature(model_dir: str) -> tuple:
    """What a new checkpoint or the end of training changes: the bytes of the
    `checkpoint` state file (rewritten once a checkpoint is complete; it holds
    each checkpoint's save time, so even a rewrite of the same step differs)
    and of the completion marker. Two small reads, no listing."""
    return tuple(_small_file(layout.child(model_dir, name))
                 for name in (layout.CHECKPOINT_STATE, layout.COMPLETE_MARKER))


def wait_for_change(model_dir: str, since: tuple, *, check_interval: float, longest: float,
                    stop_event: threading.Event) -> bool:
    """Wait until `change_signature(model_dir)` differs from `since` (True), or
    `longest` seconds pass or `stop_event` is set (False). With no
    `check_interval` it only waits `longest` seconds."""
    if not check_interval:
        stop_event.wait(longest)
        return False
    deadline = time.monotonic() + longest
    while (left := deadline - time.monotonic()) > 0:
        if stop_event.wait(min(check_interval, left)):
            return False
        if change_signature(model_dir) != since:
            return True
    return False


def _emit(event: dict) -> None:
    """The machine-readable twin of each human line."""
    print(log_lines.eval_event_line(event), flush=True)


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
        self._warned: set[str] = set()
        self._final_missing = 0  # polls in a row that found the final checkpoint gone
        self._run_record: dict = {}  # run_config.json, read at the first evaluation
        self._hparams_written = False  # the HParams session, once per evaluator

    def evaluate_checkpoint(self, path: str, identity: str) -> dict | None:
        """Score one checkpoint on the validation set; None if it could not be read."""
        try:
            t0 = time.monotonic()
            step = self.scorer.restore(path)
            record = self._record()
            scores = self.scorer.score(self.validation_ds, len(self.validation),
                                       (record.get("hparams") or {}).get("regularization_rate", 0.0))
            accuracy, raw_accuracy = scores.accuracy, scores.raw_accuracy
            seconds = time.monotonic() - t0
        except READ_ERRORS as e:
            gone = not tf.io.gfile.exists(path + ".index")
            self.state.record_failure(identity, permanent=gone)
            self.state.save()
            log.warning("eval | skipping %s: %s%s: %s", path, "vanished, " if gone else "",
                        type(e).__name__, str(e).splitlines()[0][:300] if str(e) else "")
            return None
        result = {"validation_accuracy": accuracy, "raw_validation_accuracy": raw_accuracy,
                  "checkpoint": path, "identity": identity, "eval_seconds": round(seconds, 3)}
        self.state.results[step] = result
        self.state.save()
        with self.writer.as_default(step=step):
            if record and not self._hparams_written:
                summaries.write_hparams(summaries.run_configuration(record, self.config.max_steps),
                                        trial_id=record.get("run_id"))
                self._hparams_written = True
            summaries.write_evaluation(loss=scores.loss, accuracy=accuracy, raw_accuracy=raw_accuracy,
                                       labels=self.validation.labels, predictions=scores.predictions,
                                       images=self.validation.images)
        self.writer.flush()
        print(log_lines.EVAL_VALIDATION_FORMAT % (step, accuracy), flush=True)
        goodput_record.eval_printed(self.eval_dir, step)  # its lag: model/goodput.py
        _emit({"event": "eval", "step": step, **result})
        return result

    def _record(self) -> dict:
        """The run's run_config.json (the trainer wrote it before its first checkpoint)."""
        if not self._run_record:
            self._run_record = checkpointing.run_record(self.config.model_dir)
        return self._run_record

    def _warn_once(self, message: str) -> None:
        """Log a warning the first time it is seen, not on every poll."""
        if message not in self._warned:
            self._warned.add(message)
            log.warning("%s", message)

    def poll_once(self) -> bool:
        """Evaluate every new checkpoint found now; True if any was new."""
        try:
            paths, unreadable_state = checkpointing.find_checkpoints(self.config.model_dir)
        except tf.errors.OpError as e:
            log.warning("eval | cannot list checkpoints yet: %s", e)
            return False
        if unreadable_state:
            self._warn_once(f"eval | {unreadable_state}; listing the {layout.CHECKPOINT_PREFIX}"
                            "-*.index files instead")
        new = False
        for path in paths:
            identity = checkpoint_identity(path)
            if identity is None:  # listed in the state file, but its files are gone
                self._warn_once(f"eval | skipping {path}: its files are gone")
                continue
            if not self.state.done(layout.step_of(path), identity):
                new = True
                self.evaluate_checkpoint(path, identity)
        return new

    def _final_checkpoint_error(self, final_step: int, path: str, reason: str) -> CheckpointError:
        return CheckpointError(
            f"training is complete ({layout.COMPLETE_MARKER} names step {final_step}) but "
            f"its final checkpoint {path} {reason}; no restart can fix this: restore the files or "
            f"train again (evaluation state: {self.state.path})")

    def finish(self, final_step: int) -> dict:
        """Score the final checkpoint on the test set and write final_metrics.json."""
        final = self.state.results.get(final_step)
        if final is None:
            raise self._final_checkpoint_error(final_step, self._final_path(final_step),
                                               "has not been evaluated")
        try:
            self.scorer.restore(final["checkpoint"])
            test_accuracy, raw_test_accuracy = self.scorer.accuracy(eval_dataset(self.test),
                                                                    len(self.test))
        except READ_ERRORS as e:  # damaged or removed since its validation pass
            raise self._final_checkpoint_error(
                final_step, final["checkpoint"], f"is unreadable: {type(e).__name__}: "
                f"{str(e).splitlines()[0][:300] if str(e) else ''}") from e
        best_step, best = self.state.best()
        metrics = {"final_step": final_step,
                   "final_validation_accuracy": final["validation_accuracy"],
                   "best_step": best_step, "best_validation_accuracy": best["validation_accuracy"],
                   "test_accuracy": test_accuracy, "raw_test_accuracy": raw_test_accuracy,
                   "checkpoints_evaluated": len(self.state.results)}
        metrics.update(goodput.final_metrics_fields(self.config.model_dir, self.eval_dir))
        with self.writer.as_default(step=final_step):
            tf.summary.scalar(summaries.TEST_ACCURACY, test_accuracy)
        self.writer.flush()
        write_json_atomically(layout.child(self.eval_dir, FINAL_METRICS), metrics)
        print(log_lines.EVAL_TEST_FORMAT % (final_step, test_accuracy), flush=True)
        _emit({"event": "final", **metrics})
        return metrics

    def _final_path(self, final_step: int) -> str:
        return layout.child(self.config.model_dir, layout.checkpoint_name(final_step))

    def _final_problem(self, final_step: int, identity: str | None) -> str | None:
        """Why the final checkpoint can never be scored, or None while it still may be."""
        # Gone only after several polls, and only if the marker still names it:
        # a trainer extending the run clears the marker first, then rotates
        # the old final checkpoint out.
        self._final_missing = self._final_missing + 1 if identity is None else 0
        if self._final_missing >= MAX_READ_ATTEMPTS:
            problem = "is gone"
        elif identity is not None and self.state.given_up(identity):
            problem = f"cannot be read (failed {MAX_READ_ATTEMPTS} times, logged above)"
        else:
            return None
        still_final = self.config.training_final_step() == final_step
        return problem if still_final else None

    def run(self, stop_event: threading.Event | None = None) -> dict | None:
        """Poll until training is complete and its final checkpoint is scored.

        Returns the final metrics, or None if stopped or timed out first.
        Raises CheckpointError if training is complete but its final
        checkpoint is gone or cannot be read.
        """
        stop_event = stop_event or threading.Event()
        last_new = time.monotonic()
        while not stop_event.is_set():
            # Taken before listing: whatever changes during the pass is waited on no longer.
            signature = change_signature(self.config.model_dir)
            # Read the marker before listing: a checkpoint listed after seeing it
            # is at least as new as the final one.
            final_step = self.config.training_final_step()
            if self.poll_once():
                last_new = time.monotonic()
            if final_step is not None:
                path = self._final_path(final_step)
                identity = checkpoint_identity(path)
                result = self.state.results.get(final_step)
                if identity is not None and result is not None and result.get("identity") == identity:
                    return self.finish(final_step)
                problem = self._final_problem(final_step, identity)
                if problem:
                    raise self._final_checkpoint_error(final_step, path, problem)
            if self.config.timeout_secs and time.monotonic() - last_new > self.config.timeout_secs:
                log.warning("eval | no new checkpoint for %.0f s; giving up", self.config.timeout_secs)
                return None
            wait_for_change(self.config.model_dir, signature, stop_event=stop_event,
                            check_interval=self.config.check_interval_secs,
                            longest=self.config.eval_interval_secs)
        return None


def evaluate(config: EvalConfig, *, datasets: MnistSplits | None = None,
             stop_event: threading.Event | None = None) -> dict | None:
    """Run the evaluator until training finishes (see Evaluator.run)."""
    config.validate()
    stop_event = stop_event or threading.Event()
    started = time.monotonic()
    said = None
    while config.model is None:  # the trainer writes run_config.json when it starts
        config.model = checkpointing.run_model_name(config.model_dir)
        if config.model is not None:
            break
        waited = time.monotonic() - started
        if config.timeout_secs and waited >= config.timeout_secs:
            log.warning("eval | giving up after %g s (--timeout-secs): no %s appeared in %s, so the "
                        "network is unknown; is a trainer writing to this --model-dir? (or pass "
                        "--model)", config.timeout_secs, layout.RUN_CONFIG, config.model_dir)
            return None
        if said is None or waited - said >= 60:  # checked every check interval, said once a minute
            said = waited
            log.info("eval | --model not given; waiting for %s to appear in %s",
                     layout.RUN_CONFIG, config.model_dir)
        interval = config.check_interval_secs or config.eval_interval_secs
        if config.timeout_secs:
            interval = min(interval, config.timeout_secs - waited)
        if stop_event.wait(interval):
            return None
    try:
        existing = checkpointing.read_json(layout.child(config.resolved_eval_dir(), FINAL_METRICS))
    except (ValueError, tf.errors.OpError):
        existing = None
    final_step = config.training_final_step()
    if existing is not None and final_step is not None and existing.get("final_step") == final_step:
        print(log_lines.EVAL_TEST_FORMAT % (existing["final_step"], existing["test_accuracy"])
              + log_lines.ALREADY_EVALUATED, flush=True)
        return existing
    if datasets is None:
        datasets = load_mnist(config.data_dir, verify=config.verify_data)
    evaluator = Evaluator(config, datasets)
    log.info("eval | watching %s (its state file every %g s, a full listing at least every %g s); "
             "writing %s", config.model_dir, config.check_interval_secs, config.eval_interval_secs,
             evaluator.eval_dir)
    return evaluator.run(stop_event)
