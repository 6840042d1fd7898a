"""The scaling model (mnistctl/scaling.py) calibrated on this machine, then evaluated for GPU clusters.

Calibration (`python -m bench.run --only scaling_model`): the MLP and LeNet-5 at batch 100
per worker, `--gradient-exchange all-reduce`, float32 on the wire, with 1 worker pinned to
core 0 and with 2, 4 and 8 workers on 127.0.0.1 pinned round-robin to cores 0 and 1. With
2 cores, N > 2 workers share them: each core runs N/2 workers' compute one after the other,
so the model's compute per step is the pinned 1-worker step x N/2 (`cpu_compute_s`), and
the loopback ring's latency and bandwidth are fitted (least squares) to what remains of
the measured step times. Predicted against measured is reported per point.

Evaluation: the same formulas with the H200's measured LeNet-5 step times (a JAX
measurement), NVLink inside a node and 25/100/400 Gb/s between nodes, 8 to 1,000 GPUs
(`gpu_table`), which is the table in the README. This module's core is TF-free; the
section measures with `python -m model train` processes.
"""

from __future__ import annotations

import functools

from mnistctl import scaling as model

CORES = 2  # the measured machine's; the runs pin to cores 0 and 1
WORKER_COUNTS = (2, 4, 8)
STEPS = {  # model -> (warm-up steps, measured steps); progress windows are 100 steps
    False: {"mlp": (200, 300), "lenet5": (100, 200)},
    True: {"mlp": (100, 100), "lenet5": (100, 100)},  # --quick
}
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


def fit_loopback(points: list[dict]) -> model.Link:
    """Least-squares latency and 1/bandwidth from points {network, workers, one_s, step_s}.

    Each point's exchange time is its measured step minus the modelled compute.
    """
    rows = [(*loopback_features(p["network"], p["workers"]),
             p["step_s"] - cpu_compute_s(p["one_s"], p["workers"])) for p in points]
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


def predict_loopback(link: model.Link, network: str, workers: int, one_s: float) -> model.Prediction:
    cluster = model.Cluster(workers, workers, link)
    return model.predict(network, 100, cluster, cpu_compute_s(one_s, workers), plan="all-reduce")


def compare(points: list[dict], link: model.Link) -> list[dict]:
    out = []
    for p in points:
        predicted = predict_loopback(link, p["network"], p["workers"], p["one_s"]).step_s
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

def _step_seconds(ctx, network: str, workers: int, warm: int, steps: int) -> tuple[dict, float]:
    from bench.runs import run_training
    from bench.sections import NEVER

    runs = run_training(ctx, f"scaling-model-{network}-{workers}w", network, warm + steps,
                        timeout=1800, workers=workers, cpus=[str(i % CORES) for i in range(workers)],
                        extra=["--save-checkpoints-steps", NEVER, "--gradient-exchange", "all-reduce"])
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
        warm, steps = STEPS[ctx.quick][network]
        measured = {}
        for workers in (1, *WORKER_COUNTS):
            ctx.say(f"   scaling model: {network}, {workers} worker(s) pinned round-robin to "
                    f"{min(workers, CORES)} core(s), batch 100, all-reduce: {warm} + {steps} steps")
            best = _least_contended(_measure(ctx, functools.partial(
                _step_seconds, ctx, network, workers, warm, steps)))
            measured[workers] = best
            ctx.say(f"      {best['step_s'] * 1e3:.1f} ms per step "
                    f"(other processes used {best['foreign_cores']:.2f} cores meanwhile)")
        for workers in WORKER_COUNTS:
            points.append({"network": network, "workers": workers, "one_s": measured[1]["step_s"],
                           "step_s": measured[workers]["step_s"],
                           "foreign_cores": measured[workers]["foreign_cores"]})
    link = fit_loopback(points)
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
                      f"ring all-reduce 2(n-1) messages at a fitted {link.latency_s * 1e6:.0f} us "
                      f"and {link.bytes_per_s / 1e9:.2f} GB/s; other processes used "
                      f"{c['foreign_cores']:.2f} cores"),
            "numbers": c})
    return {"rows": rows, "details": {
        "loopback_latency_s": link.latency_s, "loopback_bytes_per_s": link.bytes_per_s,
        "points": points, "gpu_table": gpu_table(), "options_table": options_table(),
        "batch_for_0.8": batch_table()}}


def model_name(network: str) -> str:
    return {"mlp": "MLP", "lenet5": "LeNet-5"}[network]


if __name__ == "__main__":  # the GPU tables alone (no measurement)
    print(gpu_table(), "", options_table(), "", batch_table(), sep="\n")
