"""The `goodput` section: how much of a run's wall time became preserved training progress.

Three runs of the chart's default LeNet-5 (2 workers, the evaluator, TensorBoard) through the
local runner (scripts/local_runner, the process launcher): clean; worker 1 SIGKILLed at a random
step; worker 1 sent SIGTERM (preempted) at a random step. Each row is the run's goodput.json
(model/goodput.py: goodput and badput by cause, written by the chief at training end) and the
evaluator's lag (the chief's save of a checkpoint to the evaluator printing its accuracy; median
and worst), from the evaluator's final_metrics.json.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from bench import chart_defaults
from bench.procs import PYTHON, BenchError, Proc, base_env, wait_all
from bench.runs import Context
from model import layout
from model.config import preset

# Targets of issue 14 (benchmarks, not timed tests).
TARGETS = {"clean": 0.97, "sigkill": 0.95}
LAG_TARGET_SECS = 2.0
# Steps per run: the chart's default (the preset's 8000 for LeNet-5) in full mode; quick mode
# trains 1000 with a checkpoint every 250 so that a kill loses part of an interval.
FULL_SETTINGS: list[str] = []
QUICK_SETTINGS = ["--set", "training.maxSteps=1000", "--set", "training.saveCheckpointsSteps=250"]
RUN_TIMEOUT = {"full": 3 * 3600, "quick": 1800}

METHOD = (
    "three runs of the chart's default values (LeNet-5, 2 workers, evaluator, TensorBoard) through the "
    "local runner's process launcher: clean; `--fault kill:worker=1:step=N`; `--fault term:worker=1:step=N` "
    "(N a random progress-line step that is not a checkpoint step: the runner fires a step fault "
    "at the first progress line at or after N). Goodput and its breakdown are the "
    "run's goodput.json (model/goodput.py: preserved productive step time / the job's wall time from "
    "the first trainer process start to the final checkpoint; badput causes after Google's "
    "ml-goodput-measurement). The evaluator's lag is from its final_metrics.json: the chief's save of a "
    "checkpoint to the evaluator printing its validation accuracy.")


def _runner(ctx: Context, label: str, extra: list[str]) -> tuple[Proc, object]:
    name = ctx.name(f"goodput-{label}")
    run_dir = ctx.work / name
    argv = [PYTHON, "-m", "scripts.local_runner", "--fresh", "--run-dir", str(run_dir), "--quiet-tf",
            "--progress-every", "0", *extra]
    env = {k: v for k, v in base_env().items() if not k.startswith(("MNIST_", "JOB_"))}
    return Proc(name, argv, log_path=ctx.logs / f"{name}.log", env=env), run_dir


def _one_run(ctx: Context, label: str, settings: list[str], fault: str | None) -> dict:
    extra = settings + (["--fault", fault] if fault else [])
    ctx.say(f"   {label}: local runner{' with --fault ' + fault if fault else ''}")
    proc, run_dir = _runner(ctx, label, extra)
    wait_all([proc], RUN_TIMEOUT["quick" if ctx.quick else "full"], what=f"goodput {label}")
    summary = json.loads((run_dir / "summary.json").read_text())
    gp = summary.get("goodput")
    if not gp or gp.get("goodput") is None:
        raise BenchError(f"goodput {label}: no goodput in {run_dir / 'summary.json'}")
    model_dir = summary.get("model_dir")
    metrics_path = Path(model_dir) / layout.EVAL_SUMMARY_DIR / layout.FINAL_METRICS if model_dir else None
    final_metrics = json.loads(metrics_path.read_text()) if metrics_path and metrics_path.exists() else {}
    faults = [f for f in summary.get("faults", []) if f.get("fired")]
    return {"label": label, "fault": fault, "goodput": gp, "final_metrics": final_metrics,
            "eval_lag": final_metrics.get("eval_lag") or gp.get("eval_lag"),
            "faults": faults, "seconds": round(proc.seconds, 1), "log": str(proc.log_path),
            "summary": str(run_dir / "summary.json"),
            "load_average": list(os.getloadavg())}


# The runner fires a step fault at the first progress line at or after the step, and the chart
# logs one every 100 steps: a fault step is a multiple of this.
PROGRESS_EVERY = 100


def _random_step(rng: random.Random, max_steps: int, every: int) -> int:
    """A progress-line step in the middle 80% of the run that is not a checkpoint step (a fault
    there would race the chief's save and lose nothing)."""
    while True:
        step = rng.randrange(int(max_steps * 0.1), int(max_steps * 0.9)) // PROGRESS_EVERY * PROGRESS_EVERY
        if step > 0 and step % every:
            return step


def _breakdown(gp: dict) -> str:
    parts = [f"{k} {v:.1%} ({gp['badput_secs'][k]:.1f} s)"
             for k, v in sorted(gp["badput_shares"].items(), key=lambda kv: -kv[1]) if v >= 0.001]
    return "; ".join(parts)


def goodput(ctx: Context, quick: bool) -> dict:
    """Run the three cases; rows of goodput (with its breakdown) and the evaluator's lag."""
    seed = int(time.time_ns() % 10**6)
    rng = random.Random(seed)
    settings = QUICK_SETTINGS if quick else FULL_SETTINGS
    if quick:
        max_steps, every = 1000, 250
    else:
        max_steps = preset("default", "lenet5").max_steps
        every = int(chart_defaults.flag_value("--save-checkpoints-steps"))
    kill_step, term_step = _random_step(rng, max_steps, every), _random_step(rng, max_steps, every)
    cases = [("clean", None), ("sigkill", f"kill:worker=1:step={kill_step}"),
             ("sigterm", f"term:worker=1:step={term_step}")]
    details = {"seed": seed, "settings": settings, "runs": {}}
    rows = []
    suffix = "" if not quick else "; QUICK schedule (1000 steps), not the real figure"
    for label, fault in cases:
        d = _one_run(ctx, label, settings, fault)
        details["runs"][label] = d
        gp = d["goodput"]
        target = TARGETS.get(label)
        value = gp["goodput"]
        ok = None if target is None else value >= target
        miss = "" if ok in (None, True) else f"; misses the target by {target - value:.4f}"
        lost = (f"; {gp['steps_lost']} step(s) recomputed after the restore" if gp.get("steps_lost")
                else "")
        for fired in d["faults"]:  # nothing may be lost beyond the last checkpoint
            if fired.get("seen_step") is not None and fired.get("last_saved_step") is not None:
                lost += (f"; the fault came at step {fired['seen_step']}, "
                         f"{fired['seen_step'] - fired['last_saved_step']} past the checkpoint at "
                         f"{fired['last_saved_step']}")
        rows.append({
            "id": f"goodput.{label}",
            "figure": f"LeNet-5 goodput, chart defaults, {label}" + (f" ({fault})" if fault else ""),
            "value": f"{value:.4f}", "baseline": "", "ratio": "",
            "target": f">= {target:.2f}" if target else "none set (reported)",
            "status": "n/a" if ok is None else ("PASS" if ok else "MISS"),
            "notes": (f"{gp['wall_secs']:.0f} s wall, {gp['productive_secs']:.0f} s productive over "
                      f"{gp['attempts']} attempt(s); badput: {_breakdown(gp)}{lost}{miss}"
                      f"; load {d['load_average'][0]:.1f}{suffix}"),
            "numbers": {"goodput": value, "badput_secs": gp["badput_secs"],
                        "badput_shares": gp["badput_shares"]}})
        lag = d["eval_lag"] or {}
        if lag.get("median_secs") is not None:
            ok = lag["median_secs"] <= LAG_TARGET_SECS
            rows.append({
                "id": f"goodput.{label}_eval_lag",
                "figure": f"evaluator lag (checkpoint saved -> accuracy printed), {label}",
                "value": f"median {lag['median_secs']:.1f} s, worst {lag['worst_secs']:.1f} s",
                "baseline": "", "ratio": "", "target": f"median <= {LAG_TARGET_SECS:g} s (own core)",
                "status": "PASS" if ok else "MISS",
                "notes": (f"{lag['count']} checkpoint(s); worst at step {lag['worst_step']}"
                          + ("" if ok else f"; misses by {lag['median_secs'] - LAG_TARGET_SECS:.1f} s")
                          + "; the evaluator shares the 2 cores with the workers here" + suffix),
                "numbers": lag})
    return {"rows": rows, "details": details}
