"""The tutorial's two MNIST networks as `tf.Module`s over plain `tf.Variable`s.

Nothing here knows about strategies, files or flags: create a network inside
`strategy.scope()` and its variables are mirrored; call it inside
`strategy.run` and it runs per replica.

Both follow the Caicloud TensorFlow tutorial (chapters 5 and 6): weights drawn
from a truncated normal with stddev 0.1, biases constant, and the fully
connected weights (not biases, not convolution kernels) L2-regularised.

`compute_dtype="bfloat16"` is mixed precision: the variables (and so the
gradients, the optimizer and the checkpoints) stay float32, each layer casts
them and its input to bfloat16, and the logits come back as float32 so the
softmax and the loss keep full precision. On CPUs with AVX512_BF16 or AMX and on
GPUs from Ampere on, the convolutions then run 1.6-1.8x as fast (bench/kernels.py).
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

import tensorflow as tf

from model.config import COMPUTE_DTYPES

INPUT_NODE = 784
OUTPUT_NODE = 10
IMAGE_SIZE = 28


def _weight(shape, name: str) -> tf.Variable:
    return tf.Variable(tf.random.truncated_normal(shape, stddev=0.1), name=name)


def _bias(size: int, value: float, name: str) -> tf.Variable:
    return tf.Variable(tf.constant(value, shape=[size]), name=name)


class DenseLayerTap(NamedTuple):
    """One fully connected layer's weights, input and output (before the
    activation) as one call of the network computed them."""

    weights: tf.Variable
    inputs: tf.Tensor
    outputs: tf.Tensor


class _TapList:
    """Not a list, so tf.Module's attribute tracking leaves it out of checkpoints."""

    def __init__(self):
        self.taps: list[DenseLayerTap] = []


class Network(tf.Module):
    """Interface shared by the networks: images in, logits out."""

    #: Variables whose L2 norm is added to the loss (the tutorial's
    #: `tf.add_to_collection('losses', regularizer(weights))`).
    regularized_variables: tuple[tf.Variable, ...] = ()
    @property
    def dense_weights(self) -> tuple[tf.Variable, ...]:
        """The fully connected layers' weights, [fan_in, fan_out] each, in the
        order a call computes them (see `recording_dense_layers`). A property,
        not an attribute: tf.Module would track it and reorder
        `trainable_variables`, which the moving averages pair by position."""
        return ()
    _recorder: _TapList | None = None

    def __init__(self, compute_dtype: str = "float32", name: str | None = None):
        super().__init__(name=name)
        if compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute dtype must be one of {', '.join(COMPUTE_DTYPES)}, "
                             f"got {compute_dtype!r}")
        self.compute_dtype = tf.as_dtype(compute_dtype)

    def _in(self, value) -> tf.Tensor:
        """`value` (a variable or the images) in the compute dtype."""
        return tf.cast(value, self.compute_dtype)

    def _logits(self, value) -> tf.Tensor:
        return tf.cast(value, tf.float32)

    def _dense(self, inputs, weights: tf.Variable, biases: tf.Variable) -> tf.Tensor:
        """inputs @ weights + biases, recorded while `recording_dense_layers` is open."""
        outputs = tf.matmul(inputs, self._in(weights)) + self._in(biases)
        if self._recorder is not None:
            self._recorder.taps.append(DenseLayerTap(weights, inputs, outputs))
        return outputs

    @contextlib.contextmanager
    def recording_dense_layers(self):
        """Yields the list of `DenseLayerTap`s the calls inside the block make.

        A training step uses them to ask the tape for the loss gradient at a
        layer's output instead of at its weights (model/gradient_exchange.py).
        """
        self._recorder = _TapList()
        try:
            yield self._recorder.taps
        finally:
            self._recorder = None

    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Logits [batch, 10] for float32 images [batch, 784] scaled to [0, 1]."""
        raise NotImplementedError


class MLP(Network):
    """784-500-10 with ReLU (tutorial chapter 5, `mnist_inference.py`)."""

    def __init__(self, hidden_units: int = 500, compute_dtype: str = "float32", name: str = "mlp"):
        super().__init__(compute_dtype, name=name)
        with self.name_scope:
            self.layer1_weights = _weight([INPUT_NODE, hidden_units], "layer1_weights")
            self.layer1_biases = _bias(hidden_units, 0.1, "layer1_biases")
            self.layer2_weights = _weight([hidden_units, OUTPUT_NODE], "layer2_weights")
            self.layer2_biases = _bias(OUTPUT_NODE, 0.1, "layer2_biases")
        self.regularized_variables = (self.layer1_weights, self.layer2_weights)

    @property
    def dense_weights(self):
        return (self.layer1_weights, self.layer2_weights)

    def __call__(self, images, training=False):
        hidden = tf.nn.relu(self._dense(self._in(images), self.layer1_weights, self.layer1_biases))
        return self._logits(self._dense(hidden, self.layer2_weights, self.layer2_biases))


class LeNet5(Network):
    """LeNet-5 as in tutorial chapter 6 (`LeNet5_infernece.py`).

    conv 5x5x32 SAME + ReLU, max-pool 2x2 SAME, conv 5x5x64 + ReLU, max-pool,
    fc 512 + ReLU (+ dropout 0.5 while training), fc 10.
    """

    def __init__(self, dropout_rate: float = 0.5, compute_dtype: str = "float32",
                 name: str = "lenet5"):
        super().__init__(compute_dtype, name=name)
        self.dropout_rate = dropout_rate
        with self.name_scope:
            self.conv1_weights = _weight([5, 5, 1, 32], "conv1_weights")
            self.conv1_biases = _bias(32, 0.0, "conv1_biases")
            self.conv2_weights = _weight([5, 5, 32, 64], "conv2_weights")
            self.conv2_biases = _bias(64, 0.0, "conv2_biases")
            flat = (IMAGE_SIZE // 4) * (IMAGE_SIZE // 4) * 64
            self.fc1_weights = _weight([flat, 512], "fc1_weights")
            self.fc1_biases = _bias(512, 0.1, "fc1_biases")
            self.fc2_weights = _weight([512, OUTPUT_NODE], "fc2_weights")
            self.fc2_biases = _bias(OUTPUT_NODE, 0.1, "fc2_biases")
        self.regularized_variables = (self.fc1_weights, self.fc2_weights)

    @property
    def dense_weights(self):
        return (self.fc1_weights, self.fc2_weights)

    def __call__(self, images, training=False):
        w = self._in
        x = tf.reshape(w(images), [-1, IMAGE_SIZE, IMAGE_SIZE, 1])
        x = tf.nn.relu(tf.nn.bias_add(
            tf.nn.conv2d(x, w(self.conv1_weights), strides=1, padding="SAME"), w(self.conv1_biases)))
        x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="SAME")
        x = tf.nn.relu(tf.nn.bias_add(
            tf.nn.conv2d(x, w(self.conv2_weights), strides=1, padding="SAME"), w(self.conv2_biases)))
        x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="SAME")
        x = tf.reshape(x, [-1, self.fc1_weights.shape[0]])
        x = tf.nn.relu(self._dense(x, self.fc1_weights, self.fc1_biases))
        if training and self.dropout_rate > 0:
            x = tf.nn.dropout(x, rate=self.dropout_rate)
        return self._logits(self._dense(x, self.fc2_weights, self.fc2_biases))


NETWORKS = {"mlp": MLP, "lenet5": LeNet5}


def build_network(name: str, compute_dtype: str = "float32") -> Network:
    """A freshly initialised network by name ("mlp" or "lenet5")."""
    try:
        network_class = NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(NETWORKS)}") from None
    return network_class(compute_dtype=compute_dtype)


def parameter_count(network: tf.Module) -> int:
    return sum(int(v.shape.num_elements()) for v in network.trainable_variables)
