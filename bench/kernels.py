"""How close a LeNet-5 training step comes to this machine's arithmetic peak.

    python -m bench.kernels [--dtypes float32,bfloat16] [--repeats 30]

For each compute dtype: the rate of a 2048 x 2048 matmul (the practical peak
of the CPU's vector units through the same oneDNN/Eigen kernels TensorFlow
uses), the time of each LeNet-5 layer's forward and backward kernels at batch
100, and one whole forward + backward pass of `model.networks.LeNet5`. The
floating-point operations are counted from the layer shapes (a multiply-add
is 2), so `step_gflops_per_sec / matmul_gflops_per_sec` says how much faster
any framework could run the same arithmetic. All cores, no pinning. Prints
one `BENCH_RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

BATCH = 100


def lenet5_flops_per_image() -> dict[str, float]:
    """Multiply-adds x 2 of each kernel in one training step, per image.

    conv1's input gradient is not computed (the input is data), as
    tf.GradientTape skips it.
    """
    conv1 = 28 * 28 * 32 * (5 * 5 * 1) * 2
    conv2 = 14 * 14 * 64 * (5 * 5 * 32) * 2
    fc1 = 3136 * 512 * 2
    fc2 = 512 * 10 * 2
    return {"conv1 forward": conv1, "conv1 filter gradient": conv1,
            "conv2 forward": conv2, "conv2 input gradient": conv2, "conv2 filter gradient": conv2,
            "fc1 forward": fc1, "fc1 input gradient": fc1, "fc1 weight gradient": fc1,
            "fc2 (forward + both gradients)": 3 * fc2}


def _time_ms(fn, repeats: int) -> float:
    """Best-of-3 mean of `repeats` calls, after 3 warm-up calls (tracing, caches)."""
    for _ in range(3):
        fn()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(repeats):
            out = fn()
        _ = [t.numpy() for t in (out if isinstance(out, (list, tuple)) else [out])][:1]
        best = min(best, (time.perf_counter() - t0) / repeats * 1000)
    return best


def measure(dtype_name: str, repeats: int) -> dict:
    import tensorflow as tf

    from model.networks import LeNet5

    dtype = tf.as_dtype(dtype_name)

    def rand(*shape):
        return tf.cast(tf.random.uniform(shape), dtype)

    a = rand(2048, 2048)
    matmul = tf.function(lambda: tf.matmul(a, a))
    matmul_ms = _time_ms(matmul, max(5, repeats // 3))

    x1, w1, dy1 = rand(BATCH, 28, 28, 1), rand(5, 5, 1, 32), rand(BATCH, 28, 28, 32)
    x2, w2, dy2 = rand(BATCH, 14, 14, 32), rand(5, 5, 32, 64), rand(BATCH, 14, 14, 64)
    h, wf, gf = rand(BATCH, 3136), rand(3136, 512), rand(BATCH, 512)
    strides = [1, 1, 1, 1]
    kernels = {
        "conv1 forward": lambda: tf.nn.conv2d(x1, w1, 1, "SAME"),
        "conv1 filter gradient": lambda: tf.compat.v1.nn.conv2d_backprop_filter(
            x1, [5, 5, 1, 32], dy1, strides, "SAME"),
        "conv2 forward": lambda: tf.nn.conv2d(x2, w2, 1, "SAME"),
        "conv2 input gradient": lambda: tf.compat.v1.nn.conv2d_backprop_input(
            [BATCH, 14, 14, 32], w2, dy2, strides, "SAME"),
        "conv2 filter gradient": lambda: tf.compat.v1.nn.conv2d_backprop_filter(
            x2, [5, 5, 32, 64], dy2, strides, "SAME"),
        "fc1 forward": lambda: tf.matmul(h, wf),
        "fc1 input gradient": lambda: tf.matmul(gf, wf, transpose_b=True),
        "fc1 weight gradient": lambda: tf.matmul(h, gf, transpose_a=True),
    }
    flops = lenet5_flops_per_image()
    layers = {}
    for name, fn in kernels.items():
        ms = _time_ms(tf.function(fn, autograph=False), repeats)
        layers[name] = {"ms": ms, "gflops_per_sec": flops[name] * BATCH / ms / 1e6}

    tf.random.set_seed(0)
    network = LeNet5(compute_dtype=dtype_name)
    images = tf.random.uniform([BATCH, 784])
    labels = tf.random.uniform([BATCH], 0, 10, tf.int32)

    @tf.function
    def forward_backward():
        with tf.GradientTape() as tape:
            logits = network(images, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        return tape.gradient(loss, network.trainable_variables)

    step_ms = _time_ms(forward_backward, repeats)
    step_flops = sum(flops.values()) * BATCH
    matmul_rate = 2 * 2048 ** 3 / matmul_ms / 1e6
    step_rate = step_flops / step_ms / 1e6
    return {"dtype": dtype_name, "matmul_2048_ms": matmul_ms, "matmul_gflops_per_sec": matmul_rate,
            "layers": layers, "kernels_ms": sum(v["ms"] for v in layers.values()),
            "step_ms": step_ms, "step_gflop": step_flops / 1e9, "step_gflops_per_sec": step_rate,
            "step_fraction_of_matmul_rate": step_rate / matmul_rate,
            "step_images_per_sec": BATCH / step_ms * 1000}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    dtypes = [d for d in args.dtypes.split(",") if d]
    unknown = sorted(set(dtypes) - {"float32", "bfloat16"})
    if unknown:
        print(f"--dtypes: unknown {', '.join(unknown)}; expected float32 and/or bfloat16",
              file=sys.stderr)
        return 2
    results = {d: measure(d, args.repeats) for d in dtypes}
    for d, r in results.items():
        print(f"{d}: matmul {r['matmul_gflops_per_sec']:.0f} GFLOP/s; LeNet-5 fwd+bwd at batch "
              f"{BATCH}: {r['step_ms']:.1f} ms = {r['step_gflops_per_sec']:.0f} GFLOP/s "
              f"({r['step_fraction_of_matmul_rate']:.0%} of the matmul rate)", file=sys.stderr)
        for name, layer in r["layers"].items():
            print(f"   {name:24s} {layer['ms']:6.2f} ms {layer['gflops_per_sec']:6.0f} GFLOP/s",
                  file=sys.stderr)
    print("BENCH_RESULT " + json.dumps({"batch": BATCH, "results": results}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
