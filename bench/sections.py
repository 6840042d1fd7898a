"""The four measured sections: throughput, scaling, accuracy, resources.

Each returns {"rows": [...], "details": {...}}; a row is one line of the
results table with its target and an honest PASS/MISS.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import functools

from bench.procs import PYTHON, BenchError, CpuWindow, Proc, base_env, wait_all, wait_for_quiet
from bench.scaling_model import section as scaling_model  # noqa: F401 (bench/run.py's section)
from bench.runs import Context, eval_events, median, run_result_script, run_training, start_training
from model import layout

NAMES = {"mlp": "MLP", "lenet5": "LeNet-5"}
NEVER = str(10 ** 9)  # --save-checkpoints-steps that never fires before the final save


@dataclasses.dataclass(frozen=True)
class ScalingCase:
    """One scaling figure: per-worker batch, gradient type on the wire, steps."""

    batch: int
    dtype: str  # --all-reduce-dtype of the 2-worker run (1 worker exchanges nothing)
    warm: int  # warm-up steps discarded
    steps: int  # measured steps (a multiple of the 100-step progress window)
    exchange: str = "auto"  # --gradient-exchange of the 2-worker run

    @property
    def key(self) -> str:
        return (f"batch{self.batch}" + ("" if self.dtype == "float32" else f"-{self.dtype}")
                + ("" if self.exchange == "auto" else f"-{self.exchange}"))


@dataclasses.dataclass(frozen=True)
class Plan:
    """Step counts for one mode (full or quick)."""

    throughput_steps: dict  # model -> (warm-up steps discarded, measured steps)
    throughput_dtypes: dict  # model -> compute dtypes; the first (float32) is the figure
    scaling_cases: dict  # model -> [ScalingCase]; the first is the headline (batch 100, float32)
    repeats: int
    accuracy_max_steps: dict  # model -> steps (None: the preset's full schedule)
    accuracy_dtypes: dict  # model -> compute dtypes, each a full run; float32 first
    accuracy_ckpt_steps: dict
    eval_interval_secs: float
    resources_steps: int  # the 2-worker LeNet-5 run when scaling did not provide one
    kernel_repeats: int  # calls per timing in bench/kernels.py
    scorer_repeats: int
    gcs_repeats: int = 5  # saves/restores per directory in bench/gcs_costs.py


FULL = Plan(
    throughput_steps={"mlp": (500, 4000), "lenet5": (300, 500)},
    # Mixed precision against Keras's mixed_bfloat16 policy: the convolutions
    # are what bound LeNet-5, and this CPU has AVX512_BF16.
    throughput_dtypes={"mlp": ("float32",), "lenet5": ("float32", "bfloat16")},
    scaling_cases={
        # The figure (batch 100, the default exchange), the same with
        # every gradient all-reduced, with bfloat16 on the wire, then larger
        # per-worker batches: where does the exchange stop mattering?
        "mlp": [ScalingCase(100, "float32", 300, 3000),
                ScalingCase(100, "float32", 300, 3000, "all-reduce"),
                ScalingCase(100, "bfloat16", 300, 3000),
                ScalingCase(1000, "float32", 100, 300), ScalingCase(4000, "float32", 100, 200)],
        "lenet5": [ScalingCase(100, "float32", 200, 400),
                   ScalingCase(100, "float32", 200, 400, "all-reduce"),
                   ScalingCase(100, "bfloat16", 200, 400),
                   ScalingCase(200, "float32", 100, 200), ScalingCase(400, "float32", 100, 100)]},
    repeats=2,
    accuracy_max_steps={"mlp": None, "lenet5": None},
    accuracy_dtypes={"mlp": ("float32",), "lenet5": ("float32", "bfloat16")},
    accuracy_ckpt_steps={"mlp": 1000, "lenet5": 250},
    eval_interval_secs=20.0,
    resources_steps=300,
    kernel_repeats=30,
    scorer_repeats=6,
)

QUICK = Plan(
    throughput_steps={"mlp": (200, 300), "lenet5": (100, 100)},
    throughput_dtypes={"mlp": ("float32",), "lenet5": ("float32", "bfloat16")},
    scaling_cases={
        "mlp": [ScalingCase(100, "float32", 100, 200), ScalingCase(100, "bfloat16", 100, 200)],
        "lenet5": [ScalingCase(100, "float32", 100, 100), ScalingCase(100, "bfloat16", 100, 100)]},
    repeats=1,
    accuracy_max_steps={"mlp": 1000, "lenet5": 600},
    accuracy_dtypes={"mlp": ("float32",), "lenet5": ("float32", "bfloat16")},
    accuracy_ckpt_steps={"mlp": 250, "lenet5": 100},
    eval_interval_secs=5.0,
    resources_steps=200,
    kernel_repeats=5,
    scorer_repeats=3,
)


def status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


CONTENDED_CORES = 0.25  # other processes using more than this during a measurement: measure again


def _measure(ctx: Context, fn, retries: int | None = None) -> list[dict]:
    """Run fn() after waiting for a quiet machine, again (up to `retries` times) if it was contended.

    Returns every attempt, each with how many cores other processes used meanwhile.
    """
    attempts = []
    retries = ctx.retries if retries is None else retries
    for attempt in range(1 + retries):
        quiet = wait_for_quiet(ctx.quiet_wait, log=ctx.say)
        window = CpuWindow.begin()
        result, own_cpu = fn()
        result.update(window.foreign_cores(own_cpu))
        result["quiet_before"] = quiet
        attempts.append(result)
        if result["foreign_cores"] <= CONTENDED_CORES or ctx.quick:
            break
        if attempt < retries:
            ctx.say(f"      other processes used {result['foreign_cores']:.2f} cores during that "
                    f"measurement; measuring again")
    return attempts


def _least_contended(attempts: list[dict]) -> dict:
    return min(attempts, key=lambda a: a["foreign_cores"])


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f} img/s"


# --- 1. throughput --------------------------------------------------------------------------

def _ours_throughput(ctx: Context, model: str, dtype: str, warm: int, steps: int) -> tuple[dict, float]:
    run = run_training(ctx, f"throughput-{model}-{dtype}-ours", model, warm + steps, timeout=900,
                       extra=["--save-checkpoints-steps", NEVER, "--compute-dtype", dtype])[0]
    r = run.steady_rate(warm)
    r.update(done_line_images_per_sec=run.done["images_per_sec"], compile_seconds=run.compile_seconds,
             max_rss_mb=run.proc.max_rss_mb, log=str(run.proc.log_path))
    return r, run.proc.cpu_seconds


def _keras_throughput(ctx: Context, model: str, dtype: str, warm: int, steps: int) -> tuple[dict, float]:
    r, proc = run_result_script(
        ctx, f"throughput-{model}-{dtype}-keras", "bench.keras_baseline",
        ["--model", model, "--warmup-steps", str(warm), "--steps", str(steps),
         "--compute-dtype", dtype], timeout=900)
    r.update(max_rss_mb=proc.max_rss_mb, log=str(proc.log_path))
    return r, proc.cpu_seconds


def _throughput_samples(ctx: Context, plan: Plan, model: str, dtype: str) -> dict:
    warm, steps = plan.throughput_steps[model]
    samples = {"ours": [], "keras": []}
    for rep in range(plan.repeats):
        order = ("ours", "keras") if rep % 2 == 0 else ("keras", "ours")
        for who in order:
            ctx.say(f"   throughput {NAMES[model]} {dtype} {who} (repeat {rep + 1}/{plan.repeats}): "
                    f"{warm} warm-up + {steps} measured steps")
            fn = functools.partial(_ours_throughput if who == "ours" else _keras_throughput,
                                   ctx, model, dtype, warm, steps)
            for r in _measure(ctx, fn):
                samples[who].append(r)
                ctx.say(f"      {r['images_per_sec']:,.0f} img/s "
                        f"(other processes used {r['foreign_cores']:.2f} cores meanwhile)")
    return samples


def throughput(ctx: Context, plan: Plan, models: list[str]) -> dict:
    rows, details = [], {}
    for model in models:
        warm, steps = plan.throughput_steps[model]
        float32_keras = None
        for dtype in plan.throughput_dtypes[model]:
            samples = _throughput_samples(ctx, plan, model, dtype)
            best = {who: max(s["images_per_sec"] for s in v) for who, v in samples.items()}
            ratio = best["ours"] / best["keras"]
            key = model if dtype == "float32" else f"{model}-{dtype}"
            details[key] = {"compute_dtype": dtype, "warmup_steps": warm, "measured_steps": steps,
                            "samples": samples, "best_images_per_sec": best, "ratio": ratio,
                            "ratio_of_medians": median(s["images_per_sec"] for s in samples["ours"])
                            / median(s["images_per_sec"] for s in samples["keras"])}
            foreign = max(max(v, key=lambda s: s["images_per_sec"])["foreign_cores"]
                          for v in samples.values())
            notes = (f"best of {len(samples['ours'])} runs (Keras: {len(samples['keras'])}); steady "
                     f"state after {warm} warm-up steps, {steps} steps timed")
            if dtype == "float32":
                float32_keras = best["keras"]
                row = {"figure": f"Training throughput, {NAMES[model]}, 1 worker, batch 100",
                       "baseline": f"Keras fit {_fmt_rate(best['keras'])}",
                       "target": ">= 1.0x (aim 1.3x)", "status": status(ratio >= 1.0),
                       "notes": notes + f"; aim 1.3x {'met' if ratio >= 1.3 else 'not met'}"}
            else:
                # Not the figure (that is float32 against float32): reported, no target.
                vs_plain = (f"; {best['ours'] / float32_keras:.2f}x the float32 Keras fit above"
                            if float32_keras else "")
                row = {"figure": f"Training throughput, {NAMES[model]}, {dtype} compute "
                                 f"(mixed precision), 1 worker, batch 100",
                       "baseline": f"Keras fit mixed_{dtype} {_fmt_rate(best['keras'])}",
                       "target": "none set (reported)", "status": "info",
                       "notes": f"--compute-dtype {dtype} vs Keras's mixed_{dtype} policy{vs_plain}; "
                                + notes}
            if foreign > CONTENDED_CORES:
                row["notes"] += f"; other processes used up to {foreign:.2f} cores during the best runs"
            rows.append({"id": f"throughput.{key}", "value": _fmt_rate(best["ours"]),
                         "ratio": f"{ratio:.2f}x", **row,
                         "numbers": {"ours": best["ours"], "keras": best["keras"], "ratio": ratio}})
    if "lenet5" in models:
        rows.append(_kernel_roofline(ctx, plan, details))
    return {"rows": rows, "details": details}


def _kernel_roofline(ctx: Context, plan: Plan, details: dict) -> dict:
    """How near the LeNet-5 step's arithmetic is to the CPU's matmul rate (bench/kernels.py)."""
    ctx.say("   kernels: LeNet-5 layer kernels and a 2048 x 2048 matmul, float32 and bfloat16")

    def fn():
        r, proc = run_result_script(ctx, "kernels-lenet5", "bench.kernels",
                                    ["--repeats", str(plan.kernel_repeats)], timeout=900)
        return r, proc.cpu_seconds

    result = _least_contended(_measure(ctx, fn))
    details["kernels"] = result
    f32, bf16 = result["results"]["float32"], result["results"]["bfloat16"]
    conv2 = sum(v["ms"] for k, v in f32["layers"].items() if k.startswith("conv2"))
    return {
        "id": "throughput.lenet5-kernels",
        "figure": "LeNet-5 forward + backward at batch 100: arithmetic rate against this CPU's matmul rate",
        "value": f"{f32['step_gflops_per_sec']:.0f} GFLOP/s",
        "baseline": f"2048x2048 matmul {f32['matmul_gflops_per_sec']:.0f} GFLOP/s",
        "ratio": f"{f32['step_fraction_of_matmul_rate']:.2f}x", "target": "none set (reported)",
        "status": "info",
        "notes": (f"float32: {f32['step_gflop']:.2f} GFLOP per step in {f32['step_ms']:.1f} ms, of which "
                  f"conv2's three kernels take {conv2:.1f} ms at "
                  f"{max(v['gflops_per_sec'] for k, v in f32['layers'].items() if k.startswith('conv2')):.0f}"
                  f" GFLOP/s at best; so, doing the same arithmetic, no framework runs this "
                  f"float32 step more than {1 / f32['step_fraction_of_matmul_rate']:.2f}x faster "
                  f"on this CPU. bfloat16: "
                  f"{bf16['step_gflops_per_sec']:.0f} of {bf16['matmul_gflops_per_sec']:.0f} GFLOP/s "
                  f"({bf16['step_fraction_of_matmul_rate']:.2f}x), {bf16['step_ms']:.1f} ms per step"
                  + (f"; other processes used {result['foreign_cores']:.2f} cores meanwhile"
                     if result["foreign_cores"] > CONTENDED_CORES else "")),
        "numbers": {d: {k: r[k] for k in ("step_gflops_per_sec", "matmul_gflops_per_sec", "step_ms")}
                    for d, r in result["results"].items()}}


# --- 2. scaling ------------------------------------------------------------------------------

def _scaling_run(ctx: Context, model: str, workers: int, case: ScalingCase,
                 env_extra: dict[str, str]) -> tuple[dict, float]:
    runs = run_training(ctx, f"scaling-{model}-{case.key}-{workers}w", model, case.warm + case.steps,
                        timeout=1200, workers=workers, cpus=["0", "1"][:workers],
                        env_extra=env_extra, batch_size=case.batch,
                        extra=["--save-checkpoints-steps", NEVER, "--all-reduce-dtype", case.dtype,
                               "--gradient-exchange", case.exchange])
    rates = [r.steady_rate(case.warm) for r in runs]
    r = dict(rates[0])  # worker 0's view of the global rate
    r["exchange_plan"] = runs[0].exchange_plan
    r.update(per_worker_images_per_sec=[x["images_per_sec"] for x in rates],
             max_rss_mb=[x.proc.max_rss_mb for x in runs],
             done_line_images_per_sec=[x.done["images_per_sec"] for x in runs],
             weights_sha256=[x.done["weights_sha256"] for x in runs],
             model_dir=str(runs[0].model_dir), logs=[str(x.proc.log_path) for x in runs])
    return r, sum(x.proc.cpu_seconds for x in runs)


def _scaling_samples(ctx: Context, plan: Plan, model: str, case: ScalingCase, workers: int,
                     env_extra: dict[str, str]) -> list[dict]:
    samples = []
    for rep in range(plan.repeats):
        ctx.say(f"   scaling {NAMES[model]} batch {case.batch}/worker, {workers} worker(s) pinned to "
                f"{'core 0' if workers == 1 else 'cores 0 and 1'}"
                f"{f', {case.dtype} gradients, {case.exchange} exchange' if workers == 2 else ''} "
                f"(repeat {rep + 1}/{plan.repeats}): {case.warm} warm-up + {case.steps} measured steps")
        fn = functools.partial(_scaling_run, ctx, model, workers, case, env_extra)
        for r in _measure(ctx, fn):
            if workers == 2 and len(set(r["weights_sha256"])) != 1:
                raise BenchError(f"the two workers ended with different weights: "
                                 f"{r['weights_sha256']}")
            samples.append(r)
            ctx.say(f"      {r['images_per_sec']:,.0f} img/s global "
                    f"(other processes used {r['foreign_cores']:.2f} cores meanwhile)")
    return samples


def scaling(ctx: Context, plan: Plan, models: list[str], env_extra: dict[str, str],
            shared: dict) -> dict:
    """1 worker on core 0 vs 2 workers on cores 0 and 1, per case of the plan.

    The 1-worker run of a batch size serves every gradient type at that size
    (a single worker exchanges nothing).
    """
    rows, details = [], {}
    for model in models:
        one_worker: dict[int, list[dict]] = {}
        details[model] = {}
        for number, case in enumerate(plan.scaling_cases[model]):
            if case.batch not in one_worker:
                one_worker[case.batch] = _scaling_samples(ctx, plan, model, case, 1, env_extra)
            two_samples = _scaling_samples(ctx, plan, model, case, 2, env_extra)
            samples = {"one": one_worker[case.batch], "two": two_samples}
            one = max(x["images_per_sec"] for x in samples["one"])
            two = max(x["images_per_sec"] for x in samples["two"])
            eff = two / (2 * one)
            details[model][case.key] = {**dataclasses.asdict(case), "samples": samples,
                                        "best_one_worker": one, "best_two_workers": two,
                                        "efficiency": eff}
            if number == 0:
                shared.setdefault("two_worker_runs", {})[model] = two_samples
            foreign = max(max(v, key=lambda x: x["images_per_sec"])["foreign_cores"]
                          for v in samples.values())
            step_one, step_two = case.batch / one * 1000, 2 * case.batch / two * 1000
            variant = ("" if case.batch == 100 else f", batch {case.batch} per worker") + (
                "" if case.exchange == "auto" else f", {case.exchange} of every gradient") + (
                "" if case.dtype == "float32" else f", {case.dtype} on the wire")
            how = max(samples["two"], key=lambda x: x["images_per_sec"])["exchange_plan"]
            rows.append({
                "id": f"scaling.{model}" + ("" if number == 0 else f".{case.key}"),
                "figure": f"Scaling efficiency, {NAMES[model]}{variant}, 2 workers x 1 core "
                          "vs 1 worker x 1 core",
                "value": f"{eff:.2f} ({_fmt_rate(two)} global)",
                "baseline": f"1 worker {_fmt_rate(one)}",
                "ratio": f"{two / one:.2f}x", "target": ">= 0.85", "status": status(eff >= 0.85),
                "notes": (f"batch {case.batch} per worker, taskset -c 0 / -c 1; --gradient-exchange "
                          f"{case.exchange}: {how}; {case.dtype} on the wire, ring collectives over "
                          f"gRPC on 127.0.0.1; best of "
                          f"{len(samples['one'])} runs (2 workers: {len(samples['two'])}); "
                          f"{case.steps} steps timed after {case.warm}; step time "
                          f"{step_one:.1f} ms on 1 worker vs {step_two:.1f} ms on 2 "
                          f"(+{step_two - step_one:.1f} ms per step for the exchange)"
                          + (f"; env {' '.join(f'{k}={v}' for k, v in env_extra.items())}"
                             if env_extra else "")
                          + (f"; other processes used up to {foreign:.2f} cores during the best runs"
                             if foreign > CONTENDED_CORES else "")),
                "numbers": {"one": one, "two": two, "efficiency": eff, "batch": case.batch,
                            "dtype": case.dtype, "exchange": case.exchange}})
    return {"rows": rows, "details": details}


# --- 3. accuracy -----------------------------------------------------------------------------

def _evaluator(ctx: Context, name: str, model_dir: Path, interval: float) -> Proc:
    return Proc(f"{name}-eval", [PYTHON, "-m", "model", "evaluate", "--model-dir", str(model_dir),
                                 "--eval-interval-secs", str(interval), "--timeout-secs", "900"],
                log_path=ctx.logs / f"{name}-eval.log", env=base_env())


def _final_metrics(proc: Proc, model_dir: Path) -> dict:
    path = model_dir / layout.EVAL_SUMMARY_DIR / layout.FINAL_METRICS
    if not path.exists():
        raise BenchError(f"{path} was not written (log {proc.log_path})")
    return json.loads(path.read_text())


def accuracy(ctx: Context, plan: Plan, models: list[str], shared: dict) -> dict:
    rows, details = [], {}
    for model in models:
        for dtype in plan.accuracy_dtypes[model]:
            rows += _accuracy_case(ctx, plan, model, dtype, details, shared)
    return {"rows": rows, "details": details}


def _accuracy_case(ctx: Context, plan: Plan, model: str, dtype: str, details: dict,
                   shared: dict) -> list[dict]:
    """One default-schedule run and its evaluator; fills details[key], returns its rows."""
    rows = []
    max_steps = plan.accuracy_max_steps[model]
    ckpt = plan.accuracy_ckpt_steps[model]
    extra = ["--preset", "default", "--save-checkpoints-steps", str(ckpt), "--compute-dtype", dtype]
    steps_text = "the full default schedule" if max_steps is None else f"{max_steps} steps (quick)"
    ctx.say(f"   accuracy {NAMES[model]} {dtype}: {steps_text}, 1 worker, all cores")
    wait_for_quiet(ctx.quiet_wait, log=ctx.say)
    key = model if dtype == "float32" else f"{model}-{dtype}"
    # Row ids and titles: the float32 rows are the figures.
    mixed = "" if dtype == "float32" else f", {dtype} compute (mixed precision)"
    label = f"accuracy-{key}"
    # train_argv always passes --max-steps; give the preset's when running the full schedule.
    if max_steps is None:
        from model.config import preset
        max_steps_arg = preset("default", model).max_steps
    else:
        max_steps_arg = max_steps
    window = CpuWindow.begin()
    alongside = model == "lenet5"  # LeNet-5: time to 99% needs the evaluator running live
    run = start_training(ctx, label, model, max_steps_arg, extra=extra)[0]
    name = run.model_dir.name
    try:
        if alongside:
            evaluator = _evaluator(ctx, name, run.model_dir, plan.eval_interval_secs)
            wait_all([run.proc, evaluator], 3600, what=label)
        else:
            wait_all([run.proc], 3600, what=label)
            evaluator = _evaluator(ctx, name, run.model_dir, plan.eval_interval_secs)
            wait_all([evaluator], 900, what=f"{label} evaluator")
    except BaseException:
        run.proc.kill()
        raise
    cpu = window.foreign_cores(run.proc.cpu_seconds + evaluator.cpu_seconds)
    metrics = _final_metrics(evaluator, run.model_dir)
    events = eval_events(evaluator)
    offset = evaluator.start - run.proc.start
    evals = [(t + offset, e) for t, e in events if e.get("event") == "eval"]
    d = {"max_steps": max_steps_arg, "final_metrics": metrics, "trainer_seconds": run.proc.seconds,
         "trainer_images_per_sec": run.done["images_per_sec"], "trainer_max_rss_mb": run.proc.max_rss_mb,
         "evaluator_max_rss_mb": evaluator.max_rss_mb, "evaluator_alongside": alongside,
         "eval_interval_secs": plan.eval_interval_secs, "save_checkpoints_steps": ckpt,
         "evals": [{"t": round(t, 2), "step": e["step"], "validation_accuracy": e["validation_accuracy"],
                    "eval_seconds": e["eval_seconds"]} for t, e in evals],
         "logs": [str(run.proc.log_path), str(evaluator.log_path)], **cpu}
    details[key] = d
    if dtype == "float32":  # the resources section reads the evaluator figures of this run
        shared.setdefault("accuracy", {})[model] = d
    test = metrics["test_accuracy"]
    suffix = "" if plan is FULL else "; QUICK schedule, not the real figure"
    if cpu["foreign_cores"] > CONTENDED_CORES:
        suffix += f"; other processes used {cpu['foreign_cores']:.2f} cores meanwhile"
    target = {"mlp": 0.984, "lenet5": 0.993}[model]
    notes = (f"{metrics['final_step']} steps in {run.proc.seconds:.0f} s"
             + (" with the evaluator alongside" if alongside else "")
             + f"; raw weights {metrics['raw_test_accuracy']:.2%}"
             + ("" if alongside else f"; best validation {metrics['best_validation_accuracy']:.2%}"))
    rows.append({
        "id": f"accuracy.{key}",
        "figure": f"{NAMES[model]} test accuracy (moving averages){mixed}, default schedule",
        "value": f"{test:.2%}", "baseline": "", "ratio": "", "target": f">= {target:.2%}",
        "status": status(test >= target), "notes": notes + suffix,
        "numbers": {"test_accuracy": test}})
    if model == "lenet5":
        hit = next(((t, e) for t, e in evals if e["validation_accuracy"] >= 0.99), None)
        saved = run.saved_at()
        if hit is not None:
            t, e = hit
            d["time_to_99"] = {"seconds": t, "step": e["step"],
                               "checkpoint_saved_seconds": saved.get(e["step"])}
            value = f"{t:.0f} s"
            note = (f"first evaluator line with validation >= 99.00%: step {e['step']} "
                    f"({e['validation_accuracy']:.2%}), counted from trainer launch; that checkpoint "
                    f"was saved at {saved.get(e['step'], float('nan')):.0f} s (the rest is polling "
                    f"every {plan.eval_interval_secs:g} s and scoring); checkpoints every {ckpt} steps")
        else:
            value, note = "not reached", f"best validation {metrics['best_validation_accuracy']:.2%}"
        rows.append({
            "id": f"accuracy.{key}_time_to_99",
            "figure": f"LeNet-5 wall time to 99.0% validation accuracy{mixed}",
            "value": value, "baseline": "", "ratio": "", "target": "none set (reported)",
            "status": "info" if hit is not None else "n/a",
            "notes": note + suffix, "numbers": d.get("time_to_99")})
    return rows


# --- 4. resources ----------------------------------------------------------------------------

def resources(ctx: Context, plan: Plan, env_extra: dict[str, str], shared: dict) -> dict:
    rows, details = [], {}
    two = shared.get("two_worker_runs", {}).get("lenet5")
    if not two:
        steps = plan.resources_steps
        ctx.say(f"   resources: 2-worker LeNet-5, {steps} steps, pinned to cores 0 and 1")

        def fn():
            runs = run_training(ctx, "resources-lenet5-2w", "lenet5", steps, timeout=1200, workers=2,
                                cpus=["0", "1"], env_extra=env_extra,
                                extra=["--save-checkpoints-steps", NEVER])
            return ({"max_rss_mb": [r.proc.max_rss_mb for r in runs], "model_dir": str(runs[0].model_dir),
                     "steps": steps, "logs": [str(r.proc.log_path) for r in runs]},
                    sum(r.proc.cpu_seconds for r in runs))
        two = [_least_contended(_measure(ctx, fn, retries=0))]
        source = f"a dedicated {steps}-step 2-worker LeNet-5 run"
    else:
        source = f"the scaling section's 2-worker LeNet-5 run(s) ({len(two)})"
    per_worker = [max(s["max_rss_mb"][i] for s in two) for i in range(2)]
    details["two_worker_lenet5_max_rss_mb"] = per_worker
    peak = max(per_worker)
    rows.append({
        "id": "resources.rss", "figure": "Peak memory per worker, 2-worker LeNet-5",
        "value": f"{peak / 1024:.2f} GB", "baseline": "", "ratio": "", "target": "<= 1.5 GB",
        "status": status(peak <= 1536),
        "notes": (f"max RSS (getrusage ru_maxrss via wait4): worker 0 {per_worker[0]:.0f} MB, "
                  f"worker 1 {per_worker[1]:.0f} MB; from {source}"),
        "numbers": {"per_worker_mb": per_worker}})
    mlp_two = shared.get("two_worker_runs", {}).get("mlp")
    if mlp_two:
        details["two_worker_mlp_max_rss_mb"] = [max(s["max_rss_mb"][i] for s in mlp_two) for i in range(2)]

    model_dir = two[-1]["model_dir"]
    ctx.say(f"   resources: evaluator scoring 5,000 validation images ({plan.scorer_repeats} times)")

    def score():
        r, proc = run_result_script(ctx, "resources-score", "bench.score_eval",
                                    ["--model-dir", model_dir, "--repeats", str(plan.scorer_repeats)],
                                    timeout=600)
        r.update(max_rss_mb=proc.max_rss_mb, log=str(proc.log_path))
        return r, proc.cpu_seconds
    s = _least_contended(_measure(ctx, score))
    details["scorer"] = s
    rows.append({
        "id": "resources.eval_direct", "figure": "Evaluator: score 5,000 validation images (LeNet-5)",
        "value": f"{s['steady_median_seconds']:.2f} s", "baseline": "", "ratio": "", "target": "<= 2 s",
        "status": status(s["steady_median_seconds"] <= 2.0),
        "notes": (f"CheckpointScorer restore + score, median of {len(s['seconds']) - 1} after the first "
                  f"(first, with tracing and cache fill: {s['first_seconds']:.2f} s); own process, "
                  f"all cores, evaluator max RSS {s['max_rss_mb']:.0f} MB"),
        "numbers": {"median": s["steady_median_seconds"], "first": s["first_seconds"]}})
    acc = shared.get("accuracy", {}).get("lenet5")
    if acc and acc.get("evaluator_alongside") and len(acc["evals"]) > 1:
        steady = [e["eval_seconds"] for e in acc["evals"][1:]]
        med = median(steady)
        details["eval_seconds_during_training"] = {"median": med, "max": max(steady), "count": len(steady),
                                                   "first": acc["evals"][0]["eval_seconds"]}
        rows.append({
            "id": "resources.eval_live", "figure": "Evaluator: eval_seconds while LeNet-5 trains alongside",
            "value": f"{med:.2f} s", "baseline": "", "ratio": "", "target": "<= 2 s",
            "status": status(med <= 2.0),
            "notes": (f"median of {len(steady)} checkpoints after the first (max {max(steady):.2f} s, first "
                      f"{acc['evals'][0]['eval_seconds']:.2f} s), sharing 2 cores with the trainer; "
                      f"evaluator max RSS {acc['evaluator_max_rss_mb']:.0f} MB"),
            "numbers": details["eval_seconds_during_training"]})
    return {"rows": rows, "details": details}


def gcs_costs(ctx: Context, plan: Plan) -> dict:
    """gs:// (local emulator) against a local directory: bench/gcs_costs.py."""
    from bench import gcs_costs as costs

    return costs.section(ctx, 3 if ctx.quick else plan.gcs_repeats)


# --- 5. goodput (bench/goodput.py) ----------------------------------------------------------------

def goodput(ctx: Context, plan: Plan) -> dict:
    from bench import goodput as bench_goodput
    return bench_goodput.goodput(ctx, quick=plan is QUICK)


# --- 6. restart (bench/restart.py) ----------------------------------------------------------------

def restart(ctx: Context, plan: Plan) -> dict:
    from bench import restart as bench_restart
    return bench_restart.restart(ctx, quick=plan is QUICK)
