"""Time the evaluator's work on one checkpoint: restore it and score the 5,000 validation images.

    python -m bench.score_eval --model-dir DIR [--repeats 6]

Does exactly what `Evaluator.evaluate_checkpoint` times (restore + moving-
average and raw accuracy over the cached validation pipeline), `--repeats`
times on the newest checkpoint in DIR. The first repeat includes tracing and
filling the dataset cache (the evaluator's first checkpoint); the rest are
the steady state. Prints one `BENCH_RESULT {json}` line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

from scripts.paths import MNIST_DIR


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", required=True)
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--data-dir", default=str(MNIST_DIR))
    args = p.parse_args(argv)

    import tensorflow as tf

    from model import checkpointing
    from model.data import load_mnist
    from model.evaluate import CheckpointScorer
    from model.input_pipeline import eval_dataset

    model = checkpointing.run_model_name(args.model_dir)
    path = tf.train.latest_checkpoint(args.model_dir)
    if model is None or path is None:
        print(f"no run_config.json or checkpoint in {args.model_dir}", file=sys.stderr)
        return 1
    validation = load_mnist(args.data_dir).validation
    dataset = eval_dataset(validation)
    scorer = CheckpointScorer(model)
    times, accuracy = [], None
    for _ in range(args.repeats):
        t0 = time.monotonic()
        scorer.restore(path)
        accuracy, raw = scorer.accuracy(dataset, len(validation))
        times.append(time.monotonic() - t0)
    steady = times[1:] or times
    print("BENCH_RESULT " + json.dumps({
        "model": model, "checkpoint": path, "images": len(validation), "seconds": times,
        "first_seconds": times[0], "steady_median_seconds": statistics.median(steady),
        "steady_max_seconds": max(steady), "validation_accuracy": accuracy}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
