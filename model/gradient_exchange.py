"""How the workers combine their gradients each step (`--gradient-exchange`).

`all-reduce`: every gradient goes into one flat ring all-reduce (a sum).

`factors` (sufficient factors: Xie et al., "Distributed Machine Learning via
Sufficient Factor Broadcasting", 2015; Zhang et al., "Poseidon", USENIX ATC
2017): a fully connected layer's weight gradient over a batch is x^T d, where
x [rows, fan_in] is the layer's input and d [rows, fan_out] the loss gradient
at its output. So the workers all-gather every replica's x and d, and each
multiplies the gathered rows itself: the same sum over the global batch, from
rows * (fan_in + fan_out) numbers per replica instead of fan_in * fan_out.
For LeNet-5's fc1 (3136 x 512, 96.5% of the parameters) at 100 images per worker
that is 365 thousand numbers instead of 1.6 million. Every worker multiplies
the same gathered rows with the same kernel, so the weights stay identical
on every worker, as with the all-reduce (tests/test_multiworker.py checks it);
the price is that multiplication over the global batch on every worker.

`auto` (the default): factors for each fully connected layer where they move
at most half the bytes of the ring all-reduce, which is when
    replicas * rows * (fan_in + fan_out) <= fan_in * fan_out
(per worker a ring all-reduce receives 2 (n-1)/n of the gradient, a gather
(n-1) times one replica's factors). Small batches per worker and few workers
qualify; large batches do not, and there the all-reduce is used.

With two replicas a ring all-reduce and an all-gather move the same bytes, so
the other gradients ride in the factors' all-gather and are summed locally:
one collective per step instead of two.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from model.config import GRADIENT_EXCHANGES
from model.exchange_rule import factors_worth_it
from model.networks import Network


@dataclasses.dataclass(frozen=True)
class ExchangePlan:
    """Which of `network.trainable_variables` are exchanged as factors (by index)."""

    factored: tuple[int, ...]
    replicas: int

    @property
    def one_collective(self) -> bool:
        return bool(self.factored) and self.replicas == 2

    def describe(self, network: Network) -> str:
        variables = network.trainable_variables
        if self.replicas == 1:
            return "1 replica: nothing to exchange"
        if not self.factored:
            return f"all-reduce of all {len(variables)} gradients"
        names = ", ".join(variables[i].name.split(":")[0] for i in self.factored)
        rest = len(variables) - len(self.factored)
        how = ("in the same all-gather, summed locally" if self.one_collective
               else "all-reduced")
        return f"factors all-gathered for {names}; the other {rest} gradients {how}"


def plan_exchange(network: Network, mode: str, rows: int, replicas: int) -> ExchangePlan:
    """The plan for `rows` examples per replica; the same on every worker."""
    if mode not in GRADIENT_EXCHANGES:
        raise ValueError(f"gradient exchange must be one of {', '.join(GRADIENT_EXCHANGES)}, "
                         f"got {mode!r}")
    factored = ()
    if replicas > 1 and mode != "all-reduce":
        index = {id(v): i for i, v in enumerate(network.trainable_variables)}
        factored = tuple(sorted(
            index[id(w)] for w in network.dense_weights
            if mode == "factors" or factors_worth_it(*w.shape.as_list(), rows, replicas)))
    return ExchangePlan(factored=factored, replicas=replicas)


def _flat(tensors, dtype) -> tf.Tensor:
    if not tensors:
        return tf.zeros([0], dtype)
    return tf.concat([tf.reshape(tf.cast(t, dtype), [-1]) for t in tensors], axis=0)


def _all_gather(context, tensor: tf.Tensor) -> tf.Tensor:
    """All replicas' `tensor`s stacked along axis 0."""
    if tensor.dtype == tf.bfloat16:
        # CollectiveGatherV2 has no bfloat16 kernel. A gather does no
        # arithmetic, so the same 16 bits travel labelled float16.
        gathered = context.all_gather(tf.bitcast(tensor, tf.float16), axis=0)
        return tf.bitcast(gathered, tf.bfloat16)
    return context.all_gather(tensor, axis=0)


def exchange(plan: ExchangePlan, variables, grads, factors, wire_dtype: tf.DType) -> list[tf.Tensor]:
    """Sums over all replicas, one float32 tensor per variable. In replica context.

    `grads`: this replica's gradients of the variables not in `plan.factored`,
    in order; `factors`: its (inputs, output gradient) pair for each one in
    `plan.factored`, in order. A factored weight's result holds the gradient of
    the data term only: the caller adds whatever the loss adds to the weights
    directly (the L2 term), which does not pass through the layer's output.
    `wire_dtype`: the type everything travels in (sums are float32 after).
    """
    context = tf.distribute.get_replica_context()
    plain = [i for i in range(len(variables)) if i not in plan.factored]
    results: dict[int, tf.Tensor] = {}
    sums = None
    if factors:
        # One [rows, sum(fan_in + fan_out)] matrix of every factored layer's x and d.
        rows_of = tf.concat([tf.cast(tf.concat([x, d], axis=1), wire_dtype)
                             for x, d in factors], axis=1)
        width = rows_of.shape[1]
        if plan.one_collective:
            mine = tf.concat([tf.reshape(rows_of, [-1]), _flat(grads, wire_dtype)], axis=0)
            gathered = tf.reshape(_all_gather(context, mine), [plan.replicas, -1])
            split = tf.size(rows_of)
            sums = tf.reduce_sum(tf.cast(gathered[:, split:], tf.float32), axis=0)
            all_rows = tf.reshape(gathered[:, :split], [-1, width])
        else:
            all_rows = _all_gather(context, rows_of)
        all_rows = tf.cast(all_rows, tf.float32)
        start = 0
        for i, (x, d) in zip(plan.factored, factors):
            fan_in, fan_out = x.shape[1], d.shape[1]
            results[i] = tf.matmul(all_rows[:, start:start + fan_in],
                                   all_rows[:, start + fan_in:start + fan_in + fan_out],
                                   transpose_a=True)
            start += fan_in + fan_out
    if plain:
        if sums is None:
            sums = tf.cast(context.all_reduce(tf.distribute.ReduceOp.SUM, _flat(grads, wire_dtype)),
                           tf.float32)
        parts = tf.split(sums, [variables[i].shape.num_elements() for i in plain])
        results.update({i: tf.reshape(p, variables[i].shape) for i, p in zip(plain, parts)})
    return [results[i] for i in range(len(variables))]
