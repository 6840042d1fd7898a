"""The baseline: the same network trained by a plain Keras 3 `model.fit`.

    python -m bench.keras_baseline --model lenet5 --warmup-steps 300 --steps 500

Same layers, initialisers, L2 on the dense kernels, SGD learning rate and
momentum as the `default` preset, the same 55,000 training images from
`model.data.load_mnist` as an in-memory shuffled `tf.data` pipeline, batch
100. One `fit` call runs warmup + measured steps; a callback timestamps the
batch ends, and the rate is taken over the measured steps only (the first
`--warmup-steps` include tracing and are discarded). `--compute-dtype
bfloat16` sets Keras's `mixed_bfloat16` policy, the counterpart of ours
(float32 variables, bfloat16 layers). Prints one JSON line starting with
`BENCH_RESULT `.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from model.config import COMPUTE_DTYPES, NETWORK_NAMES
from scripts.paths import MNIST_DIR


def build(model_name: str, lr: float, momentum: float, l2: float):
    import keras
    from keras import layers

    def kernel_init():
        return keras.initializers.TruncatedNormal(stddev=0.1)

    def dense(units, **kw):
        # tf.nn.l2_loss is sum(w**2) / 2 and the tutorial multiplies it by 1e-4;
        # keras.regularizers.L2(r) is r * sum(w**2): r = 1e-4 / 2 is the same term.
        return layers.Dense(units, kernel_initializer=kernel_init(),
                            kernel_regularizer=keras.regularizers.L2(l2 / 2), **kw)

    if model_name == "mlp":
        model = keras.Sequential([
            keras.Input(shape=(784,)),
            dense(500, activation="relu", bias_initializer=keras.initializers.Constant(0.1)),
            dense(10, bias_initializer=keras.initializers.Constant(0.1)),
        ])
    else:
        model = keras.Sequential([
            keras.Input(shape=(28, 28, 1)),
            layers.Conv2D(32, 5, padding="same", activation="relu", kernel_initializer=kernel_init()),
            layers.MaxPooling2D(2, padding="same"),
            layers.Conv2D(64, 5, padding="same", activation="relu", kernel_initializer=kernel_init()),
            layers.MaxPooling2D(2, padding="same"),
            layers.Flatten(),
            dense(512, activation="relu", bias_initializer=keras.initializers.Constant(0.1)),
            layers.Dropout(0.5),
            dense(10, bias_initializer=keras.initializers.Constant(0.1)),
        ])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=momentum),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=NETWORK_NAMES, required=True)
    p.add_argument("--warmup-steps", type=int, required=True)
    p.add_argument("--steps", type=int, required=True, help="measured steps after the warm-up")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--compute-dtype", choices=COMPUTE_DTYPES, default="float32")
    p.add_argument("--data-dir", default=str(MNIST_DIR))
    args = p.parse_args(argv)

    import numpy as np
    import tensorflow as tf
    import keras

    from model.config import preset
    from model.data import load_mnist

    hp = preset("default", args.model)
    tf.random.set_seed(hp.seed)
    if args.compute_dtype == "bfloat16":
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    train = load_mnist(args.data_dir).train
    images = train.images.astype(np.float32) / 255.0
    images = images.reshape(-1, 784) if args.model == "mlp" else images.reshape(-1, 28, 28, 1)
    labels = train.labels.astype(np.int32)
    dataset = (tf.data.Dataset.from_tensor_slices((images, labels))
               .shuffle(len(labels), seed=hp.seed, reshuffle_each_iteration=True)
               .batch(args.batch_size, drop_remainder=True)
               .repeat()
               .prefetch(tf.data.AUTOTUNE))

    model = build(args.model, hp.learning_rate_base, hp.momentum, hp.regularization_rate)
    ends: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    total = args.warmup_steps + args.steps
    t0 = time.perf_counter()
    history = model.fit(dataset, epochs=1, steps_per_epoch=total, verbose=0, callbacks=[Clock()])
    wall = time.perf_counter() - t0
    if len(ends) != total:
        print(f"expected {total} batch ends, saw {len(ends)}", file=sys.stderr)
        return 1
    measured = ends[-1] - ends[args.warmup_steps - 1]
    rate = args.steps * args.batch_size / measured
    result = {"model": args.model, "images_per_sec": rate, "measured_steps": args.steps,
              "measured_seconds": measured, "warmup_steps": args.warmup_steps,
              "warmup_seconds": ends[args.warmup_steps - 1] - t0, "fit_seconds": wall,
              "final_loss": float(history.history["loss"][-1]),
              "jit_compile": bool(model.jit_compile), "keras": keras.__version__,
              "backend": keras.backend.backend(), "parameters": int(model.count_params()),
              "dtype_policy": keras.mixed_precision.global_policy().name}
    print("BENCH_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
