"""Reporting (reporting.py): facts from the library's lines (produced with model/log_lines.py's
formats where the library has one), the summary's keys the e2e tests, demo and bench read, and
the model directory found from the pods' own output (not from their arguments)."""

from __future__ import annotations

import io
import json

from model import log_lines
from scripts.local_runner.reporting import PodFacts, ProjectReport, format_duration
from scripts.local_runner.runner import RunOptions
from tests.local_runner.fakes import ScriptedLauncher, run, started_job

SHA = "ab" * 32


def test_facts_come_from_the_library_lines():
    facts = PodFacts()
    for line in ["config | model=mlp model_dir=/models/r data_dir=/data",
                 "train | start | model mlp | step 200 of 1000 | global batch 200 over 2 replica(s) | x",
                 "train | restored /models/r/ckpt-200 at step 200",
                 "train | step 250 | loss 0.1 | batch acc 0.9 | lr 0.1 | 100 img/s",
                 "train | step 400 | saved /models/r/ckpt-400",
                 log_lines.TRAIN_DONE_FORMAT % (1000, 12.0, SHA),
                 "After 1000 training step(s), validation accuracy = 0.98",
                 "After 1000 training step(s), test accuracy = 0.97",
                 json.dumps({"event": "final", "final_step": 1000, "test_accuracy": 0.97}, sort_keys=True),
                 "error: --model-dir: no such directory", "I0000 00:00:1.0 123 tf noise"]:
        facts.feed(line)
    assert (facts.model, facts.model_dir) == ("mlp", "/models/r")
    assert (facts.start_step, facts.max_steps) == (200, 1000)
    assert (facts.restored_step, facts.saved_steps, facts.done_step) == (200, [400], 1000)
    assert facts.weights_sha256 == SHA and facts.step == 1000
    assert facts.evaluations == [(1000, 0.98)] and facts.test_accuracy == 0.97
    assert facts.final == {"event": "final", "final_step": 1000, "test_accuracy": 0.97}
    assert facts.errors == ["--model-dir: no such directory"] and facts.lines == 11
    evaluator = PodFacts()
    evaluator.feed("After 600 training step(s), validation accuracy = 0.9")
    assert evaluator.last_step == 600, "an evaluator's step is the last one it evaluated"


def test_the_summary_keeps_the_keys_its_readers_use(tmp_path, rendered):
    """tests/e2e, scripts/demo.py and tests/image read these keys of summary.json; model_dir is where
    the pod that logged `config | ... model_dir=` has it mounted on this machine."""
    launcher = ScriptedLauncher()
    out = io.StringIO()
    options = RunOptions(run_dir=tmp_path / "run", tick=0.05, shutdown_grace=2, progress_every=0.01)
    assert run(rendered["job"], launcher, options, out) == 0, out.getvalue()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {"run_id", "run_dir", "release", "namespace", "launcher", "result", "exit_code", "error",
            "elapsed_seconds", "started", "render_command", "model_dir", "tensorboard_url", "workloads",
            "not_run", "upgrade", "faults", "pods", "training", "evaluation"} <= set(summary)
    assert set(summary["training"]) == {"final_step", "last_step", "last_checkpoint", "max_steps",
                                        "replacement_pods"}
    assert set(summary["evaluation"]) == {"evaluations", "final", "test_accuracy"}
    pod = next(p for p in summary["pods"] if p["component"] == "trainer")
    assert {"name", "component", "index", "attempt", "restart_count", "exit_code", "facts"} <= set(pod)
    assert summary["training"]["max_steps"] == 10 and pod["facts"]["model"] == "mlp"
    assert summary["model_dir"] == str(tmp_path / "run/volumes/mnist-train-models/mnist-train")
    assert all(isinstance(w["restarts"], int) for w in summary["workloads"])
    text = out.getvalue()
    assert "progress | " in text and "trainer step 0/10" in text, text
    assert "summary | result: succeeded (exit 0)" in text


def test_ready_and_serving_lines_name_tensorboard_only_for_its_pods():
    report = ProjectReport()

    class Pod:
        name, component = "mnist-train-tensorboard-0", "tensorboard"

    class Record:
        pod, ready_url = Pod(), "http://127.0.0.1:5/"
    assert report.ready_event(Record()) == (
        "pod mnist-train-tensorboard-0 is ready; TensorBoard is serving at http://127.0.0.1:5/")
    Pod.component = "web"
    assert report.ready_event(Record()).endswith("is ready; ready at http://127.0.0.1:5/")


def test_durations():
    assert [format_duration(s) for s in (5, 65, 3725)] == ["5s", "1m05s", "1h02m"]


def test_a_logged_host_path_is_kept_even_under_a_mounted_container_path(tmp_path, rendered):
    """The process launcher hands pods host paths (a run dir under /tmp, where the pod mounts an
    emptyDir at /tmp): the model dir is the logged one, not re-mapped through the /tmp mount."""
    cluster, job = started_job(tmp_path, rendered["job"])
    record = cluster.running()[0]
    host = tmp_path / "volumes/mnist-train-models/mnist-train"
    host.mkdir(parents=True)

    class Run:
        records = [record]
    for logged, expected in ((str(host), str(host)), ("/models/mnist-train", str(host))):
        report = ProjectReport()
        report.on_line(record, f"config | model=mlp model_dir={logged}")
        assert report.model_dir(Run()) == expected
