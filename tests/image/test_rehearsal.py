"""The rendered chart's pods as containers of the image, the way a kubelet runs them.

`python -m scripts.image rehearse` = the local runner (helm rendering, Job
semantics, faults, logs, summary) with the podman launcher: 2 workers (Indexed
Job, DNS names through podman network aliases), the evaluator and TensorBoard,
each with the chart's securityContext, volumes and limits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from model import layout, log_lines
from scripts.image import podman
from scripts.image.launcher import RUN_LABEL, PodmanLauncher
from scripts.paths import REPO_ROOT
from tests.image.conftest import TEST_IMAGE

pytestmark = [pytest.mark.slow, pytest.mark.image]

# Short MLP schedule: checkpoints every 200 steps, a step line every 50, fast evaluator
# polls and TensorBoard reloads, a short collective timeout and restart back-off.
FAST = ["--set", "training.model=mlp", "--set", "training.maxSteps=1000",
        "--set", "training.saveCheckpointsSteps=200", "--set", "training.saveSummariesSteps=50",
        "--set", "evaluator.evalIntervalSecs=1", "--set", "tensorboard.reloadInterval=2",
        "--set", "trainer.extraArgs={--log-every-steps,50,--steps-per-loop,50}",
        "--restart-backoff", "2", "--quiet-tf", "--progress-every", "30"]
ACCURACY_THRESHOLD = 0.95  # the MLP reaches ~0.975 validation accuracy after 1000 steps of 200
# Three workers: besides the chief, a middle worker (ring neighbours on both sides) and a last one.
WORKERS = 3
KILLED = WORKERS - 1


@pytest.fixture(scope="module")
def helm_ready(image_ready):
    from scripts.local_runner.render import find_helm
    if not find_helm():
        from tests.image.conftest import unavailable
        unavailable("helm not found (run `make tools` or `bash scripts/install_k8s_tools.sh`)")


class Rehearsal:
    """`python -m scripts.image rehearse` in a subprocess, its output read line by line."""

    def __init__(self, run_dir: Path, *args: str):
        self.run_dir = run_dir
        cmd = [sys.executable, "-m", "scripts.image", "rehearse", "--image", TEST_IMAGE, "--fresh",
               "--run-dir", str(run_dir), "--timeout", "900", *args]
        self.lines: list[tuple[float, str]] = []
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.t0, line.rstrip("\n")))

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def find(self, pattern: str) -> re.Match | None:
        for _, line in list(self.lines):
            m = re.search(pattern, line)
            if m:
                return m
        return None

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGINT)
            self.proc.wait(timeout=60)
            pytest.fail(f"the rehearsal did not finish in {timeout:.0f} s:\n{self.text()[-4000:]}")
        finally:
            self.reader.join(timeout=10)

    def summary(self) -> dict:
        return json.loads((self.run_dir / "summary.json").read_text())


def first_step_seconds(run: Rehearsal) -> dict[str, float]:
    """Per trainer pod: seconds from its `started pod` line to its first `train | step N` line."""
    started, first = {}, {}
    for t, line in run.lines:
        m = re.search(r"started pod (mnist-train-trainer-[0-9a-f]{6}-\d+-0) ", line)
        if m:
            started[m.group(1)] = t
        m = re.match(r"\[(trainer-\d+)\]\s+train \| step \d+ \|", line)
        if m and m.group(1) not in first:
            first[m.group(1)] = t
    return {pod: first[f"trainer-{pod.split('-')[-2]}"] - t for pod, t in started.items()
            if f"trainer-{pod.split('-')[-2]}" in first}


def assert_nothing_left(run_id: str) -> None:
    for kind in ("ps -a", "network ls", "volume ls"):
        out = podman.run(*kind.split(), "-q", "--filter", f"label={RUN_LABEL}={run_id}", check=False).stdout
        assert not out.strip(), f"podman {kind}: left behind by run {run_id}: {out.split()}"


def non_chief_temp_dirs(summary: dict, pod: dict) -> list[str]:
    """The worker's private checkpoint directories left in its pod's /tmp emptyDir
    (kept after the run by --keep-pod-dirs)."""
    tmp = Path(summary["run_dir"]) / "pods" / pod["name"] / "volumes" / "tmp"
    prefix = layout.worker_temp_prefix(pod["facts"]["model_dir"], pod["index"])
    return sorted(p.name for p in tmp.iterdir() if p.name.startswith(prefix)) if tmp.is_dir() else []


def test_three_workers_evaluator_and_tensorboard_in_containers_recover_from_a_sigkill_of_worker_2(
        built_image, helm_ready, tmp_path):
    """One run asserting everything: 3 workers (the chief, a middle and a last one), the evaluator
    and TensorBoard, with the last worker's container SIGKILLed at step 500."""
    run = Rehearsal(tmp_path / "run", *FAST, "--set", f"trainer.workers={WORKERS}",
                    "--fault", f"kill:worker={KILLED}:step=500", "--keep-pod-dirs")
    seen_runs: set[str] = set()
    status = None
    deadline = time.monotonic() + 900
    while run.proc.poll() is None and time.monotonic() < deadline:
        m = run.find(r"TensorBoard is serving at (http://127\.0\.0\.1:\d+/)")
        if m and not {"train", "eval"} <= seen_runs:
            try:
                with urllib.request.urlopen(m.group(1), timeout=5) as r:
                    status = r.status
                with urllib.request.urlopen(m.group(1) + "data/runs", timeout=5) as r:
                    seen_runs |= set(json.loads(r.read()))
            except OSError:
                pass
        time.sleep(1)
    code = run.wait(timeout=max(60, deadline - time.monotonic()))
    out = run.text()
    assert code == 0, out[-4000:]
    summary = run.summary()
    assert summary["launcher"] == "podman" and summary["result"] == "succeeded"
    # TensorBoard answered on its port (forwarded from 127.0.0.1) and served both runs.
    assert status == 200, out[-3000:]
    assert {"train", "eval"} <= seen_runs, seen_runs
    assert re.match(r"http://127\.0\.0\.1:\d+/$", summary["tensorboard_url"])

    # The fault: worker 2's container SIGKILLed (137, as the kubelet reports it), the other two
    # fail with it, and every index's replacement resumes from the chief's last checkpoint.
    (fault,) = summary["faults"]
    assert fault["fired"], fault
    assert fault["last_saved_step"] == 400, fault
    pods = {p["name"]: p for p in summary["pods"] if p["component"] == "trainer"}
    # The Job's name ends in the chart's run generation; pods are <job>-<index>-<attempt>.
    trainer = next(w["name"] for w in summary["workloads"] if w["component"] == "trainer")
    assert sorted(pods) == sorted(f"{trainer}-{i}-{a}" for i in range(WORKERS) for a in (0, 1)), sorted(pods)
    killed = pods[f"{trainer}-{KILLED}-0"]
    assert killed["name"] == fault["pod"] and killed["exit_code"] == 137, killed
    for index in range(WORKERS):
        if index != KILLED:  # its peers fail too
            assert pods[f"{trainer}-{index}-0"]["exit_code"] not in (0, None), pods[f"{trainer}-{index}-0"]
    saved = max(pods[f"{trainer}-0-0"]["facts"]["saved_steps"])  # the chief's last checkpoint
    assert 400 <= saved < 1000, saved
    replacements = [pods[f"{trainer}-{index}-1"] for index in range(WORKERS)]
    for replacement in replacements:
        assert replacement["exit_code"] == 0, replacement
        assert replacement["facts"]["restored_step"] == saved, replacement["facts"]
        assert replacement["facts"]["start_step"] == saved
        assert replacement["facts"]["done_step"] == 1000
    assert len({p["facts"]["weights_sha256"] for p in replacements}) == 1, "the workers ended apart"
    trainer_job = next(w for w in summary["workloads"] if w["component"] == "trainer")
    assert [i["counted_failures"] for i in trainer_job["indexes"]] == [1] * WORKERS, trainer_job

    # Ring order and peer discovery: every worker, the middle one included, joined a 3-worker group
    # of the headless-Service names (podman network aliases) in index order; worker 0 is the chief.
    peers = ", ".join(f"{trainer}-{i}.mnist-train-workers:2222" for i in range(WORKERS))
    for replacement in replacements:
        index, log = replacement["index"], Path(replacement["log"]).read_text()
        assert re.search(rf"cluster \| waiting for all {WORKERS} workers to join \(.*\): {re.escape(peers)}$",
                         log, re.M), log[-3000:]
        assert f"task worker:{index} of {WORKERS} workers" in log, log[-3000:]
        start = log_lines.TRAIN_START.search(log)
        assert start and (start["global_batch"], start["replicas"], start["chief"]) == (
            str(100 * WORKERS), str(WORKERS), str(index == 0)), log[-3000:]
    # Non-chief temporary directories: the chief never makes one; a worker that finished removed
    # its own; the SIGKILLed one had no chance to (which shows the check sees the pod's /tmp).
    for index in range(WORKERS):
        assert not non_chief_temp_dirs(summary, pods[f"{trainer}-{index}-1"]), index
    assert not non_chief_temp_dirs(summary, pods[f"{trainer}-0-0"])
    assert non_chief_temp_dirs(summary, killed), "the killed worker's /tmp held no checkpoint directory"

    # The evaluator followed the checkpoints across the restart and printed its lines.
    assert summary["training"]["final_step"] == 1000
    evaluations = summary["evaluation"]["evaluations"]
    assert [s for s, _ in evaluations] == [200, 400, 600, 800, 1000]
    final = evaluations[-1][1]
    assert final > ACCURACY_THRESHOLD, evaluations
    assert re.search(r"After 1000 training step\(s\), validation accuracy = 0\.9\d+", out)
    assert summary["evaluation"]["final"]["final_step"] == 1000
    # Files in the volume were written by uid 1000 (the chart's runAsUser), evaluator results in eval/.
    model_dir = Path(summary["model_dir"])
    assert (model_dir / "eval" / "final_metrics.json").stat().st_uid == 1000
    assert (model_dir / "checkpoint").stat().st_uid == 1000
    times = first_step_seconds(run)
    assert len(times) == WORKERS, out[-3000:]
    print("\ncontainer start -> first logged training step (step 50): "
          + ", ".join(f"{k} {v:.1f} s" for k, v in sorted(times.items()))
          + f"; restart after the SIGKILL resumed at step {saved}"
          + f"; whole run {summary['elapsed_seconds']:.0f} s; final validation accuracy {final:.4f}")
    assert_nothing_left(summary["run_id"])


def test_pods_get_the_charts_security_context_and_volumes(built_image, helm_ready, tmp_path):
    """Each pod's container: root read-only; the model dir writable only by the trainer, eval/ by the
    trainer and the evaluator; /tmp the pod's emptyDir on disk (a directory of the pod's, mode 0777
    with the fsGroup, as the kubelet makes it)."""
    from scripts.local_runner.manifest import PodBuilder, PodRequest
    from scripts.local_runner.render import render

    rendering = render(release="mnist-train", namespace="mnist-train", overlay_path=tmp_path / "values.yaml",
                       set_values=["image.repository=localhost/mnist-train", "image.tag=image-test"])
    # By component: the trainer's and the evaluator's names end in the chart's run generation.
    jobs = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d
            for d in rendering.of_kind("Job", "Deployment")}
    builder = PodBuilder("mnist-train", tmp_path / "run", rendering.docs)
    launcher = PodmanLauncher()
    launcher.setup("test-" + os.urandom(3).hex(), tmp_path / "run", [], "mnist-train")
    try:
        results = {}
        for component in ("evaluator", "trainer", "tensorboard"):
            name = jobs[component]["metadata"]["name"]
            pod = builder.build(PodRequest(
                template=jobs[component]["spec"]["template"], name=f"{name}-probe", hostname=f"{name}-probe",
                subdomain=None, owner=f"Job/{name}", index=0 if component == "trainer" else None, attempt=0,
                display=component, annotations={"batch.kubernetes.io/job-completion-index": "0"}))
            args, _ = launcher.plan(pod)
            for flag in ("--read-only", "--security-opt", "--cap-drop", "--user"):
                assert flag in args, (component, args)
            empty_dir = pod.pod_dir / "volumes" / "tmp"
            assert f"type=bind,source={empty_dir},target=/tmp" in args, (component, args)
            assert (empty_dir.stat().st_mode & 0o7777, empty_dir.stat().st_gid) == (0o2777, 1000)
            assert args[args.index("--user") + 1] == "1000:1000"
            assert args[args.index("--cap-drop") + 1] == "ALL"
            assert args[args.index("--security-opt") + 1] == "no-new-privileges"
            # Same container, another command: which paths can it write?
            image_at = args.index(pod.container.image)
            probe = args[:image_at] + [pod.container.image]
            probe[probe.index("--entrypoint") + 1] = '["sh", "-c"]'
            script = ("for p in /models/mnist-train /models/mnist-train/eval /tmp /app /; do "
                      "if touch $p/.probe 2>/dev/null; then echo W $p; else echo R $p; fi; done; id -u")
            out = podman.run(*probe, script, timeout=120).stdout.split("\n")
            results[component] = {line.split()[1] for line in out if line.startswith("W ")}
            assert (empty_dir / ".probe").stat().st_uid == 1000, component  # the container's /tmp
            podman.run("rm", "-f", args[args.index("--name") + 1], check=False)
        assert results["trainer"] == {"/models/mnist-train", "/models/mnist-train/eval", "/tmp"}
        assert results["evaluator"] == {"/models/mnist-train/eval", "/tmp"}
        assert results["tensorboard"] == {"/tmp"}
    finally:
        launcher.teardown()
    assert_nothing_left(launcher.run_id)
