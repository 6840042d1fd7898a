"""`make bench`: measure, write bench/results/results.{json,md} and print the table.

    python -m bench.run                      # every section (bench/README.md: how long each takes)
    python -m bench.run --only throughput,scaling
    python -m bench.run --quick              # short schedules: checks the harness, NOT the figures

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import machine, report, sections
from bench import goodput as bench_goodput
from bench import restart as bench_restart
from bench.procs import BenchError, kill_all
from bench.runs import Context
from model.config import NETWORK_NAMES
from scripts.paths import REPO_ROOT, TOOLS_PYTHON

RESULTS = REPO_ROOT / "bench" / "results"
ALL = ("throughput", "scaling", "accuracy", "resources", "goodput", "restart", "scaling_model", "gcs_costs")
KEEP_LOG_DIRS = 4

# What TF_NUM_*_THREADS the pinned scaling runs get. Measured on the 2-core box
# (bench/README.md): TensorFlow sizes its thread pools from the affinity mask, and
# forcing 1/1 made no difference beyond noise (LeNet-5 2 workers 1,983 img/s unset
# vs 1,986 with 1/1), so nothing is set by default.
SCALING_ENV: dict[str, dict[str, str]] = {
    "auto": {},
    "one": {"TF_NUM_INTEROP_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1"},
}

METHODS = {
    "throughput": (
        "each figure is its own subprocess, all cores, batch 100, the default preset's optimiser. "
        "Ours: `python -m model train` (MultiWorkerMirroredStrategy, 1 worker, 100 steps per "
        "compiled loop call, summaries and a progress line every 100 steps, no checkpoint until "
        "the end); the rate is parsed from the per-100-step progress lines after the warm-up steps "
        "(sum of images / sum of window times; the windows include the loop's own overhead such as "
        "summaries). The `done` line rate is kept in results.json too. Keras: `bench/keras_baseline.py`, "
        "a keras.Sequential of the same layers, SGD with the same learning rate and momentum, "
        "sparse CE from logits, L2 on the dense kernels, the same 55,000 images as an in-memory "
        "shuffled tf.data pipeline, `fit` with default settings (jit_compile auto = off on CPU, "
        "steps_per_execution 1); the rate is timed by a batch-end callback after the same warm-up. "
        "Runs alternate ours/Keras, Keras/ours; the best of the repeats is reported. Keras does "
        "not compute our moving averages or learning-rate decay. The issue's figures are float32 "
        "against float32; the bfloat16 row is `--compute-dtype bfloat16` against Keras's "
        "`mixed_bfloat16` policy (both float32 variables, bfloat16 layers)."),
    "scaling": (
        "1 worker pinned with `taskset -c 0` vs 2 workers on 127.0.0.1 pinned with `taskset -c 0` and "
        "`taskset -c 1`, rate from worker 0's progress lines after the warm-up (global images/s); "
        "efficiency = 2-worker global rate / (2 x 1-worker rate); best of the repeats. First at the "
        "issue's batch of 100 per worker (the default `--gradient-exchange auto`, then `all-reduce` of "
        "every gradient, then `--all-reduce-dtype bfloat16`), then at larger per-worker batches, to "
        "show where the per-step exchange stops mattering."),
    "accuracy": (
        "`--preset default`, 1 worker, all cores. LeNet-5: checkpoints every {lenet_ckpt} steps with "
        "`python -m model evaluate --eval-interval-secs {interval:g}` running alongside; time to 99% is "
        "the time the evaluator printed the first eval line with validation_accuracy >= 0.99, counted "
        "from the trainer's launch. MLP: the evaluator runs after training (scores the kept checkpoints "
        "and the final one). Test accuracy is final_metrics.json's test_accuracy (moving-average weights). "
        "The bfloat16 rows repeat the LeNet-5 run with `--compute-dtype bfloat16` (the evaluator "
        "scores in float32 as always)."),
    "scaling_model": (
        "the MLP and LeNet-5 at batch 100 per worker, `--gradient-exchange all-reduce`, float32 on "
        "the wire: 1 worker pinned to core 0, then 2, 4 and 8 workers on 127.0.0.1 pinned "
        "round-robin to cores 0 and 1; step time = N x 100 / worker 0's steady global rate. The "
        "model (mnistctl/scaling.py): compute = the 1-worker step x N/2 (N workers share 2 cores) "
        "+ a ring all-reduce of 2(N-1) messages, whose latency and bandwidth are fitted by least "
        "squares to all points; predicted vs measured per point. details: the GPU tables "
        "(bench/scaling_model.py)."),
    "resources": (
        "peak RSS = ru_maxrss from wait4 of each worker process of the 2-worker LeNet-5 run; "
        "evaluator time = restore + score 5,000 validation images with model.evaluate.CheckpointScorer "
        "(as Evaluator.evaluate_checkpoint times it), steady state = not the first call."),
    "gcs_costs": (
        "bench/gcs_costs.py: tf.train.CheckpointManager save, the evaluator's poll (checkpoint state "
        "file + glob) and restore of the MLP's training state (~4.8 MB), medians after the first, in "
        "a local directory vs gs:// on fake-gcs-server behind a TLS front on loopback "
        "(scripts/gcs_endpoint.py), with TensorFlow's GCS cache settings varied. An emulator on "
        "loopback is not Cloud Storage latency (see the module docstring for what to expect)."),
    "goodput": bench_goodput.METHOD,
    "restart": bench_restart.METHOD,
}


def _on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _row_model(row: dict) -> str | None:
    """"mlp" or "lenet5" from a row id such as "scaling.lenet5.batch200" (None: "resources.rss")."""
    match = re.match("|".join(NETWORK_NAMES), row["id"].split(".", 1)[1])
    return match.group(0) if match else None


def _is_extra(row: dict) -> bool:
    """Rows beyond the issue's figures (other batches or dtypes) carry a "." or "-" suffix."""
    model = _row_model(row)
    return model is not None and row["id"].split(".", 1)[1][len(model):][:1] in (".", "-")


def _carry_over_rows(new: dict, old: dict | None, models: list[str]) -> None:
    """Keep an earlier run's rows for the networks not measured now (`--models` subset)."""
    if not old or old.get("error"):
        return
    skipped = set(NETWORK_NAMES) - set(models)
    have = {row["id"] for row in new["rows"]}
    for row in old.get("rows", []):
        if row["id"] not in have and _row_model(row) in skipped:
            earlier = dict(row)
            if "(from an earlier run" not in earlier["notes"]:
                earlier["notes"] += f" (from an earlier run: {old.get('measured_at')}, {old.get('commit')})"
            new["rows"].append(earlier)
    # The figures first (MLP, then LeNet-5), then the extra cases in the same order.
    order = {m: i for i, m in enumerate(NETWORK_NAMES)}
    new["rows"].sort(key=lambda r: (_is_extra(r), order.get(_row_model(r), 9)))


def _prune_logs(root: Path) -> None:
    dirs = sorted(p for p in root.iterdir() if p.is_dir())
    for old in dirs[:-KEEP_LOG_DIRS]:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(ALL),
                   help="comma-separated sections to measure (default: all of %(default)s); other "
                   "sections already in results.json are kept")
    p.add_argument("--quick", action="store_true",
                   help="short schedules to smoke-test the harness; writes results-quick.{json,md}")
    p.add_argument("--repeats", type=int, help="repeats per throughput/scaling figure "
                   "(default 2, quick 1)")
    p.add_argument("--models", default=",".join(NETWORK_NAMES),
                   help="networks to measure (default: %(default)s)")
    p.add_argument("--quiet-wait", type=float,
                   help="before each measurement wait up to this many seconds for other processes "
                   "to leave the CPUs idle, and measure again if they were busy (default 180, quick 5)")
    p.add_argument("--retries", type=int, default=2,
                   help="extra attempts at a throughput/scaling/evaluator figure when other processes "
                   "used more than 0.25 cores meanwhile (default: %(default)s)")
    p.add_argument("--scaling-threads", choices=sorted(SCALING_ENV), default="auto",
                   help="'one' sets TF_NUM_INTEROP_THREADS=TF_NUM_INTRAOP_THREADS=1 for the pinned "
                   "scaling runs (default: %(default)s, i.e. nothing set)")
    p.add_argument("--keep-work", action="store_true", help="keep the model directories")
    args = p.parse_args(argv)

    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(ALL))
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown or not only or not set(models) <= set(NETWORK_NAMES) or not models:
        p.error(f"--only takes some of {','.join(ALL)}; --models some of {','.join(NETWORK_NAMES)}")
    signal.signal(signal.SIGTERM, _on_sigterm)

    plan = sections.QUICK if args.quick else sections.FULL
    if args.repeats:
        plan = dataclasses.replace(plan, repeats=args.repeats)
    mode = "quick" if args.quick else "full"
    run_id = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    logs_root = RESULTS / "logs"
    logs = logs_root / f"{run_id}-{mode}"
    logs.mkdir(parents=True, exist_ok=True)
    _prune_logs(logs_root)
    work = Path(tempfile.mkdtemp(prefix="mnist-bench-"))
    ctx = Context(logs=logs, work=work, quick=args.quick, retries=args.retries,
                  quiet_wait=args.quiet_wait if args.quiet_wait is not None else (5 if args.quick else 180))
    json_path = RESULTS / ("results-quick.json" if args.quick else "results.json")
    md_path = json_path.with_suffix(".md")

    info = machine.describe()
    previous = report.load(json_path) or {}
    results = {"run_id": run_id, "quick": args.quick, "machine": info,
               "sections": dict(previous.get("sections", {})),
               "plan": {"repeats": plan.repeats, "throughput_steps": plan.throughput_steps,
                        "throughput_dtypes": plan.throughput_dtypes,
                        "accuracy_dtypes": plan.accuracy_dtypes,
                        "scaling_cases": {m: [dataclasses.asdict(c) for c in cases]
                                          for m, cases in plan.scaling_cases.items()},
                        "accuracy_max_steps": plan.accuracy_max_steps,
                        "scaling_env": SCALING_ENV[args.scaling_threads]}}
    if args.quick:
        print(report.QUICK_BANNER.replace("**", ""), flush=True)
    print(f"bench | {mode} | sections {','.join(only)} | models {','.join(models)} | logs {logs}",
          flush=True)

    shared: dict = {}
    failed = []
    t_all = time.monotonic()
    try:
        for name in ALL:
            if name not in only:
                continue
            t0 = time.monotonic()
            print(f"== {name}", flush=True)
            try:
                if name == "throughput":
                    out = sections.throughput(ctx, plan, models)
                elif name == "scaling":
                    out = sections.scaling(ctx, plan, models, SCALING_ENV[args.scaling_threads], shared)
                elif name == "scaling_model":
                    out = sections.scaling_model(ctx, plan, models)
                elif name == "accuracy":
                    out = sections.accuracy(ctx, plan, models, shared)
                elif name == "gcs_costs":
                    out = sections.gcs_costs(ctx, plan)
                elif name == "goodput":
                    out = sections.goodput(ctx, plan)
                elif name == "restart":
                    out = sections.restart(ctx, plan)
                else:
                    out = sections.resources(ctx, plan, SCALING_ENV[args.scaling_threads], shared)
            except BenchError as e:
                failed.append(name)
                print(f"   FAILED: {e}", flush=True)
                out = {"rows": [], "details": {}, "error": str(e)}
            except Exception as e:  # noqa: BLE001 - keep the other sections' figures
                failed.append(name)
                traceback.print_exc()
                out = {"rows": [], "details": {}, "error": f"{type(e).__name__}: {e}"}
            out.update(run_id=run_id, measured_at=info["date"], commit=info["commit"],
                       seconds=round(time.monotonic() - t0, 1),
                       method=METHODS[name].format(lenet_ckpt=plan.accuracy_ckpt_steps["lenet5"],
                                                   interval=plan.eval_interval_secs))
            _carry_over_rows(out, results["sections"].get(name), models)
            results["sections"][name] = out
            report.save_json(json_path, results)  # partial results survive a later failure
            md_path.write_text(report.markdown(results))
    finally:
        kill_all()
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"model directories kept in {work}", flush=True)

    results["seconds"] = round(time.monotonic() - t_all, 1)
    report.save_json(json_path, results)
    table = report.markdown(results)
    md_path.write_text(table)
    print()
    print(table)
    print(f"wrote {json_path.relative_to(REPO_ROOT)} and {md_path.relative_to(REPO_ROOT)} "
          f"({results['seconds'] / 60:.1f} min)", flush=True)
    # The figures as PNGs beside results.json, drawn by the tools' virtualenv, which has matplotlib.
    if TOOLS_PYTHON.exists():
        subprocess.run([str(TOOLS_PYTHON), "-m", "bench.plots", "--results", str(json_path)], cwd=REPO_ROOT,
                       check=False)
    else:
        print(f"plots | skipped: {TOOLS_PYTHON} is missing (make tools)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
