"""The engine: workloads from the rendering, pods through a launcher, one loop.

`Runner.run()` builds a controller per workload (controllers/), asks the
launcher for the pod network, starts the controllers and then, every tick
(0.2 s): notices exited pods and hands them to their controller, reads the
pods' new output (log files, terminal), fires due faults, kills pods whose
grace period ran out, lets each controller create or replace pods, and
probes readiness (a pod whose readinessProbe answers is "ready at" the URL of
the probed port).

The engine knows Kubernetes kinds and fields, never a chart's components. What
the run means to the user (progress lines, facts read from the pods' output,
the summary printed and written to summary.json) comes from a `Report`
(reporting.py implements it for this project's library).

The run ends when every Job-like workload (Job, JobSet, TFJob) is terminal.
With --helm-test the rendering's `helm test` hook Jobs are among them: they start
once every other Job is terminal, and not at all if one of those failed. Remote-store
URLs in the pods are the launcher's to accept or refuse (Launcher.accept_rendering).
When a Job fails, its unfinished consumers are stopped: a Job whose pods mount
read-only a volume directory the failed Job's pods mount writable waits for
output that will not come (in a cluster it would wait until its
activeDeadlineSeconds). Producers are not stopped when a consumer fails.
Deployments are stopped at the end, or kept serving with `keep_serving`
(--keep-tensorboard) until Ctrl-C.

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
from typing import Protocol

from model.atomic_write import write_json_atomically
from scripts.local_runner import faults as faults_mod
from scripts.local_runner.controllers import CONTROLLERS, PASSIVE_KINDS, PodRecord, Workload
from scripts.local_runner.launcher import Launcher, LauncherError, optional
from scripts.local_runner.logs import Follower, Terminal
from scripts.local_runner.manifest import (ManifestError, NetworkSlot, Pod, PodBuilder, claim_paths,
                                           remote_urls)
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
    keep_serving: bool = False  # when every Job is done, keep the Deployments running until Ctrl-C
    progress_every: float = 15.0
    timeout: float | None = None
    faults: list = dataclasses.field(default_factory=list)
    tick: float = 0.2
    helm_test: bool = False  # run the rendering's `helm test` hook Jobs once the release's Jobs are done


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


class Report(Protocol):
    """What the run tells the user beyond the engine's events (reporting.py: this project's)."""

    def on_line(self, record: PodRecord, line: str) -> None:
        """A line a pod printed (after it reached the pod's log file)."""

    def step_of(self, record: PodRecord) -> int | None:
        """The step a pod last reported (step=N fault triggers)."""

    def last_checkpoint(self) -> int | None:
        """The newest checkpoint step any pod reported (recorded with a fault)."""

    def ready_event(self, record: PodRecord) -> str:
        """The event line when a pod's readiness probe first answers (record.ready_url)."""

    def serving_event(self, runner: Runner) -> str:
        """The event line when every Job is done and Deployments keep serving."""

    def progress(self, runner: Runner) -> str:
        """The progress line's text (after "progress | ")."""

    def summary(self, runner: Runner) -> dict:
        """summary.json's content, when the run has ended."""

    def summary_lines(self, runner: Runner, data: dict) -> list[str]:
        """The summary printed at the end (each after "summary | ")."""


def is_test_hook(doc: dict) -> bool:
    """A `helm test` hook (annotation helm.sh/hook listing `test`; Helm v3/v4 pkg/release/hook.go)."""
    hooks = ((doc.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", "")
    return "test" in [h.strip() for h in hooks.split(",")]


def consumers_of(producer: Workload, workloads: list[Workload]) -> list[tuple[Workload, str]]:
    """The Job-like workloads that read (mount read-only) a volume directory `producer` writes,
    each with that directory: they cannot finish without it."""
    writes = [w for t in producer.templates() for w in claim_paths(t)[1]]
    found = []
    for other in workloads:
        if other is producer or not other.is_job:
            continue
        reads = [r for t in other.templates() for r in claim_paths(t)[0]]
        shared = next((r for r in reads if any(r.overlaps(w) for w in writes)), None)
        if shared is not None:
            found.append((other, str(shared)))
    return found


class Runner:
    def __init__(self, rendering: Rendering, launcher: Launcher, options: RunOptions, terminal: Terminal,
                 report: Report, upgrade: UpgradePlan | None = None):
        self.rendering = rendering
        self.upgrade = upgrade
        self.launcher = launcher
        self.options = options
        self.terminal = terminal
        self.report = report
        self.namespace = rendering.namespace
        self.run_dir = options.run_dir
        self.run_id = new_run_id()
        self.builder = PodBuilder(self.namespace, self.run_dir, rendering.docs)
        self.workloads: list[Workload] = []
        self.records: list[PodRecord] = []
        self.followers: dict[int, Follower] = {}
        self.slots: dict[str, NetworkSlot] = {}
        self.pod_numbers: dict[str, int] = {}
        self.injector = faults_mod.FaultInjector(options.faults, report.step_of, report.last_checkpoint)
        self.t0 = time.monotonic()
        self.started_wall = time.time()
        self.interrupted: int | None = None
        self.force_kill = False
        self.shutting_down = False
        self.last_progress = 0.0
        self.stopped_consumers: set[int] = set()  # id() of the failed Jobs whose consumers were stopped
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
                           restart_count=restart_count)
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
            hook = is_test_hook(doc)
            if hook and not self.options.helm_test:
                self.ignored_kinds.append(f"{kind}/{doc['metadata']['name']} (a `helm test` hook: "
                                          "--helm-test runs it)")
                continue
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
                workload.hook = hook
                self.workloads.append(workload)
            elif kind in PASSIVE_KINDS:
                self.ignored_kinds.append(f"{kind}/{doc['metadata']['name']} ({PASSIVE_KINDS[kind]})")
            else:
                self.ignored_kinds.append(f"{kind}/{doc['metadata']['name']} "
                                          "(not supported locally; ignored)")
        if not any(w.is_job and not w.hook for w in self.workloads):
            raise RunError("the rendering has no Job, JobSet or TFJob to run")
        urls = sorted({u for w in self.workloads for t in w.templates() for u in remote_urls(t)})
        services = [d["metadata"]["name"] for d in self.rendering.of_kind("Service")]
        optional(self.launcher, "accept_rendering")(urls, services)  # LauncherError: pods it cannot serve

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
        self.report.on_line(record, line)
        self.terminal.pod_line(record, line)
        if record.running:
            self.injector.tick(self.elapsed(), [record], self._deliver_fault)

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

    def _deliver_fault(self, record: PodRecord, fault: faults_mod.Fault) -> None:
        self.event(fault.describe(record.pod.name))
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
            if self.now() - record.last_probe < 1.0:
                continue
            record.last_probe = self.now()
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
                record.ready, record.ready_url = True, endpoint.url
                self.event(self.report.ready_event(record))

    def _progress(self) -> None:
        if (self.options.progress_every <= 0
                or self.elapsed() - self.last_progress < self.options.progress_every):
            return
        self.last_progress = self.elapsed()
        self.event("progress | " + self.report.progress(self))

    def _jobs(self) -> list[Workload]:
        return [w for w in self.workloads if w.is_job]

    def _stop_consumers(self, failed: Workload) -> None:
        """Stop the unfinished Jobs that read what a failed Job writes (see the module docstring)."""
        if id(failed) in self.stopped_consumers:
            return
        self.stopped_consumers.add(id(failed))
        for consumer, path in consumers_of(failed, self.workloads):
            if not consumer.terminal:
                self.event(f"{consumer.ref}: stopping it, because {failed.ref} failed and it reads what "
                           f"{failed.ref} writes (volume {path})")
                consumer.stop(f"{failed.ref} failed")

    def _start_hooks(self) -> None:
        """`helm test` after the release: its hook Jobs start once every other Job is done (as after
        `helm install --wait --wait-for-jobs`); if one failed they do not run."""
        waiting = [w for w in self.workloads if w.hook and w.status == "Pending"]
        release = [w for w in self._jobs() if not w.hook]
        if not waiting or not all(w.terminal for w in release):
            return
        failed = [w.ref for w in release if w.status != "Complete"]
        for hook in waiting:
            if failed:
                hook.stop(f"not run: {', '.join(failed)} did not complete")
                self.event(f"{hook.ref}: the `helm test` hook is not run: {', '.join(failed)} "
                           "did not complete")
            else:
                self.event(f"{hook.ref}: every Job is done; starting the `helm test` hook")
                hook.start()

    def _loop(self) -> int:
        while True:
            if self.interrupted is not None:
                self.result = "interrupted"
                return 128 + self.interrupted
            self._poll()
            self._pump()
            running = [r for r in self.records if r.running]
            self.injector.tick(self.elapsed(), running, self._deliver_fault)
            self._kill_overdue()
            for workload in self.workloads:
                workload.tick()
            self._probe()
            self._progress()
            jobs = self._jobs()
            failed = [w for w in jobs if w.status == "Failed"]
            for w in failed:
                self._stop_consumers(w)
            self._start_hooks()
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
        """keep_serving: the Deployments' pods run on until Ctrl-C."""
        if not any(r.running and not w.is_job for w in self.workloads for r in w.records):
            return
        self.event(self.report.serving_event(self))
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
                serve = self.options.keep_serving or any(not w.terminal for w in self._jobs())
                for w in self.workloads:
                    if not w.terminal and not w.hook and (w.is_job or serve):
                        w.start()
                code = self._loop()
                if code == EXIT_OK and self.options.keep_serving:
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
            for line in optional(self.launcher, "end_lines")():
                self.event(line)
        except Exception as e:  # noqa: BLE001 - report, the summary still gets written
            self.event(f"warning: launcher teardown failed: {e}")

    # -- the summary ------------------------------------------------------------------------

    def wall_time(self, monotonic: float) -> float:
        """A time of the runner's clock as time.time()."""
        return round(self.started_wall + monotonic - self.t0, 3)

    def _summary(self) -> None:
        for w in self.workloads:
            if w.finished_wall is None and w.finished_at is not None:
                w.finished_wall = self.wall_time(w.finished_at)
        data = self.report.summary(self)
        try:
            write_json_atomically(self.run_dir / "summary.json", data, indent=1)
        except OSError as e:
            self.event(f"warning: cannot write summary.json: {e}")
        for line in self.report.summary_lines(self, data):
            self.terminal.runner_line(f"summary | {line}")
