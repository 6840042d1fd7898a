"""Everything a checkpoint holds, and the arithmetic of one update.

Create a `TrainState` inside `strategy.scope()`; `apply_update` runs in
cross-replica context with gradients that are already summed over replicas.
"""

from __future__ import annotations

import tensorflow as tf

from model.config import TRAIN_EXAMPLES, Hyperparameters
from model.networks import Network, build_network


class MovingAverages(tf.Module):
    """Shadow copies of a network's trainable variables (tf.train.ExponentialMovingAverage).

    `shadows[i]` averages `network.trainable_variables[i]`; tf.Module orders
    those by attribute name, so the pairing is stable across processes.
    """

    def __init__(self, network: Network):
        super().__init__(name="moving_averages")
        self.shadows = [tf.Variable(v, trainable=False, name=v.name.split(":")[0].replace("/", "_"))
                        for v in network.trainable_variables]

    def copy_into(self, network: Network) -> None:
        """Overwrite `network`'s weights with the averages (for evaluation and export)."""
        for variable, shadow in zip(network.trainable_variables, self.shadows):
            variable.assign(shadow)


class TrainState(tf.Module):
    """Network, moving averages, optimizer slots and global step: one checkpoint."""

    def __init__(self, model: str, hparams: Hyperparameters, compute_dtype: str = "float32"):
        super().__init__(name="train_state")
        # The compute dtype is not saved: the variables are float32 either way,
        # so a checkpoint restores under any compute dtype.
        self.network = build_network(model, compute_dtype)
        self.averages = MovingAverages(self.network)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        # Momentum accumulators; none for the tutorial's plain gradient descent.
        self.velocities = ([tf.Variable(tf.zeros_like(v), trainable=False) for v in
                            self.network.trainable_variables] if hparams.momentum else [])

    def checkpoint(self) -> tf.train.Checkpoint:
        items = dict(network=self.network, averages=self.averages, step=self.step)
        if self.velocities:
            items["optimizer"] = tf.train.Checkpoint(velocities=self.velocities)
        return tf.train.Checkpoint(**items)


def decay_steps(global_batch_size: int) -> float:
    """One epoch of the global batch, as the tutorial's `num_examples / BATCH_SIZE`."""
    return TRAIN_EXAMPLES / global_batch_size


def learning_rate(hparams: Hyperparameters, step, global_batch_size: int):
    """Staircase exponential decay: base * decay ** floor(step / steps_per_epoch)."""
    epochs = tf.floor(tf.cast(step, tf.float32) / decay_steps(global_batch_size))
    return hparams.learning_rate_base * tf.pow(hparams.learning_rate_decay, epochs)


def moving_average_decay(hparams: Hyperparameters, num_updates):
    """min(decay, (1 + n) / (10 + n)): tf.train.ExponentialMovingAverage with num_updates."""
    n = tf.cast(num_updates, tf.float32)
    return tf.minimum(hparams.moving_average_decay, (1.0 + n) / (10.0 + n))


def loss_fn(network: Network, hparams: Hyperparameters, images, labels,
            global_batch_size: int, num_replicas: int, training: bool = True):
    """This replica's share of the global loss, and its logits.

    Cross-entropy is divided by the global batch and the L2 term by the
    number of replicas, so summing the replicas' gradients gives the
    gradient of the tutorial's mean loss over the whole global batch.
    """
    logits = network(images, training=training)
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    l2 = tf.add_n([tf.nn.l2_loss(w) for w in network.regularized_variables])
    loss = (tf.reduce_sum(cross_entropy) / global_batch_size
            + hparams.regularization_rate * l2 / num_replicas)
    return loss, logits


def regularization_gradient(network: Network, hparams: Hyperparameters, variable):
    """The gradient of `loss_fn`'s L2 term at `variable`, summed over the
    replicas (None if it is not regularised): rate * w, as d(sum(w**2) / 2)/dw = w."""
    if not any(variable is w for w in network.regularized_variables):
        return None
    return hparams.regularization_rate * tf.convert_to_tensor(variable)


def apply_update(strategy: tf.distribute.Strategy, state: TrainState,
                 hparams: Hyperparameters, grads, lr) -> None:
    """SGD (with momentum if set), then moving averages, then step += 1.

    Runs in cross-replica context; `grads` are identical on every replica, so
    each worker updates its own copies without further communication.
    """
    variables = state.network.trainable_variables
    ema_decay = moving_average_decay(hparams, state.step + 1)
    extended = strategy.extended
    for i, (variable, grad) in enumerate(zip(variables, grads)):
        if state.velocities:
            velocity = state.velocities[i]
            extended.update(velocity, lambda v, g: v.assign(hparams.momentum * v + g), args=(grad,))
            extended.update(variable, lambda v, m: v.assign_sub(lr * m), args=(velocity,))
        else:
            extended.update(variable, lambda v, g: v.assign_sub(lr * g), args=(grad,))
        extended.update(state.averages.shadows[i],
                        lambda s, v: s.assign_sub((1.0 - ema_decay) * (s - v)), args=(variable,))
    extended.update(state.step, lambda s: s.assign_add(1))
