"""Both gradient-exchange plans at 4 replicas, where the factors' all-gather and the
all-reduce of the other gradients are two collectives (at 2 they are one): the summed
gradients equal the gradient over the whole global batch, which is what the all-reduce
computes (tests/test_gradient_exchange.py runs the same check at 2 and 3 replicas)."""

from __future__ import annotations

import pytest

from tests import test_gradient_exchange


@pytest.mark.parametrize("case", [
    "lenet5:4:auto:float32",   # fc1 factored (4 x 6 x 3648 <= 3136 x 512), the other 7 all-reduced
    "mlp:4:factors:float32",   # both layers factored, the 2 biases all-reduced
])
def test_four_replicas_exchange_the_global_batch_gradient(case):
    test_gradient_exchange.test_exchanged_gradients_are_the_global_batch_gradient(case, 1e-5)
