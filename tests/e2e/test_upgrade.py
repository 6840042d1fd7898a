"""End to end: `helm upgrade` of a finished run, executed by the local runner's --upgrade.

A run trains the MLP to N steps; `--upgrade` with the same values then runs
nothing; `--upgrade --set training.maxSteps=2N` replaces the trainer and
evaluator Jobs (the chart names them after their spec's run generation) and
the new trainer resumes from the checkpoint at N, trains steps N+1..2N only,
and the new evaluator scores the new checkpoints up to 2N; once their TTL
has deleted those Jobs, the same values re-create them and they find the
run complete. Before the extension, an
upgrade to another model is refused by the trainer (exit 2), leaving the run
as it was. Real processes throughout (the local runner's pods), about three
to four minutes on two busy cores.
"""

from __future__ import annotations

import json
import re

import pytest

from model.log_lines import ALREADY_COMPLETE, EVAL_VALIDATION, TRAIN_PROGRESS, TRAIN_RESTORED
from tests.e2e.conftest import FAST, LocalRun, checkpoint_steps

pytestmark = pytest.mark.slow

N = 100  # steps of the first install; its checkpoints come every N/2 steps
RUN_TIMEOUT = 600  # generous: other CPU-heavy tests may share the two cores
VALUES = [*FAST, "--set", f"training.saveCheckpointsSteps={N // 2}", "--set", "tensorboard.enabled=false"]


def pod_logs(run: LocalRun, component: str) -> dict[str, str]:
    return {p["name"]: run.log(p["name"]) for p in run.pods(component)}


def steps_logged(text: str) -> list[int]:
    return [int(m["step"]) for m in re.finditer(TRAIN_PROGRESS.pattern, text, re.M)]


def job_names(run: LocalRun) -> dict[str, str]:
    return {w["component"]: w["name"] for w in run.summary()["workloads"] if w["kind"] == "Job"}


def test_upgrades_of_a_finished_run_do_what_helm_upgrade_means(local_run):
    install = local_run([*VALUES, "--set", f"training.maxSteps={N}"], name="install")
    assert install.wait(RUN_TIMEOUT) == 0, install.tail()
    assert install.summary()["training"]["final_step"] == N
    model_dir = install.model_dir()
    assert checkpoint_steps(model_dir) == [N // 2, N]
    first_names = job_names(install)
    # (Every run of the dir rewrites its summary.json and logs/: read them before the next one.)
    assert max(s for text in pod_logs(install, "trainer").values() for s in steps_logged(text)) == N

    # The same values again: every object is unchanged, the finished Jobs run nothing.
    same = local_run([*VALUES, "--set", f"training.maxSteps={N}"], name="same", mode="--upgrade",
                     run_dir=install.run_dir)
    assert same.wait(RUN_TIMEOUT) == 0, same.tail()
    summary = same.summary()
    assert summary["pods"] == [], "an upgrade with unchanged values ran pods"
    assert {a["verb"] for a in summary["upgrade"]["actions"]} <= {"unchanged"}, summary["upgrade"]
    assert {w["status"] for w in summary["workloads"] if w["kind"] == "Job"} == {"Complete"}
    assert checkpoint_steps(model_dir) == [N // 2, N]

    # Another model: the trainer refuses the model dir's run (exit 2 fails its Job at once) and
    # nothing of the run changes; a Job failed, so the runner exits 1 (`helm upgrade` succeeds).
    run_config = (model_dir / "run_config.json").read_text()
    other = local_run([*VALUES, "--set", f"training.maxSteps={N}", "--set", "training.model=lenet5"],
                      name="lenet5", mode="--upgrade", run_dir=install.run_dir)
    assert other.wait(RUN_TIMEOUT) == 1, other.tail()
    other_names = job_names(other)
    trainers = other.pods("trainer")
    outcomes = [(p["exit_code"], p["outcome"]) for p in trainers]
    assert (2, "FailJob") in outcomes, (outcomes, other.tail())  # the first exit 2 fails the Job,
    assert {o for _, o in outcomes} <= {"FailJob", "terminated"}, outcomes  # its peers get SIGTERM
    trainer_job = next(w for w in other.summary()["workloads"] if w["component"] == "trainer")
    assert trainer_job["status"] == "Failed" and trainer_job["reason"] == "PodFailurePolicy"
    errors = " ".join(e for p in trainers if p["exit_code"] == 2 for e in p["facts"]["errors"])
    assert "mlp" in errors and "lenet5" in errors, errors
    assert (model_dir / "run_config.json").read_text() == run_config
    assert checkpoint_steps(model_dir) == [N // 2, N]

    # Twice the steps: new Jobs (a new run generation), the old ones deleted.
    extend = local_run([*VALUES, "--set", f"training.maxSteps={2 * N}"], name="extend", mode="--upgrade",
                       run_dir=install.run_dir)
    assert extend.wait(RUN_TIMEOUT) == 0, extend.tail()
    summary = extend.summary()
    verbs = {(a["kind"], a["name"]): a["verb"] for a in summary["upgrade"]["actions"]}
    new_names = job_names(extend)
    for component in ("trainer", "evaluator"):
        assert new_names[component] not in (first_names[component], other_names[component])
        assert verbs[("Job", new_names[component])] == "create"
        assert verbs[("Job", other_names[component])] == "delete"
    assert summary["training"]["final_step"] == 2 * N

    trainers = pod_logs(extend, "trainer")
    assert len(trainers) == 2, "a worker was replaced; the run was not a clean extension"
    for name, text in trainers.items():
        restored = [int(m["step"]) for m in re.finditer(TRAIN_RESTORED.pattern, text, re.M)]
        assert restored == [N], f"{name} did not resume from the checkpoint at {N}: {restored}"
        steps = steps_logged(text)
        assert steps and min(steps) > N and max(steps) == 2 * N, f"{name} logged steps {steps}"
        assert len(steps) == len(set(steps)), f"{name} logged a step twice: {steps}"

    evaluator = "\n".join(pod_logs(extend, "evaluator").values())
    evaluated = [int(m["step"]) for m in re.finditer(EVAL_VALIDATION.pattern, evaluator, re.M)]
    assert evaluated == [N + N // 2, 2 * N], evaluated  # only the new checkpoints, each once
    final = summary["evaluation"]["final"]
    assert final and final["final_step"] == 2 * N
    metrics = json.loads((model_dir / "eval" / "final_metrics.json").read_text())
    assert metrics["final_step"] == 2 * N
    assert checkpoint_steps(model_dir)[-1] == 2 * N

    # A day later the Jobs' ttlSecondsAfterFinished (one day) has deleted them; the same values
    # again re-create them, and they find the run complete. (A day is not waited for: the
    # previous run's summary.json, where the runner reads when each Job finished, is backdated.)
    summary_path = install.run_dir / "summary.json"
    previous = json.loads(summary_path.read_text())
    for workload in previous["workloads"]:
        if workload["finished_wall"]:
            workload["finished_wall"] -= 2 * 86400
    summary_path.write_text(json.dumps(previous))
    steps = checkpoint_steps(model_dir)
    again = local_run([*VALUES, "--set", f"training.maxSteps={2 * N}"], name="after-ttl", mode="--upgrade",
                      run_dir=install.run_dir)
    assert again.wait(RUN_TIMEOUT) == 0, again.tail()
    summary = again.summary()
    assert {a["verb"] for a in summary["upgrade"]["actions"] if a["kind"] == "Job"} == {"create"}
    assert len(summary["upgrade"]["gone"]) == 2, summary["upgrade"]
    for name, text in pod_logs(again, "trainer").items():
        complete = [int(m["step"]) for m in re.finditer(ALREADY_COMPLETE.pattern, text, re.M)]
        assert complete == [2 * N], f"{name}: {text[-2000:]}"
        assert steps_logged(text) == [], f"{name} trained again"
    evaluator = "\n".join(pod_logs(again, "evaluator").values())
    assert f"After {2 * N} training step(s), test accuracy = " in evaluator
    assert "(already evaluated)" in evaluator
    assert checkpoint_steps(model_dir) == steps
