"""The scaling model (mnistctl/scaling.py), its calibration (bench/scaling_model.py) and
`mnistctl scaling`: known cases, monotonicity, the fit, and that its facts match the trainer's."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench import scaling_model as bench_model
from mnistctl import scaling
from scripts.paths import REPO_ROOT

MEASUREMENTS = "measurements/gpu_lenet_h200.json"


def test_one_worker_exchanges_nothing_and_is_fully_efficient():
    one = scaling.Cluster(1, 8, scaling.Link(1e9, 1e-5), scaling.Link(1e9, 1e-5))
    for plan in ("auto", "all-reduce", "factors"):
        p = scaling.predict("lenet5", 100, one, 1e-3, plan=plan)
        assert (p.exchange_s, p.extra_compute_s, p.efficiency) == (0.0, 0.0, 1.0)


def test_a_two_worker_ring_costs_two_messages_of_half_the_gradient():
    link = scaling.Link(bytes_per_s=1e9, latency_s=1e-5)
    nbytes = scaling.parameter_count("lenet5") * 4
    p = scaling.predict("lenet5", 100, scaling.Cluster(2, 2, link), 1e-3, plan="all-reduce")
    assert p.exchange_s == pytest.approx(2 * (1e-5 + nbytes / 2 / 1e9))
    assert p.step_s == pytest.approx(1e-3 + p.exchange_s)
    bf16 = scaling.predict("lenet5", 100, scaling.Cluster(2, 2, link), 1e-3, plan="all-reduce",
                           wire="bfloat16")
    assert bf16.exchange_s == pytest.approx(2 * (1e-5 + nbytes / 4 / 1e9))


@pytest.mark.parametrize("gpus", [16, 64, 1000])
def test_efficiency_rises_with_bandwidth_and_batch_and_falls_with_gpus(gpus):
    for batch in (100, 300, 1000, 3000, 10000, 30000):
        by_link = [scaling.predict_gpu(gpus, batch, g).efficiency for g in (10, 25, 100, 400, 3200)]
        assert by_link == sorted(by_link) and by_link[0] < by_link[-1], (batch, by_link)
    for link in (25, 100, 400):
        by_batch = [scaling.predict_gpu(gpus, b, link).efficiency for b in (100, 300, 1000, 3000, 10000)]
        assert by_batch == sorted(by_batch), (link, by_batch)
        by_gpus = [scaling.predict_gpu(g, 1000, link).efficiency for g in (8, 16, 64, 256, 1000)]
        assert by_gpus == sorted(by_gpus, reverse=True), (link, by_gpus)
        wire = [scaling.predict_gpu(gpus, 1000, link, wire=w).efficiency for w in ("float32", "bfloat16")]
        assert wire[0] < wire[1]


def test_h200_step_times_interpolate_the_measured_points():
    assert scaling.h200_step_s(100) == pytest.approx(0.2811e-3)
    assert scaling.h200_step_s(10000, "bfloat16") == pytest.approx(8.5951e-3)
    assert scaling.h200_step_s(50) == scaling.h200_step_s(100)  # launch-bound below 100
    assert 0.2811e-3 < scaling.h200_step_s(300) < 1.4535e-3
    assert scaling.h200_step_s(20000) == pytest.approx(2 * 12.5989e-3)


def test_the_h200_figures_are_the_shared_measurements():
    """The copy in mnistctl/scaling.py against the measurement file beside the repo (CI:
    ../shared; a worktree under wt/: ../../shared). A fresh clone without it skips."""
    candidates = [REPO_ROOT.parent / "shared" / MEASUREMENTS,
                  REPO_ROOT.parent.parent / "shared" / MEASUREMENTS]
    found = [p for p in candidates if p.exists()]
    if not found:
        pytest.skip(f"no {MEASUREMENTS} beside the repo ({', '.join(map(str, candidates))}): "
                    "the copy in mnistctl/scaling.py is used as is")
    data = json.loads(found[0].read_text())
    measured = {r["dtype"]: {} for r in data["results"]}
    for r in data["results"]:
        measured[r["dtype"]][r["batch"]] = r["ms_per_step"]
    assert measured == scaling.H200_LENET5_MS
    assert "JAX" in data["what"] and "H200" in data["what"]


def test_the_variable_shapes_and_the_auto_plan_are_the_trainers():
    from model.gradient_exchange import plan_exchange
    from model.networks import NETWORKS

    for name, cls in NETWORKS.items():
        net = cls()
        shapes = tuple(tuple(v.shape.as_list()) for v in net.trainable_variables)
        assert shapes == scaling.VARIABLE_SHAPES[name]
        assert tuple(tuple(w.shape.as_list()) for w in net.dense_weights) == scaling.DENSE_WEIGHTS[name]
        for rows, replicas in ((100, 2), (100, 4), (100, 8), (6, 4), (400, 2), (1000, 64)):
            for mode in ("auto", "factors", "all-reduce"):
                plan = plan_exchange(net, mode, rows, replicas)
                expected = tuple(tuple(net.trainable_variables[i].shape.as_list()) for i in plan.factored)
                assert scaling.exchange_for(name, rows, replicas, mode).factored == expected


def test_the_calibration_fit_recovers_a_known_link():
    link = scaling.Link(bytes_per_s=0.8e9, latency_s=250e-6)
    points = []
    for network, one_s in (("mlp", 3e-3), ("lenet5", 40e-3)):
        for workers in bench_model.WORKER_COUNTS:
            step = bench_model.predict_loopback(link, network, workers, one_s).step_s
            points.append({"network": network, "workers": workers, "one_s": one_s, "step_s": step})
    fitted = bench_model.fit_loopback(points)
    assert fitted.latency_s == pytest.approx(link.latency_s, rel=1e-6)
    assert fitted.bytes_per_s == pytest.approx(link.bytes_per_s, rel=1e-6)
    assert all(abs(c["error"]) < 1e-9 for c in bench_model.compare(points, fitted))
    # Contention: 8 workers on 2 cores compute 4 steps' worth per step.
    assert bench_model.cpu_compute_s(3e-3, 8) == pytest.approx(12e-3)
    assert bench_model.cpu_compute_s(3e-3, 1) == 3e-3


def test_the_batch_for_the_goal_reaches_it_and_a_smaller_candidate_does_not():
    batch = scaling.batch_for_goal(64, 100)
    assert scaling.predict_gpu(64, batch, 100).efficiency >= 0.8
    smaller = scaling.CANDIDATE_BATCHES[scaling.CANDIDATE_BATCHES.index(batch) - 1]
    assert scaling.predict_gpu(64, smaller, 100).efficiency < 0.8


def _mnistctl(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "mnistctl", "scaling", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60, env=env)


def test_mnistctl_scaling_prints_the_efficiency_and_the_batch_that_reaches_0_8():
    run = _mnistctl("--workers", "64", "--gpus-per-worker", "1", "--batch", "100", "--network", "lenet5",
                    "--link-gbps", "100")
    assert run.returncode == 0, run.stderr
    expected = scaling.predict_gpu(64, 100, 100)
    assert f"expected scaling efficiency {expected.efficiency:.2f}" in run.stdout
    assert f"a per-GPU batch of {scaling.batch_for_goal(64, 100)} reaches it" in run.stdout
    assert "8 node(s)" in run.stdout
    fine = _mnistctl("--workers", "1", "--gpus-per-worker", "8", "--batch", "1000", "--link-gbps", "25")
    assert fine.returncode == 0 and "below" not in fine.stdout, fine.stdout


def test_mnistctl_scaling_rejects_bad_numbers_and_unmeasured_networks():
    run = _mnistctl("--workers", "0", "--batch", "-5", "--network", "mlp")
    assert run.returncode == 2 and run.stdout == ""
    assert "--workers must be a positive number, got 0" in run.stderr
    assert "--batch must be a positive number, got -5" in run.stderr
    assert "lenet5 only" in run.stderr


def test_two_replicas_gather_everything_in_one_collective_more_need_two():
    """As model/gradient_exchange.py: at 2 replicas the other gradients ride in the factors'
    all-gather; from 3 on they are all-reduced separately."""
    two = scaling.exchange_for("mlp", 100, 2)
    assert two.factored == ((784, 500),)
    assert (two.gathered, two.reduced) == (100 * 1284 + 500 + 10 + 500 * 10, 0)
    three = scaling.exchange_for("mlp", 100, 3, "factors")
    assert (three.gathered, three.reduced) == (100 * (1284 + 510), 500 + 10)
    assert three.extra_flops == 2 * 2 * 100 * (784 * 500 + 500 * 10)


def test_the_quiet_two_worker_points_come_from_the_bench_scaling_rows_without_factors():
    def row(network, batch, exchange, dtype, one, two):
        return {"id": f"scaling.{network}.x", "numbers": {"batch": batch, "exchange": exchange,
                                                          "dtype": dtype, "one": one, "two": two}}
    results = {"sections": {"scaling": {"rows": [
        row("mlp", 100, "auto", "float32", 37000, 31000),        # factors at 2 x 100: left out
        row("mlp", 100, "all-reduce", "bfloat16", 37000, 29000),
        row("lenet5", 400, "auto", "float32", 1478, 2814),       # all-reduce at 2 x 400
    ]}}}
    points = bench_model.bench_points(results)
    assert [(p["network"], p["batch"], p["wire"]) for p in points] == [
        ("mlp", 100, "bfloat16"), ("lenet5", 400, "float32")]
    assert points[1]["one_s"] == pytest.approx(400 / 1478)
    assert points[1]["step_s"] == pytest.approx(800 / 2814)
    held_out = bench_model.evaluate(points, points)
    assert [r["id"] for r in held_out["rows"]] == ["scaling_model.mlp.2w", "scaling_model.lenet5.2w"]


def test_the_model_and_the_command_are_tensorflow_free():
    """`mnistctl scaling` runs where the chart is installed from, without TensorFlow."""
    code = ("import sys, mnistctl.cli, mnistctl.scaling, bench.scaling_model; "
            "sys.exit('tensorflow' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                         timeout=60, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert run.returncode == 0, run.stderr or "tensorflow was imported"
