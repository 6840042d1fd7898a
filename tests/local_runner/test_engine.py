"""The engine (runner.py) driving a launcher through its interface, with no processes.

ScriptedLauncher (fakes.py) stands in for the process launcher: the loop, the
consumers rule and the summary do not depend on how pods run."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from scripts.local_runner.controllers import CONTROLLERS
from scripts.local_runner.render import find_helm
from scripts.local_runner.runner import RunOptions, consumers_of
from scripts.paths import REPO_ROOT
from tests.e2e.conftest import runner_prerequisites, unavailable
from tests.local_runner.fakes import FakeCluster, ScriptedLauncher, job_doc, name, run


@pytest.mark.parametrize("trainer_code, expected", [(0, 0), (2, 1)])
def test_runner_drives_any_launcher_through_the_interface(tmp_path, rendered, trainer_code, expected):
    launcher = ScriptedLauncher(trainer_code)
    out = io.StringIO()
    options = RunOptions(run_dir=tmp_path / "run", tick=0.05, shutdown_grace=2)
    code = run(rendered["job"], launcher, options, out)
    assert code == expected, out.getvalue()
    trainer = name(rendered["job"], "Job", "trainer")
    assert launcher.setups == [[f"{trainer}-0.mnist-train-workers", f"{trainer}-1.mnist-train-workers"]]
    assert launcher.teardowns == 1
    workers = [p for p in launcher.started if p.component == "trainer"]
    assert [p.container.env["JOB_COMPLETION_INDEX"] for p in workers] == ["0", "1"]
    assert workers[1].slot.address == "192.0.2.1"
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["launcher"] == "scripted" and summary["exit_code"] == expected
    jobs = {w["component"]: w for w in summary["workloads"]}
    if expected == 0:
        assert jobs["trainer"]["status"] == jobs["evaluator"]["status"] == "Complete"
    else:
        assert jobs["trainer"]["reason"] == "PodFailurePolicy" and len(workers) == 2
        assert jobs["evaluator"]["status"] == "Stopped"
    assert jobs["tensorboard"]["status"] == "Stopped"


def test_a_failed_job_stops_the_jobs_that_read_what_it_writes(tmp_path, rendered):
    """The consumers rule, from the manifests alone: the evaluator mounts read-only the directory
    the trainer writes, so it is the trainer's consumer; nobody consumes the evaluator's output."""
    cluster = FakeCluster(tmp_path, rendered["job"].docs)
    workloads = [CONTROLLERS[d["kind"]](cluster, d) for d in rendered["job"].docs if d["kind"] in CONTROLLERS]
    by_component = {w.component: w for w in workloads}
    consumers = consumers_of(by_component["trainer"], workloads)
    assert [(w.component, path) for w, path in consumers] == [("evaluator", "mnist-train-models/mnist-train")]
    assert consumers_of(by_component["evaluator"], workloads) == [], "a failed evaluator stops nothing"
    # Generic: any two Jobs sharing a claim directory, one writing, one reading.
    volume = {"name": "v", "persistentVolumeClaim": {"claimName": "data"}}
    writer, reader = job_doc("writer"), job_doc("reader")
    for doc, read_only in ((writer, False), (reader, True)):
        spec = doc["spec"]["template"]["spec"]
        spec["volumes"] = [volume]
        spec["containers"][0]["volumeMounts"] = [{"name": "v", "mountPath": "/d", "subPath": "out",
                                                  "readOnly": read_only}]
    jobs = [CONTROLLERS["Job"](cluster, d) for d in (writer, reader)]
    assert [(w.name, p) for w, p in consumers_of(jobs[0], jobs)] == [("reader", "data/out")]
    assert consumers_of(jobs[1], jobs) == []


def test_a_failed_evaluator_leaves_the_trainer_running(tmp_path, rendered):
    """The other direction of the consumers rule, on the running engine."""
    launcher = ScriptedLauncher(trainer_code=0)
    launcher.codes.update(evaluator=(2, 0.1), trainer=(0, 1.0))
    out = io.StringIO()
    options = RunOptions(run_dir=tmp_path / "run", tick=0.05, shutdown_grace=2, progress_every=0)
    code = run(rendered["job"], launcher, options, out)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    jobs = {w["component"]: w for w in summary["workloads"]}
    assert code == 1 and jobs["evaluator"]["status"] == "Failed", out.getvalue()
    assert jobs["trainer"]["status"] == "Complete", out.getvalue()
    assert "stopping it" not in out.getvalue()


def test_remote_storage_is_refused_before_anything_runs(tmp_path):
    """storage.type=gcs gives the pods gs:// paths the runner's pods could never reach: without
    --local-gcs (a local Cloud Storage emulator) that is exit 2, naming the value and the flag."""
    if not find_helm():
        unavailable("helm not found")
    if runner_prerequisites():
        unavailable(runner_prerequisites())
    result = subprocess.run(
        [sys.executable, "-m", "scripts.local_runner", "--fresh", "--run-dir", str(tmp_path / "r"),
         "--set", "storage.type=gcs", "--set", "storage.gcs.uri=gs://bucket/x",
         "--set", "storage.gcs.workloadIdentity.enabled=true"],  # the chart wants credentials
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    out = result.stdout
    assert "the pods are given Cloud Storage URLs (gs://bucket/x/mnist-train" in out, out
    assert "storage.type=gcs" in out and "reach no network beyond their own" in out, out
    assert "pass --local-gcs to run them against a local Cloud Storage emulator" in out, out
    assert not (tmp_path / "r" / "logs").exists() or not any((tmp_path / "r" / "logs").iterdir())
