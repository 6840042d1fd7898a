"""The scaling model (mnistctl/scaling.py) calibrated on this machine, then evaluated for GPU clusters.

Calibration (`python -m bench.run --only scaling_model`): the MLP and LeNet-5 at batch 100
per worker, `--gradient-exchange all-reduce`, float32 on the wire, with 1 worker pinned to
core 0 and with 2, 4 and 8 workers on 127.0.0.1 pinned round-robin to cores 0 and 1. With
2 cores, N > 2 workers share them: each core runs N/2 workers' compute one after the other,
so the model's compute per step is the pinned 1-worker step x N/2 (`cpu_compute_s`). The
loopback ring's latency and bandwidth are fitted (least squares on relative errors) to the
`scaling` section's 2-worker all-reduce runs (1 and 2 workers at several batches, each on
its own core), and these 2/4/8-worker runs are predicted as held-out points (`evaluate`).
Predicted against measured is reported per point.

Evaluation: the same formulas with the H200's measured LeNet-5 step times (a JAX
measurement), NVLink inside a node and 25/100/400 Gb/s between nodes, 8 to 1,000 GPUs
(`gpu_table`), which is the table in docs/performance.md. This module's core is TF-free; the
section measures with `python -m model train` processes.
"""

from __future__ import annotations

import functools

from mnistctl import scaling as model

CORES = 2  # the measured machine's; the runs pin to cores 0 and 1
WORKER_COUNTS = (2, 4, 8)
# model -> (warm-up steps, measured steps, progress window): short windows, as 8 workers
# share 2 cores (a LeNet-5 step then takes 4 one-core steps and the exchange).
STEPS = {"mlp": (100, 200, 50), "lenet5": (40, 40, 20)}
GPU_COUNTS = (8, 16, 64, 128, 256, 512, 1000)
GPU_BATCHES = (100, 1000, 10000)
LINKS_GBPS = (25, 100, 400, 3200)  # 3200: 8 x 400 Gb/s, one NIC per GPU as on a DGX H200
TOLERANCE = 0.15


def cpu_compute_s(one_worker_step_s: float, workers: int, cores: int = CORES) -> float:
    """A worker's compute per step when `workers` pinned workers share `cores` cores."""
    return one_worker_step_s * max(1.0, workers / cores)


def loopback_features(network: str, workers: int, wire: str = "float32") -> tuple[float, float]:
    """(messages, bytes per link) of one all-reduce step: exchange = a * latency + b / bandwidth."""
    nbytes = model.parameter_count(network) * model.WIRE_BYTES[wire]
    return 2.0 * (workers - 1), 2.0 * (workers - 1) * nbytes / workers


def bench_points(results: dict) -> list[dict]:
    """The all-reduce points of a full `make bench` run's 2-worker scaling section (1 worker on
    core 0 vs 2 workers on cores 0 and 1, quiet machine), as fit_loopback's points."""
    points = []
    for row in results["sections"]["scaling"]["rows"]:
        n = row["numbers"]
        network = row["id"].split(".")[1]
        if model.exchange_for(network, n["batch"], 2, n["exchange"]).factored:
            continue  # the factors plan's cost is not the ring's
        points.append({"network": network, "workers": 2, "batch": n["batch"], "wire": n["dtype"],
                       "one_s": n["batch"] / n["one"], "step_s": 2 * n["batch"] / n["two"]})
    return points


def fit_loopback(points: list[dict]) -> model.Link:
    """Least-squares latency and 1/bandwidth from points {network, workers, one_s, step_s[, batch,
    wire]}: each point's exchange time is its measured step minus the modelled compute."""
    rows = []
    for p in points:  # weighted by 1/step: the fit minimises relative errors, as they are judged
        a, b = loopback_features(p["network"], p["workers"], p.get("wire", "float32"))
        y = p["step_s"] - cpu_compute_s(p["one_s"], p["workers"])
        rows.append((a / p["step_s"], b / p["step_s"], y / p["step_s"]))
    saa = sum(a * a for a, _, _ in rows)
    sab = sum(a * b for a, b, _ in rows)
    sbb = sum(b * b for _, b, _ in rows)
    say = sum(a * y for a, _, y in rows)
    sby = sum(b * y for _, b, y in rows)
    det = saa * sbb - sab * sab
    latency, inverse_bw = (say * sbb - sby * sab) / det, (saa * sby - sab * say) / det
    if inverse_bw <= 0:  # all the cost is per message: refit on latency alone
        latency, inverse_bw = say / saa, 1e-15
    elif latency < 0:  # all the cost is per byte
        latency, inverse_bw = 0.0, sby / sbb
    return model.Link(bytes_per_s=1 / inverse_bw, latency_s=latency)


def predict_loopback(link: model.Link, network: str, workers: int, one_s: float, *, batch: int = 100,
                     wire: str = "float32") -> model.Prediction:
    cluster = model.Cluster(workers, workers, link)
    return model.predict(network, batch, cluster, cpu_compute_s(one_s, workers), plan="all-reduce",
                         wire=wire)


def compare(points: list[dict], link: model.Link) -> list[dict]:
    out = []
    for p in points:
        predicted = predict_loopback(link, p["network"], p["workers"], p["one_s"],
                                     batch=p.get("batch", 100), wire=p.get("wire", "float32")).step_s
        out.append({**p, "predicted_s": predicted, "error": predicted / p["step_s"] - 1})
    return out


def gpu_table(*, plan: str = "auto", wire: str = "float32", compute: str = "float32") -> str:
    """Markdown: expected efficiency of LeNet-5 on H200s by GPUs, per-GPU batch and link."""
    head = ("| GPUs | batch/GPU | step (compute) ms | "
            + " | ".join(f"{g:g} Gb/s" for g in LINKS_GBPS) + " |")
    lines = [head, "|" + "---|" * (3 + len(LINKS_GBPS))]
    for gpus in GPU_COUNTS:
        for batch in GPU_BATCHES:
            cells = []
            for gbps in LINKS_GBPS:
                p = model.predict_gpu(gpus, batch, gbps, plan=plan, wire=wire, compute=compute)
                cells.append(f"{p.efficiency:.2f}")
            lines.append(f"| {gpus} | {batch:,} | {model.h200_step_s(batch, compute) * 1e3:.3f} | "
                         + " | ".join(cells) + " |")
    return "\n".join(lines)


def options_table(gpus: int = 64, gbps: float = 100) -> str:
    """Markdown: the plan and wire options at one size."""
    lines = [f"| {gpus} GPUs, {gbps:g} Gb/s | " + " | ".join(f"batch {b:,}" for b in GPU_BATCHES) + " |",
             "|---|" + "---|" * len(GPU_BATCHES)]
    for plan, wire in (("auto", "float32"), ("auto", "bfloat16"), ("factors", "float32"),
                       ("factors", "bfloat16")):
        cells = []
        for batch in GPU_BATCHES:
            p = model.predict_gpu(gpus, batch, gbps, plan=plan, wire=wire)
            cells.append(f"{p.efficiency:.2f} ({p.plan})")
        lines.append(f"| --gradient-exchange {plan}, {wire} on the wire | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def batch_table() -> str:
    """Markdown: the smallest per-GPU batch reaching 0.8, by GPUs and link."""
    lines = ["| GPUs | " + " | ".join(f"{g:g} Gb/s" for g in LINKS_GBPS) + " |",
             "|---|" + "---|" * len(LINKS_GBPS)]
    for gpus in GPU_COUNTS:
        cells = [f"{b:,}" if (b := model.batch_for_goal(gpus, g)) else "none"
                 for g in LINKS_GBPS]
        lines.append(f"| {gpus} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- the bench section (measures: imports the harness lazily) ----------------------------------

def _step_seconds(ctx, network: str, workers: int, warm: int, steps: int,
                  window: int) -> tuple[dict, float]:
    from bench.runs import run_training
    from bench.sections import NEVER

    runs = run_training(ctx, f"scaling-model-{network}-{workers}w", network, warm + steps,
                        timeout=1800, workers=workers, cpus=[str(i % CORES) for i in range(workers)],
                        extra=["--save-checkpoints-steps", NEVER, "--gradient-exchange", "all-reduce",
                               "--log-every-steps", str(window), "--save-summaries-steps", str(window),
                               "--steps-per-loop", str(window)])
    rate = runs[0].steady_rate(warm)
    if workers > 1 and len({r.done["weights_sha256"] for r in runs}) != 1:
        from bench.procs import BenchError
        raise BenchError(f"{workers} workers ended with different weights")
    return ({"step_s": workers * 100 / rate["images_per_sec"], "log": str(runs[0].proc.log_path)},
            sum(r.proc.cpu_seconds for r in runs))


def section(ctx, plan, models: list[str]) -> dict:
    from bench.sections import _least_contended, _measure

    points = []
    for network in models:
        warm, steps, window = STEPS[network]
        measured = {}
        for workers in (1, *WORKER_COUNTS):
            ctx.say(f"   scaling model: {network}, {workers} worker(s) pinned round-robin to "
                    f"{min(workers, CORES)} core(s), batch 100, all-reduce: {warm} + {steps} steps")
            best = _least_contended(_measure(ctx, functools.partial(
                _step_seconds, ctx, network, workers, warm, steps, window)))
            measured[workers] = best
            ctx.say(f"      {best['step_s'] * 1e3:.1f} ms per step "
                    f"(other processes used {best['foreign_cores']:.2f} cores meanwhile)")
        for workers in WORKER_COUNTS:
            points.append({"network": network, "workers": workers, "one_s": measured[1]["step_s"],
                           "step_s": measured[workers]["step_s"],
                           "foreign_cores": measured[workers]["foreign_cores"]})
    return evaluate(points, _quiet_two_worker_points(ctx))


def _quiet_two_worker_points(ctx) -> list[dict]:
    """The 2-worker all-reduce points of this run's (or the last run's) scaling section."""
    from bench import report
    from bench.run import RESULTS

    previous = report.load(RESULTS / ("results-quick.json" if ctx.quick else "results.json")) or {}
    try:
        return bench_points(previous)
    except KeyError:
        return []


def evaluate(points: list[dict], quiet: list[dict]) -> dict:
    """Rows of predicted against measured step times. With 2-worker points from `make bench`'s
    scaling section (`quiet`), the loopback link is fitted on those and the 2/4/8-worker
    measurements are predicted as held-out points; else it is fitted on the points themselves."""
    link = fit_loopback(quiet) if quiet else fit_loopback(points)
    own = fit_loopback(points)
    how = ("fitted on the scaling section's 2-worker all-reduce runs (held out: these)" if quiet
           else "fitted on these points")
    rows = []
    for c in compare(points, link):
        within = abs(c["error"]) <= TOLERANCE
        rows.append({
            "id": f"scaling_model.{c['network']}.{c['workers']}w",
            "figure": f"Scaling model, {model_name(c['network'])}, {c['workers']} workers on 2 cores "
                      "(loopback): predicted step time",
            "value": f"{c['predicted_s'] * 1e3:.1f} ms ({c['error']:+.0%})",
            "baseline": f"measured {c['step_s'] * 1e3:.1f} ms",
            "ratio": f"{c['predicted_s'] / c['step_s']:.2f}x",
            "target": f"within {TOLERANCE:.0%}", "status": "PASS" if within else "MISS",
            "notes": (f"compute {cpu_compute_s(c['one_s'], c['workers']) * 1e3:.1f} ms "
                      f"(1 worker {c['one_s'] * 1e3:.1f} ms x {max(1, c['workers'] / CORES):g}) + "
                      f"ring all-reduce of 2(n-1) messages at {link.latency_s * 1e6:.0f} us and "
                      f"{link.bytes_per_s / 1e9:.2f} GB/s, {how}; other processes used "
                      f"{c.get('foreign_cores', 0):.2f} cores"),
            "numbers": c})
    return {"rows": rows, "details": {
        "loopback_latency_s": link.latency_s, "loopback_bytes_per_s": link.bytes_per_s,
        "fitted_on": how, "quiet_points": compare(quiet, link) if quiet else [],
        "own_fit": {"latency_s": own.latency_s, "bytes_per_s": own.bytes_per_s,
                    "points": compare(points, own)},
        "points": points, "gpu_table": gpu_table(), "options_table": options_table(),
        "batch_for_0.8": batch_table()}}


def model_name(network: str) -> str:
    return {"mlp": "MLP", "lenet5": "LeNet-5"}[network]


if __name__ == "__main__":  # the GPU tables alone (no measurement)
    print(gpu_table(), "", options_table(), "", batch_table(), sep="\n")
