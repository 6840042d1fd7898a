"""End to end: the rendered chart, run by the local runner, trains, fails and recovers for real.

Every test runs `python -m scripts.local_runner` on the chart (real
`python -m model` workers under MultiWorkerMirroredStrategy, each in its own
network namespace, the evaluator Job and TensorBoard), with the MLP and short
schedules for speed, and checks what the run's summary.json, its pod logs
and its model directory say. After every run no process and no network
namespace may be left (the `local_run` fixture checks).

Accuracy thresholds: the MLP reaches about 0.98 validation accuracy after
800-1000 steps of global batch 200 and passes 0.96 by step 300; the tests
require test accuracy >= 0.96.

For speed (about 30 % of `make test` is this file) the fault runs go no
further than the property needs: 300-700 steps, no TensorBoard (only the
default run's tests look at it), and faults that cannot interfere share one
run (the SIGKILLed workers, the SIGKILLed evaluator, and the SIGTERMed
worker in the group after the kills).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from model import log_lines, summaries
from scripts.local_runner import netns, userns
from scripts.paths import REPO_ROOT, RUNS_DIR
from tests.e2e.conftest import (FAST, ROOTLESS, LocalRun, checkpoint_steps, generations,
                                holder_userns, processes_mentioning, runner_prerequisites, unavailable)

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # timing assertions: the cores to itself

MIN_TEST_ACCURACY = 0.96
RUN_TIMEOUT = 600  # generous: other CPU-heavy tests may share the two cores
# The fault runs' settings: TensorBoard would only compete with the workers for the two cores.
NO_TB = [*FAST, "--set", "tensorboard.enabled=false"]


def trainer_pods(run: LocalRun) -> list[dict]:
    return run.pods("trainer")


# The trainer's and the evaluator's names end in the chart's run generation (6 hex digits).
GENERATION = "[0-9a-f]{6}"


def workload_name(run: LocalRun, component: str) -> str:
    """The name the runner reported for the component's workload (summary.json comes only at the end)."""
    found = re.search(rf"\b(?:Job|JobSet|TFJob)/(mnist-train-{component}-{GENERATION})\b", run.output())
    assert found, f"no {component} workload in the output; {run.tail()}"
    return found.group(1)


def assert_trained_to(run: LocalRun, final_step: int) -> dict:
    summary = run.summary()
    assert summary["training"]["final_step"] == final_step, run.tail()
    final = summary["evaluation"]["final"]
    assert final and final["final_step"] == final_step, f"no final evaluation; {run.tail()}"
    assert final["test_accuracy"] >= MIN_TEST_ACCURACY, final
    metrics = json.loads((run.model_dir() / "eval" / "final_metrics.json").read_text())
    assert metrics["final_step"] == final_step and metrics["test_accuracy"] == final["test_accuracy"]
    last = generations(trainer_pods(run))[-1]
    assert all(p["exit_code"] == 0 for p in last)
    shas = {p["facts"]["weights_sha256"] for p in last}
    assert len(shas) == 1, f"the workers ended with different weights: {shas}"
    return summary


def chief_last_saved(generation: list[dict]) -> int:
    """The newest checkpoint the chief (index 0) of a generation logged."""
    chief = next(p for p in generation if p["index"] == 0)
    return max(chief["facts"]["saved_steps"])


# -- the default chart, with TensorBoard kept serving for the TensorBoard tests ---------------------


DEFAULT_RUN_STEPS = 600
DEFAULT_RUN_CHECKPOINTS = [200, 400, 600]  # saveCheckpointsSteps=200


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, request):
    reason = runner_prerequisites()
    if reason:
        unavailable(reason)
    tmp = tmp_path_factory.mktemp("default")
    run = LocalRun(tmp, [*FAST, "--set", f"training.maxSteps={DEFAULT_RUN_STEPS}",
                         "--set", "training.saveCheckpointsSteps=200", "--keep-tensorboard"], name="default")
    try:
        run.wait_for(r"every Job finished; TensorBoard keeps serving at (http://127\.0\.0\.1:\d+/)",
                     timeout=RUN_TIMEOUT)
    except AssertionError:
        run.stop()
        raise
    run.started = time.monotonic()
    yield run
    run.stop()


def test_default_chart_trains_and_the_evaluator_reports_every_checkpoint(default_run):
    """2 workers + evaluator + TensorBoard from the rendered default chart (MLP, 600 steps)."""
    run = default_run
    text = run.output()
    trainer, evaluator = workload_name(run, "trainer"), workload_name(run, "evaluator")
    assert re.fullmatch(f"mnist-train-trainer-{GENERATION}", trainer), trainer
    assert evaluator == f"mnist-train-evaluator-{trainer[-6:]}", "one run generation for both"
    assert f"network:   {trainer}-0.mnist-train-workers -> 10.244.0.10" in text
    assert f"Job/{trainer}: Complete (Completed)" in text
    assert f"Job/{evaluator}: Complete (Completed)" in text
    log = run.log(f"{evaluator}-0")
    lines = list(log_lines.EVAL_VALIDATION.finditer(log))
    steps = [int(m["step"]) for m in lines]
    accuracies = [float(m["accuracy"]) for m in lines]
    model_dir = run.run_dir / "volumes" / "mnist-train-models" / "mnist-train"
    assert steps == DEFAULT_RUN_CHECKPOINTS == checkpoint_steps(model_dir), log[-2000:]
    assert accuracies[-1] > accuracies[0]
    assert all(b >= a - 0.003 for a, b in zip(accuracies, accuracies[1:])), f"accuracy fell: {accuracies}"
    assert str(DEFAULT_RUN_STEPS) in [m["step"] for m in log_lines.EVAL_TEST.finditer(log)], log[-2000:]
    metrics = json.loads((model_dir / "eval" / "final_metrics.json").read_text())
    assert metrics["final_step"] == DEFAULT_RUN_STEPS, metrics
    assert metrics["test_accuracy"] >= MIN_TEST_ACCURACY, metrics
    # goodput (model/goodput.py): one attempt, nothing lost; the evaluator's lag for every checkpoint.
    gp = json.loads((model_dir / "goodput.json").read_text())
    assert gp["complete"] and gp["attempts"] == 1 and gp["steps_lost"] == 0 and 0 < gp["goodput"] < 1, gp
    assert metrics["goodput"] == gp["goodput"], metrics
    assert metrics["eval_lag"]["count"] == len(DEFAULT_RUN_CHECKPOINTS), metrics
    # Both workers train together in their own namespaces, from the chart's environment.
    for i in (0, 1):
        worker = run.log(f"{trainer}-{i}-0")
        assert f"cluster | Indexed Job environment | task worker:{i} of 2 workers" in worker
        peers = ", ".join(f"{trainer}-{j}.mnist-train-workers:2222" for j in (0, 1))
        joining = rf"^cluster \| waiting for all 2 workers to join \(up to [^)]*\): {re.escape(peers)}$"
        assert re.search(joining, worker, re.M), worker[:2000]
        assert [m["step"] for m in log_lines.TRAIN_DONE.finditer(worker)] == [str(DEFAULT_RUN_STEPS)], \
            worker[-2000:]
    # Read-only mounts: the evaluator and TensorBoard never tried to write where they may not.
    for pod in (f"{evaluator}-0", "mnist-train-tensorboard-0"):
        assert "Read-only file system" not in run.log(pod)


def test_nothing_listens_beyond_loopback_on_the_host(default_run):
    pids = {pid for pid, _ in processes_mentioning(str(default_run.run_dir))}
    assert pids, "no pod process found (TensorBoard should still be serving)"
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    listening = [line for line in out.splitlines() if any(f"pid={pid}," in line for pid in pids)]
    assert listening, out
    for line in listening:
        local = line.split()[3]
        assert local.startswith("127."), f"a pod listens beyond loopback on the host: {line}"


def test_tensorboard_serves_the_train_and_eval_runs_and_the_accuracy_scalars(default_run):
    url = re.search(r"TensorBoard keeps serving at (http://\S+/)", default_run.output()).group(1)
    deadline = time.monotonic() + 120
    while True:  # TensorBoard reloads the log dir every reloadInterval (2 s here)
        runs = json.load(urllib.request.urlopen(url + "data/runs", timeout=10))
        tags = json.load(urllib.request.urlopen(url + "data/plugin/scalars/tags", timeout=10))
        if {"train", "eval"} <= set(runs) and summaries.TEST_ACCURACY in tags.get("eval", {}):
            points = json.load(urllib.request.urlopen(
                url + f"data/plugin/scalars/scalars?run=eval&tag={summaries.ACCURACY}", timeout=10))
            if points and points[-1][1] == DEFAULT_RUN_STEPS:
                break
        assert time.monotonic() < deadline, f"runs {runs}, tags {tags}"
        time.sleep(2)
    assert set(summaries.TRAIN_SCALARS) <= set(tags["train"]), tags
    assert set(summaries.EVAL_SCALARS) <= set(tags["eval"]), tags
    assert [p[1] for p in points] == DEFAULT_RUN_CHECKPOINTS
    assert points[-1][2] >= MIN_TEST_ACCURACY
    images = json.load(urllib.request.urlopen(url + "data/plugin/images/tags", timeout=10))
    assert set(summaries.EVAL_IMAGES) <= set(images.get("eval", {})), images


SCREENSHOTS_DIR = RUNS_DIR / "screenshots"  # runs/ is git-ignored; open the PNGs after `make test`
BROWSER_TIMEOUT_MS = 180_000  # TensorBoard's pages are slow when the tests load both cores


def check_dashboard(url: str, run_id: str, screenshots) -> dict:
    """Open TensorBoard at `url` in headless Chromium and check the three views a user opens:
    Time Series' scalars (the `accuracy` and `loss` cards each draw both the train and the eval
    run, at the last step), the Images tab (the confusion matrix and the misclassified digits, at
    actual size) and HParams (the session of run `run_id` with its metric values).
    Saves scalars.png, images.png and hparams.png in `screenshots`; returns what it read."""
    from playwright.sync_api import sync_playwright

    screenshots.mkdir(parents=True, exist_ok=True)
    found: dict = {"cards": {}, "images": {}}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(BROWSER_TIMEOUT_MS)
            page.goto(url + "#timeseries", wait_until="networkidle")
            tag_filter = page.locator("metrics-tag-filter-component input")

            def card(kind: str, tag: str):
                title = page.locator(f'tb-truncated-path[title="{tag}"]')
                found = page.locator(kind).filter(has=title).first
                found.wait_for(state="visible")
                return found

            # Scalars: one card per shared tag, its data table listing both runs at the last step.
            tag_filter.fill(f"^({summaries.ACCURACY}|{summaries.LOSS})$")
            page.keyboard.press("Escape")  # close the filter's suggestions
            for tag in (summaries.ACCURACY, summaries.LOSS):
                scalar_card = card("scalar-card", tag)
                scalar_card.locator("line-chart canvas").first.wait_for(state="visible")
                page.wait_for_function(
                    "card => /\\beval\\b/.test(card.innerText) && /\\btrain\\b/.test(card.innerText)"
                    # the last step as a cell of its own (not inside a value such as 0.9600)
                    f" && /(^|\\s){DEFAULT_RUN_STEPS:,}(\\s|$)/.test(card.innerText)",
                    arg=scalar_card.element_handle())
                found["cards"][tag] = (scalar_card.inner_text(),
                                       scalar_card.locator("line-chart canvas").first.bounding_box())
            page.screenshot(path=str(screenshots / "scalars.png"), timeout=BROWSER_TIMEOUT_MS)

            # Images (the Images tab, which lists every image at actual size when asked): both
            # loaded, at the sizes model/summaries.py draws them.
            page.goto(url + "#images", wait_until="networkidle")
            page.get_by_text("Show actual image size").click()
            for tag in summaries.EVAL_IMAGES:
                loader = page.locator("tf-image-loader").filter(has_text=f"tag: {tag}").first
                image = loader.locator("img").first
                image.wait_for(state="visible")
                page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                                       arg=image.element_handle())
                found["images"][tag] = image.evaluate(
                    "img => [img.naturalWidth, img.naturalHeight, img.getBoundingClientRect().width]")
            page.screenshot(path=str(screenshots / "images.png"), full_page=True,
                            timeout=BROWSER_TIMEOUT_MS)

            # HParams: the run's session (its trial id is the run id) with its metrics.
            page.set_viewport_size({"width": 2400, "height": 800})  # every column of the table
            page.goto(url + "#hparams", wait_until="networkidle")
            table = page.locator("tf-hparams-table-view")
            table.get_by_text(run_id, exact=True).first.wait_for(state="visible")
            found["hparams"] = table.locator("vaadin-grid-cell-content").all_inner_texts()
            page.screenshot(path=str(screenshots / "hparams.png"), timeout=BROWSER_TIMEOUT_MS)
        finally:
            browser.close()
    print(f"TensorBoard screenshots: {screenshots}")
    return found


CHROMIUM = "/usr/bin/chromium"


def test_tensorboard_dashboard_in_headless_chromium(default_run):
    """The dashboard a user opens (issue 15): train and eval overlaid on the accuracy and loss
    cards, the confusion matrix and misclassified digits, the run in HParams with its final
    metrics. Screenshots in runs/screenshots/ (printed)."""
    if not os.access(CHROMIUM, os.X_OK):
        unavailable("Chromium not installed (Debian package chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        unavailable("Playwright for Python not installed (pip install playwright)")
    url = re.search(r"TensorBoard keeps serving at (http://\S+/)", default_run.output()).group(1)
    # (run.model_dir() reads summary.json, which comes only when the run ends)
    model_dir = default_run.run_dir / "volumes" / "mnist-train-models" / "mnist-train"
    run_id = json.loads((model_dir / "run_config.json").read_text())["run_id"]
    metrics = json.loads((model_dir / "eval" / "final_metrics.json").read_text())
    found = check_dashboard(url, run_id, SCREENSHOTS_DIR)
    for tag, (text, box) in found["cards"].items():
        assert tag in text and "eval" in text and "train" in text, text
        assert box and box["width"] > 100 and box["height"] > 50, box
    for tag, (width, height, shown_width) in found["images"].items():
        assert width > 300 and height > 300 and shown_width == width, (tag, found["images"])
    # The session's row: its metrics' final values (HParams prints 5 decimals) after the
    # metrics' column titles.
    cells = found["hparams"]
    assert {"validation accuracy", "test accuracy"} <= set(cells), cells
    assert f"{metrics['test_accuracy']:.5f}" in cells, cells
    assert f"{metrics['final_validation_accuracy']:.5f}" in cells, cells
    for name in ("scalars", "images", "hparams"):
        assert (SCREENSHOTS_DIR / f"{name}.png").stat().st_size > 10_000


def test_ctrl_c_after_the_jobs_ends_the_run_with_their_exit_code(default_run):
    """Last test of the module: --keep-tensorboard ends on Ctrl-C, with the Jobs' result (0)."""
    default_run.interrupt(signal.SIGINT)
    assert default_run.wait(120) == 0, default_run.tail()
    default_run.assert_clean()
    summary = default_run.summary()
    assert summary["result"] == "succeeded"
    assert all(p["exit_code"] is not None for p in summary["pods"])


# -- faults ---------------------------------------------------------------------------------------


KILLED_RUN_STEPS = 400
PREEMPTED_AT = 250  # the SIGTERM, after both kills; the steps after it leave room for the stop
# Checkpoints every 50 steps, a step line every 25 (between them: where the kills land).
EVERY_25_STEPS = ["--set", "training.saveCheckpointsSteps=50",
                  "--set", "trainer.extraArgs={--log-every-steps,25,--steps-per-loop,25}"]


EVALUATOR_KILLED_AT = 150


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """One run, four faults: a worker SIGKILLed at a random step, the other (or the same) worker
    at a random later step, the evaluator SIGKILLed at step 150, and worker 1 SIGTERMed (a
    preemption) at step 250, in the group after the second kill. The trainer's and the
    evaluator's restarts are independent (the evaluator only reads checkpoints), and each
    trainer fault hits the group the previous one left, so one run proves all four."""
    reason = runner_prerequisites()
    if reason:
        unavailable(reason)
    seed = int(os.environ.get("E2E_SEED", time.time_ns() % 10**6))
    rng = random.Random(seed)
    # The first kill after the checkpoint at 50; the second in the group that restored it. Never
    # at a checkpoint step: a kill there races the chief's "saved" line (the newest checkpoint
    # is on disk, its log line not), and the test would blame a correct restore.
    first, second = rng.choice([75, 125]), rng.choice([175, 225])
    victims = rng.sample([0, 1], 2)
    run = LocalRun(tmp_path_factory.mktemp("killed"), [
        *NO_TB, *EVERY_25_STEPS, "--set", f"training.maxSteps={KILLED_RUN_STEPS}",
        "--fault", f"kill:worker={victims[0]}:step={first}",
        "--fault", f"kill:worker={victims[1]}:step={second}",
        "--fault", f"kill:evaluator:step={EVALUATOR_KILLED_AT}",
        "--fault", f"term:worker=1:step={PREEMPTED_AT}"])
    try:
        run.code = run.wait(RUN_TIMEOUT)
        run.context = (f"seed {seed} (E2E_SEED reproduces it): kills at {first} (worker {victims[0]}), "
                       f"{second} (worker {victims[1]})\n{run.tail()}")
        assert run.code == 0, run.context
        assert_trained_to(run, KILLED_RUN_STEPS)
        yield run
    finally:
        run.stop()
        run.assert_clean()


def test_sigkill_of_a_worker_at_random_steps_restarts_the_group_from_the_last_checkpoint(killed_run):
    run, context = killed_run, killed_run.context
    summary = run.summary()
    faults = [f for f in summary["faults"] if f["component"] == "trainer" and f["action"] == "kill"]
    assert len(faults) == 2 and all(f["fired"] for f in faults), context
    gens = generations(trainer_pods(run))
    assert len(gens) == 4, context  # the first group, one after each kill, one after the SIGTERM
    for g, fault in enumerate(faults):
        killed, survivor = (gens[g][fault["index"]], gens[g][1 - fault["index"]])
        assert killed["name"] == fault["pod"] and killed["exit_code"] == 137, context
        # The survivor noticed at once (its collective failed) instead of hanging.
        assert survivor["exit_code"] == 1, context
        assert survivor["finished"] - fault["fired_at"] < 30, context
        # The next group restored exactly the newest checkpoint of the failed one.
        last_saved = chief_last_saved(gens[g])
        for pod in gens[g + 1]:
            assert pod["facts"]["restored_step"] == last_saved, context
            assert pod["facts"]["start_step"] == last_saved, context
    # goodput: four chief attempts (two kills, then the SIGTERM), only steps past the last
    # checkpoint lost (fewer than the 50 between checkpoints per kill; the preemption loses none).
    gp = summary["goodput"]
    assert gp["complete"] and gp["attempts"] == 4 and 0 < gp["steps_lost"] < 200, (gp, context)
    restored = [d["restored_step"] for d in gp["disruptions"][:2]]
    assert restored == [chief_last_saved(g) for g in gens[:2]], context
    trainer_job = next(w for w in summary["workloads"] if w["component"] == "trainer")
    # Each kill failed both indexes once (counted against backoffLimitPerIndex 3); the
    # SIGTERM's exits 42 were not counted (test_sigterm_preemption_... below).
    assert [i["counted_failures"] for i in trainer_job["indexes"]] == [2, 2], context


def test_killed_evaluator_resumes_without_re_evaluating_and_scores_the_final_checkpoint(killed_run):
    run = killed_run
    (fault,) = [f for f in run.summary()["faults"] if f["component"] == "evaluator"]
    assert fault["fired"], run.context
    first, second = run.pods("evaluator")
    assert first["exit_code"] == 137 and first["outcome"] == "counted" and second["exit_code"] == 0
    before = [s for s, _ in first["facts"]["evaluations"]]
    after = [s for s, _ in second["facts"]["evaluations"]]
    assert before and max(before) >= EVALUATOR_KILLED_AT
    assert not set(before) & set(after), f"re-evaluated: {before} then {after}"
    assert after and after[-1] == KILLED_RUN_STEPS and min(after) > max(before)
    assert second["facts"]["final"]["final_step"] == KILLED_RUN_STEPS


def test_sigterm_preemption_checkpoints_everywhere_and_is_not_counted(killed_run):
    """The SIGTERM of the killed run (its fourth group, after the two kills)."""
    run, context = killed_run, killed_run.context
    summary = run.summary()
    (fault,) = [f for f in summary["faults"] if f["action"] == "term"]
    assert fault["fired"], context
    gens = generations(trainer_pods(run))
    assert len(gens) == 4, context
    preempted_group, resumed = gens[2], gens[3]
    assert fault["pod"] == preempted_group[1]["name"], context
    assert [p["exit_code"] for p in preempted_group] == [42, 42], context
    assert [p["outcome"] for p in preempted_group] == ["ignored", "ignored"], context
    preempted = {p["facts"]["preempted_step"] for p in preempted_group}
    assert len(preempted) == 1, preempted  # every worker saved at the same step
    (step,) = preempted
    assert PREEMPTED_AT <= step < KILLED_RUN_STEPS, context
    for pod in resumed:  # no step lost or repeated
        assert pod["facts"]["restored_step"] == step and pod["facts"]["start_step"] == step, context
    assert step in checkpoint_steps(run.model_dir()), context
    preemption = summary["goodput"]["disruptions"][2]  # model/goodput.py: a preemption loses no step
    assert preemption["how"] == "preempted" and preemption["restored_step"] == step, (preemption, context)
    trainer_job = next(w for w in summary["workloads"] if w["component"] == "trainer")
    # Only the two kills counted (test_sigkill_... above); the preemption was ignored once per index.
    assert [i["counted_failures"] for i in trainer_job["indexes"]] == [2, 2], context
    assert [i["ignored_failures"] for i in trainer_job["indexes"]] == [1, 1], context


FROZEN_SECS = 20  # twice the heartbeat timeout: the thaw, not the detection, holds the group up


def test_sigstop_of_a_worker_fails_the_group_within_20s_and_it_recovers(local_run):
    """Frozen for 20 s: the survivor must fail before its peer thaws (the coordination
    service's heartbeats, measured at 6-10 s), or the thawed group would simply go on."""
    run = local_run([*NO_TB, "--set", "training.maxSteps=300", "--set", "training.saveCheckpointsSteps=100",
                     "--fault", f"stop:worker=1:step=150:for={FROZEN_SECS}s"])
    code = run.wait(RUN_TIMEOUT)
    assert code == 0, run.tail()
    summary = assert_trained_to(run, 300)
    (fault,) = summary["faults"]
    gens = generations(trainer_pods(run))
    frozen, survivor = gens[0][1], gens[0][0]
    assert fault["pod"] == frozen["name"]
    assert survivor["exit_code"] not in (0, 42) and survivor["finished"] - fault["fired_at"] < FROZEN_SECS, \
        run.tail()
    assert fault["resumed_at"] is not None
    assert frozen["exit_code"] not in (0, None), run.tail()  # after SIGCONT its group is gone
    last_saved = chief_last_saved(gens[0])
    for pod in gens[-1]:
        assert pod["facts"]["restored_step"] == last_saved


def test_configuration_error_fails_the_job_at_once_with_the_message(local_run):
    run = local_run([*NO_TB, "--set", "training.dataDir=/nonexistent/mnist"])
    code = run.wait(RUN_TIMEOUT)
    assert code == 1, run.tail()
    summary = run.summary()
    jobs = {w["component"]: w for w in summary["workloads"]}
    assert jobs["trainer"]["status"] == "Failed" and jobs["trainer"]["reason"] == "PodFailurePolicy", jobs
    assert "exit code 2 matching FailJob rule" in jobs["trainer"]["message"]
    assert all(len(i["pods"]) == 1 for i in jobs["trainer"]["indexes"]), "a config error was retried"
    assert jobs["evaluator"]["status"] in ("Failed", "Stopped")
    message = "MNIST file not found in /nonexistent/mnist"
    assert any(message in e for p in summary["pods"] for e in p["facts"]["errors"])
    assert f"error reported by a pod: {message}" in run.output()


# -- stopping -------------------------------------------------------------------------------------


def test_ctrl_c_mid_training_stops_everything_cleanly(local_run):
    run = local_run([*NO_TB, "--set", "training.maxSteps=20000"])
    run.wait_for(r"^train \| step \d+ \| loss", timeout=RUN_TIMEOUT,
                 where="logs/mnist-train-trainer-*-0-0.log")
    run.interrupt(signal.SIGINT)
    assert run.wait(120) == 130, run.tail()
    run.assert_clean()
    summary = run.summary()
    assert summary["result"] == "interrupted"
    workers = trainer_pods(run)
    # SIGTERM, as Kubernetes deletes a pod: each worker saved a checkpoint and exited 42.
    assert [p["exit_code"] for p in workers] == [42, 42], run.tail()
    assert all(w["status"] == "Stopped" for w in summary["workloads"])


def test_a_killed_runner_takes_its_pods_along_and_cleanup_removes_its_namespaces(local_run):
    """As root the dead runner's namespaces stay until `cleanup` (or the next run) deletes them;
    as a normal user nothing stays at all: its user namespace has no process left, so the
    namespaces it owned are gone."""
    run = local_run([*FAST, "--set", "training.maxSteps=20000"])
    run.wait_for(f"started pod mnist-train-trainer-{GENERATION}-1-0", timeout=RUN_TIMEOUT)
    run.wait_for(r"^cluster \|", timeout=RUN_TIMEOUT, where="logs/mnist-train-trainer-*-1-0.log")
    run_id = run.run_id()
    if ROOTLESS:
        owner = holder_userns(run_id)
        assert len(userns.processes_in(owner)) >= 3  # the holder and the pods
    else:
        assert len(netns.runner_namespaces(run_id)) == 3
    run.popen.kill()  # no chance to clean up
    run.popen.wait(10)
    deadline = time.monotonic() + 20
    while processes_mentioning(str(run.run_dir)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not processes_mentioning(str(run.run_dir)), "pods outlived their runner"
    if ROOTLESS:
        while userns.processes_in(owner) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not userns.processes_in(owner), "processes outlived the runner in its user namespace"
        return
    assert netns.runner_namespaces(run_id), "expected the dead runner's namespaces until clean-up"
    result = subprocess.run([sys.executable, "-m", "scripts.local_runner", "cleanup"], capture_output=True,
                            text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert not netns.runner_namespaces(run_id), result.stdout


# -- the other launchers of the chart ----------------------------------------------------------------


def test_jobset_rendering_restarts_the_whole_group(local_run):
    run = local_run([*NO_TB, "--set", "trainer.launcher=jobset", "--set", "training.maxSteps=300",
                     "--set", "training.saveCheckpointsSteps=100", "--fault", "kill:worker=0:step=150"])
    assert run.wait(RUN_TIMEOUT) == 0, run.tail()
    summary = assert_trained_to(run, 300)
    jobset = next(w for w in summary["workloads"] if w["kind"] == "JobSet")
    assert jobset["status"] == "Complete" and jobset["restarts"] == 1
    gens = generations(trainer_pods(run))
    # The whole set was recreated: the killed worker's peer was deleted, not left to fail on its own.
    assert gens[0][0]["exit_code"] == 137 and gens[0][1]["deleted"], gens[0]
    last_saved = chief_last_saved(gens[0])
    assert all(p["facts"]["restored_step"] == last_saved for p in gens[1])


def test_tfjob_rendering_gets_the_operators_tf_config(local_run):
    run = local_run([*NO_TB, "--set", "trainer.launcher=tfjob", "--set", "training.maxSteps=300",
                     "--set", "training.saveCheckpointsSteps=100"])
    assert run.wait(RUN_TIMEOUT) == 0, run.tail()
    assert_trained_to(run, 300)
    trainer = workload_name(run, "trainer")
    log = run.log(f"{trainer}-worker-1")
    assert "cluster | TF_CONFIG | task worker:1 of 2 workers" in log
    assert f"{trainer}-worker-0.mnist-train.svc:2222" in log
