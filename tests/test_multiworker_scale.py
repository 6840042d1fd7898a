"""Beyond two workers: real `python -m model train` processes on 127.0.0.1 at 4 and 8 workers.

Every other multi-process test runs two workers, where a ring is a pair, the
chief's only peer is worker 1 and the gradient exchange needs one collective.
Four TensorFlow processes on this machine's two cores start slowly, so ONE
4-worker group is taken through a preemption, two SIGKILLs and the restarts,
asserting at each stage what a user's restarted Job relies on. The 8-worker
run (slow set) trains once and checks the same invariants at the end.
"""

from __future__ import annotations

import json
import signal
import time

import pytest

from model import log_lines
from model.errors import EXIT_PREEMPTED
from tests.multiworker import Cluster, Proc, done_line
from tests.test_multiworker import MLP_ARGS, checkpoint_steps, restored_step

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # timing assertions: the cores to itself

# Short loop calls, each ending in a checkpoint and a progress line (MLP_ARGS's are 50-100 steps):
# the invariants need a few checkpoints, not many steps, and 4-8 workers share two cores.
EVERY_25_STEPS = ["--save-checkpoints-steps", "25", "--log-every-steps", "25", "--steps-per-loop", "25"]
EVERY_10_STEPS = ["--save-checkpoints-steps", "10", "--log-every-steps", "10", "--steps-per-loop", "10"]

def leftover_temp_dirs(cluster: Cluster) -> dict[int, list[str]]:
    """Each non-chief's checkpoint temp dirs still on disk (autograph's own files do not count)."""
    found = {i: sorted(p.name for p in cluster.worker_tmp[i].glob("mnist-train-worker*"))
             for i in range(1, cluster.num_workers)}
    return {i: names for i, names in found.items() if names}


def assert_all_restored(workers: list[Proc], step: int) -> None:
    restored = [restored_step(w.output()) for w in workers]
    assert restored == [step] * len(workers), f"restored steps {restored}, expected {step} everywhere"


def assert_finished_together(cluster: Cluster, workers: list[Proc], final_step: int) -> None:
    """Every worker at `final_step` with the same weights; only the chief's files in the model dir."""
    done = [done_line(w) for w in workers]
    assert {step for step, _ in done} == {final_step}, done
    assert len({sha for _, sha in done}) == 1, f"the workers ended with different weights: {done}"
    assert json.loads((cluster.model_dir / "training_complete.json").read_text())["final_step"] == final_step
    assert max(checkpoint_steps(cluster.model_dir)) == final_step
    left = leftover_temp_dirs(cluster)
    assert not left, f"non-chiefs left temporary checkpoints: {left}"


def kill_after_next_save(cluster: Cluster, workers: list[Proc], victims: tuple[int, ...],
                         after: int) -> int:
    """SIGKILL the `victims` once the chief has saved a checkpoint past step `after`; every
    survivor must fail (not hang, not claim success). Returns the last saved step."""
    deadline = time.monotonic() + 180
    while max((int(m["step"]) for m in log_lines.TRAIN_SAVED.finditer(workers[0].output())),
              default=0) <= after:
        assert time.monotonic() < deadline and workers[0].popen.poll() is None, (
            f"the chief saved nothing past step {after}; log:\n{workers[0].output()[-3000:]}")
        time.sleep(0.1)
    for victim in victims:
        workers[victim].kill()  # SIGKILL: no chance to save
    codes = [w.wait(90) for i, w in enumerate(workers) if i not in victims]
    assert all(code not in (0, EXIT_PREEMPTED) for code in codes), codes
    return max(checkpoint_steps(cluster.model_dir))


def test_four_workers_survive_a_preemption_and_sigkills_and_finish_identical(tmp_path):
    """One 4-worker group (each attempt costs four TensorFlow start-ups on two cores):

    Attempt 0: SIGTERM to worker 2 alone; all four save at the same step and exit 42.
    Attempt 1: all four resume exactly there; after the next save, SIGKILL of the chief
    and of worker 3 together (a node holding both dies): workers 1 and 2 must fail.
    Attempt 2: all four resume from the last checkpoint and finish at exactly max-steps
    with identical weights, only the chief's checkpoints in the model dir and no
    non-chief temp dir left (worker 3's, left by the SIGKILL, goes when it restarts).
    (A SIGKILL of a non-chief with the chief surviving: tests/test_multiworker.py.)

    `--gradient-exchange factors`: at 4 replicas the factors are all-gathered and the other
    gradients all-reduced, two collectives per step across the four processes (the
    plain all-reduce is what the 8-worker run and the 2-worker tests exchange).

    For speed, loop calls (and checkpoints) of 25 steps: the attempts run 150 steps in
    all, most of the test is the twelve TensorFlow start-ups."""
    max_steps = 150  # beyond the kills (they land within a few steps of a save)
    cluster = Cluster(tmp_path, workers=4, train_args=[
        *MLP_ARGS, "--max-steps", str(max_steps), *EVERY_25_STEPS, "--gradient-exchange", "factors"])
    try:
        first = cluster.start_workers(attempt=0)
        first[2].wait_for(r"train \| step 25 ", timeout=240)
        first[2].signal(signal.SIGTERM)  # one pod preempted; all four must stop together
        assert [w.wait(90) for w in first] == [EXIT_PREEMPTED] * 4
        preempted = [int(log_lines.TRAIN_PREEMPTED.search(w.output())["step"]) for w in first]
        assert len(set(preempted)) == 1, f"the workers saved at different steps: {preempted}"
        preempted_at = preempted[0]
        assert checkpoint_steps(cluster.model_dir)[-1] == preempted_at
        assert not (cluster.model_dir / "training_complete.json").exists()
        assert not leftover_temp_dirs(cluster), leftover_temp_dirs(cluster)
        assert "global batch 400 over 4 replica(s)" in first[0].output()
        plan = log_lines.TRAIN_EXCHANGE.search(first[0].output())["plan"]
        assert plan == ("factors all-gathered for mlp/layer1_weights, mlp/layer2_weights; "
                        "the other 2 gradients all-reduced"), plan

        second = cluster.start_workers(attempt=1)
        last_saved = kill_after_next_save(cluster, second, victims=(0, 3), after=preempted_at)
        assert_all_restored(second, preempted_at)
        assert preempted_at < last_saved < max_steps

        final = cluster.start_workers(attempt=2)
        assert [w.wait(240) for w in final] == [0] * 4
    finally:
        cluster.stop_all()
    assert_all_restored(final, last_saved)
    assert_finished_together(cluster, final, max_steps)


def test_eight_workers_train_to_the_same_weights(tmp_path):
    """One 8-worker run (ring of 8, float32 all-reduce: the MLP's factors do not pay at 8):
    every worker ends at max-steps with the same weights, and only the chief wrote checkpoints."""
    cluster = Cluster(tmp_path, workers=8, train_args=[*MLP_ARGS, "--max-steps", "20", *EVERY_10_STEPS])
    try:
        workers = cluster.start_workers()
        assert [w.wait(400) for w in workers] == [0] * 8
    finally:
        cluster.stop_all()
    assert "global batch 800 over 8 replica(s)" in workers[0].output()
    assert log_lines.TRAIN_EXCHANGE.search(workers[0].output())["plan"] == "all-reduce of all 4 gradients"
    assert checkpoint_steps(cluster.model_dir) == [10, 20]
    assert_finished_together(cluster, workers, 20)
