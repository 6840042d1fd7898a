"""The run: workloads from the rendering, pods through a launcher, one loop.

`Runner.run()` builds a controller per workload (controllers.py), asks the
launcher for the pod network, starts the controllers and then, every tick
(0.2 s): notices exited pods and hands them to their controller, reads the
pods' new output (log files, terminal, facts), fires due faults, kills pods
whose grace period ran out, lets each controller create or replace pods,
probes readiness (TensorBoard's URL) and prints a progress line now and then.

The run ends when every Job-like workload (Job, JobSet, TFJob) is terminal.
When the trainer fails, the evaluator Job is stopped (its pods get SIGTERM):
it waits for the training's completion marker and would never finish
(Kubernetes would leave it polling until its activeDeadlineSeconds). A failed
evaluator leaves the trainer running to its own end, as in a cluster.
Deployments (TensorBoard) are stopped at the end, or kept serving with
--keep-tensorboard until Ctrl-C.

With --upgrade (upgrade.py) the run applies a second rendering to the
previous run's objects the way `helm upgrade` would: a workload that stays
and had finished (Complete/Failed) is not run again, one that is new, was
changed under a new name or no longer exists runs, one only in the old
rendering is gone; the plan is printed and kept in summary.json.

On every exit path (success, failure, Ctrl-C, SIGTERM, an exception) the
finally-block terminates every pod (SIGTERM, then SIGKILL after the grace
period, capped by --shutdown-grace; a second Ctrl-C kills at once), reads
their last output, tears the launcher down (network namespaces) and writes
<run-dir>/summary.json.

Exit codes: 0 every Job complete; 1 a Job failed; 2 the chart, manifest or
machine cannot be run (nothing started); 124 --timeout reached;
128+N stopped by signal N (130 for Ctrl-C).
"""

from __future__ import annotations

import dataclasses
import fcntl
import shutil
import signal
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from model.atomic_write import write_json_atomically
from scripts.local_runner import faults as faults_mod
from scripts.local_runner.controllers import (CONTROLLERS, PASSIVE_KINDS, JobController, PodRecord,
                                              Workload)
from scripts.local_runner.launcher import Launcher, LauncherError
from scripts.local_runner.logs import Follower, PodFacts, Terminal
from scripts.local_runner.manifest import ManifestError, NetworkSlot, Pod, PodBuilder
from scripts.local_runner.netns import new_run_id
from scripts.local_runner.render import Rendering
from scripts.local_runner.upgrade import UpgradePlan

EXIT_OK, EXIT_JOB_FAILED, EXIT_SETUP, EXIT_TIMEOUT = 0, 1, 2, 124


class RunError(Exception):
    """The run cannot start; the message says why (exit code 2)."""


@dataclasses.dataclass
class RunOptions:
    run_dir: Path
    restart_backoff: float = 10.0  # Kubernetes: 10 s, doubling per failure of the index
    backoff_cap: float = 360.0
    shutdown_grace: float = 30.0  # cap on terminationGracePeriodSeconds when the run ends
    keep_tensorboard: bool = False
    progress_every: float = 15.0
    timeout: float | None = None
    faults: list = dataclasses.field(default_factory=list)
    tick: float = 0.2


def lock_run_dir(run_dir: Path):
    """The run dir's lock, held (an open file), or RunError when another runner holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = open(run_dir / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise RunError(f"another local runner is using {run_dir}") from None
    return lock


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


class Runner:
    def __init__(self, rendering: Rendering, launcher: Launcher, options: RunOptions, terminal: Terminal,
                 upgrade: UpgradePlan | None = None):
        self.rendering = rendering
        self.upgrade = upgrade
        self.launcher = launcher
        self.options = options
        self.terminal = terminal
        self.namespace = rendering.namespace
        self.run_dir = options.run_dir
        self.run_id = new_run_id()
        self.builder = PodBuilder(self.namespace, self.run_dir, rendering.docs)
        self.workloads: list[Workload] = []
        self.records: list[PodRecord] = []
        self.followers: dict[int, Follower] = {}
        self.slots: dict[str, NetworkSlot] = {}
        self.pod_numbers: dict[str, int] = {}
        self.injector = faults_mod.FaultInjector(options.faults)
        self.t0 = time.monotonic()
        self.started_wall = time.time()
        self.interrupted: int | None = None
        self.force_kill = False
        self.shutting_down = False
        self.last_progress = 0.0
        self.last_saved_step: int | None = None
        self.tensorboard_url: str | None = None
        self.exit_code: int | None = None
        self.result = "error"
        self.error: str | None = None
        self.ignored_kinds: list[str] = []
        self._lock_file = None

    # -- the Cluster protocol (used by the controllers) ------------------------------

    def now(self) -> float:
        return time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def event(self, message: str) -> None:
        self.terminal.runner_line(message)

    def backoff(self, failures: int) -> float:
        base = self.options.restart_backoff
        return min(base * 2 ** max(0, failures - 1), self.options.backoff_cap) if base > 0 else 0.0

    def slot(self, key: str) -> NetworkSlot:
        return self.slots[key]

    def next_pod_number(self, key: str) -> int:
        n = self.pod_numbers.get(key, 0)
        self.pod_numbers[key] = n + 1
        return n

    def create(self, pod: Pod, restart_count: int = 0) -> PodRecord:
        if self.shutting_down:
            raise RunError("internal: a pod was created during shutdown")
        logs = self.run_dir / "logs"
        name = pod.name if restart_count == 0 else f"{pod.name}.restart-{restart_count}"
        record = PodRecord(pod=pod, created_at=self.now(), log_path=logs / f"{name}.log",
                           restart_count=restart_count, facts=PodFacts())
        record.handle = self.launcher.start(pod, record.log_path)
        self.records.append(record)
        self.followers[id(record)] = Follower(record, self._on_line)
        where = f" at {pod.slot.address} ({pod.slot.key})" if pod.slot else ""
        self.event(f"{pod.owner}: started pod {pod.name}{where}; log {record.log_path}")
        return record

    def delete(self, record: PodRecord, reason: str, grace: float | None = None,
               disruption: bool = False) -> None:
        if not record.running:
            return
        if record.deleting and not disruption:
            if self.shutting_down:  # the run ends: do not wait out a longer grace period
                record.kill_at = min(record.kill_at or 0, self.now() + self.options.shutdown_grace)
                record.handle.send_signal(signal.SIGCONT)
            return
        record.deleting = True
        record.delete_reason = reason
        if disruption:
            record.conditions.add("DisruptionTarget")
        grace = record.pod.grace_seconds if grace is None else grace
        if self.shutting_down:
            grace = min(grace, self.options.shutdown_grace)
        record.kill_at = self.now() + grace
        record.handle.send_signal(signal.SIGTERM)
        if self.shutting_down:  # let a frozen (SIGSTOPped) pod handle it too
            record.handle.send_signal(signal.SIGCONT)

    # -- set-up ------------------------------------------------------------------------

    def _prepare_run_dir(self) -> None:
        self._lock_file = lock_run_dir(self.run_dir)
        for sub in ("logs", "pods", "network"):
            shutil.rmtree(self.run_dir / sub, ignore_errors=True)
        (self.run_dir / "logs").mkdir()
        rendered = self.run_dir / "rendered.yaml"
        if self.upgrade and rendered.exists():  # the release's previous revision, for a rollback
            rendered.replace(self.run_dir / "rendered.previous.yaml")
        rendered.write_text(self.rendering.text)

    def _build_workloads(self) -> None:
        for doc in self.rendering.docs:
            kind = doc["kind"]
            if kind in CONTROLLERS:
                try:
                    workload = CONTROLLERS[kind](self, doc)
                except (KeyError, ValueError, TypeError) as e:
                    raise RunError(f"{kind}/{doc['metadata'].get('name')}: cannot be run locally: {e}") from e
                previous = self.upgrade.finished_unchanged(kind, workload.name) if self.upgrade else None
                if previous:  # it exists, finished, and the upgrade left its spec as it was
                    workload.status = previous.status
                    workload.reason = "finished in the previous run; the upgrade runs nothing of it"
                    workload.finished_wall = previous.finished_wall
                self.workloads.append(workload)
            elif kind in PASSIVE_KINDS:
                self.ignored_kinds.append(f"{kind}/{doc['metadata']['name']} ({PASSIVE_KINDS[kind]})")
            else:
                self.ignored_kinds.append(f"{kind}/{doc['metadata']['name']} "
                                          "(not supported locally; ignored)")
        if not any(w.is_job for w in self.workloads):
            raise RunError("the rendering has no Job, JobSet or TFJob to run")
        for doc in self.rendering.of_kind("Job", "JobSet", "TFJob", "Deployment"):
            if "gs://" in yaml.safe_dump(doc):
                raise RunError("storage.type=gcs is not supported by the local runner (pods may reach no "
                               "network beyond their own); use the default storage.type=pvc")

    def _start_network(self) -> None:
        slots = [s for w in self.workloads if not w.terminal for s in w.slots()]
        keys = [s.key for s in slots]
        if len(set(keys)) != len(keys):
            raise RunError(f"two pods claim the same DNS name: {sorted(keys)}")
        ready = self.launcher.setup(self.run_id, self.run_dir, slots, self.namespace)
        self.slots = {s.key: s for s in ready}
        for line in self.launcher.describe_network():
            self.event(f"network: {line}")

    # -- the loop ------------------------------------------------------------------------

    def _on_line(self, record: PodRecord, line: str) -> None:
        record.facts.feed(line)
        if record.facts.saved_steps:
            self.last_saved_step = record.facts.saved_steps[-1]
        self.terminal.pod_line(record, line)
        if record.running:
            self.injector.tick(self.elapsed(), [record], self.last_saved_step, self._deliver_fault)

    def _pump(self) -> None:
        for follower in list(self.followers.values()):
            follower.pump()

    def _poll(self) -> None:
        for record in self.records:
            if not record.running:
                continue
            code = record.handle.poll()
            if code is None:
                continue
            record.finished_at = self.now()
            record.exit_code = code
            record.phase = "Succeeded" if code == 0 else "Failed"
            follower = self.followers.pop(id(record), None)
            if follower:
                follower.pump(final=True)
            record.handle.release()
            extra = f" (deleted: {record.delete_reason})" if record.deleting else ""
            self.event(f"pod {record.pod.name} exited {record.exit_description()} after "
                       f"{record.finished_at - record.created_at:.1f} s{extra}")
            for workload in self.workloads:
                if record in workload.records:
                    workload.on_exit(record)

    def _kill_overdue(self) -> None:
        now = self.now()
        for record in self.records:
            if record.running and record.deleting and (self.force_kill or now >= (record.kill_at or now)):
                record.handle.kill()

    def _deliver_fault(self, record: PodRecord, fault) -> None:
        step = f" at step {fault.seen_step}" if fault.seen_step is not None else ""
        self.event(f"fault {fault.spec}: {fault.action} pod {record.pod.name}{step}"
                   + (f" (last checkpoint: step {fault.last_saved_step})" if record.pod.component == "trainer"
                      else ""))
        if fault.action == "kill":
            record.handle.send_signal(signal.SIGKILL)
        elif fault.action == "stop":
            record.handle.send_signal(signal.SIGSTOP)
        elif fault.action == "term":
            record.handle.send_signal(signal.SIGTERM)
        elif fault.action == "evict":
            self.delete(record, f"evicted by fault {fault.spec}", disruption=True)

    def _probe(self) -> None:
        for record in self.records:
            if not record.running or record.ready or record.deleting:
                continue
            probe = record.pod.container.probes.get("readinessProbe") or record.pod.container.probes.get(
                "startupProbe")
            endpoints = record.handle.endpoints()
            if not probe or "httpGet" not in probe or not endpoints:
                continue
            if self.now() - getattr(record, "_last_probe", 0) < 1.0:
                continue
            record._last_probe = self.now()
            port = probe["httpGet"].get("port")
            if isinstance(port, str):
                port = next((p.container_port for p in record.pod.container.ports if p.name == port), None)
            endpoint = endpoints.get(port)
            if endpoint is None:
                continue
            url = endpoint.url.rstrip("/") + probe["httpGet"].get("path", "/")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    ok = 200 <= response.status < 400
            except (urllib.error.URLError, OSError, ValueError):
                ok = False
            if ok:
                record.ready = True
                if record.pod.component == "tensorboard" or self.tensorboard_url is None:
                    self.tensorboard_url = endpoint.url
                what = "TensorBoard is serving at" if record.pod.component == "tensorboard" else "ready at"
                self.event(f"pod {record.pod.name} is ready; {what} {endpoint.url}")

    def _progress(self, force: bool = False) -> None:
        if not force and (self.options.progress_every <= 0
                          or self.elapsed() - self.last_progress < self.options.progress_every):
            return
        self.last_progress = self.elapsed()
        parts = [format_duration(self.elapsed())]
        for w in self.workloads:
            if not w.is_job and w.component != "tensorboard":
                continue
            facts = [r.facts for r in w.records]
            if w.component == "tensorboard":
                parts.append(f"tensorboard {self.tensorboard_url or 'starting'}")
                continue
            replaced = len(w.records) - len({(r.pod.index, r.pod.owner) for r in w.records})
            if any(f.max_steps for f in facts):
                step = max((f.step or 0) for f in facts)
                total = max(f.max_steps or 0 for f in facts)
                parts.append(f"{w.component} step {step}/{total} ({w.status.lower()}, "
                             f"{replaced} replacement pod(s))")
            elif any(f.evaluations for f in facts):
                step, acc = max(e for f in facts for e in f.evaluations)
                parts.append(f"{w.component} step {step} validation accuracy {acc:.4f} ({w.status.lower()})")
            else:
                parts.append(f"{w.component} {w.status.lower()}")
        self.event("progress | " + " | ".join(parts))

    def _jobs(self) -> list[Workload]:
        return [w for w in self.workloads if w.is_job]

    def _loop(self) -> int:
        while True:
            if self.interrupted is not None:
                self.result = "interrupted"
                return 128 + self.interrupted
            self._poll()
            self._pump()
            running = [r for r in self.records if r.running]
            self.injector.tick(self.elapsed(), running, self.last_saved_step, self._deliver_fault)
            self._kill_overdue()
            for workload in self.workloads:
                workload.tick()
            self._probe()
            self._progress()
            jobs = self._jobs()
            failed = [w for w in jobs if w.status == "Failed"]
            if any(w.component != "evaluator" for w in failed):
                # The evaluator waits for the training's completion marker: it would never finish.
                for w in jobs:
                    if not w.terminal and w.component == "evaluator":
                        self.event(f"{w.ref}: stopping it, because {failed[0].ref} failed and it "
                                   "waits for the training to complete")
                        w.stop(f"{failed[0].ref} failed")
            if all(w.terminal for w in jobs):
                if failed:
                    self.result = "failed"
                    return EXIT_JOB_FAILED
                self.result = "succeeded"
                return EXIT_OK
            if self.options.timeout and self.elapsed() > self.options.timeout:
                self.result = "timeout"
                self.event(f"--timeout {self.options.timeout:g} s reached; stopping")
                return EXIT_TIMEOUT
            time.sleep(self.options.tick)

    def _linger(self) -> None:
        """--keep-tensorboard: serve until Ctrl-C."""
        if not any(r.running and r.pod.component == "tensorboard" for r in self.records):
            return
        self.event(f"every Job finished; TensorBoard keeps serving at {self.tensorboard_url or '(starting)'} "
                   "until Ctrl-C")
        while self.interrupted is None:
            self._poll()
            self._pump()
            for workload in self.workloads:
                workload.tick()
            self._probe()
            time.sleep(self.options.tick)

    # -- the whole run ------------------------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:
        if self.interrupted is not None or self.shutting_down:
            self.force_kill = True
            self.terminal.runner_line(f"{signal.Signals(signum).name} again: killing every pod now")
        else:
            self.interrupted = signum
            self.terminal.runner_line(f"{signal.Signals(signum).name}: stopping every pod "
                                      f"(SIGTERM, SIGKILL after at most {self.options.shutdown_grace:g} s; "
                                      "again to kill now)")

    def run(self) -> int:
        previous = {s: signal.signal(s, self._on_signal)
                    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            try:
                self._prepare_run_dir()
                self._build_workloads()
                self.event(f"run {self.run_id}: release {self.rendering.release} in namespace "
                           f"{self.namespace}, {self.launcher.name} launcher, run dir {self.run_dir}")
                if self.upgrade:
                    for line in self.upgrade.gone:
                        self.event(f"upgrade | gone before the upgrade: {line}")
                    for action in self.upgrade.actions:
                        self.event(f"upgrade | {action.line()}")
                for w in self.workloads:
                    self.event(f"workload {w.ref}" + (f": {w.status}, {w.reason}" if w.terminal else ""))
                for note in self.ignored_kinds:
                    self.event(f"not run: {note}")
                self._start_network()
                # A Deployment serves the Jobs' output: start it only when a Job runs (or is kept).
                serve = self.options.keep_tensorboard or any(not w.terminal for w in self._jobs())
                for w in self.workloads:
                    if not w.terminal and (w.is_job or serve):
                        w.start()
                code = self._loop()
                if code == EXIT_OK and self.options.keep_tensorboard:
                    self._linger()
            except (RunError, ManifestError, LauncherError) as e:
                self.error = str(e)
                self.event(f"error: {e}")
                code = EXIT_SETUP
            except Exception as e:  # noqa: BLE001 - still clean up, and say what broke
                self.error = f"{type(e).__name__}: {e}"
                traceback.print_exc()
                self.event(f"internal error: {self.error}")
                code = EXIT_SETUP if not self.records else EXIT_JOB_FAILED
            self.exit_code = code
            return code
        finally:
            try:
                self._shutdown()
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)
                if self.exit_code is None:
                    self.exit_code = EXIT_SETUP
                self._summary()
                if self._lock_file:
                    self._lock_file.close()

    def _shutdown(self) -> None:
        self.shutting_down = True
        for w in self.workloads:
            if not w.terminal or w.active():
                w.stop("the run ended" if self.interrupted is None else "interrupted")
        for record in self.records:  # anything a controller no longer tracks; cap longer graces
            if record.running:
                self.delete(record, record.delete_reason or "the run ended")
        deadline = self.now() + self.options.shutdown_grace + 10
        while any(r.running for r in self.records) and self.now() < deadline:
            self._kill_overdue()
            time.sleep(0.1)
            self._poll()
            self._pump()
        for record in self.records:  # last resort; never leave a process behind
            if record.running:
                record.handle.kill()
        deadline = self.now() + 10
        while any(r.running for r in self.records) and self.now() < deadline:
            self._poll()
            time.sleep(0.05)
        for follower in list(self.followers.values()):
            follower.pump(final=True)
        try:
            self.launcher.teardown()
        except Exception as e:  # noqa: BLE001 - report, the summary still gets written
            self.event(f"warning: launcher teardown failed: {e}")

    # -- the summary ------------------------------------------------------------------------

    def _model_dir(self) -> str | None:
        for record in self.records:
            if record.pod.component != "trainer":
                continue
            args = record.pod.container.args
            if "--model-dir" in args:
                path = args[args.index("--model-dir") + 1]
                for m in sorted(record.pod.container.mounts, key=lambda m: -len(m.container_path)):
                    if path == m.container_path or path.startswith(m.container_path + "/"):
                        return str(m.host_path) + path[len(m.container_path):]
        return None

    def _describe(self, workload: Workload) -> dict:
        if workload.finished_wall is None and workload.finished_at is not None:
            workload.finished_wall = round(self.started_wall + workload.finished_at - self.t0, 3)
        return workload.describe()

    def summary(self) -> dict:
        pods = []
        for r in self.records:
            pods.append({
                "name": r.pod.name, "display": r.pod.display, "component": r.pod.component,
                "owner": r.pod.owner, "index": r.pod.index, "attempt": r.pod.attempt,
                "restart_count": r.restart_count, "address": r.pod.slot.address if r.pod.slot else None,
                "log": str(r.log_path), "started": round(r.created_at - self.t0, 2),
                "finished": round(r.finished_at - self.t0, 2) if r.finished_at else None,
                "exit_code": r.exit_code, "outcome": r.outcome, "conditions": sorted(r.conditions),
                "deleted": r.delete_reason or None, "facts": r.facts.as_dict() if r.facts else None})
        trainer = [r for r in self.records if r.pod.component == "trainer"]
        evaluator = [r for r in self.records if r.pod.component == "evaluator"]
        done = [r.facts.done_step for r in trainer if r.facts and r.facts.done_step is not None]
        evaluations = [e for r in evaluator for e in (r.facts.evaluations if r.facts else [])]
        final = next((r.facts.final for r in reversed(evaluator) if r.facts and r.facts.final), None)
        test = next((r.facts.test_accuracy for r in reversed(evaluator)
                     if r.facts and r.facts.test_accuracy is not None), None)
        return {
            "run_id": self.run_id, "run_dir": str(self.run_dir), "release": self.rendering.release,
            "namespace": self.namespace, "launcher": self.launcher.name, "result": self.result,
            "exit_code": self.exit_code, "error": self.error,
            "elapsed_seconds": round(self.elapsed(), 2), "started": self.started_wall,
            "render_command": self.rendering.command, "model_dir": self._model_dir(),
            "tensorboard_url": self.tensorboard_url,
            "workloads": [self._describe(w) for w in self.workloads], "not_run": self.ignored_kinds,
            "upgrade": self.upgrade.as_dict() if self.upgrade else None,
            "faults": [f.as_dict() for f in self.injector.faults], "pods": pods,
            "training": {"final_step": max(done) if done else None,
                         "last_step": max((r.facts.step or 0 for r in trainer if r.facts), default=None),
                         "last_checkpoint": self.last_saved_step,
                         "max_steps": max((r.facts.max_steps or 0 for r in trainer if r.facts), default=None),
                         "replacement_pods": sum(1 for r in trainer if r.pod.attempt or r.restart_count)},
            "evaluation": {"evaluations": evaluations, "final": final, "test_accuracy": test},
        }

    def _summary(self) -> None:
        data = self.summary()
        try:
            write_json_atomically(self.run_dir / "summary.json", data, indent=1)
        except OSError as e:
            self.event(f"warning: cannot write summary.json: {e}")
        say = self.terminal.runner_line
        say(f"summary | result: {data['result']} (exit {data['exit_code']}) after "
            f"{format_duration(data['elapsed_seconds'])}")
        if self.upgrade:
            verbs = ("create", "update", "unchanged", "delete", "keep")
            say("summary | upgrade: " + ", ".join(
                f"{self.upgrade.count(verb)} {verb}" for verb in verbs if self.upgrade.count(verb)))
        for w in self.workloads:
            text = f"summary | {w.ref}: {w.status}" + (f" ({w.reason})" if w.reason else "")
            if isinstance(w, JobController) and w.indexed:
                text += "; " + ", ".join(
                    f"index {s.index}: {len(s.pods)} pod(s), {s.counted} counted + {s.ignored} ignored "
                    f"failure(s)" for s in w.indexes)
            elif hasattr(w, "restarts"):
                restarts = w.restarts if isinstance(w.restarts, int) else sum(w.restarts)
                text += f"; {restarts} restart(s)"
            else:
                text += f"; {len(w.records)} pod(s)"
            say(text)
            if w.message and w.status == "Failed":
                say(f"summary |   {w.message}")
        training = data["training"]
        if training["final_step"] is not None:
            say(f"summary | training: final step {training['final_step']} of {training['max_steps']}")
        elif training["max_steps"]:
            say(f"summary | training: stopped at step {training['last_step']} of {training['max_steps']}; "
                f"last checkpoint: step {training['last_checkpoint']} (--resume continues from it)")
        errors = sorted({e for r in self.records if r.facts for e in r.facts.errors})
        for e in errors:
            say(f"summary | error reported by a pod: {e}")
        ev = data["evaluation"]
        if ev["evaluations"]:
            step, acc = ev["evaluations"][-1]
            say(f"summary | evaluator: {len(ev['evaluations'])} checkpoint(s) evaluated; validation accuracy "
                f"{acc:.4f} at step {step}" + (f"; test accuracy {ev['test_accuracy']:.4f}"
                                               if ev["test_accuracy"] is not None else ""))
        for fault in self.injector.faults:
            if fault.fired:
                say(f"summary | fault {fault.spec}: fired at {fault.fired_at:.1f} s on {fault.pod}"
                    + (f" (step {fault.seen_step})" if fault.seen_step is not None else ""))
            else:
                say(f"summary | fault {fault.spec}: never fired")
        if self.tensorboard_url:
            say(f"summary | TensorBoard was at {self.tensorboard_url} (stopped with the run; "
                f"`tensorboard --logdir {data['model_dir']}` serves it again)")
        say(f"summary | pod logs: {self.run_dir / 'logs'}/; model dir: {data['model_dir']}; "
            f"summary: {self.run_dir / 'summary.json'}")
