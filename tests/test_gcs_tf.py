"""A 2-worker run whose model directory is a Cloud Storage bucket, through TensorFlow's own gs://.

Everything runs for real in the endpoint's private namespace (scripts/gcs_endpoint.py):
fake-gcs-server behind the TLS front, `python -m model` workers, evaluator and export.
One run, asserting much (the budget of issue 19):

- the workers write checkpoints, the `checkpoint` state file, train summaries, run_config.json,
  the lease and the goodput record (goodput/<attempt>.jsonl, goodput.json) to the bucket; a
  SIGKILL of one worker then a restart resumes from the last checkpoint in the bucket; a SIGTERM
  saves on every worker, exits with the preemption code, and the restart resumes exactly at
  that step (as tests/test_multiworker.py proves on a disk);
- the evaluator polls the bucket, scores each checkpoint once, writes its summaries,
  eval_state.json and final_metrics.json there and publishes --export-best-to gs://;
- afterwards `export --export-dir gs://` publishes there too, and a second evaluator (its own
  --eval-dir in the bucket) over a damaged and a half-vanished checkpoint skips both, scores
  the rest and finishes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid

import pytest

from model import gcs, log_lines
from model.errors import EXIT_PREEMPTED
from model.layout import (COMPLETE_MARKER, EXPORT_MARKER, FINAL_METRICS, GOODPUT_DIR, GOODPUT_SUMMARY,
                          LEASE_FILE, RUN_CONFIG)
from scripts.paths import REPO_ROOT
from tests.multiworker import Proc, base_env, done_line, eval_steps, free_ports

pytestmark = pytest.mark.slow

MAX_STEPS = 400  # the SIGTERM comes at step <= 250 (see below): well before the end
MLP_ARGS = ["--model", "mlp", "--save-checkpoints-steps", "100", "--log-every-steps", "50",
            "--steps-per-loop", "50", "--max-steps", str(MAX_STEPS)]


class NamespaceProc(Proc):
    """Proc, started in the endpoint's namespace with its environment (nsenter execs the program,
    so the pid, process group and signals are the program's own)."""

    def __init__(self, endpoint, name, args, log_dir, env):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.popen = endpoint.popen([sys.executable, "-m", "model", *args], cwd=REPO_ROOT,
                                    env={**env, "PYTHONPATH": str(REPO_ROOT)}, stdout=self._log,
                                    stderr=subprocess.STDOUT, start_new_session=True)


def restored_step(proc: Proc) -> int | None:
    match = log_lines.TRAIN_RESTORED.search(proc.output())
    return int(match["step"]) if match else None


def test_a_two_worker_run_on_gs_resumes_evaluates_and_exports_from_the_bucket(
        gcs_endpoint, tmp_path, monkeypatch):
    bucket_name = f"runs-{uuid.uuid4().hex[:8]}"
    gcs_endpoint.create_bucket(bucket_name)
    model_dir = f"gs://{bucket_name}/mnist/model"
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint.direct_url)  # this process's reads
    bucket = gcs.make_client().bucket(bucket_name)

    def objects(prefix: str = "mnist/model/") -> list[str]:
        return sorted(b.name[len(prefix):] for b in bucket.list_blobs(prefix=prefix))

    def ckpt_steps() -> list[int]:
        return sorted(int(m[1]) for n in objects() if (m := re.fullmatch(r"ckpt-(\d+)\.index", n)))

    logs = tmp_path / "logs"
    logs.mkdir()
    ports = free_ports(2)  # on the namespace's own loopback: nothing else listens there
    procs: list[Proc] = []

    def start(name: str, args: list[str], env_tmp) -> Proc:
        env_tmp.mkdir(exist_ok=True)
        proc = NamespaceProc(gcs_endpoint, name, args, logs, base_env(env_tmp))
        procs.append(proc)
        return proc

    def workers(attempt: int) -> list[Proc]:
        started = []
        for i in range(2):
            tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                         "task": {"type": "worker", "index": i}}
            worker_tmp = tmp_path / f"worker{i}-tmp"
            worker_tmp.mkdir(exist_ok=True)
            proc = NamespaceProc(gcs_endpoint, f"worker{i}-attempt{attempt}",
                                 ["train", "--model-dir", model_dir, *MLP_ARGS], logs,
                                 {**base_env(worker_tmp), "TF_CONFIG": json.dumps(tf_config)})
            procs.append(proc)
            started.append(proc)
        return started

    try:
        evaluator = start("evaluator", ["evaluate", "--model-dir", model_dir, "--eval-interval-secs", "1",
                                        "--export-best-to", f"gs://{bucket_name}/best"],
                          tmp_path / "eval-tmp")
        # Attempt 0: one worker SIGKILLed after the first save; the survivor fails.
        first = workers(0)
        first[0].wait_for(r"saved .*ckpt-100$", timeout=300)
        assert LEASE_FILE in objects() and RUN_CONFIG in objects()  # the chief holds the lease
        first[1].kill()
        assert first[0].wait(120) not in (0, EXIT_PREEMPTED)
        killed_at = max(ckpt_steps())
        assert 100 <= killed_at < 300  # the survivor cannot train on alone

        # Attempt 1: resumes from the bucket; SIGTERM to one worker stops both with a save.
        second = workers(1)
        second[1].wait_for(rf"train \| step {killed_at + 50} ", timeout=300)
        second[1].signal(signal.SIGTERM)
        assert [w.wait(120) for w in second] == [EXIT_PREEMPTED, EXIT_PREEMPTED]
        preempted_at = int(second[0].wait_for(r"step (\d+) \| SIGTERM: checkpoint saved", 1).group(1))
        assert preempted_at in ckpt_steps() and COMPLETE_MARKER not in objects()

        # Attempt 2: resumes exactly where the SIGTERM stopped it and finishes.
        third = workers(2)
        assert [w.wait(300) for w in third] == [0, 0]
        assert evaluator.wait(300) == 0
    finally:
        for proc in procs:
            proc.kill()

    assert [restored_step(w) for w in second] == [killed_at, killed_at]
    assert [restored_step(w) for w in third] == [preempted_at, preempted_at]
    assert done_line(third[0]) == done_line(third[1]) and done_line(third[0])[0] == MAX_STEPS
    final = objects()
    assert {"checkpoint", RUN_CONFIG, COMPLETE_MARKER}.issubset(final)
    assert LEASE_FILE not in final, "the lease was not released at the end"
    assert any(n.startswith("train/events.out.tfevents") for n in final), final
    assert any(n.startswith("eval/events.out.tfevents") for n in final), final
    steps = ckpt_steps()
    assert steps[-1] == MAX_STEPS and {killed_at, preempted_at} <= set(steps)
    assert eval_steps(evaluator) == steps  # each checkpoint in the bucket scored once, in order
    metrics = json.loads(bucket.blob(f"mnist/model/eval/{FINAL_METRICS}").download_as_bytes())
    assert metrics["final_step"] == MAX_STEPS and metrics["test_accuracy"] > 0.85
    assert EXPORT_MARKER in objects("best/") and "saved_model.pb" in objects("best/")
    # Goodput on gs://: one record object per chief attempt (each rewritten whole), and goodput.json.
    records = [n for n in final if n.startswith(f"{GOODPUT_DIR}/") and n.endswith(".jsonl")]
    assert len(records) == 3, records
    assert any(n.startswith(f"eval/{GOODPUT_DIR}/evaluator-") for n in final), final
    goodput = json.loads(bucket.blob(f"mnist/model/{GOODPUT_SUMMARY}").download_as_bytes())
    assert goodput["complete"] and goodput["attempts"] == 3 and 0 < goodput["goodput"] < 1, goodput
    assert metrics["goodput"] == goodput["goodput"], metrics

    # Export to the bucket, and a second evaluator over a damaged and a half-vanished checkpoint.
    damaged, vanished = steps[0], steps[1]
    bucket.blob(f"mnist/model/ckpt-{damaged}.data-00000-of-00001").upload_from_string(b"garbage")
    bucket.blob(f"mnist/model/ckpt-{vanished}.data-00000-of-00001").delete()
    exporter = start("export", ["export", "--model-dir", model_dir,
                                "--export-dir", f"gs://{bucket_name}/export/1"], tmp_path / "export-tmp")
    again = start("evaluator-2", ["evaluate", "--model-dir", model_dir, "--eval-interval-secs", "1",
                                  "--eval-dir", f"gs://{bucket_name}/eval2"], tmp_path / "eval2-tmp")
    try:
        assert exporter.wait(300) == 0, exporter.output()[-3000:]
        assert again.wait(300) == 0, again.output()[-3000:]
    finally:
        for proc in (exporter, again):
            proc.kill()
    assert EXPORT_MARKER in objects("export/1/") and "saved_model.pb" in objects("export/1/")
    output = again.output()
    for step in (damaged, vanished):
        assert re.search(rf"eval \| skipping \S*ckpt-{step}\b", output), output[-3000:]
    assert eval_steps(again) == steps[2:]
    metrics2 = json.loads(bucket.blob(f"eval2/{FINAL_METRICS}").download_as_bytes())
    assert metrics2["final_step"] == MAX_STEPS
    assert os.environ["STORAGE_EMULATOR_HOST"] == gcs_endpoint.direct_url
