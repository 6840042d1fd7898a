"""Run by tests/test_gradient_exchange.py in its own process: the replica step's
summed gradients, on a MirroredStrategy over N logical CPUs, against the
gradient of the same loss over the whole global batch on one device (with
bfloat16 layers: against the all-reduce's gradients, as bfloat16 rounds
differently from float32 anyway).

A separate process because logical devices must be configured before
TensorFlow starts, which the rest of the test session has long done; one
case per process, because two MirroredStrategy objects in one process reuse
collective instance keys. Prints one JSON object.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tensorflow as tf

from model.config import Hyperparameters
from model.gradient_exchange import plan_exchange
from model.networks import LeNet5, MLP
from model.train import make_replica_step
from model.train_state import loss_fn

ROWS = 6  # per replica


def network(model: str, compute: str = "float32"):
    # No dropout: the reference must see the same function as the replicas.
    if model == "lenet5":
        return LeNet5(dropout_rate=0.0, compute_dtype=compute)
    return MLP(compute_dtype=compute)


def run_case(model: str, replicas: int, mode: str, wire: str, compute: str = "float32") -> dict:
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(replicas)])
    # A large L2 rate, so a missing or doubled L2 term would stand out.
    hparams = Hyperparameters(batch_size=ROWS, max_steps=1, learning_rate_base=0.1,
                              regularization_rate=0.05)
    global_batch = ROWS * replicas
    rng = np.random.default_rng(7)
    images = rng.random((global_batch, 784), dtype=np.float32)
    labels = rng.integers(0, 10, global_batch).astype(np.int32)

    tf.random.set_seed(3)
    with strategy.scope():
        mirrored = network(model, compute)

    def shard(ctx):
        i = ctx.replica_id_in_sync_group
        return images[i * ROWS:(i + 1) * ROWS], labels[i * ROWS:(i + 1) * ROWS]

    inputs = strategy.experimental_distribute_values_from_function(shard)

    def summed_gradients(plan):
        step = make_replica_step(mirrored, hparams, global_batch, replicas, plan, wire)
        grads, _, _ = tf.function(lambda x: strategy.run(step, args=x))(inputs)
        return [[g.numpy() for g in strategy.experimental_local_results(grad)] for grad in grads]

    plan = plan_exchange(mirrored, mode, ROWS, replicas)
    per_replica = summed_gradients(plan)

    if compute == "float32":  # the gradient of the loss over the global batch, on one device
        reference_net = network(model)
        for ref, var in zip(reference_net.trainable_variables, mirrored.trainable_variables):
            ref.assign(var.values[0])
        with tf.GradientTape() as tape:
            loss, _ = loss_fn(reference_net, hparams, images, labels, global_batch, 1)
        reference = [g.numpy() for g in tape.gradient(loss, reference_net.trainable_variables)]
    else:  # bfloat16 layers round differently than float32 ones: compare with the all-reduce
        reference = [values[0] for values in
                     summed_gradients(plan_exchange(mirrored, "all-reduce", ROWS, replicas))]

    errors, identical = [], True
    for values, ref in zip(per_replica, reference):
        errors.append(float(np.max(np.abs(values[0] - ref)) / (np.max(np.abs(ref)) + 1e-30)))
        identical &= all(np.array_equal(values[0], v) for v in values[1:])
    names = [v.name.split(":")[0] for v in mirrored.trainable_variables]
    return {"model": model, "replicas": replicas, "mode": mode, "wire": wire, "compute": compute,
            "factored": [names[i] for i in plan.factored], "one_collective": plan.one_collective,
            "max_relative_error": max(errors), "worst": names[int(np.argmax(errors))],
            "replicas_identical": bool(identical)}


def main(model: str, replicas: str, mode: str, wire: str, compute: str = "float32") -> None:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * int(replicas))
    print(json.dumps(run_case(model, int(replicas), mode, wire, compute)), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
