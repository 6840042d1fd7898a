"""SIGTERM, Ctrl-C and other signals sent to real `python -m model train` processes.

Nothing is faked: the signals are sent with os.killpg to the worker's
process group, as `timeout`, `kill -- -PGID`, a terminal's Ctrl-C and the
local runner send them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from model import log_lines
from tests.multiworker import Cluster, Proc, base_env, free_ports

pytestmark = [pytest.mark.slow, pytest.mark.serial]  # timing assertions: the cores to itself

MLP_ARGS = ["--model", "mlp", "--log-every-steps", "50", "--steps-per-loop", "50"]
JOINING = r"^cluster \| waiting for all 2 workers to join"


def lone_worker(tmp: Path, name: str) -> Proc:
    """Worker 0 of a 2-worker TF_CONFIG whose peer never starts: it waits to join."""
    (tmp / name).mkdir()
    env = base_env(tmp / name)
    env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in free_ports(2)]},
                                   "task": {"type": "worker", "index": 0}})
    return Proc(name, ["train", "--model-dir", str(tmp / name / "model"), *MLP_ARGS,
                       "--max-steps", "100"], tmp, env)


@contextlib.contextmanager
def sighup_default():
    """Workers started here get SIGHUP's default action (a pod's), even when the tests run under
    `nohup`: an ignored signal stays ignored across fork and exec, a default one does not change."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after "(comm)": the parent
            found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def checkpoint_steps(model_dir: Path) -> list[int]:
    return sorted(int(p.name[len("ckpt-"):-len(".index")]) for p in model_dir.glob("ckpt-*.index"))


def test_no_signal_to_the_process_group_leaves_a_joining_worker_hung(tmp_path):
    """While a worker waits for its peers TensorFlow swallows SIGTERM and the main
    thread cannot run Python, so the start-up guard must act: it survives the
    group signal, ends the worker at once for SIGTERM and Ctrl-C, and never
    outlives it (SIGHUP and SIGKILL end the worker themselves). The same holds for
    a SIGTERM to the worker alone, as the kubelet sends it."""
    sent_signals = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL]
    with sighup_default():
        workers = {sig.name: lone_worker(tmp_path, sig.name) for sig in sent_signals}
        # The kubelet signals the container's main process alone, not its group.
        workers["SIGTERM to the worker alone"] = lone_worker(tmp_path, "SIGTERM-alone")
    try:
        guards = {}
        for name, worker in workers.items():
            worker.wait_for(JOINING, timeout=240)
            guards[name] = children(worker.popen.pid)
            assert len(guards[name]) == 1, f"{name}: expected one guard process, got {guards[name]}"
        for sig in sent_signals:
            os.killpg(workers[sig.name].popen.pid, sig)
        workers["SIGTERM to the worker alone"].popen.send_signal(signal.SIGTERM)
        codes = {name: worker.wait(20) for name, worker in workers.items()}  # hung: fails here
    finally:
        for worker in workers.values():
            worker.kill()
    assert codes == {"SIGTERM": -signal.SIGKILL, "SIGINT": -signal.SIGKILL, "SIGHUP": -signal.SIGHUP,
                     "SIGKILL": -signal.SIGKILL, "SIGTERM to the worker alone": -signal.SIGKILL}
    for name in ("SIGTERM", "SIGTERM to the worker alone"):
        assert ("start-up | SIGTERM before training started: nothing to save; ending this worker "
                "now") in workers[name].output()
    assert "start-up | SIGINT (Ctrl-C) before training started" in workers["SIGINT"].output()
    deadline = time.monotonic() + 10
    while any(running(pid) for pids in guards.values() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {name: pids for name, pids in guards.items() if any(running(p) for p in pids)}
    assert not left, f"start-up guards outlived their workers: {left}"


def test_ctrl_c_saves_a_checkpoint_says_how_to_resume_and_exits_130(tmp_path):
    cluster = Cluster(tmp_path, workers=1, train_args=[*MLP_ARGS, "--save-checkpoints-steps", "100000"])
    try:
        (first,) = cluster.start_workers(attempt=0, extra=["--max-steps", "100000"])
        first.wait_for(r"^train \| step 100 \|", timeout=240)
        os.killpg(first.popen.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends
        assert first.wait(120) == 130
        output = first.output()
        assert ("train | Ctrl-C: saving a checkpoint at the next step boundary, then exiting "
                "(Ctrl-C again aborts at once without saving)") in output
        stopped_at = int(log_lines.TRAIN_INTERRUPTED.search(output)["step"])
        assert f"run the same command again to resume from step {stopped_at}" in output
        assert "Traceback" not in output
        assert checkpoint_steps(cluster.model_dir) == [stopped_at]
        assert not (cluster.model_dir / "training_complete.json").exists()

        (second,) = cluster.start_workers(attempt=1, extra=["--max-steps", str(stopped_at + 50)])
        assert second.wait(240) == 0
    finally:
        cluster.stop_all()
    assert int(log_lines.TRAIN_RESTORED.search(second.output())["step"]) == stopped_at


def test_a_second_ctrl_c_aborts_at_once_without_saving(tmp_path):
    """One loop call of 20,000 steps: only the second Ctrl-C can end it early."""
    long_call = ["--max-steps", "20000", "--steps-per-loop", "20000", "--log-every-steps", "20000",
                 "--save-summaries-steps", "20000", "--save-checkpoints-steps", "20000"]
    cluster = Cluster(tmp_path, workers=1, train_args=["--model", "mlp", *long_call])
    try:
        (worker,) = cluster.start_workers()
        worker.wait_for(r"^train \| start ", timeout=240)
        os.killpg(worker.popen.pid, signal.SIGINT)
        worker.wait_for(r"^train \| Ctrl-C: saving a checkpoint", timeout=30)  # said at once
        os.killpg(worker.popen.pid, signal.SIGINT)
        assert worker.wait(15) == -signal.SIGINT
    finally:
        cluster.stop_all()
    assert checkpoint_steps(cluster.model_dir) == []
    assert not log_lines.TRAIN_INTERRUPTED.search(worker.output())
