"""`python -m model train|evaluate|export`: parse flags, call one library function.

Exit codes (see model/errors.py): 0 done, 1 unexpected failure (restart the
group), 2 bad configuration or data (do not retry), 42 preempted after saving.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import dataclasses
import logging
import os
import sys
from typing import NoReturn

from model import config as model_config
from model import leaving, log_lines, logging_setup, precision
from model.allocator import keep_freed_memory
from model.config import ALL_REDUCE_DTYPES, GRADIENT_EXCHANGES
from model.errors import (EXIT_CONFIG_ERROR, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK,
                          EXIT_PREEMPTED, ConfigError, MnistTrainError)

log = logging.getLogger("model")

ENV_HELP = """
environment variables (used when the flag is not given):
  MNIST_MODEL               --model
  MNIST_DATA_DIR            --data-dir
  MNIST_DATA_CACHE_DIR      --data-cache-dir
  TF_LOGDIR                 --model-dir (the Caicloud tutorial's name)
  TF_MAX_STEPS              --max-steps
  TF_SAVE_CHECKPOINTS_SECS  --save-checkpoints-secs
  TF_SAVE_SUMMARIES_STEPS   --save-summaries-steps
  MNIST_LEASE_TTL_SECS      train: the model dir's lease expires this long after the chief
                            last renewed it (default 30; see docs/operations.md,
                            "One trainer group per model directory")
  MNIST_LEASE_WAIT_SECS     train: how long to wait for a trainer of the same run to let go
                            of the model dir (default 180)
  TF_CONFIG                 the cluster (TFJob, JobSet or by hand), else an Indexed Job's
                            JOB_COMPLETION_INDEX, MNIST_NUM_WORKERS,
                            MNIST_WORKER_HOSTNAME_PREFIX, MNIST_WORKER_SERVICE and
                            MNIST_WORKER_PORT (default 2222); worker i is
                            <prefix>-<i>.<service>:<port>

exit codes: 0 done, 1 failure (e.g. a peer worker died: restart the group),
            2 bad configuration or data (retrying cannot help),
            42 preempted by SIGTERM after saving a checkpoint (restart to resume),
            130 stopped by Ctrl-C after saving a checkpoint (run again to resume;
                a second Ctrl-C aborts at once without saving)
"""


def _default_data_dir() -> str:
    """The MNIST baked into the image or shipped in the repo."""
    if os.environ.get("MNIST_DATA_DIR"):
        return os.environ["MNIST_DATA_DIR"]
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "mnist")


def _env(name: str, convert=str, minimum=None):
    """An environment fallback, converted and range-checked; None when unset."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = convert(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not a valid "
                          f"{convert.__name__}") from None
    if minimum is not None and not value >= minimum:
        raise ConfigError(f"environment variable {name}={raw!r} must be >= {minimum}")
    return value


def _stage_data(data_dir: str, args) -> str:
    """A gs:// data dir is downloaded into a verified local cache (model/gcs.py)."""
    if data_dir.startswith("gs://"):
        from model.gcs import stage_mnist
        return stage_mnist(data_dir, args.data_cache_dir or _env("MNIST_DATA_CACHE_DIR"),
                           verify=not args.no_verify)
    return data_dir


def _first(*values):
    """The first value that is not None (0 is a value, not a gap)."""
    return next((v for v in values if v is not None), None)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _add_common(p: argparse.ArgumentParser, *, model_required: bool) -> None:
    p.add_argument("--model", choices=model_config.NETWORK_NAMES,
                   help="network: the 784-500-10 MLP or LeNet-5 (env MNIST_MODEL)"
                   + ("" if model_required else "; default: the model dir's run_config.json"))
    p.add_argument("--model-dir", help="checkpoints and summaries; local path or gs:// (env TF_LOGDIR)")
    p.add_argument("--data-dir", help="directory with the four MNIST IDX files, .gz or not; a local "
                   "path, or gs://bucket/prefix: downloaded into a verified local cache first "
                   "(env MNIST_DATA_DIR; default: the bundled copy)")
    p.add_argument("--data-cache-dir", help="cache of gs:// data, files under <bucket>/<prefix>/ "
                   "(env MNIST_DATA_CACHE_DIR; default: $TMPDIR/mnist-train-data)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the SHA-256 check of the MNIST files (for custom data)")
    _add_log_level(p)


def _add_log_level(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="the project's lines at this level and above; TensorFlow's own INFO lines "
                   "(C++ and Python) only with DEBUG, or set TF_CPP_MIN_LOG_LEVEL yourself for its "
                   "C++ side (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m model", description="Distributed MNIST training (MLP and LeNet-5) with "
        "tf.distribute.MultiWorkerMirroredStrategy.",
        epilog=ENV_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate,export,predict}")

    t = sub.add_parser("train", help="train (one worker, or one of several via TF_CONFIG)",
                       epilog=ENV_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(t, model_required=True)
    t.add_argument("--preset", default="default", choices=["default", "tutorial"],
                   help="hyperparameters: 'tutorial' is the Caicloud tutorial's exactly; "
                   "'default' reaches the README's accuracy targets (default: %(default)s)")
    t.add_argument("--max-steps", type=_non_negative_int,
                   help="global steps to train to (env TF_MAX_STEPS; default from the preset)")
    t.add_argument("--batch-size", type=_positive_int,
                   help="examples per worker per step; the global batch is this times the "
                   "number of workers (default from the preset: 100)")
    t.add_argument("--learning-rate", type=_positive_float,
                   help="base learning rate (default from the preset)")
    t.add_argument("--learning-rate-decay", type=_positive_float,
                   help="decay per epoch, staircase (default from the preset)")
    t.add_argument("--momentum", type=float, help="SGD momentum, 0 = plain SGD (default from the preset)")
    t.add_argument("--seed", type=int, help="data order and initialisation seed (default 0)")
    t.add_argument("--save-checkpoints-steps", type=_positive_int, default=1000,
                   help="checkpoint every N steps (default: %(default)s)")
    t.add_argument("--save-checkpoints-secs", type=_positive_float,
                   help="also checkpoint every S seconds (env TF_SAVE_CHECKPOINTS_SECS)")
    t.add_argument("--save-summaries-steps", type=_positive_int,
                   help="TensorBoard summaries every N steps (env TF_SAVE_SUMMARIES_STEPS; default 100)")
    t.add_argument("--log-every-steps", type=_positive_int, default=100,
                   help="progress line every N steps (default: %(default)s)")
    t.add_argument("--steps-per-loop", type=_positive_int, default=100,
                   help="steps per compiled loop call; bounds how late SIGTERM is noticed "
                   "(default: %(default)s)")
    t.add_argument("--keep-checkpoints", type=_positive_int, default=5,
                   help="checkpoints kept in the model dir (default: %(default)s)")
    t.add_argument("--all-reduce-dtype", choices=ALL_REDUCE_DTYPES, default="float32",
                   help="type of the gradients exchanged between workers each step: bfloat16 "
                   "halves the bytes on the wire (the summed gradient keeps 8 significant "
                   "bits); worth it when the network, not the compute, bounds the step "
                   "(default: %(default)s)")
    t.add_argument("--gradient-exchange", choices=GRADIENT_EXCHANGES, default="auto",
                   help="how the workers combine gradients each step: 'all-reduce' sums every "
                   "gradient in one ring all-reduce; 'factors' all-gathers each fully connected "
                   "layer's inputs and output gradients instead and multiplies them on every "
                   "worker (fewer bytes at small per-worker batches: LeNet-5's fc1 at batch 100 "
                   "sends 365 thousand numbers instead of 1.6 million); 'auto' uses factors for "
                   "the layers where they at least halve the bytes (default: %(default)s)")
    t.add_argument("--compute-dtype", choices=model_config.COMPUTE_DTYPE_CHOICES,
                   default="float32",
                   help="type of the forward and backward passes: bfloat16 is mixed precision "
                   "(float32 variables, gradients and checkpoints; bfloat16 layers): LeNet-5 trains "
                   "~1.6x faster on a CPU with AVX512_BF16, and it uses the tensor cores of "
                   "Ampere or newer GPUs; 'auto': bfloat16 for LeNet-5 on a CPU with AVX512_BF16 or "
                   "AMX and no GPU, float32 elsewhere (model/precision.py); "
                   "evaluation and export always run in float32 (default: %(default)s)")
    t.add_argument("--sync-checkpoints", action="store_true",
                   help="write each checkpoint before the next step instead of on TensorFlow's "
                   "checkpoint thread while training goes on (either way only complete checkpoints "
                   "are ever listed, and the ones saved on SIGTERM and at the end are complete "
                   "before the process exits)")
    t.add_argument("--collective-timeout-secs", type=_non_negative_float, default=0.0,
                   help="fail an all-reduce that waits longer than this (0: no timeout, the default; "
                   "a dead or frozen peer is detected by the coordination service's heartbeats "
                   "within ~15 s anyway, and TensorFlow keeps one sleeping thread per collective "
                   "for the timeout's duration)")
    t.add_argument("--startup-timeout-secs", type=_positive_float, default=600.0,
                   help="kill this worker (exit 137) if not every worker has joined the cluster "
                   "after this long, so a frozen or missing peer fails the group instead of "
                   "hanging it (default: %(default)s)")

    e = sub.add_parser("evaluate", help="poll the model dir and report validation accuracy",
                       epilog=ENV_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(e, model_required=False)
    e.add_argument("--eval-dir", help="where the evaluator writes (default: <model-dir>/eval)")
    e.add_argument("--eval-interval-secs", type=_positive_float,
                   default=model_config.EVAL_INTERVAL_SECS,
                   help="list the checkpoints at least this often, as the tutorial polled "
                   "(default: %(default)s)")
    e.add_argument("--check-interval-secs", type=_non_negative_float,
                   default=model_config.EVAL_CHECK_INTERVAL_SECS,
                   help="between listings, read the small `checkpoint` state file and completion "
                   "marker this often and list at once when either changes; 0: only list every "
                   "--eval-interval-secs (default: %(default)s)")
    e.add_argument("--max-steps", type=_non_negative_int,
                   help="the step training runs to: a completion marker below it is a finished run "
                   "about to be extended, so keep waiting (default: the marker ends the evaluation)")
    e.add_argument("--timeout-secs", type=_positive_float,
                   help="exit 1 if no new checkpoint appears for this long, or, without --model, "
                   "no run_config.json (default: wait forever)")
    e.add_argument("--export-best-to", metavar="DIR",
                   help="once training has ended, export the checkpoint with the best validation "
                   "accuracy as a SavedModel to DIR, local or gs:// (replaces a previous export; refuses "
                   "anything else, and any DIR inside the model or eval dir)")

    x = sub.add_parser("export", help="SavedModel of the moving-average weights",
                       epilog=ENV_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    x.add_argument("--model", choices=model_config.NETWORK_NAMES,
                   help="default: the model dir's run_config.json")
    x.add_argument("--model-dir", help="checkpoints to export from (env TF_LOGDIR)")
    x.add_argument("--export-dir", required=True, help="where to write the SavedModel, local or "
                   "gs:// (a gs:// export is complete once its export_complete.json exists)")
    x.add_argument("--checkpoint", help="a checkpoint path (default: the newest)")
    x.add_argument("--overwrite", action="store_true", help="replace a previous export (a "
                   "directory holding anything else is refused, as is one inside the model dir)")
    _add_log_level(x)

    p = sub.add_parser("predict", help="the digit an exported model sees in each image",
                       description="Print the digit an exported model sees in each PNG or JPEG image "
                       "(any size, dark on light or light on dark: each is converted the way the MNIST "
                       "digits were, see model/predict.py), one line per image: "
                       "'predict | digit D | probability P | IMAGE'.",
                       epilog="An image that cannot be used (missing, unreadable, not a PNG or JPEG, "
                       "corrupt, blank) gets an 'error: IMAGE: ...' line on stderr; the other images are "
                       "still predicted, and the exit code is 2.")
    p.add_argument("--export-dir", required=True, help="a directory `python -m model export` (or "
                   "evaluate --export-best-to) wrote, local or gs://")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG or JPEG files")
    _add_log_level(p)
    return parser


def _train(args) -> int:
    from model import config as presets
    from model.cluster import create_strategy, resolve_cluster
    from model.signals import StartupGuard

    model = args.model or _env("MNIST_MODEL")
    if model not in model_config.NETWORK_NAMES:
        names = " or ".join(map(repr, model_config.NETWORK_NAMES))
        raise ConfigError(f"--model (or MNIST_MODEL) must be {names}, "
                          f"got {model!r}")
    hp = presets.preset(args.preset, model)
    overrides = {
        "max_steps": _first(args.max_steps, _env("TF_MAX_STEPS", int, minimum=0)),
        "batch_size": args.batch_size, "learning_rate_base": args.learning_rate,
        "learning_rate_decay": args.learning_rate_decay, "momentum": args.momentum, "seed": args.seed}
    hp = dataclasses.replace(hp, **{k: v for k, v in overrides.items() if v is not None})
    cluster = resolve_cluster()  # before TensorFlow is imported: a bad TF_CONFIG fails at once
    # Until training starts, SIGTERM and Ctrl-C end a worker of a group at once
    # (model/signals.py); a single worker needs no guard (no coordination service).
    guard = StartupGuard() if cluster.tf_config is not None else None
    try:
        logging_setup.import_tensorflow()
        from model.train import TrainConfig
        config = TrainConfig(
            model=model, model_dir=args.model_dir or _env("TF_LOGDIR") or "", hparams=hp,
            data_dir=args.data_dir or _default_data_dir(), verify_data=not args.no_verify,
            save_checkpoints_steps=args.save_checkpoints_steps,
            save_checkpoints_secs=_first(args.save_checkpoints_secs,
                                         _env("TF_SAVE_CHECKPOINTS_SECS", float, minimum=1e-9)),
            save_summaries_steps=_first(args.save_summaries_steps,
                                        _env("TF_SAVE_SUMMARIES_STEPS", int, minimum=1), 100),
            log_every_steps=args.log_every_steps, steps_per_loop=args.steps_per_loop,
            keep_checkpoints=args.keep_checkpoints, all_reduce_dtype=args.all_reduce_dtype,
            compute_dtype=precision.resolve_compute_dtype(args.compute_dtype, model),
            gradient_exchange=args.gradient_exchange,
            async_checkpoints=not args.sync_checkpoints)
        config.validate()
        config = dataclasses.replace(config, data_dir=_stage_data(config.data_dir, args))
        log.info(log_lines.CONFIG_FORMAT, _describe(config))
        strategy = create_strategy(cluster, collective_timeout_secs=args.collective_timeout_secs,
                                   startup_timeout_secs=args.startup_timeout_secs, guard=guard)
        from model import goodput_record
        goodput_record.mark("cluster_formed")  # the peers answered (model/goodput.py: cluster)
    finally:
        if guard is not None:
            guard.close()
    from model.train import Interrupted, Preempted, train
    try:
        train(config, strategy=strategy, is_chief=cluster.is_chief)
        code = EXIT_OK
    except Interrupted as e:
        log.warning("%s", e)
        code = EXIT_INTERRUPTED
    except Preempted as e:
        log.warning("%s", e)
        code = EXIT_PREEMPTED
    # Every worker of the group got here at the same agreed step: leave in order (model/leaving.py).
    leaving.leave_together(cluster)
    return code


def _describe(config) -> str:
    fields = dataclasses.asdict(config)
    hparams = fields.pop("hparams", {})
    return " ".join(f"{k}={v}" for k, v in {**fields, **hparams}.items())


def _evaluate(args) -> int:
    logging_setup.import_tensorflow()
    from model.evaluate import EvalConfig, evaluate

    config = EvalConfig(
        model_dir=args.model_dir or _env("TF_LOGDIR") or "", model=args.model or _env("MNIST_MODEL"),
        data_dir=args.data_dir or _default_data_dir(), eval_dir=args.eval_dir,
        eval_interval_secs=args.eval_interval_secs, check_interval_secs=args.check_interval_secs,
        timeout_secs=args.timeout_secs,
        verify_data=not args.no_verify,
        max_steps=_first(args.max_steps, _env("TF_MAX_STEPS", int, minimum=0)))
    config.validate()
    if args.export_best_to:  # a bad target fails now, not hours later, and before eval/ is written
        from model.export import check_export_target
        check_export_target(config.model_dir, args.export_best_to, overwrite=True,
                            eval_dir=config.resolved_eval_dir())
    config.data_dir = _stage_data(config.data_dir, args)
    log.info(log_lines.CONFIG_FORMAT, _describe(config))
    metrics = evaluate(config)
    if metrics is not None and args.export_best_to:
        from model.export import export_best
        export_best(config.model_dir, config.resolved_eval_dir(), args.export_best_to,
                    model=config.model)
    return EXIT_OK if metrics is not None else EXIT_FAILURE


def _export(args) -> int:
    logging_setup.import_tensorflow()
    from model.export import export

    model_dir = args.model_dir or _env("TF_LOGDIR")
    if not model_dir:
        raise ConfigError("a model directory is required (--model-dir or TF_LOGDIR)")
    export(model_dir, args.export_dir, model=args.model, checkpoint_path=args.checkpoint,
           overwrite=args.overwrite)
    return EXIT_OK


def _predict(args) -> int:
    logging_setup.import_tensorflow()
    from model.predict import run

    return EXIT_OK if run(args.export_dir, args.images) else EXIT_CONFIG_ERROR


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging_setup.configure(args.log_level)  # before TensorFlow is imported
    # Before TensorFlow allocates anything (see model/allocator.py).
    if args.command != "predict":  # a one-shot look-up needs neither the tuning nor its line
        log.info("malloc | %s", keep_freed_memory())
    try:
        return {"train": _train, "evaluate": _evaluate, "export": _export,
                "predict": _predict}[args.command](args)
    except MnistTrainError as e:
        print(log_lines.ERROR_FORMAT % (e,), file=sys.stderr, flush=True)
        return EXIT_CONFIG_ERROR
    except KeyboardInterrupt:  # Ctrl-C outside the training loop: nothing to save
        print("interrupted (Ctrl-C)", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception:  # noqa: BLE001 - a crash must still exit with the restartable code
        log.exception("failed")
        return EXIT_FAILURE


def exit_process(code: int, *, skip_teardown: bool) -> NoReturn:
    """End the process with `code`. With `skip_teardown`, the interpreter's teardown is skipped:
    the atexit handlers run and logging, stdout and stderr are flushed, then os._exit(code).

    What that skips is Python destroying every object and TensorFlow's C++ side shutting down
    (the gRPC server, the collective executors, the coordination service, and a group's dataset
    iterator, whose destruction waits for the peers: model/leaving.py). Measured after a `done`
    line: 4-7 s wall and ~1.4 CPU s per worker of a 2-worker LeNet-5 group (bench/restart.py),
    up to 58 s when a peer had left; after a peer's SIGKILL the survivor's teardown took 30 s
    (docs/goodput.md). Every trainer exit skips it: by then the train call has closed or
    abandoned everything it writes (the checkpoint writer's saves are atomic, the goodput record
    and the lease are handled by its exit stack), so the teardown only delays the restart.
    """
    if not skip_teardown:
        sys.exit(code)
    atexit._run_exitfuncs()  # noqa: SLF001 - what sys.exit would run; os._exit runs none
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # closed or gone: nothing more to write
            stream.flush()
    os._exit(code)


def run(argv: list[str] | None = None) -> NoReturn:
    """The program `python -m model`: main(), then the exit (the trainer's without the
    interpreter's teardown: see exit_process)."""
    argv = sys.argv[1:] if argv is None else argv
    code = main(argv)
    exit_process(code, skip_teardown=argv[:1] == ["train"])
