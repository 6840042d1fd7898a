"""mnistctl/commands.py: status, wait and logs on a stand-in API (api_shapes.FakeApi); check on
real files and a real HTTP server standing in for TensorBoard."""

from __future__ import annotations

import http.server
import json
import threading

import pytest

from mnistctl import cli, commands
from tests.mnistctl.api_shapes import (EVALUATOR_LOG, NS, Clock, FakeApi, condition, finished_snapshot,
                                         in_progress_release, job, job_list, pod_list, preempted_worker,
                                         replacement_worker, write_model_dir)


def run(argv, api, capsys):
    code = cli.main([*argv, "-n", NS], api=api)
    out, err = capsys.readouterr()
    return code, out, err


def test_status_command_text_and_json(capsys):
    api = FakeApi(in_progress_release())
    code, out, _ = run(["status"], api, capsys)
    assert code == 0 and "verdict      in progress: trainer running" in out
    assert "app.kubernetes.io/instance=mnist-train,app.kubernetes.io/name=mnist-train" in api.selectors
    code, out, _ = run(["status", "-o", "json"], api, capsys)
    payload = json.loads(out)
    assert payload["progress"]["checkpoint_step"] == 2000
    assert [p["exit_code"] for p in payload["trainer_pods"]] == [42, None, 42, None]
    assert payload["verdict"]["done"] is False
    code, out, _ = run(["status", "--release", "nope"], api, capsys)
    assert code == 2 and "no trainer of release 'nope'" in out


def wait(api, *extra, clock=None):
    clock = clock or Clock()
    out, err = [], []
    args = cli.build_parser().parse_args(["wait", "-n", NS, "--interval-secs", "10", *extra])

    def sleep(seconds):
        clock.now += seconds
        api.advance()

    code = commands.cmd_wait(api, args, out=out.append, err=err.append, sleep=sleep, clock=clock)
    return code, out, err


def test_wait_until_done():
    api = FakeApi(in_progress_release(), in_progress_release(), finished_snapshot())
    code, out, err = wait(api)
    assert code == 0 and not err
    assert out[-1] == ("wait | trainer succeeded; evaluator finished; after 30000 training step(s), test "
                       "accuracy = 0.9839 | mnist-train-trainer-0-aaaaa: exit 42: preempted: SIGTERM "
                       "received and a checkpoint saved; the pod is replaced without counting as a "
                       "failure and training resumes; disrupted: PreemptionByScheduler | "
                       "mnist-train-trainer-1-q9d4w: exit 42: preempted: SIGTERM received and a "
                       "checkpoint saved; the pod is replaced without counting as a failure and "
                       "training resumes; disrupted: EvictionByEvictionAPI")
    assert len(out) == 2  # one line per change, not per poll


def test_wait_fails_with_the_reason():
    failing = in_progress_release()
    failing["jobs"] = job_list(job("mnist-train-trainer", "trainer", active=1),
                               job("mnist-train-evaluator", "evaluator", failed=7, completions=1, conditions=[
                                   condition("Failed", "BackoffLimitExceeded",
                                             "Job has reached the specified backoff limit")]))
    code, _, err = wait(FakeApi(in_progress_release(), failing))
    assert code == 1
    assert err == ["error: evaluator Job/mnist-train-evaluator: failed (0 active, 0 succeeded, 7 failed): "
                   "BackoffLimitExceeded (too many failed pods (backoffLimit)): Job has reached the "
                   "specified backoff limit"]


def test_wait_times_out_and_gives_up_on_a_missing_release():
    code, _, err = wait(FakeApi(in_progress_release()), "--timeout-secs", "35")
    assert code == 124 and err == ["error: timed out after 35 s: trainer running"]
    code, _, err = wait(FakeApi({}), "--not-found-grace-secs", "20")
    assert code == 2 and "no trainer of release 'mnist-train'" in err[0]


def test_logs_follow_moves_to_the_replacement_pod(capsys, monkeypatch):
    monkeypatch.setattr(commands.time, "sleep", lambda s: None)
    first = {"pods": pod_list(preempted_worker()),
             "logs": {"mnist-train-trainer-1-q9d4w":
                      "train | step 2400 | SIGTERM: checkpoint saved, exiting for restart"}}
    second = {"pods": pod_list(preempted_worker(), replacement_worker()),
              "logs": {"mnist-train-trainer-1-m3kdz": "train | restored ckpt-2400 at step 2400"}}
    code, out, _ = run(["logs", "--worker", "1", "-f"], FakeApi(first, second), capsys)
    assert code == 0
    assert out.splitlines() == ["train | step 2400 | SIGTERM: checkpoint saved, exiting for restart",
                                "--- following the replacement pod mnist-train-trainer-1-m3kdz",
                                "train | restored ckpt-2400 at step 2400"]


def test_logs_default_to_the_evaluator(capsys):
    code, out, _ = run(["logs", "--tail", "1"], FakeApi(in_progress_release()), capsys)
    assert code == 0 and out.strip() == EVALUATOR_LOG.splitlines()[-1]
    code, _, err = run(["logs", "--worker", "5"], FakeApi(in_progress_release()), capsys)
    assert code == 2 and "no worker 5 pod of release 'mnist-train'" in err


# ---------------------------------------------------------------- the helm test hook's check

class TensorBoardStandIn(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802
        body = b"<!doctype html><title>TensorBoard</title>"
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def tensorboard():
    """An HTTP server on 127.0.0.1 answering like TensorBoard's index page."""
    handler = type("Handler", (TensorBoardStandIn,), {"status": 200})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    server.shutdown()
    server.server_close()


def check(argv, clock=None):
    clock = clock or Clock()
    out = []
    args = cli.build_parser().parse_args(["check", "--interval-secs", "5", *argv])

    def sleep(seconds):
        clock.now += seconds

    code = commands.cmd_check(args, out=out.append, sleep=sleep, clock=clock)
    return code, out


def test_check_passes(tensorboard, tmp_path):
    url, _ = tensorboard
    model = write_model_dir(tmp_path / "m", steps=(1000, 2000), complete=2000)
    code, out = check(["--model-dir", str(model), "--tensorboard-url", url])
    assert code == 0, out
    assert out[0].startswith(f"ok   | TensorBoard answers at {url} (HTTP 200")
    assert out[1] == (f"ok   | {model} has 2 checkpoint(s), newest at step 2000; "
                      "training complete at step 2000")


def test_check_fails_when_tensorboard_does_not_answer(tensorboard, tmp_path):
    url, handler = tensorboard
    handler.status = 503
    model = write_model_dir(tmp_path / "m", steps=(1000,))
    code, out = check(["--model-dir", str(model), "--tensorboard-url", url, "--timeout-secs", "20"])
    assert code == 1
    assert out[0] == f"FAIL | TensorBoard at {url} did not answer within 20 s (last: HTTP 503)"


def test_check_before_and_after_training_started(tmp_path):
    not_started = tmp_path / "empty"
    code, out = check(["--model-dir", str(not_started), "--timeout-secs", "10"])
    assert code == 0 and out[1].startswith("skip | training has not started")
    started = write_model_dir(tmp_path / "started")
    code, out = check(["--model-dir", str(started), "--timeout-secs", "10"])
    assert code == 1 and out[1].startswith("FAIL | training has started but")
    # A listed checkpoint whose files are gone does not count.
    vanished = write_model_dir(tmp_path / "vanished", steps=(1000,))
    (vanished / "ckpt-1000.index").unlink()
    assert check(["--model-dir", str(vanished), "--timeout-secs", "10"])[0] == 1


def test_check_waits_for_the_first_checkpoint(tmp_path):
    model = write_model_dir(tmp_path / "m")

    class AppearingClock(Clock):
        def __call__(self):
            if self.now >= 15 and not (model / "checkpoint").exists():
                write_model_dir(model, steps=(100,))
            return self.now

    code, out = check(["--model-dir", str(model), "--timeout-secs", "60"], clock=AppearingClock())
    assert code == 0 and "newest at step 100" in out[1]
