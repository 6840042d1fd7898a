"""The custom training loop under MultiWorkerMirroredStrategy.

One call of the compiled `train_loop` runs up to `steps_per_loop` steps. At
its start the workers all-reduce (sum) a small vector of control flags, so
decisions taken on one worker's clock or signal (save now, stop now) are
agreed by all of them at the same step: a lone worker that saved or stopped
would hang the others in their next collective. A call that agrees to stop
runs no step, so every worker saves at the step where the previous call ended.

`train` is four parts: `_set_up` (strategy, data, the claimed model dir,
the restored state), `_build_loop` (writers, input iterator, the compiled
loop call), `_loop` (the outer loop: it asks model/schedule.py how many
steps each call runs and what is due after it, and meters images/s with
model/throughput.py) and `_finish` (final checkpoint, completion marker).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import threading
import time

import numpy as np
import tensorflow as tf

from model import checkpointing, goodput_record, layout, leaving, log_lines, run_identity, summaries
from model.config import ALL_REDUCE_DTYPES, COMPUTE_DTYPES, GRADIENT_EXCHANGES, Hyperparameters
from model.data import MnistSplits, load_mnist
from model.errors import ConfigError
from model.gradient_exchange import ExchangePlan, exchange, plan_exchange
from model.input_pipeline import train_dataset_fn
from model.lease import LeaseSettings
from model.schedule import Boundary, SaveTimer, Schedule
from model.signals import StopSignals
from model.throughput import ThroughputMeter
from model.train_state import (TrainState, apply_update, learning_rate, loss_fn,
                               regularization_gradient)

log = logging.getLogger(__name__)
goodput_record.mark("imported")  # TensorFlow and the library are imported (model/goodput.py: startup)

_SAVE, _STOP = 0, 1  # indices into the control flags


class Preempted(Exception):
    """SIGTERM was received; every worker saved a checkpoint at `step`."""

    def __init__(self, step: int):
        super().__init__(f"preempted: checkpoint saved at step {step}")
        self.step = step


class Interrupted(Preempted):
    """Ctrl-C (SIGINT) was received here; every worker saved a checkpoint at `step`."""

    def __init__(self, step: int):
        Exception.__init__(self, f"interrupted by Ctrl-C: checkpoint saved at step {step}")
        self.step = step


@dataclasses.dataclass
class TrainConfig:
    model: str
    model_dir: str
    hparams: Hyperparameters
    data_dir: str | None = None
    verify_data: bool = True
    save_checkpoints_steps: int | None = 1000
    save_checkpoints_secs: float | None = None
    save_summaries_steps: int = 100
    log_every_steps: int = 100
    steps_per_loop: int = 100
    keep_checkpoints: int = 5
    jit_compile: bool = False
    # The gradients' type on the wire: bfloat16 halves the bytes each step
    # sends (the sum is then rounded to 8 significant bits).
    all_reduce_dtype: str = "float32"
    # The forward and backward passes' type (model/networks.py: mixed precision).
    compute_dtype: str = "float32"
    # How the workers combine gradients (model/gradient_exchange.py).
    gradient_exchange: str = "auto"
    # Checkpoint files written by TensorFlow's thread while the steps go on
    # (model/checkpointing.py CheckpointWriter).
    async_checkpoints: bool = True

    def validate(self) -> None:
        self.hparams.validate()
        for name in ("save_summaries_steps", "log_every_steps", "steps_per_loop", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.save_checkpoints_steps is not None and self.save_checkpoints_steps < 1:
            raise ConfigError(f"save-checkpoints-steps must be >= 1, got {self.save_checkpoints_steps}")
        if self.save_checkpoints_secs is not None and self.save_checkpoints_secs <= 0:
            raise ConfigError(f"save-checkpoints-secs must be > 0, got {self.save_checkpoints_secs}")
        if self.all_reduce_dtype not in ALL_REDUCE_DTYPES:
            raise ConfigError(f"all-reduce-dtype must be one of {', '.join(ALL_REDUCE_DTYPES)}, "
                              f"got {self.all_reduce_dtype!r}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"compute-dtype must be one of {', '.join(COMPUTE_DTYPES)}, "
                              f"got {self.compute_dtype!r}")
        if self.gradient_exchange not in GRADIENT_EXCHANGES:
            raise ConfigError(f"gradient-exchange must be one of {', '.join(GRADIENT_EXCHANGES)}, "
                              f"got {self.gradient_exchange!r}")
        if not self.model_dir:
            raise ConfigError("a model directory is required (--model-dir or TF_LOGDIR)")
        LeaseSettings.from_env()  # a bad MNIST_LEASE_* fails before TensorFlow starts


@dataclasses.dataclass
class TrainResult:
    final_step: int
    start_step: int  # the step training resumed from (0 for a fresh run)
    weights_sha256: str  # fingerprint of the final weights: equal on every worker
    images_per_sec: float
    last_checkpoint: str


def weights_fingerprint(state: TrainState) -> str:
    digest = hashlib.sha256()
    for v in list(state.network.trainable_variables) + list(state.averages.shadows):
        digest.update(np.ascontiguousarray(v.numpy()).tobytes())
    return digest.hexdigest()


def _task_index(strategy) -> int:
    resolver = getattr(strategy, "cluster_resolver", None)
    return int(getattr(resolver, "task_id", 0) or 0)


def _local_replicas(strategy) -> int:
    try:
        return len(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: one replica, no cluster
        return 1


def _num_workers(strategy) -> int:
    return strategy.num_replicas_in_sync // _local_replicas(strategy)


def make_replica_step(network, hparams: Hyperparameters, global_batch: int, replicas: int,
                      plan: ExchangePlan, wire_dtype: str = "float32", jit_compile: bool = False):
    """`replica_step(images, labels)` -> (gradients summed over the replicas,
    this replica's loss, its correct count). Runs inside `strategy.run`."""
    wire_dtype = tf.as_dtype(wire_dtype)
    variables = list(network.trainable_variables)
    plain = [v for i, v in enumerate(variables) if i not in plan.factored]

    def forward_backward(images, labels):
        with tf.GradientTape() as tape, network.recording_dense_layers() as dense_layers:
            loss, logits = loss_fn(network, hparams, images, labels, global_batch, replicas)
        # A factored layer's weight gradient is asked at its output instead
        # (model/gradient_exchange.py); the tape then skips that matmul.
        taps = {id(tap.weights): tap for tap in dense_layers}
        factored = [taps[id(variables[i])] for i in plan.factored]
        grads = tape.gradient(loss, plain + [tap.outputs for tap in factored])
        factors = [(tap.inputs, d) for tap, d in zip(factored, grads[len(plain):])]
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, 1, output_type=tf.int32), labels),
                                        tf.float32))
        return list(grads[:len(plain)]), factors, loss, correct

    if jit_compile:  # XLA fuses the per-replica math; the collectives stay outside it
        forward_backward = tf.function(forward_backward, jit_compile=True)

    def replica_step(images, labels):
        grads, factors, loss, correct = forward_backward(images, labels)
        if replicas == 1:  # nothing to sum with
            return grads, loss, correct
        # One flat all-reduce (or one all-gather) for all the gradients: each
        # collective costs its own rounds of RPCs between workers (measured: 2
        # MLP workers went from 5,600 to 7,200 img/s). The metrics are summed
        # once per loop call instead (see train_loop), so they never ride in
        # reduced precision.
        summed = exchange(plan, variables, grads, factors, wire_dtype)
        for i in plan.factored:  # the L2 term's gradient, once for the whole group
            l2 = regularization_gradient(network, hparams, variables[i])
            if l2 is not None:
                summed[i] = summed[i] + l2
        return summed, loss, correct

    return replica_step


def _make_train_loop(strategy, state: TrainState, hparams: Hyperparameters, global_batch: int,
                     plan: ExchangePlan, jit_compile: bool = False, all_reduce_dtype: str = "float32"):
    replicas = strategy.num_replicas_in_sync
    replica_step = make_replica_step(state.network, hparams, global_batch, replicas, plan,
                                     all_reduce_dtype, jit_compile)

    def all_reduce_sum(values):
        # identity places the function argument on this replica's device;
        # all_reduce takes its destination from there.
        values = tf.identity(values)
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)

    def local(value):
        return strategy.experimental_local_results(value)[0]

    def local_sum(value):  # over this worker's replicas; no communication
        return tf.add_n(list(strategy.experimental_local_results(value)))

    local_replicas = _local_replicas(strategy)

    # autograph=False: nothing here branches on a tensor (every `if` and `for` in the step's
    # code is over Python values), so the loop is written as the tf.while_loop autograph made
    # of `for _ in tf.range(num_steps)`, and tracing skips converting the step's source
    # (measured: bench/restart.py, see the commit).
    @tf.function(autograph=False)
    def train_loop(iterator, num_steps, flags):
        # A flag raised on any worker counts: the sum is > 0 everywhere.
        agreed = local(strategy.run(all_reduce_sum, args=(flags,)))
        # A stop agreed here runs no step: the signal is acted on at the end of
        # the loop call that was running when it arrived.
        num_steps = tf.where(agreed[_STOP] > 0, tf.zeros_like(num_steps), num_steps)

        def one_step(i, loss_sum, correct_sum, lr):
            images, labels = next(iterator)
            lr = learning_rate(hparams, state.step, global_batch)
            grads, loss, correct = strategy.run(replica_step, args=(images, labels))
            apply_update(strategy, state, hparams, grads, lr)
            return i + 1, loss_sum + local_sum(loss), correct_sum + local_sum(correct), lr

        _, loss_sum, correct_sum, lr = tf.while_loop(
            lambda i, *_: i < num_steps, one_step,
            (tf.constant(0, num_steps.dtype), tf.constant(0.0), tf.constant(0.0), tf.constant(0.0)))
        if replicas > 1:  # every local replica passes in this worker's sums: count them once
            totals = local(strategy.run(all_reduce_sum, args=(tf.stack([loss_sum, correct_sum]),)))
            loss_sum, correct_sum = totals[0] / local_replicas, totals[1] / local_replicas
        return loss_sum, correct_sum, lr, agreed

    return train_loop


@dataclasses.dataclass
class _Run:
    """What setup found: the cluster's view, the claimed model dir's restored state."""

    strategy: tf.distribute.Strategy
    is_chief: bool
    task_index: int
    global_batch: int
    datasets: MnistSplits
    state: TrainState
    checkpoint: tf.train.Checkpoint
    latest: str | None  # the checkpoint restored; None for a fresh run
    start_step: int
    finished: bool  # the restored run already reached max_steps: nothing to train


@dataclasses.dataclass
class _LoopParts:
    """What the loop writes with and calls: built once, after setup, before the first step."""

    writer: checkpointing.CheckpointWriter
    summary_writer: tf.summary.SummaryWriter
    iterator: object  # the distributed dataset's iterator
    train_loop: object  # the compiled loop call (see _make_train_loop)

    def close(self) -> None:
        self.summary_writer.flush()
        self.writer.close()


def train(config: TrainConfig, *, strategy: tf.distribute.Strategy | None = None,
          datasets: MnistSplits | None = None, is_chief: bool | None = None,
          stop_event: threading.Event | None = None) -> TrainResult:
    """Train until `config.hparams.max_steps`, resuming from the newest checkpoint.

    `strategy` defaults to the one for this process's cluster (cluster.py);
    `datasets` to the MNIST in `config.data_dir`; `stop_event` to a flag set
    by SIGTERM or SIGINT (model/signals.py). Raises `Preempted` after saving
    if the stop flag is raised, `Interrupted` if it was this process's Ctrl-C.
    """
    config.validate()
    goodput_record.begin()  # this attempt's goodput record (written by the chief once it knows it is)
    # From here on SIGTERM and SIGINT only raise a flag that the workers agree
    # on at the next loop call: a worker must not vanish between two collectives.
    with StopSignals() as signals, contextlib.ExitStack() as on_exit:
        return _train(config, strategy, datasets, is_chief, stop_event or signals.event, on_exit,
                      lambda: signals.interrupted)


def _train(config: TrainConfig, strategy, datasets, is_chief, stop: threading.Event,
           on_exit: contextlib.ExitStack, interrupted=lambda: False) -> TrainResult:
    run = _set_up(config, strategy, datasets, is_chief, on_exit)
    if run.finished:
        return _already_complete(config, run)
    parts = _build_loop(config, run)
    if _num_workers(run.strategy) > 1:  # destroying a group's iterator waits for the peers (model/leaving.py)
        leaving.hold(run, parts)
    return _loop(config, run, parts, stop, interrupted)


def _set_up(config: TrainConfig, strategy, datasets, is_chief,
            on_exit: contextlib.ExitStack) -> _Run:
    """The strategy, the data, the model dir claimed for this run and the newest checkpoint restored."""
    hp = config.hparams
    if strategy is None:
        from model.cluster import create_strategy
        strategy = create_strategy()
        goodput_record.mark("cluster_formed")
    if is_chief is None:
        is_chief = bool(strategy.extended.should_checkpoint)
    workers = _num_workers(strategy)
    global_batch = hp.batch_size * workers
    if global_batch % strategy.num_replicas_in_sync:
        raise ConfigError(f"batch size {hp.batch_size} per worker does not split evenly over "
                          f"{strategy.num_replicas_in_sync // workers} local replicas")
    if datasets is None:
        datasets = load_mnist(config.data_dir, verify=config.verify_data)
    goodput_record.current().event("data_loaded")

    checkpointing.prepare_model_dir(config.model_dir, chief=is_chief)
    # Before anything else is written: the chief takes the directory's lease; a
    # different run is refused (model/run_identity.py, model/lease.py).
    identity = run_identity.RunIdentity.of(config, num_workers=workers, global_batch=global_batch,
                                           train_images=datasets.train.images,
                                           train_labels=datasets.train.labels)
    run_identity.claim(config.model_dir, identity, max_steps=hp.max_steps, is_chief=is_chief,
                       on_exit=on_exit)
    tf.random.set_seed(hp.seed)
    with strategy.scope():
        state = TrainState(config.model, hp, config.compute_dtype)
    checkpoint = state.checkpoint()
    latest = checkpointing.restore_newest(checkpoint, config.model_dir)
    if latest:
        log.info(log_lines.TRAIN_RESTORED_FORMAT, latest, int(state.step.numpy()))
    start_step = int(state.step.numpy())
    restored_at = time.time()
    finished = bool(latest) and run_identity.log_start(config.model_dir, identity, start_step,
                                                       hp.max_steps)
    # The record opens only now: a run already complete writes nothing (_already_complete).
    goodput_record.current().open(config.model_dir, is_chief and not finished, on_exit)
    goodput_record.current().event("restored", step=start_step, at=restored_at)
    return _Run(strategy, is_chief, _task_index(strategy), global_batch, datasets, state, checkpoint,
                latest, start_step, finished)


def _already_complete(config: TrainConfig, run: _Run) -> TrainResult:
    """Nothing to train: tell the evaluator so if nobody has yet, and write nothing else."""
    if run.is_chief and checkpointing.read_complete_marker(config.model_dir) is None:
        checkpointing.write_complete_marker(config.model_dir, run.start_step, run.latest or "")
    fingerprint = weights_fingerprint(run.state)
    log.info(log_lines.TRAIN_DONE_FORMAT, run.start_step, 0.0, fingerprint)
    return TrainResult(run.start_step, run.start_step, fingerprint, 0.0, run.latest or "")


def _build_loop(config: TrainConfig, run: _Run) -> _LoopParts:
    """The checkpoint and summary writers, the input iterator and the compiled loop call."""
    hp, strategy = config.hparams, run.strategy
    writer = checkpointing.CheckpointWriter(run.checkpoint, config.model_dir, is_chief=run.is_chief,
                                            task_index=run.task_index,
                                            max_to_keep=config.keep_checkpoints,
                                            async_saves=config.async_checkpoints,
                                            on_saved=_log_saved)
    summary_writer = (tf.summary.create_file_writer(
        layout.child(config.model_dir, layout.TRAIN_SUMMARY_DIR))
        if run.is_chief else tf.summary.create_noop_writer())
    if run.is_chief and run.start_step < hp.max_steps:
        checkpointing.clear_complete_marker(config.model_dir)
        with summary_writer.as_default(step=run.start_step):
            summaries.write_run_configuration(
                summaries.train_configuration(checkpointing.run_record(config.model_dir), config))

    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: train_dataset_fn(run.datasets.train, seed=hp.seed, start_step=run.start_step)(
            run.global_batch, ctx))
    plan = plan_exchange(run.state.network, config.gradient_exchange,
                         rows=run.global_batch // strategy.num_replicas_in_sync,
                         replicas=strategy.num_replicas_in_sync)
    log.info(log_lines.TRAIN_EXCHANGE_FORMAT, plan.describe(run.state.network), config.all_reduce_dtype)
    train_loop = _make_train_loop(strategy, run.state, hp, run.global_batch, plan,
                                  config.jit_compile, config.all_reduce_dtype)
    return _LoopParts(writer, summary_writer, iter(dataset), train_loop)


def _loop(config: TrainConfig, run: _Run, parts: _LoopParts, stop: threading.Event,
          interrupted) -> TrainResult:
    """Loop calls until max_steps; after each, what the schedule says is due at that step."""
    hp = config.hparams
    schedule = Schedule(hp.max_steps, config.save_summaries_steps, config.log_every_steps,
                        config.save_checkpoints_steps, config.steps_per_loop)
    save_timer = SaveTimer(config.save_checkpoints_secs if run.is_chief else None)
    meter = ThroughputMeter(run.global_batch)
    step, last_saved = run.start_step, (run.start_step if run.latest else None)
    log.info(log_lines.TRAIN_START_FORMAT, config.model, step, hp.max_steps, run.global_batch,
             run.strategy.num_replicas_in_sync, run.is_chief)

    while step < hp.max_steps:
        planned = schedule.steps_to_run(step)
        flags = tf.constant([float(save_timer.due()), float(stop.is_set())])
        meter.call_started()
        loss_sum, correct_sum, lr, agreed = parts.train_loop(
            parts.iterator, tf.constant(planned, tf.int64), flags)
        agreed = agreed.numpy()
        ran = 0 if agreed[_STOP] > 0 else planned  # a call that agrees to stop runs no step
        elapsed = meter.call_ended(ran)
        step += ran
        if meter.calls == 1:
            log.info(log_lines.TRAIN_COMPILED_FORMAT, ran, elapsed)
        boundary = schedule.after_call(step, ran, save_agreed=agreed[_SAVE] > 0,
                                       stop_agreed=agreed[_STOP] > 0, last_saved=last_saved)
        goodput_record.current().steps(step, ran, elapsed, report=boundary.log)
        if boundary.summarize or boundary.log:
            _report(boundary, parts.summary_writer, rate=meter.window_rate(),
                    loss=float(loss_sum) / ran,  # means over this loop call's steps
                    accuracy=float(correct_sum) / (ran * run.global_batch), lr=float(lr))
        if boundary.checkpoint:
            with goodput_record.current().span("checkpoint_save", step=step):  # the step's stall only
                parts.writer.save(step)  # the chief logs it once complete (_log_saved)
            last_saved = step
            save_timer.saved()
        if boundary.stop:
            parts.close()
            raise _stopped(step, interrupted())
    return _finish(config, run, parts, step, last_saved, meter)


def _log_saved(step: int, path: str) -> None:
    log.info(log_lines.TRAIN_SAVED_FORMAT, step, path)


def _report(boundary: Boundary, summary_writer, *, rate: float, loss: float, accuracy: float,
            lr: float) -> None:
    if boundary.summarize:
        with summary_writer.as_default(step=boundary.step):
            summaries.write_train_scalars(loss=loss, accuracy=accuracy, learning_rate=lr,
                                          images_per_sec=rate)
    if boundary.log:
        log.info(log_lines.TRAIN_PROGRESS_FORMAT, boundary.step, loss, accuracy, lr, rate)


def _stopped(step: int, interrupted: bool) -> Preempted:
    """The exception that ends a stopped run, its checkpoint at `step` already saved."""
    if interrupted:
        log.warning(log_lines.TRAIN_INTERRUPTED_FORMAT, step, step)
        return Interrupted(step)
    log.warning(log_lines.TRAIN_PREEMPTED_FORMAT, step)
    return Preempted(step)


def _finish(config: TrainConfig, run: _Run, parts: _LoopParts, step: int, last_saved: int | None,
            meter: ThroughputMeter) -> TrainResult:
    """Save the final state if the loop did not, mark the run complete, print the done line."""
    if last_saved != step:  # resumed a finished run: make sure the final state is saved
        with goodput_record.current().span("checkpoint_save", step=step):
            parts.writer.save(step)
    parts.writer.wait()  # the marker may only name a complete checkpoint
    final_path = layout.child(config.model_dir, layout.checkpoint_name(step))
    goodput_record.current().finish(step, parts.summary_writer)  # goodput.json before the marker ends the run
    if run.is_chief:
        checkpointing.write_complete_marker(config.model_dir, step, final_path)
    parts.close()
    fingerprint = weights_fingerprint(run.state)
    log.info(log_lines.TRAIN_DONE_FORMAT, step, meter.images_per_sec, fingerprint)
    return TrainResult(step, run.start_step, fingerprint, meter.images_per_sec, final_path)
