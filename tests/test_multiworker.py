"""Real MultiWorkerMirroredStrategy processes on 127.0.0.1: training, faults, resume.

Nothing here is faked: each worker is a `python -m model train` process with
its own TF_CONFIG, talking gRPC to the others over loopback.
"""

from __future__ import annotations

import json
import re
import signal

import pytest

from model import log_lines
from model.errors import EXIT_PREEMPTED
from tests.multiworker import Cluster, done_line, eval_steps

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # timing assertions: the cores to itself

MLP_ARGS = ["--model", "mlp", "--save-checkpoints-steps", "100", "--log-every-steps", "50",
            "--steps-per-loop", "50"]
# Shorter loop calls where a test needs several checkpoints or progress lines, not many steps.
EVERY_25_STEPS = ["--log-every-steps", "25", "--steps-per-loop", "25"]


def checkpoint_steps(model_dir) -> list[int]:
    return sorted(int(m.group(1)) for p in model_dir.glob("ckpt-*.index")
                  if (m := re.match(r"ckpt-(\d+)\.index", p.name)))


def restored_step(output: str) -> int | None:
    match = log_lines.TRAIN_RESTORED.search(output)
    return int(match["step"]) if match else None


def test_two_workers_train_together_and_the_evaluator_reports_each_checkpoint_once(tmp_path):
    """Two workers and an evaluator, with the gradients exchanged in bfloat16 (the
    float32 exchange is what every other multi-worker test runs): every worker
    still applies the same update, and the loss and accuracy in the progress
    lines are summed over the workers once per loop call (in float32), so both
    workers print the same."""
    cluster = Cluster(tmp_path, workers=2, train_args=[
        *MLP_ARGS, *EVERY_25_STEPS, "--save-checkpoints-steps", "50", "--max-steps", "150",
        "--all-reduce-dtype", "bfloat16"])
    try:
        evaluator = cluster.start_evaluator()
        workers = cluster.start_workers()
        assert [w.wait(240) for w in workers] == [0, 0]
        assert evaluator.wait(120) == 0
    finally:
        cluster.stop_all()
    (step0, weights0), (step1, weights1) = (done_line(w) for w in workers)
    assert step0 == step1 == 150
    assert weights0 == weights1, "the workers ended with different weights"
    assert "global batch 200 over 2 replica(s)" in workers[0].output()
    progress = [[(int(m["step"]), m["loss"], m["batch_accuracy"])
                 for m in log_lines.TRAIN_PROGRESS.finditer(w.output())] for w in workers]
    assert [p[0] for p in progress[0]] == list(range(25, 151, 25))
    assert progress[0] == progress[1], "the workers logged different global metrics"
    first_loss, last_loss = progress[0][0][1], progress[0][-1][1]
    assert float(last_loss) < float(first_loss), progress[0]

    # Only the chief's checkpoints reach the model dir; the other worker's
    # temporary copies are deleted.
    assert checkpoint_steps(cluster.model_dir) == [50, 100, 150]
    assert not list(cluster.worker_tmp[1].iterdir()), "worker 1 left temporary checkpoints"
    assert json.loads((cluster.model_dir / "training_complete.json").read_text())["final_step"] == 150

    assert eval_steps(evaluator) == [50, 100, 150]
    # The group left in order (model/leaving.py): the chief heard from worker 1 before exiting.
    assert int(log_lines.LEAVE_TOGETHER.search(workers[0].output())["waited"]) == 1
    assert "leave |" not in workers[1].output()  # it told the chief, without a warning
    metrics = json.loads((cluster.model_dir / "eval" / "final_metrics.json").read_text())
    assert metrics["final_step"] == 150 and metrics["test_accuracy"] > 0.9


def test_gathered_factors_and_the_all_reduce_train_alike(tmp_path):
    """At 100 images per worker the default exchange all-gathers the MLP's
    layer-1 inputs and output gradients (and the other gradients with them);
    `all-reduce` sums every gradient. The same sums up to float rounding: the
    global losses logged along the way agree, and in either run both workers
    end with identical weights."""
    losses = {}
    clusters = {mode: Cluster(tmp_path / mode, workers=2, train_args=[
        *MLP_ARGS, *EVERY_25_STEPS, "--max-steps", "100", "--gradient-exchange", mode])
        for mode in ("auto", "all-reduce")}
    try:  # the two runs at once: most of a run is start-up, waiting for its peer
        started = {mode: cluster.start_workers() for mode, cluster in clusters.items()}
        for workers in started.values():
            assert [w.wait(240) for w in workers] == [0, 0]
    finally:
        for cluster in clusters.values():
            cluster.stop_all()
    for mode, workers in started.items():
        assert done_line(workers[0]) == done_line(workers[1]), mode
        losses[mode] = [float(m["loss"]) for m in log_lines.TRAIN_PROGRESS.finditer(workers[0].output())]
        exchange_line = log_lines.TRAIN_EXCHANGE.search(workers[0].output())["plan"]
        assert exchange_line.startswith("factors all-gathered for mlp/layer1_weights" if mode == "auto"
                                        else "all-reduce of all 4 gradients"), exchange_line
    assert len(losses["auto"]) == len(losses["all-reduce"]) == 4
    assert losses["auto"] == pytest.approx(losses["all-reduce"], rel=5e-3)


FAULTS_RUN_STEPS = 300  # past the SIGTERM (at 100) and the first regular checkpoint after it (200)


@pytest.fixture(scope="module")
def preempted_then_killed(tmp_path_factory):
    """One 2-worker run, three groups: worker 1 SIGTERMed after step 50 (no regular checkpoints
    yet, so the preemption's is the only one), then, in the group that resumed, worker 1
    SIGKILLed after its first regular checkpoint, then a group that finishes. Each fault hits
    the group the one before left, so the two tests below share the run (and its start-up)."""
    tmp = tmp_path_factory.mktemp("faults")
    cluster = Cluster(tmp, workers=2, train_args=[*MLP_ARGS, "--max-steps", str(FAULTS_RUN_STEPS)])
    run = {"cluster": cluster}
    try:
        first = cluster.start_workers(attempt=0, extra=["--save-checkpoints-steps", "10000"])
        first[1].wait_for(r"train \| step 50 ", timeout=240)
        first[1].signal(signal.SIGTERM)  # only one pod is preempted; both must stop together
        run["preempted_codes"] = [w.wait(90) for w in first]
        match = first[0].wait_for(r"step (\d+) \| SIGTERM: checkpoint saved", timeout=1)
        run["preempted_at"] = preempted_at = int(match.group(1))
        run["checkpoints_after_sigterm"] = checkpoint_steps(cluster.model_dir)
        run["complete_after_sigterm"] = (cluster.model_dir / "training_complete.json").exists()

        second = cluster.start_workers(attempt=1)
        saved = second[0].wait_for(r"saved .*ckpt-(\d+)$", timeout=240)
        assert int(saved.group(1)) > preempted_at, saved.group(0)
        second[1].kill()  # SIGKILL: no chance to save
        # The survivor must notice its peer is gone and fail, not hang.
        run["survivor_code"] = second[0].wait(90)
        run["last_saved"] = max(checkpoint_steps(cluster.model_dir))

        third = cluster.start_workers(attempt=2)
        assert [w.wait(240) for w in third] == [0, 0]
    finally:
        cluster.stop_all()
    run.update(first=first, second=second, third=third)
    return run


def test_sigterm_saves_on_every_worker_and_exits_with_the_preemption_code(preempted_then_killed):
    run = preempted_then_killed
    assert run["preempted_codes"] == [EXIT_PREEMPTED, EXIT_PREEMPTED]
    assert log_lines.LEAVE_TOGETHER.search(run["first"][0].output())  # preempted, it left in order too
    assert run["checkpoints_after_sigterm"] == [run["preempted_at"]]
    assert not run["complete_after_sigterm"]
    for worker in run["second"]:  # no step lost: training resumes exactly where it stopped
        assert restored_step(worker.output()) == run["preempted_at"]


def test_sigkill_of_one_worker_then_restart_resumes_from_the_last_checkpoint(preempted_then_killed):
    run = preempted_then_killed
    assert run["survivor_code"] not in (0, EXIT_PREEMPTED)
    assert run["preempted_at"] < run["last_saved"] < FAULTS_RUN_STEPS
    for worker in run["third"]:
        assert restored_step(worker.output()) == run["last_saved"]
    (step0, weights0), (step1, weights1) = (done_line(w) for w in run["third"])
    assert step0 == step1 == FAULTS_RUN_STEPS and weights0 == weights1
    # The killed worker's temporary checkpoint directory went when it started again.
    # (TensorFlow's autograph leaves its own __autograph_generated_file*.py after a SIGKILL.)
    leftovers = list(run["cluster"].worker_tmp[1].glob("mnist-train-worker*"))
    assert not leftovers, f"worker 1 left temporary checkpoint directories: {leftovers}"


def test_resumed_training_matches_an_uninterrupted_run_step_for_step(tmp_path):
    """Data order is a function of the global step, so a stop/resume only changes
    dropout randomness; the MLP has none, so the weights must match exactly."""
    straight = Cluster(tmp_path / "straight", workers=1, train_args=[*MLP_ARGS, "--max-steps", "100"])
    interrupted = Cluster(tmp_path / "interrupted", workers=1,
                          train_args=[*MLP_ARGS, "--save-checkpoints-steps", "50"])
    try:  # the straight run and the first part at once (independent directories)
        (run,) = straight.start_workers()
        (part1,) = interrupted.start_workers(attempt=0, extra=["--max-steps", "50"])
        assert run.wait(120) == 0
        assert part1.wait(120) == 0
        (part2,) = interrupted.start_workers(attempt=1, extra=["--max-steps", "100"])
        assert part2.wait(120) == 0
    finally:
        straight.stop_all()
        interrupted.stop_all()
    assert restored_step(part2.output()) == 50
    assert done_line(part2) == done_line(run)


def test_a_worker_whose_peers_never_join_gives_up_after_the_startup_timeout(tmp_path):
    cluster = Cluster(tmp_path, workers=2, train_args=[*MLP_ARGS, "--max-steps", "100",
                                                       "--startup-timeout-secs", "5"])
    try:
        lone = cluster.start_workers()[0]
        cluster.procs[1].kill()  # worker 1 never joins
        code = lone.wait(120)
    finally:
        cluster.stop_all()
    assert code == -signal.SIGKILL
    assert "not every worker joined within 5 s" in lone.output()
