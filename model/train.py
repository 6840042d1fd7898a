"""The custom training loop under MultiWorkerMirroredStrategy.

One call of the compiled `train_loop` runs up to `steps_per_loop` steps. At
its start the workers all-reduce (sum) a small vector of control flags, so
decisions taken on one worker's clock or signal (save now, stop now) are
agreed by all of them at the same step: a lone worker that saved or stopped
would hang the others in their next collective. A call that agrees to stop
runs no step, so every worker saves at the step where the previous call ended.
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

from model import checkpointing, layout, log_lines, run_identity
from model.config import ALL_REDUCE_DTYPES, COMPUTE_DTYPES, GRADIENT_EXCHANGES, Hyperparameters
from model.data import MnistSplits, load_mnist
from model.errors import ConfigError
from model.gradient_exchange import ExchangePlan, exchange, plan_exchange
from model.input_pipeline import train_dataset_fn
from model.lease import LeaseSettings
from model.signals import StopSignals
from model.train_state import (TrainState, apply_update, learning_rate, loss_fn,
                               regularization_gradient)

log = logging.getLogger(__name__)

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

    @tf.function
    def train_loop(iterator, num_steps, flags):
        # A flag raised on any worker counts: the sum is > 0 everywhere.
        agreed = local(strategy.run(all_reduce_sum, args=(flags,)))
        loss_sum = tf.constant(0.0)
        correct_sum = tf.constant(0.0)
        lr = tf.constant(0.0)
        # A stop agreed here runs no step: the signal is acted on at the end of
        # the loop call that was running when it arrived.
        num_steps = tf.where(agreed[_STOP] > 0, tf.zeros_like(num_steps), num_steps)
        for _ in tf.range(num_steps):
            images, labels = next(iterator)
            lr = learning_rate(hparams, state.step, global_batch)
            grads, loss, correct = strategy.run(replica_step, args=(images, labels))
            apply_update(strategy, state, hparams, grads, lr)
            loss_sum += local_sum(loss)
            correct_sum += local_sum(correct)
        if replicas > 1:  # every local replica passes in this worker's sums: count them once
            totals = local(strategy.run(all_reduce_sum, args=(tf.stack([loss_sum, correct_sum]),)))
            loss_sum, correct_sum = totals[0] / local_replicas, totals[1] / local_replicas
        return loss_sum, correct_sum, lr, agreed

    return train_loop


def _next_boundary(step: int, every: int | None) -> int | None:
    return None if every is None else (step // every + 1) * every


def _already_complete(config: TrainConfig, state: TrainState, step: int, latest: str | None,
                      is_chief: bool) -> TrainResult:
    """Nothing to train: tell the evaluator so if nobody has yet, and write nothing else."""
    if is_chief and checkpointing.read_complete_marker(config.model_dir) is None:
        checkpointing.write_complete_marker(config.model_dir, step, latest or "")
    fingerprint = weights_fingerprint(state)
    log.info(log_lines.TRAIN_DONE_FORMAT, step, 0.0, fingerprint)
    return TrainResult(step, step, fingerprint, 0.0, latest or "")


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
    # From here on SIGTERM and SIGINT only raise a flag that the workers agree
    # on at the next loop call: a worker must not vanish between two collectives.
    with StopSignals() as signals, contextlib.ExitStack() as on_exit:
        return _train(config, strategy, datasets, is_chief, stop_event or signals.event, on_exit,
                      lambda: signals.interrupted)


def _train(config: TrainConfig, strategy, datasets, is_chief, stop: threading.Event,
           on_exit: contextlib.ExitStack, interrupted=lambda: False) -> TrainResult:
    hp = config.hparams
    if strategy is None:
        from model.cluster import create_strategy
        strategy = create_strategy()
    if is_chief is None:
        is_chief = bool(strategy.extended.should_checkpoint)
    task_index = _task_index(strategy)
    workers = _num_workers(strategy)
    global_batch = hp.batch_size * workers
    if global_batch % strategy.num_replicas_in_sync:
        raise ConfigError(f"batch size {hp.batch_size} per worker does not split evenly over "
                          f"{strategy.num_replicas_in_sync // workers} local replicas")
    if datasets is None:
        datasets = load_mnist(config.data_dir, verify=config.verify_data)

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
        log.info("train | restored %s at step %d", latest, int(state.step.numpy()))
    start_step = int(state.step.numpy())
    if latest and run_identity.log_start(config.model_dir, identity, start_step, hp.max_steps):
        return _already_complete(config, state, start_step, latest, is_chief)
    writer = checkpointing.CheckpointWriter(checkpoint, config.model_dir, is_chief=is_chief,
                                            task_index=task_index,
                                            max_to_keep=config.keep_checkpoints)
    summary_writer = (tf.summary.create_file_writer(
        layout.child(config.model_dir, layout.TRAIN_SUMMARY_DIR))
        if is_chief else tf.summary.create_noop_writer())
    if is_chief and start_step < hp.max_steps:
        checkpointing.clear_complete_marker(config.model_dir)

    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: train_dataset_fn(datasets.train, seed=hp.seed, start_step=start_step)(
            global_batch, ctx))
    iterator = iter(dataset)
    plan = plan_exchange(state.network, config.gradient_exchange,
                         rows=global_batch // strategy.num_replicas_in_sync,
                         replicas=strategy.num_replicas_in_sync)
    log.info("exchange | %s | %s on the wire", plan.describe(state.network), config.all_reduce_dtype)
    train_loop = _make_train_loop(strategy, state, hp, global_batch, plan, config.jit_compile,
                                  config.all_reduce_dtype)

    step = start_step
    last_saved_step = start_step if latest else None
    last_save_time = time.monotonic()
    window_start, window_steps = time.monotonic(), 0
    total_images, total_time = 0, 0.0
    logged_compile = False
    log.info("train | start | model %s | step %d of %d | global batch %d over %d replica(s) | "
             "chief %s", config.model, step, hp.max_steps, global_batch,
             strategy.num_replicas_in_sync, is_chief)

    while step < hp.max_steps:
        boundaries = [hp.max_steps, _next_boundary(step, config.save_summaries_steps),
                      _next_boundary(step, config.log_every_steps),
                      _next_boundary(step, config.save_checkpoints_steps),
                      step + config.steps_per_loop]
        num_steps = min(b for b in boundaries if b is not None) - step
        save_due = (config.save_checkpoints_secs is not None and is_chief
                    and time.monotonic() - last_save_time >= config.save_checkpoints_secs)
        flags = tf.constant([float(save_due), float(stop.is_set())])
        t0 = time.monotonic()
        loss_sum, correct_sum, lr, agreed = train_loop(
            iterator, tf.constant(num_steps, tf.int64), flags)
        agreed = agreed.numpy()
        elapsed = time.monotonic() - t0
        if agreed[_STOP] > 0:
            num_steps = 0  # the loop call ran no step (see train_loop)
        step += num_steps
        if not logged_compile:  # the first call includes tracing: keep it out of img/s
            logged_compile = True
            log.info("train | compiled and ran %d step(s) in %.1f s", num_steps, elapsed)
        else:
            total_images += num_steps * global_batch
            total_time += elapsed
        window_steps += num_steps

        summarize = num_steps > 0 and (step % config.save_summaries_steps == 0
                                       or step == hp.max_steps)
        report = num_steps > 0 and (step % config.log_every_steps == 0 or step == hp.max_steps)
        if summarize or report:
            now = time.monotonic()
            rate = window_steps * global_batch / max(now - window_start, 1e-9)
            window_start, window_steps = now, 0
            loss = float(loss_sum) / num_steps  # mean over this loop call's steps
            accuracy = float(correct_sum) / (num_steps * global_batch)
        if summarize:
            with summary_writer.as_default(step=step):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("learning_rate", float(lr))
                tf.summary.scalar("batch_accuracy", accuracy)
                tf.summary.scalar("images_per_sec", rate)
        if report:
            log.info("train | step %d | loss %.4f | batch acc %.4f | lr %.5f | %.0f img/s",
                     step, loss, accuracy, float(lr), rate)

        save_now = (agreed[_SAVE] > 0 or agreed[_STOP] > 0 or step == hp.max_steps
                    or (config.save_checkpoints_steps is not None
                        and step % config.save_checkpoints_steps == 0))
        if save_now and step != last_saved_step:
            path = writer.save(step)
            last_saved_step, last_save_time = step, time.monotonic()
            if is_chief:
                log.info("train | step %d | saved %s", step, path)
        if agreed[_STOP] > 0 and step < hp.max_steps:
            summary_writer.flush()
            writer.close()
            if interrupted():
                log.warning("train | step %d | Ctrl-C: checkpoint saved; run the same command "
                            "again to resume from step %d", step, step)
                raise Interrupted(step)
            log.warning("train | step %d | SIGTERM: checkpoint saved, exiting for restart", step)
            raise Preempted(step)

    if last_saved_step != step:  # resumed a finished run: make sure the final state is saved
        writer.save(step)
    final_path = layout.child(config.model_dir, layout.checkpoint_name(step))
    if is_chief:
        checkpointing.write_complete_marker(config.model_dir, step, final_path)
    summary_writer.flush()
    writer.close()
    fingerprint = weights_fingerprint(state)
    rate = total_images / total_time if total_time else 0.0
    log.info(log_lines.TRAIN_DONE_FORMAT, step, rate, fingerprint)
    return TrainResult(step, start_step, fingerprint, rate, final_path)
