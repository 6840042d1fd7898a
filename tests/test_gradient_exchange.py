"""Tests of model/gradient_exchange.py: when factors are chosen, and that the
exchanged gradients are the gradient of the loss over the whole global batch."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from model.gradient_exchange import ExchangePlan, factors_worth_it, plan_exchange
from model.networks import LeNet5, MLP
from scripts.paths import REPO_ROOT


@pytest.fixture(scope="module")
def lenet() -> LeNet5:
    return LeNet5()


@pytest.fixture(scope="module")
def mlp() -> MLP:
    return MLP()


@pytest.mark.parametrize("fan_in, fan_out, rows, replicas, expected", [
    # LeNet-5 fc1: 2 * 100 * 3648 = 729,600 <= 1,605,632 numbers, 2 * 200 * 3648 too.
    (3136, 512, 100, 2, True), (3136, 512, 200, 2, True), (3136, 512, 400, 2, False),
    (3136, 512, 100, 4, True), (3136, 512, 100, 8, False),
    (512, 10, 100, 2, False),  # fc2: 104,400 numbers of factors against a 5,120 gradient
    (784, 500, 100, 2, True), (784, 500, 1000, 2, False),  # the MLP's layer 1
    (784, 500, 152, 2, True), (784, 500, 153, 2, False),  # the boundary: 392,000 numbers
])
def test_factors_are_worth_it_when_they_halve_the_bytes(fan_in, fan_out, rows, replicas, expected):
    assert factors_worth_it(fan_in, fan_out, rows, replicas) is expected


def _names(network, plan: ExchangePlan) -> list[str]:
    return [network.trainable_variables[i].name.split(":")[0] for i in plan.factored]


def test_auto_factors_only_the_big_layer_at_small_batches(lenet, mlp):
    assert _names(lenet, plan_exchange(lenet, "auto", 100, 2)) == ["lenet5/fc1_weights"]
    assert _names(lenet, plan_exchange(lenet, "auto", 400, 2)) == []
    assert _names(mlp, plan_exchange(mlp, "auto", 100, 2)) == ["mlp/layer1_weights"]
    assert _names(mlp, plan_exchange(mlp, "auto", 1000, 2)) == []


def test_explicit_modes_and_one_replica(lenet):
    assert _names(lenet, plan_exchange(lenet, "factors", 400, 2)) == [
        "lenet5/fc1_weights", "lenet5/fc2_weights"]
    assert plan_exchange(lenet, "all-reduce", 100, 2).factored == ()
    single = plan_exchange(lenet, "factors", 100, 1)
    assert single.factored == () and single.describe(lenet) == "1 replica: nothing to exchange"


def test_two_replicas_need_one_collective_more_need_two(lenet):
    two, three = plan_exchange(lenet, "auto", 100, 2), plan_exchange(lenet, "auto", 100, 3)
    assert two.one_collective and not three.one_collective
    assert not plan_exchange(lenet, "all-reduce", 100, 2).one_collective
    assert two.describe(lenet) == ("factors all-gathered for lenet5/fc1_weights; the other 7 "
                                   "gradients in the same all-gather, summed locally")
    assert three.describe(lenet).endswith("the other 7 gradients all-reduced")
    assert plan_exchange(lenet, "all-reduce", 100, 2).describe(lenet) == (
        "all-reduce of all 8 gradients")


def test_an_unknown_mode_is_an_error(lenet):
    with pytest.raises(ValueError, match="gradient exchange must be one of auto, all-reduce, "
                       "factors, got 'ring'"):
        plan_exchange(lenet, "ring", 100, 2)


def test_the_plan_reads_weights_in_a_stable_order(lenet, mlp):
    """dense_weights is a property: as an attribute tf.Module would track it and
    reorder trainable_variables, which the moving averages pair by position."""
    assert [v.name for v in lenet.trainable_variables] == [
        f"lenet5/{n}:0" for n in ("conv1_biases", "conv1_weights", "conv2_biases", "conv2_weights",
                                  "fc1_biases", "fc1_weights", "fc2_biases", "fc2_weights")]
    assert [v.name for v in mlp.dense_weights] == ["mlp/layer1_weights:0", "mlp/layer2_weights:0"]


def test_recording_dense_layers_sees_each_layer_once_and_leaves_no_trace(lenet):
    import numpy as np

    images = np.zeros((3, 784), np.float32)
    with lenet.recording_dense_layers() as taps:
        lenet(images)
    assert [t.weights for t in taps] == list(lenet.dense_weights)
    assert [tuple(t.inputs.shape) for t in taps] == [(3, 3136), (3, 512)]
    assert [tuple(t.outputs.shape) for t in taps] == [(3, 512), (3, 10)]
    with lenet.recording_dense_layers() as taps2:
        pass
    lenet(images)
    assert taps2 == [] and lenet._recorder is None


@pytest.mark.parametrize("case, tolerance", [
    ("lenet5:2:factors:float32", 1e-5),    # both fc layers factored, one all-gather
    ("lenet5:3:factors:float32", 1e-5),    # factors gathered, the rest all-reduced
    ("lenet5:2:all-reduce:float32", 1e-5),
    ("mlp:2:auto:float32", 1e-5),
    ("mlp:3:factors:bfloat16", 2e-2),      # 8 significant bits on the wire
    ("mlp:2:factors:bfloat16", 2e-2),
    ("lenet5:2:auto:float32:bfloat16", 1e-2),  # bfloat16 layers, float32 factors
])
def test_exchanged_gradients_are_the_global_batch_gradient(case, tolerance):
    """MirroredStrategy over logical CPUs runs the same collectives (all-reduce,
    all-gather) in one process; the multi-process version is in
    tests/test_multiworker.py (identical weights on every worker)."""
    run = subprocess.run([sys.executable, "-m", "tests.gradient_exchange_check", *case.split(":")],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    model, replicas, mode = case.split(":")[:3]
    expected_factored = {"factors": {"lenet5": 2, "mlp": 2}, "auto": {"lenet5": 1, "mlp": 1},
                         "all-reduce": {"lenet5": 0, "mlp": 0}}[mode][model]
    assert len(result["factored"]) == expected_factored, result
    assert result["max_relative_error"] < tolerance, result
    assert result["replicas_identical"], result
