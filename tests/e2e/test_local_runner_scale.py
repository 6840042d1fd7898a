"""End to end at 4 workers: the rendered chart with `trainer.workers=4`, run by the local
runner (process launcher: each pod a `python -m model` process in its own network
namespace), with worker 3 SIGKILLed mid-run. Four TensorFlow start-ups per attempt on two
cores: ONE run, asserting what the 2-worker fault tests assert, at the highest index.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import generations
from tests.e2e.test_local_runner import NO_TB, RUN_TIMEOUT, assert_trained_to, chief_last_saved, trainer_pods

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # timing assertions: the cores to itself

WORKERS = 4


def test_four_workers_from_the_chart_recover_from_a_sigkill_of_worker_3(local_run):
    run = local_run([*NO_TB, "--set", f"trainer.workers={WORKERS}", "--set", "training.maxSteps=300",
                     "--set", "training.saveCheckpointsSteps=100", "--fault", "kill:worker=3:step=150"])
    code = run.wait(RUN_TIMEOUT)
    assert code == 0, run.tail()
    summary = assert_trained_to(run, 300)  # evaluator's final score, identical weights everywhere
    (fault,) = summary["faults"]
    assert fault["fired"], run.tail()
    gens = generations(trainer_pods(run))
    assert [len(g) for g in gens] == [WORKERS, WORKERS], run.tail()
    killed, survivors = gens[0][3], gens[0][:3]
    assert killed["name"] == fault["pod"] and killed["exit_code"] == 137, run.tail()
    for pod in survivors:  # the chief and workers 1-2 noticed at once instead of hanging
        assert pod["exit_code"] == 1, run.tail()
        assert pod["finished"] - fault["fired_at"] < 30, run.tail()
    last_saved = chief_last_saved(gens[0])
    assert 100 <= last_saved < 300
    for pod in gens[1]:
        assert pod["facts"]["restored_step"] == last_saved == pod["facts"]["start_step"], run.tail()
    for index in range(WORKERS):  # every pod of the chart's Indexed Job joined a 4-worker group
        log = run.log(gens[1][index]["name"])
        assert f"task worker:{index} of {WORKERS} workers" in log, log[-2000:]
        assert f"global batch {100 * WORKERS} over {WORKERS} replica(s)" in log, log[-2000:]
    trainer_job = next(w for w in summary["workloads"] if w["component"] == "trainer")
    assert [i["counted_failures"] for i in trainer_job["indexes"]] == [1] * WORKERS, run.tail()
