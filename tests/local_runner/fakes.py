"""Stand-ins for what the runner's parts talk to, so each part can be tested alone.

`FakeCluster`: the controllers' Cluster protocol with a hand-driven clock and no
processes (a controller's decisions do not depend on real time or real pods).
`ScriptedLauncher`: a Launcher whose pods exit when told (the engine's loop and
the summary without TensorFlow). Both are fakes of the runner's own interfaces;
the process launcher itself is tested on real processes in test_process_launcher.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import io

from scripts.local_runner.controllers import JobController, PodRecord
from scripts.local_runner.logs import Terminal
from scripts.local_runner.manifest import NetworkSlot, PodBuilder
from scripts.local_runner.reporting import ProjectReport
from scripts.local_runner.runner import Runner


def one(rendering, kind, component=None):
    docs = [d for d in rendering.docs if d["kind"] == kind and (
        component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component)]
    assert len(docs) == 1, [d["metadata"]["name"] for d in docs]
    return docs[0]


def name(rendering, kind, component):
    """An object's name: the trainer's and the evaluator's carry the chart's run generation."""
    return one(rendering, kind, component)["metadata"]["name"]


class FakeCluster:
    """The Cluster protocol with a hand-driven clock and no processes."""

    def __init__(self, tmp_path, docs, namespace="mnist-train"):
        self.namespace = namespace
        self.builder = PodBuilder(namespace, tmp_path, docs)
        self.clock = 0.0
        self.created: list[PodRecord] = []
        self.deleted: list[tuple[PodRecord, str]] = []
        self.events: list[str] = []
        self.numbers: dict[str, int] = {}

    def now(self):
        return self.clock

    def create(self, pod, restart_count=0):
        record = PodRecord(pod=pod, created_at=self.clock, log_path=Path(f"{pod.name}.log"),
                           restart_count=restart_count)
        self.created.append(record)
        return record

    def delete(self, record, reason, grace=None, disruption=False):
        record.deleting = True
        self.deleted.append((record, reason))

    def event(self, message):
        self.events.append(message)

    def backoff(self, failures):
        return 10.0 * 2 ** max(0, failures - 1)

    def slot(self, key):
        return NetworkSlot(key, key.split(".")[0], (key,), "10.244.0.99")

    def next_pod_number(self, key):
        self.numbers[key] = self.numbers.get(key, -1) + 1
        return self.numbers[key]

    def running(self):
        return [r for r in self.created if r.finished_at is None]

    def exit(self, controller, record, code, conditions=()):
        record.finished_at, record.exit_code = self.clock, code
        record.conditions |= set(conditions)
        controller.on_exit(record)


def started_job(tmp_path, rendering, component="trainer"):
    cluster = FakeCluster(tmp_path, rendering.docs)
    job = JobController(cluster, one(rendering, "Job", component))
    job.start()
    job.tick()
    return cluster, job


def exited(record, code):
    record.finished_at, record.exit_code = 0.0, code
    return record


class ScriptedHandle:
    def __init__(self, pod, log_path, code, after):
        self.pod, self.log_path = pod, log_path
        self.code, self.exit_at = code, time.monotonic() + after
        self.signals = []
        log_path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        if pod.component == "trainer":
            lines = ["config | model=mlp model_dir=/models/mnist-train",
                     "train | start | model mlp | step 0 of 10 | global batch 2"]
        log_path.write_text("".join(f"{line}\n" for line in [*lines, "hello"]))

    def poll(self):
        if self.code is not None and time.monotonic() >= self.exit_at:
            return self.code
        return None

    def send_signal(self, sig):
        self.signals.append(sig)
        if sig == 9 or (sig == 15 and self.code is None):  # TensorBoard exits on SIGTERM
            self.code, self.exit_at = 128 + sig, 0

    def kill(self):
        self.send_signal(9)

    def endpoints(self):
        return {}

    def pids(self):
        return []

    def release(self):
        pass


class ScriptedLauncher:
    """Trainers exit with `trainer_code`, the evaluator 0 a little later, TensorBoard on SIGTERM."""

    name = "scripted"

    def __init__(self, trainer_code=0):
        # component -> (exit code, seconds after the start; None: runs until signalled)
        self.codes = {"trainer": (trainer_code, 0.3), "evaluator": (0, 0.8), "tensorboard": (None, 0)}
        self.setups, self.teardowns, self.started = [], 0, []

    def setup(self, run_id, run_dir, slots, namespace):
        self.setups.append([s.key for s in slots])
        return [NetworkSlot(s.key, s.hostname, s.dns_names, f"192.0.2.{i}") for i, s in enumerate(slots)]

    def start(self, pod, log_path):
        code, after = self.codes[pod.component]
        self.started.append(pod)
        return ScriptedHandle(pod, log_path, code, after)

    def teardown(self):
        self.teardowns += 1

    def describe_network(self):
        return []


def job_doc(name, args=("--max-steps", "100"), ttl=None, **spec):
    """A small Indexed Job with one container, named `name`."""
    doc = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
           "spec": {"completionMode": "Indexed", "completions": 1, "parallelism": 1,
                    "template": {"metadata": {"labels": {"app.kubernetes.io/component": name}},
                                 "spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "i", "command": ["run"],
                                                          "args": list(args)}]}},
                    **spec}}
    if ttl is not None:
        doc["spec"]["ttlSecondsAfterFinished"] = ttl
    return doc


def run(rendering, launcher, options, out=None, upgrade=None) -> int:
    """One Runner.run() with this project's report, its terminal lines into `out`."""
    terminal = Terminal(None, False, stream=out if out is not None else io.StringIO())
    return Runner(rendering, launcher, options, terminal, ProjectReport(), upgrade=upgrade).run()
