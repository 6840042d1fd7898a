"""Tests of model/networks.py: architecture, initialisation, regularisation, dropout."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from model.networks import LeNet5, MLP, build_network, parameter_count

# std of N(0, 0.1) truncated (and re-drawn) outside +-2 stddev, as tf.random.truncated_normal.
_PHI2 = math.exp(-2.0) / math.sqrt(2.0 * math.pi)  # standard normal pdf at 2
_MASS = math.erf(2.0 / math.sqrt(2.0))  # P(|z| < 2)
TRUNCATED_STD = 0.1 * math.sqrt(1.0 - 2.0 * 2.0 * _PHI2 / _MASS)  # ~0.0880

MLP_BIASES = {"layer1_biases": 0.1, "layer2_biases": 0.1}
LENET_BIASES = {"conv1_biases": 0.0, "conv2_biases": 0.0, "fc1_biases": 0.1, "fc2_biases": 0.1}
MLP_WEIGHTS = ["layer1_weights", "layer2_weights"]
LENET_WEIGHTS = ["conv1_weights", "conv2_weights", "fc1_weights", "fc2_weights"]


@pytest.fixture(scope="module")
def mlp() -> MLP:
    tf.random.set_seed(1)
    return build_network("mlp")


@pytest.fixture(scope="module")
def lenet() -> LeNet5:
    tf.random.set_seed(2)
    return build_network("lenet5")


def _images(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 784), dtype=np.float32)


def test_build_network_returns_the_named_class(mlp, lenet):
    assert type(mlp) is MLP
    assert type(lenet) is LeNet5


@pytest.mark.parametrize("name", ["MLP", "lenet", "cnn", ""])
def test_build_network_rejects_unknown_names(name):
    with pytest.raises(ValueError, match="unknown model"):
        build_network(name)


def test_parameter_counts(mlp, lenet):
    assert parameter_count(mlp) == 397_510
    assert parameter_count(lenet) == 1_663_370
    # Every variable is counted once although regularized_variables repeats some.
    assert len(mlp.trainable_variables) == 4
    assert len(lenet.trainable_variables) == 8


def test_variable_shapes(mlp, lenet):
    assert mlp.layer1_weights.shape == (784, 500)
    assert mlp.layer2_weights.shape == (500, 10)
    assert lenet.conv1_weights.shape == (5, 5, 1, 32)
    assert lenet.conv2_weights.shape == (5, 5, 32, 64)
    assert lenet.fc1_weights.shape == (7 * 7 * 64, 512)
    assert lenet.fc2_weights.shape == (512, 10)


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("training", [False, True])
def test_output_shape_and_dtype(mlp, lenet, batch, training):
    for network in (mlp, lenet):
        logits = network(tf.constant(_images(batch)), training=training)
        assert logits.shape == (batch, 10)
        assert logits.dtype == tf.float32


def test_regularized_variables_are_exactly_the_fc_weights(mlp, lenet):
    assert len(mlp.regularized_variables) == 2
    assert mlp.regularized_variables[0] is mlp.layer1_weights
    assert mlp.regularized_variables[1] is mlp.layer2_weights
    assert len(lenet.regularized_variables) == 2
    assert lenet.regularized_variables[0] is lenet.fc1_weights
    assert lenet.regularized_variables[1] is lenet.fc2_weights


@pytest.mark.parametrize("network_name,weights", [("mlp", MLP_WEIGHTS), ("lenet", LENET_WEIGHTS)])
def test_weights_are_truncated_normal_stddev_0_1(request, network_name, weights):
    network = request.getfixturevalue(network_name)
    for name in weights:
        w = getattr(network, name).numpy()
        assert np.abs(w).max() <= 0.2 + 1e-6, name
        n = w.size
        # Generous bounds for the small conv1 (800 values), tight for the big ones.
        tolerance = 5 * TRUNCATED_STD / math.sqrt(2 * n) + 1e-3
        assert abs(w.std() - TRUNCATED_STD) < tolerance, (name, w.std())
        assert abs(w.mean()) < 5 * TRUNCATED_STD / math.sqrt(n), (name, w.mean())
        assert np.unique(w).size > 0.9 * n, f"{name} is not random"  # float32 repeats a few


@pytest.mark.parametrize("network_name,biases", [("mlp", MLP_BIASES), ("lenet", LENET_BIASES)])
def test_biases_are_constant(request, network_name, biases):
    network = request.getfixturevalue(network_name)
    for name, value in biases.items():
        b = getattr(network, name).numpy()
        np.testing.assert_array_equal(b, np.full(b.shape, value, np.float32), err_msg=name)


def test_different_seeds_give_different_weights():
    tf.random.set_seed(5)
    a = build_network("mlp")
    tf.random.set_seed(5)
    b = build_network("mlp")
    tf.random.set_seed(6)
    c = build_network("mlp")
    np.testing.assert_array_equal(a.layer1_weights.numpy(), b.layer1_weights.numpy())
    assert not np.array_equal(a.layer1_weights.numpy(), c.layer1_weights.numpy())


def test_mlp_forward_matches_numpy(mlp):
    x = _images(5, seed=3)
    w1, b1, w2, b2 = (v.numpy().astype(np.float64) for v in
                      (mlp.layer1_weights, mlp.layer1_biases, mlp.layer2_weights, mlp.layer2_biases))
    expected = np.maximum(x @ w1 + b1, 0.0) @ w2 + b2
    np.testing.assert_allclose(mlp(tf.constant(x)).numpy(), expected, rtol=1e-4, atol=1e-4)
    # No dropout in the MLP: training makes no difference.
    np.testing.assert_array_equal(mlp(tf.constant(x), training=True).numpy(),
                                  mlp(tf.constant(x)).numpy())


def _conv_same(x, w):
    """NHWC x, HWIO w, stride 1, SAME padding (odd kernel)."""
    k = w.shape[0]
    pad = k // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(1, 2))  # B,H,W,C,k,k
    return np.einsum("bhwcij,ijco->bhwo", windows, w)


def _max_pool_2x2(x):
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def test_lenet5_eval_forward_matches_numpy(lenet):
    x = _images(2, seed=4)
    v = {name: getattr(lenet, name).numpy().astype(np.float64)
         for name in LENET_WEIGHTS + list(LENET_BIASES)}
    h = x.reshape(2, 28, 28, 1).astype(np.float64)
    h = _max_pool_2x2(np.maximum(_conv_same(h, v["conv1_weights"]) + v["conv1_biases"], 0))
    h = _max_pool_2x2(np.maximum(_conv_same(h, v["conv2_weights"]) + v["conv2_biases"], 0))
    h = h.reshape(2, 7 * 7 * 64)  # NHWC order, as tf.reshape
    h = np.maximum(h @ v["fc1_weights"] + v["fc1_biases"], 0)
    expected = h @ v["fc2_weights"] + v["fc2_biases"]
    np.testing.assert_allclose(lenet(tf.constant(x)).numpy(), expected, rtol=1e-3, atol=1e-4)


def test_lenet5_dropout_only_while_training(lenet):
    x = tf.constant(_images(16, seed=5))
    eval1, eval2 = lenet(x).numpy(), lenet(x, training=False).numpy()
    np.testing.assert_array_equal(eval1, eval2)
    train1, train2 = lenet(x, training=True).numpy(), lenet(x, training=True).numpy()
    assert not np.allclose(train1, train2), "dropout did not change between calls"
    assert not np.allclose(train1, eval1), "training=True gave the eval output"


def test_lenet5_without_dropout_is_deterministic_in_training():
    tf.random.set_seed(7)
    network = LeNet5(dropout_rate=0.0)
    x = tf.constant(_images(4, seed=6))
    np.testing.assert_array_equal(network(x, training=True).numpy(), network(x).numpy())


# --- mixed precision (compute_dtype="bfloat16") ---------------------------------------------

def _twin(network_name: str, source, compute_dtype: str):
    """A network of the same kind holding `source`'s weights, computing in `compute_dtype`."""
    twin = build_network(network_name, compute_dtype)
    for mine, theirs in zip(twin.trainable_variables, source.trainable_variables):
        mine.assign(theirs)
    return twin


@pytest.mark.parametrize("network_name", ["mlp", "lenet5"])
def test_bfloat16_compute_keeps_float32_variables_gradients_and_logits(request, network_name):
    reference = request.getfixturevalue("lenet" if network_name == "lenet5" else network_name)
    mixed = _twin(network_name, reference, "bfloat16")
    assert all(v.dtype == tf.float32 for v in mixed.trainable_variables)
    x = tf.constant(_images(32, seed=8))
    labels = tf.constant(np.arange(32) % 10, dtype=tf.int32)

    def loss_and_grads(network):
        with tf.GradientTape() as tape:
            logits = network(x)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        return logits, tape.gradient(loss, network.trainable_variables)

    want_logits, want_grads = loss_and_grads(reference)
    logits, grads = loss_and_grads(mixed)
    assert logits.dtype == tf.float32
    # bfloat16 keeps 8 significant bits: close to float32, but not equal (it did compute in bf16).
    scale = float(tf.reduce_max(tf.abs(want_logits)))
    err = float(tf.reduce_max(tf.abs(logits - want_logits)))
    assert 0 < err < 0.05 * scale, (err, scale)
    for g, w in zip(grads, want_grads):
        assert g.dtype == tf.float32
        cosine = float(tf.reduce_sum(g * w) / (tf.norm(g) * tf.norm(w)))
        assert cosine > 0.99, cosine


def test_float32_compute_is_unchanged_by_the_casts(lenet):
    twin = _twin("lenet5", lenet, "float32")
    x = tf.constant(_images(4, seed=9))
    np.testing.assert_array_equal(twin(x).numpy(), lenet(x).numpy())


def test_unknown_compute_dtype_is_refused_by_name():
    with pytest.raises(ValueError, match=r"compute dtype must be one of float32, bfloat16, got 'float16'"):
        build_network("mlp", "float16")
