"""Tests of model/train_state.py against hand-computed numpy references."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from model.config import Hyperparameters
from model.train_state import (TrainState, apply_update, decay_steps, learning_rate, loss_fn,
                               moving_average_decay)

HP = Hyperparameters(batch_size=100, max_steps=30_000, learning_rate_base=0.8)
HP_MOMENTUM = dataclasses.replace(HP, momentum=0.9)


# --------------------------------------------------------------------------
# Schedules


@pytest.mark.parametrize("global_batch,step,epochs", [
    (100, 0, 0), (100, 549, 0), (100, 550, 1), (100, 1099, 1), (100, 1100, 2), (100, 30_000, 54),
    (200, 0, 0), (200, 274, 0), (200, 275, 1), (200, 549, 1), (200, 550, 2), (200, 30_000, 109),
])
def test_learning_rate_staircase(global_batch, step, epochs):
    expected = 0.8 * 0.99 ** epochs  # float32 pow: a few ulp off
    assert float(learning_rate(HP, step, global_batch)) == pytest.approx(expected, rel=1e-5)
    # The training loop passes the int64 step variable.
    step_var = tf.Variable(step, dtype=tf.int64)
    assert float(learning_rate(HP, step_var, global_batch)) == pytest.approx(expected, rel=1e-5)


def test_learning_rate_hand_values():
    assert float(learning_rate(HP, 549, 100)) == pytest.approx(0.8, rel=1e-7)
    assert float(learning_rate(HP, 550, 100)) == pytest.approx(0.792, rel=1e-6)
    assert float(learning_rate(HP, 1100, 100)) == pytest.approx(0.78408, rel=1e-6)
    assert float(learning_rate(HP, 30_000, 100)) == pytest.approx(0.464934, rel=1e-5)
    assert float(learning_rate(HP, 275, 200)) == pytest.approx(0.792, rel=1e-6)


def test_decay_steps_is_one_epoch_of_the_global_batch():
    assert decay_steps(100) == 550
    assert decay_steps(200) == 275


@pytest.mark.parametrize("n,expected", [(0, 0.1), (1, 2 / 11), (10, 0.55), (1000, 0.99)])
def test_moving_average_decay(n, expected):
    assert float(moving_average_decay(HP, n)) == pytest.approx(expected, rel=1e-6)
    assert float(moving_average_decay(HP, tf.constant(n, tf.int64))) == pytest.approx(expected, rel=1e-6)


def test_moving_average_decay_is_capped_by_the_hyperparameter():
    hp = dataclasses.replace(HP, moving_average_decay=0.5)
    assert float(moving_average_decay(hp, 1000)) == pytest.approx(0.5)
    assert float(moving_average_decay(hp, 1)) == pytest.approx(2 / 11, rel=1e-6)


# --------------------------------------------------------------------------
# Loss


def _np_mlp_logits(state: TrainState, x: np.ndarray) -> np.ndarray:
    n = state.network
    w1, b1, w2, b2 = (v.numpy().astype(np.float64) for v in
                      (n.layer1_weights, n.layer1_biases, n.layer2_weights, n.layer2_biases))
    return np.maximum(x @ w1 + b1, 0.0) @ w2 + b2


def _np_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_softmax[np.arange(len(labels)), labels]


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.random((6, 784), dtype=np.float32), np.array([0, 3, 9, 1, 1, 7], np.int32)


@pytest.mark.parametrize("rate", [1e-4, 0.05])
def test_loss_is_mean_cross_entropy_plus_l2(batch, rate):
    images, labels = batch
    hp = dataclasses.replace(HP, regularization_rate=rate)
    tf.random.set_seed(3)
    state = TrainState("mlp", hp)
    loss, logits = loss_fn(state.network, hp, tf.constant(images), tf.constant(labels),
                           global_batch_size=6, num_replicas=1)
    np_logits = _np_mlp_logits(state, images.astype(np.float64))
    l2 = sum((w.numpy().astype(np.float64) ** 2).sum() / 2 for w in
             (state.network.layer1_weights, state.network.layer2_weights))
    expected = _np_cross_entropy(np_logits, labels).mean() + rate * l2
    np.testing.assert_allclose(logits.numpy(), np_logits, rtol=1e-4, atol=1e-4)
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_loss_is_a_replicas_share_of_the_global_loss(batch):
    images, labels = batch
    hp = dataclasses.replace(HP, regularization_rate=0.05)
    tf.random.set_seed(4)
    state = TrainState("mlp", hp)
    full, _ = loss_fn(state.network, hp, images, labels, global_batch_size=6, num_replicas=1)
    halves = [loss_fn(state.network, hp, images[sl], labels[sl], global_batch_size=6,
                      num_replicas=2)[0] for sl in (slice(0, 3), slice(3, 6))]
    assert float(halves[0] + halves[1]) == pytest.approx(float(full), rel=1e-5)


# --------------------------------------------------------------------------
# One update on the default strategy


def _snapshot(variables) -> list[np.ndarray]:
    return [v.numpy().copy() for v in variables]


def _fixed_grads(state: TrainState, seed: int) -> list[tf.Tensor]:
    rng = np.random.default_rng(seed)
    return [tf.constant(rng.standard_normal(v.shape).astype(np.float32))
            for v in state.network.trainable_variables]


def _ema_decay(step_before: int) -> float:
    n = step_before + 1  # the code uses num_updates = step + 1
    return min(0.99, (1 + n) / (10 + n))


@pytest.fixture
def strategy():
    return tf.distribute.get_strategy()


def _new_state(strategy, hp, seed=0) -> TrainState:
    tf.random.set_seed(seed)
    with strategy.scope():
        return TrainState("mlp", hp)


def test_state_starts_with_shadows_equal_to_weights_and_step_0(strategy):
    state = _new_state(strategy, HP)
    assert int(state.step.numpy()) == 0
    assert state.step.dtype == tf.int64
    assert len(state.averages.shadows) == len(state.network.trainable_variables) == 4
    for shadow, variable in zip(state.averages.shadows, state.network.trainable_variables, strict=True):
        assert shadow.shape == variable.shape
        assert not shadow.trainable
        np.testing.assert_array_equal(shadow.numpy(), variable.numpy())
    assert state.velocities == []
    assert len(_new_state(strategy, HP_MOMENTUM).velocities) == 4


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
def test_apply_update_sgd_and_moving_averages(strategy, compiled):
    state = _new_state(strategy, HP)
    lr = 0.5
    update = tf.function(apply_update) if compiled else apply_update
    weights = _snapshot(state.network.trainable_variables)
    shadows = _snapshot(state.averages.shadows)
    # Two updates: from step 0 (decay (1+1)/(10+1)) and from step 998 (decay 0.99).
    for seed, step_before in [(1, 0), (2, 998)]:
        state.step.assign(step_before)
        grads = _fixed_grads(state, seed)
        update(strategy, state, HP, grads, tf.constant(lr))
        decay = _ema_decay(step_before)
        weights = [w - lr * g.numpy() for w, g in zip(weights, grads, strict=True)]
        shadows = [s - (1 - decay) * (s - w) for s, w in zip(shadows, weights, strict=True)]
        for got, want in zip(_snapshot(state.network.trainable_variables), weights, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        for got, want in zip(_snapshot(state.averages.shadows), shadows, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert int(state.step.numpy()) == step_before + 1


def test_apply_update_first_step_uses_num_updates_1(strategy):
    # The shadow moves by (1 - 2/11) of the gap, not (1 - 1/10) (num_updates = 0).
    state = _new_state(strategy, HP)
    grads = [tf.ones_like(v) for v in state.network.trainable_variables]
    before = state.network.layer2_biases.numpy().copy()
    apply_update(strategy, state, HP, grads, tf.constant(1.0))
    after = state.network.layer2_biases.numpy()
    np.testing.assert_allclose(after, before - 1.0, rtol=1e-6)
    shadow = state.averages.shadows[[v.name for v in state.network.trainable_variables]
                                    .index(state.network.layer2_biases.name)].numpy()
    np.testing.assert_allclose(shadow, before - (1 - 2 / 11), rtol=1e-5)


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
def test_apply_update_momentum(strategy, compiled):
    state = _new_state(strategy, HP_MOMENTUM)
    m, lr = 0.9, 0.3
    update = tf.function(apply_update) if compiled else apply_update
    weights = _snapshot(state.network.trainable_variables)
    shadows = _snapshot(state.averages.shadows)
    velocities = [np.zeros_like(w) for w in weights]
    for step_before, seed in enumerate([11, 12, 13]):
        grads = _fixed_grads(state, seed)
        update(strategy, state, HP_MOMENTUM, grads, tf.constant(lr))
        velocities = [m * v + g.numpy() for v, g in zip(velocities, grads, strict=True)]
        weights = [w - lr * v for w, v in zip(weights, velocities, strict=True)]
        decay = _ema_decay(step_before)
        shadows = [s - (1 - decay) * (s - w) for s, w in zip(shadows, weights, strict=True)]
        for got, want in zip(_snapshot(state.velocities), velocities, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        for got, want in zip(_snapshot(state.network.trainable_variables), weights, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        for got, want in zip(_snapshot(state.averages.shadows), shadows, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert int(state.step.numpy()) == step_before + 1


def test_shadows_pair_with_the_variables_they_average(strategy):
    state = _new_state(strategy, HP)
    for shadow, variable in zip(state.averages.shadows, state.network.trainable_variables, strict=True):
        assert shadow.name.split(":")[0] == variable.name.split(":")[0].replace("/", "_")


def test_copy_into_overwrites_the_weights_with_the_averages(strategy):
    state = _new_state(strategy, HP)
    apply_update(strategy, state, HP, _fixed_grads(state, 5), tf.constant(0.1))
    other = _new_state(strategy, HP, seed=9)
    state.averages.copy_into(other.network)
    for shadow, variable in zip(state.averages.shadows, other.network.trainable_variables, strict=True):
        np.testing.assert_array_equal(variable.numpy(), shadow.numpy())


# --------------------------------------------------------------------------
# Checkpoint


def _all_values(state: TrainState) -> list[np.ndarray]:
    return _snapshot(list(state.network.trainable_variables) + list(state.averages.shadows)
                     + list(state.velocities) + [state.step])


@pytest.mark.parametrize("hp", [HP, HP_MOMENTUM], ids=["sgd", "momentum"])
def test_checkpoint_round_trip(strategy, tmp_path, hp):
    state = _new_state(strategy, hp, seed=1)
    for seed in (1, 2):
        apply_update(strategy, state, hp, _fixed_grads(state, seed), tf.constant(0.2))
    saved = _all_values(state)
    path = state.checkpoint().save(str(tmp_path / "ckpt"))

    restored = _new_state(strategy, hp, seed=2)
    assert not np.array_equal(_all_values(restored)[0], saved[0])
    restored.checkpoint().restore(path).assert_consumed()
    values = _all_values(restored)
    assert len(values) == len(saved)
    for got, want in zip(values, saved, strict=True):
        np.testing.assert_array_equal(got, want)
    assert int(restored.step.numpy()) == 2


def test_checkpoint_holds_optimizer_slots_only_with_momentum(strategy, tmp_path):
    names = {}
    for label, hp in (("sgd", HP), ("momentum", HP_MOMENTUM)):
        state = _new_state(strategy, hp)
        path = state.checkpoint().save(str(tmp_path / label / "ckpt"))
        names[label] = [name for name, _ in tf.train.list_variables(path)]
    assert not any(n.startswith("optimizer/") for n in names["sgd"])
    slots = [n for n in names["momentum"] if n.startswith("optimizer/")]
    assert len(slots) == 4, names["momentum"]
    assert set(names["momentum"]) - set(slots) == set(names["sgd"])
    assert any(n.startswith("step") for n in names["sgd"])
    assert sum(n.startswith("averages/") for n in names["sgd"]) == 4
    assert sum(n.startswith("network/") for n in names["sgd"]) >= 4
