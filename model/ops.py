"""`python -m model.ops status|logs|wait|check`: a training run on Kubernetes.

    status   the release's trainer (Job, JobSet or TFJob) and its pods: phase,
             restarts, exit codes with their meaning (42 preempted, 2
             configuration error...); the newest checkpoint step (from the
             chief's log, the evaluator's, or the model dir with --model-dir);
             the evaluator's latest accuracy (from its log); the TensorBoard
             Service. `-o json` for scripts.
    logs     print (-f: follow) the evaluator's log, or worker N's (--worker N),
             or TensorBoard's; follows a replacement pod when one appears.
    wait     block until the trainer succeeded and the evaluator finished;
             exit 1 with the reason when either failed, 124 on --timeout.
    check    the chart's `helm test` hook: TensorBoard answers over HTTP and,
             once training has started, the model dir holds a checkpoint. It
             reads the model dir (a read-only mount, or gs:// through
             model/gcs.py) and never calls the Kubernetes API.

The first three talk to the Kubernetes API with the kubernetes client: from a
kubeconfig (--kubeconfig, --context; the context's namespace is the default)
or, inside a pod, with its service account (--in-cluster, chosen
automatically when KUBERNETES_SERVICE_HOST is set and a token is mounted).
They need, in the release's namespace only: get/list on pods, pods/log,
services and batch jobs, and list on jobsets.jobset.x-k8s.io and
tfjobs.kubeflow.org when those launchers are used (see the chart README).

Objects are found by the chart's labels (templates/_helpers.tpl):
app.kubernetes.io/instance=<release>, app.kubernetes.io/name=<chart name>
(mnist-train unless nameOverride) and app.kubernetes.io/component=trainer,
evaluator or tensorboard.

Exit codes: 0 done (status: the query worked), 1 the run failed, 2 bad usage
or the API/cluster cannot be reached or nothing of the release was found,
124 `wait --timeout` expired.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator

from model import log_lines
from model.errors import EXIT_CONFIG_ERROR, EXIT_FAILURE, EXIT_OK, EXIT_PREEMPTED, MnistTrainError

INSTANCE = "app.kubernetes.io/instance"
NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"
# Where a worker's index is: an Indexed Job's (also a JobSet's) label and
# annotation, the training operator's labels for a TFJob.
INDEX_KEYS = ("batch.kubernetes.io/job-completion-index", "training.kubeflow.org/replica-index",
              "replica-index")
JOBSET = ("jobset.x-k8s.io", "v1alpha2", "jobsets")
TFJOB = ("kubeflow.org", "v1", "tfjobs")
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

EXIT_TIMEOUT = 124
EXIT_MEANINGS = {
    0: "completed",
    1: "failed: unexpected error (e.g. a peer worker died); the group is retried",
    2: "configuration or data error: retrying cannot help, the Job fails at once (bad flags or "
       "data, an unusable model directory, a directory holding another run or held by another "
       "live trainer); see the log's `error:` line",
    EXIT_PREEMPTED: "preempted: SIGTERM received and a checkpoint saved; the pod is replaced "
                    "without counting as a failure and training resumes",
    130: "interrupted by Ctrl-C (SIGINT): a checkpoint saved; run it again to resume",
    137: "killed by SIGKILL (no checkpoint at exit; resumes from the last one): the kubelet "
         "after the grace period, the OOM killer, or the start-up guard (a peer never joined, "
         "or SIGTERM while waiting for peers)",
    143: "stopped by SIGTERM before it could save",
}
JOB_FAILURE_REASONS = {
    "PodFailurePolicy": "a pod failure policy rule failed the Job",
    "BackoffLimitExceeded": "too many failed pods (backoffLimit)",
    "FailedIndexes": "a worker index used up its retries (backoffLimitPerIndex)",
    "MaxFailedIndexesExceeded": "a worker index used up its retries (backoffLimitPerIndex)",
    "DeadlineExceeded": "activeDeadlineSeconds reached",
}


class OpsError(MnistTrainError):
    """Bad usage, an unreachable API, or a release that cannot be found (exit 2)."""


def describe_exit(code: int | None, reason: str | None = None) -> str:
    if code is None:
        return reason or "unknown"
    if reason == "OOMKilled":
        return f"exit {code}: out of memory (OOMKilled): raise the memory limit"
    meaning = EXIT_MEANINGS.get(code, "failed")
    if reason and reason not in ("Error", "Completed"):
        meaning = f"{meaning} ({reason})"
    return f"exit {code}: {meaning}"


# ---------------------------------------------------------------- API objects -> status

@dataclasses.dataclass
class PodInfo:
    name: str
    component: str
    index: int | None
    phase: str
    ready: bool
    restarts: int
    state: str  # running, waiting, terminated, pending
    created: str | None = None
    node: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None
    last_exit_code: int | None = None  # the previous instance's, after a restart in place
    last_reason: str | None = None
    disruption: str | None = None  # DisruptionTarget / Evicted
    error_line: str | None = None  # the `error: ...` line of its log, for exit code 2

    @property
    def preempted(self) -> bool:
        return self.exit_code == EXIT_PREEMPTED or self.disruption is not None

    def summary(self) -> str:
        if self.state == "terminated":
            text = describe_exit(self.exit_code, self.reason)
        elif self.state == "waiting":
            text = f"waiting: {self.reason or '?'}" + (f": {self.message}" if self.message else "")
        elif self.state == "pending":
            text = "pending" + (f": {self.reason}" if self.reason else "") + \
                (f": {self.message}" if self.message else "")
        else:
            text = "running" + ("" if self.ready else " (not ready)")
        if self.disruption:
            text += f"; disrupted: {self.disruption}"
        if self.last_exit_code is not None:
            text += f"; last restart: {describe_exit(self.last_exit_code, self.last_reason)}"
        if self.error_line:
            text += f"; {self.error_line}"
        return text


def _index_of(pod) -> int | None:
    for source in (pod.metadata.labels or {}, pod.metadata.annotations or {}):
        for key in INDEX_KEYS:
            value = source.get(key)
            if value is not None and str(value).isdigit():
                return int(value)
    return None


def _iso(value) -> str | None:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def pod_info(pod) -> PodInfo:
    """A V1Pod as the few facts that matter here."""
    status = pod.status
    labels = pod.metadata.labels or {}
    statuses = list(status.container_statuses or []) if status else []
    main = statuses[0] if statuses else None
    info = PodInfo(name=pod.metadata.name, component=labels.get(COMPONENT, ""), index=_index_of(pod),
                   phase=(status.phase if status else None) or "Unknown", ready=False,
                   restarts=sum(s.restart_count or 0 for s in statuses), state="pending",
                   created=_iso(pod.metadata.creation_timestamp),
                   node=pod.spec.node_name if pod.spec else None)
    for condition in (status.conditions or []) if status else []:
        if condition.type == "Ready":
            info.ready = condition.status == "True"
        elif condition.type == "DisruptionTarget" and condition.status == "True":
            info.disruption = condition.reason or "DisruptionTarget"
        elif condition.type == "PodScheduled" and condition.status == "False":
            info.reason, info.message = condition.reason, condition.message
    if status and status.reason == "Evicted":
        info.disruption = f"Evicted: {status.message}" if status.message else "Evicted"
    if main is not None and main.state is not None:
        state = main.state
        if state.terminated is not None:
            info.state, info.exit_code = "terminated", state.terminated.exit_code
            info.reason, info.message = state.terminated.reason, state.terminated.message
        elif state.waiting is not None:
            info.state, info.reason, info.message = "waiting", state.waiting.reason, state.waiting.message
        elif state.running is not None:
            info.state = "running"
        last = main.last_state.terminated if main.last_state else None
        if last is not None:
            info.last_exit_code, info.last_reason = last.exit_code, last.reason
    elif info.phase in ("Failed", "Succeeded"):
        info.state = "terminated"
    return info


@dataclasses.dataclass
class WorkloadInfo:
    kind: str
    name: str
    state: str  # pending, running, succeeded, failed, suspended
    reason: str | None = None
    message: str | None = None
    active: int = 0
    succeeded: int = 0
    failed: int = 0

    def summary(self) -> str:
        text = f"{self.kind}/{self.name}: {self.state}"
        counts = f"{self.active} active, {self.succeeded} succeeded, {self.failed} failed"
        if self.kind == "Job":
            text += f" ({counts})"
        if self.reason:
            text += f": {self.reason}"
            if self.reason in JOB_FAILURE_REASONS:
                text += f" ({JOB_FAILURE_REASONS[self.reason]})"
        if self.message:
            text += f": {self.message}"
            code = re.search(r"exit code (\d+)", self.message)
            if code:
                text += f" [{describe_exit(int(code.group(1)))}]"
        return text


def _true(conditions, *types: str):
    for condition in conditions or []:
        get = condition.get if isinstance(condition, dict) else (lambda k, c=condition: getattr(c, k))
        if get("type") in types and get("status") == "True":
            return get
    return None


def job_info(job) -> WorkloadInfo:
    status = job.status
    conditions = status.conditions if status else None
    info = WorkloadInfo("Job", job.metadata.name, "running", active=(status.active or 0) if status else 0,
                        succeeded=(status.succeeded or 0) if status else 0,
                        failed=(status.failed or 0) if status else 0)
    if not _state_from_conditions(info, conditions, failed=("Failed", "FailureTarget"),
                                  done=("Complete", "SuccessCriteriaMet")) \
            and not info.active and not info.succeeded:
        info.state = "pending"
    return info


def _state_from_conditions(info: WorkloadInfo, conditions, *, failed: tuple[str, ...],
                           done: tuple[str, ...]) -> bool:
    """Set info.state from a failed, done or suspended condition; False if none is true."""
    failure = _true(conditions, *failed)
    if failure:
        info.state, info.reason, info.message = "failed", failure("reason"), failure("message")
    elif _true(conditions, *done):
        info.state = "succeeded"
    elif _true(conditions, "Suspended"):
        info.state = "suspended"
    else:
        return False
    return True


def custom_info(obj: dict) -> WorkloadInfo:
    """A JobSet's or a TFJob's status (both use conditions)."""
    kind, name = obj.get("kind", "?"), obj.get("metadata", {}).get("name", "?")
    conditions = (obj.get("status") or {}).get("conditions") or []
    info = WorkloadInfo(kind, name, "pending" if not conditions else "running")
    if not _state_from_conditions(info, conditions, failed=("Failed",),
                                  done=("Completed", "Succeeded")) \
            and _true(conditions, "Restarting"):
        info.state, info.reason = "running", "Restarting"
    return info


# ---------------------------------------------------------------- logs -> progress

_SAVED, _RESTORED, _SIGTERM = log_lines.TRAIN_SAVED, log_lines.TRAIN_RESTORED, log_lines.TRAIN_PREEMPTED
_DONE, _PROGRESS = log_lines.TRAIN_DONE, log_lines.TRAIN_PROGRESS
_EVAL, _TEST = log_lines.EVAL_VALIDATION, log_lines.EVAL_TEST


@dataclasses.dataclass
class Progress:
    step: int | None = None  # the trainer's latest reported step
    checkpoint_step: int | None = None  # newest checkpoint known
    checkpoint_source: str | None = None
    training_done: bool = False
    eval_step: int | None = None
    eval_accuracy: float | None = None
    test_accuracy: float | None = None
    final_step: int | None = None


def parse_trainer_log(text: str, progress: Progress) -> Progress:
    for line in text.splitlines():
        for regex in (_SAVED, _RESTORED, _SIGTERM, _DONE):
            m = regex.search(line)
            if m:
                _newer_checkpoint(progress, int(m["step"]), "chief's log")
        m = _PROGRESS.search(line) or _DONE.search(line)
        if m:
            progress.step = max(progress.step or 0, int(m["step"]))
        if _DONE.search(line):
            progress.training_done = True
    return progress


def parse_evaluator_log(text: str, progress: Progress) -> Progress:
    """The JSON events (and, failing those, the tutorial's lines) of the evaluator."""
    for line in text.splitlines():
        line = line.strip()
        event = None
        if line.startswith("{") and '"event"' in line:
            try:
                event = json.loads(line)
            except ValueError:
                event = None
        if event and event.get("event") == "eval":
            progress.eval_step = int(event["step"])
            progress.eval_accuracy = float(event["validation_accuracy"])
        elif event and event.get("event") == "final":
            progress.final_step = int(event["final_step"])
            progress.test_accuracy = float(event["test_accuracy"])
        elif event is None:
            m = _EVAL.search(line)
            if m:
                progress.eval_step, progress.eval_accuracy = int(m["step"]), float(m["accuracy"])
            m = _TEST.search(line)
            if m:
                progress.final_step, progress.test_accuracy = int(m["step"]), float(m["accuracy"])
    if progress.eval_step is not None:
        _newer_checkpoint(progress, progress.eval_step, "evaluator's log")
    if progress.final_step is not None:
        _newer_checkpoint(progress, progress.final_step, "evaluator's log")
    return progress


def _newer_checkpoint(progress: Progress, step: int, source: str) -> None:
    if progress.checkpoint_step is None or step > progress.checkpoint_step:
        progress.checkpoint_step, progress.checkpoint_source = step, source


def error_line(text: str) -> str | None:
    """The CLI's one-line `error: ...` (exit code 2), if the log has one."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("error: ")]
    return lines[-1][:500] if lines else None


# ---------------------------------------------------------------- the whole release

@dataclasses.dataclass
class ServiceInfo:
    name: str
    type: str
    cluster_ip: str | None
    port: int | None
    ready_pods: int = 0
    pods: int = 0
    external: str | None = None


def service_info(service, pods: list[PodInfo]) -> ServiceInfo:
    spec = service.spec
    port = spec.ports[0].port if spec and spec.ports else None
    external = None
    ingress = (service.status.load_balancer.ingress if service.status and service.status.load_balancer
               else None) or []
    if ingress:
        external = ingress[0].ip or ingress[0].hostname
    return ServiceInfo(service.metadata.name, spec.type if spec else "?", spec.cluster_ip if spec else None,
                       port, ready_pods=sum(p.ready for p in pods), pods=len(pods), external=external)


@dataclasses.dataclass
class ReleaseStatus:
    namespace: str
    release: str
    trainer: WorkloadInfo | None
    evaluator: WorkloadInfo | None
    trainer_pods: list[PodInfo]
    evaluator_pods: list[PodInfo]
    tensorboard: list[ServiceInfo]
    progress: Progress


@dataclasses.dataclass
class Verdict:
    done: bool
    failed: bool
    reason: str
    found: bool = True


def _sort_pods(pods: list[PodInfo]) -> list[PodInfo]:
    return sorted(pods, key=lambda p: (p.index if p.index is not None else -1, p.created or "", p.name))


def summarize(namespace: str, release: str, *, pods: Iterable, jobs: Iterable = (),
              jobsets: Iterable[dict] = (), tfjobs: Iterable[dict] = (), services: Iterable = (),
              logs: dict[str, str] | None = None, model_dir_step: int | None = None) -> ReleaseStatus:
    """Turn API objects (kubernetes.client models; JobSet/TFJob as dicts) and
    the logs read for some pods (by pod name) into a ReleaseStatus."""
    logs = logs or {}
    infos = [pod_info(p) for p in pods]
    for info in infos:
        if info.name in logs and info.exit_code == 2:
            info.error_line = error_line(logs[info.name])
    by_component: dict[str, list[PodInfo]] = {}
    for info in infos:
        by_component.setdefault(info.component, []).append(info)
    trainer = None
    jobsets, tfjobs = list(jobsets), list(tfjobs)
    if jobsets:
        trainer = custom_info(jobsets[0])
    elif tfjobs:
        trainer = custom_info(tfjobs[0])
    evaluator = None
    for job in jobs:
        component = (job.metadata.labels or {}).get(COMPONENT)
        owners = {o.kind for o in job.metadata.owner_references or []}
        if component == "trainer" and trainer is None and "JobSet" not in owners:
            trainer = job_info(job)
        elif component == "evaluator":
            evaluator = job_info(job)
    progress = Progress()
    trainer_pods = _sort_pods(by_component.get("trainer", []))
    # The chief's logs, oldest pod first, so the newest pod's lines win.
    for info in sorted((p for p in trainer_pods if p.index in (0, None)), key=lambda p: p.created or ""):
        if info.name in logs:
            parse_trainer_log(logs[info.name], progress)
    evaluator_pods = _sort_pods(by_component.get("evaluator", []))
    for info in sorted(evaluator_pods, key=lambda p: p.created or ""):
        if info.name in logs:
            parse_evaluator_log(logs[info.name], progress)
    if model_dir_step is not None:
        _newer_checkpoint(progress, model_dir_step, "model dir")
    tb_pods = by_component.get("tensorboard", [])
    tensorboard = [service_info(s, tb_pods) for s in services]
    return ReleaseStatus(namespace, release, trainer, evaluator, trainer_pods, evaluator_pods,
                         tensorboard, progress)


def verdict(status: ReleaseStatus) -> Verdict:
    """Done, failed (with the reason), or still going (with what it waits for)."""
    trainer, evaluator = status.trainer, status.evaluator
    if trainer is None and not status.trainer_pods:
        return Verdict(False, False, f"no trainer of release {status.release!r} in namespace "
                       f"{status.namespace!r}", found=False)
    for what, workload, pods in (("trainer", trainer, status.trainer_pods),
                                 ("evaluator", evaluator, status.evaluator_pods)):
        if workload is not None and workload.state == "failed":
            reason = f"{what} {workload.summary()}"
            culprits = [p for p in pods if p.state == "terminated" and p.exit_code not in (0, None)
                        and not p.preempted]
            if culprits:
                worst = culprits[-1]
                reason += f"; pod {worst.name}: {worst.summary()}"
            return Verdict(False, True, reason)
    if trainer is None:
        return Verdict(False, False, "trainer pods exist but their Job/JobSet/TFJob is gone")
    if trainer.state != "succeeded":
        return Verdict(False, False, f"trainer {trainer.state}")
    if evaluator is not None and evaluator.state != "succeeded":
        return Verdict(False, False, f"trainer succeeded; evaluator {evaluator.state}")
    text = "trainer succeeded" + ("; evaluator finished" if evaluator else "")
    if status.progress.test_accuracy is not None:
        text += (f"; after {status.progress.final_step} training step(s), test accuracy = "
                 f"{status.progress.test_accuracy:g}")
    return Verdict(True, False, text)


def render(status: ReleaseStatus) -> str:
    lines = [f"release {status.release} in namespace {status.namespace}"]
    trainer = status.trainer.summary() if status.trainer else "not found"
    lines.append(f"trainer      {trainer}")
    lines += _pod_table(status.trainer_pods)
    p = status.progress
    if p.checkpoint_step is not None:
        lines.append(f"checkpoint   newest at step {p.checkpoint_step} (from the {p.checkpoint_source})"
                     + (f"; training at step {p.step}" if p.step and p.step != p.checkpoint_step else ""))
    else:
        lines.append("checkpoint   none seen yet")
    if status.evaluator or status.evaluator_pods:
        lines.append(f"evaluator    {status.evaluator.summary() if status.evaluator else 'Job not found'}")
        lines += _pod_table(status.evaluator_pods)
        if p.eval_step is not None:
            lines.append(f"             After {p.eval_step} training step(s), validation accuracy = "
                         f"{p.eval_accuracy:g}")
        if p.test_accuracy is not None:
            lines.append(f"             After {p.final_step} training step(s), test accuracy = "
                         f"{p.test_accuracy:g}")
    for tb in status.tensorboard:
        where = (f"{tb.cluster_ip}:{tb.port}" if tb.cluster_ip and tb.cluster_ip != "None"
                 else f"port {tb.port}")
        lines.append(f"tensorboard  Service/{tb.name} {tb.type} {where}, {tb.ready_pods}/{tb.pods} "
                     "pod(s) ready" + (f", external {tb.external}" if tb.external else ""))
        lines.append(f"             kubectl port-forward -n {status.namespace} svc/{tb.name} "
                     f"{tb.port}:{tb.port}")
    if not status.tensorboard:
        lines.append("tensorboard  no Service")
    v = verdict(status)
    lines.append(f"verdict      {'done' if v.done else 'FAILED' if v.failed else 'in progress'}: {v.reason}")
    return "\n".join(lines)


def _pod_table(pods: list[PodInfo]) -> list[str]:
    if not pods:
        return ["             (no pods)"]
    width = max(len(p.name) for p in pods)
    rows = [f"  {'POD'.ljust(width)}  INDEX  PHASE      RESTARTS  STATE"]
    for p in pods:
        index = "-" if p.index is None else str(p.index)
        rows.append(f"  {p.name.ljust(width)}  {index:<5}  {p.phase:<9}  {p.restarts:<8}  {p.summary()}")
    return rows


# ---------------------------------------------------------------- the model dir, without TensorFlow

_STATE_LINE = re.compile(r'^\s*(?:all_)?model_checkpoint_paths?:\s*"(.*)"\s*$', re.MULTILINE)
_STEP = re.compile(r"ckpt-(\d+)$")


@dataclasses.dataclass
class ModelDirState:
    started: bool  # run_config.json exists: the chief has started
    checkpoints: list[int]  # steps the state file lists whose .index exists
    final_step: int | None  # training_complete.json


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def read_model_dir(model_dir: str) -> ModelDirState:
    """What the trainer has left in a model dir (local path or gs://)."""
    if model_dir.startswith("gs://"):
        from model import gcs

        client = gcs.make_client()

        def read(name):
            return gcs.read_text(_join(model_dir, name), client)

        def exists(path):
            return gcs.object_exists(path, client)
    else:
        def read(name):
            try:
                with open(os.path.join(model_dir, name)) as f:
                    return f.read()
            except (FileNotFoundError, NotADirectoryError):
                return None

        exists = os.path.exists
    state_file = read("checkpoint") or ""
    steps = []
    for path in dict.fromkeys(_STATE_LINE.findall(state_file)):
        m = _STEP.search(path)
        if not m:
            continue
        full = path if path.startswith(("/", "gs://")) else _join(model_dir, path)
        if exists(full + ".index"):
            steps.append(int(m.group(1)))
    final = None
    marker = read("training_complete.json")
    if marker:
        try:
            final = json.loads(marker).get("final_step")
        except ValueError:
            final = None
    return ModelDirState(started=read("run_config.json") is not None, checkpoints=sorted(steps),
                         final_step=final if isinstance(final, int) else None)


# ---------------------------------------------------------------- the thin API layer

class KubeApi:
    """The handful of read-only calls the commands make (all in one namespace)."""

    def __init__(self, api_client=None):
        from kubernetes import client

        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    def pods(self, namespace: str, selector: str) -> list:
        return self.core.list_namespaced_pod(namespace, label_selector=selector).items

    def jobs(self, namespace: str, selector: str) -> list:
        return self.batch.list_namespaced_job(namespace, label_selector=selector).items

    def services(self, namespace: str, selector: str) -> list:
        return self.core.list_namespaced_service(namespace, label_selector=selector).items

    def custom_objects(self, namespace: str, resource: tuple[str, str, str], selector: str) -> list[dict]:
        from kubernetes.client.exceptions import ApiException

        group, version, plural = resource
        try:
            return self.custom.list_namespaced_custom_object(
                group, version, namespace, plural, label_selector=selector).get("items", [])
        except ApiException as e:
            if e.status in (403, 404):  # CRD not installed, or not ours to list
                return []
            raise

    def log(self, namespace: str, pod: str, container: str | None, tail_lines: int) -> str | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return self.core.read_namespaced_pod_log(pod, namespace, container=container,
                                                     tail_lines=tail_lines)
        except ApiException as e:
            if e.status in (400, 404):  # not started yet, or gone
                return None
            raise

    def stream_log(self, namespace: str, pod: str, container: str | None, *, follow: bool,
                   tail_lines: int | None) -> Iterator[str]:
        response = self.core.read_namespaced_pod_log(
            pod, namespace, container=container, follow=follow, tail_lines=tail_lines,
            _preload_content=False)
        try:
            buffer = b""
            for chunk in response.stream(4096):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", "replace")
            if buffer:
                yield buffer.decode("utf-8", "replace")
        finally:
            response.release_conn()

    def pod_container(self, namespace: str, pod) -> str | None:
        return pod.spec.containers[0].name if pod.spec and pod.spec.containers else None


def selector(release: str, chart: str, component: str | None = None) -> str:
    parts = [f"{INSTANCE}={release}", f"{NAME}={chart}"]
    if component:
        parts.append(f"{COMPONENT}={component}")
    return ",".join(parts)


def collect(api: KubeApi, namespace: str, release: str, *, chart: str = "mnist-train",
            read_logs: bool = True, log_tail: int = 2000, model_dir: str | None = None) -> ReleaseStatus:
    """Query the API (and, if asked, a few pods' logs and the model dir)."""
    base = selector(release, chart)
    pods = api.pods(namespace, base)
    jobs = api.jobs(namespace, base)
    trainer_selector = selector(release, chart, "trainer")
    jobsets = api.custom_objects(namespace, JOBSET, trainer_selector)
    tfjobs = [] if jobsets else api.custom_objects(namespace, TFJOB, trainer_selector)
    services = api.services(namespace, selector(release, chart, "tensorboard"))
    logs: dict[str, str] = {}
    if read_logs:
        for pod in pods:
            info = pod_info(pod)
            wanted = ((info.component == "trainer" and info.index in (0, None))
                      or info.component == "evaluator" or info.exit_code == 2)
            if wanted and info.state != "pending":
                text = api.log(namespace, info.name, api.pod_container(namespace, pod), log_tail)
                if text:
                    logs[info.name] = text
    model_dir_step = None
    if model_dir:
        steps = read_model_dir(model_dir).checkpoints
        model_dir_step = steps[-1] if steps else None
    return summarize(namespace, release, pods=pods, jobs=jobs, jobsets=jobsets, tfjobs=tfjobs,
                     services=services, logs=logs, model_dir_step=model_dir_step)


def load_api(kubeconfig: str | None = None, context: str | None = None,
             in_cluster: bool | None = None) -> tuple[KubeApi, str]:
    """(API, default namespace) from the service account in a pod, else a kubeconfig."""
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    if in_cluster is None:
        in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and \
            os.path.exists(os.path.join(SA_DIR, "token")) and not kubeconfig and not context
    try:
        if in_cluster:
            config.load_incluster_config()
            try:
                with open(os.path.join(SA_DIR, "namespace")) as f:
                    namespace = f.read().strip() or "default"
            except OSError:
                namespace = "default"
        else:
            config.load_kube_config(config_file=kubeconfig, context=context)
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            chosen = next((c for c in contexts if c["name"] == context), active) if context else active
            namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
    except (ConfigException, OSError) as e:
        where = "the pod's service account" if in_cluster else "the kubeconfig"
        raise OpsError(f"cannot load Kubernetes credentials from {where}: {e}") from None
    return KubeApi(), namespace


# ---------------------------------------------------------------- commands

def cmd_status(api: KubeApi, args, out: Callable[[str], None] = print) -> int:
    status = collect(api, args.namespace, args.release, chart=args.chart_name,
                     model_dir=args.model_dir)
    if args.output == "json":
        payload = dataclasses.asdict(status)
        payload["verdict"] = dataclasses.asdict(verdict(status))
        out(json.dumps(payload, indent=2, sort_keys=True))
    else:
        out(render(status))
    return EXIT_OK if verdict(status).found else EXIT_CONFIG_ERROR


def _pick_pod(pods: list, component: str, index: int | None):
    """The newest pod of a component (and worker index), preferring one that runs."""
    candidates = [p for p in pods if pod_info(p).component == component
                  and (index is None or pod_info(p).index == index)]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (pod_info(p).state != "pending",
                                          _iso(p.metadata.creation_timestamp) or ""))


def cmd_logs(api: KubeApi, args, out: Callable[[str], None] = print, max_pods: int = 100) -> int:
    component = "trainer" if args.worker is not None else args.component
    base = selector(args.release, args.chart_name, component)
    seen: set[str] = set()
    for _ in range(max_pods):
        pod = _pick_pod(api.pods(args.namespace, base), component, args.worker)
        if pod is None:
            if seen:
                return EXIT_OK
            what = f"worker {args.worker}" if args.worker is not None else component
            raise OpsError(f"no {what} pod of release {args.release!r} in namespace {args.namespace!r}")
        name = pod.metadata.name
        if name in seen:
            return EXIT_OK  # no newer pod took over
        if seen:
            out(f"--- following the replacement pod {name}")
        seen.add(name)
        if pod_info(pod).state == "pending" and args.follow:
            out(f"--- {name} has not started yet; waiting")
            while pod_info(pod).state == "pending":
                time.sleep(2)
                pod = next((p for p in api.pods(args.namespace, base) if p.metadata.name == name), None)
                if pod is None:
                    break
            if pod is None:
                continue
        for line in api.stream_log(args.namespace, name, api.pod_container(args.namespace, pod),
                                   follow=args.follow, tail_lines=args.tail):
            out(line)
        if not args.follow:
            return EXIT_OK
        time.sleep(1)  # a failed pod's replacement appears within seconds
    return EXIT_OK


def cmd_wait(api: KubeApi, args, out: Callable[[str], None] = print,
             err: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> int:
    start = clock()
    last = None
    while True:
        status = collect(api, args.namespace, args.release, chart=args.chart_name, read_logs=False)
        v = verdict(status)
        if v.failed or v.done:  # read the logs once, for the accuracy or the error line
            status = collect(api, args.namespace, args.release, chart=args.chart_name)
            v = verdict(status)
        line = v.reason + "".join(f" | {p.name}: {p.summary()}" for p in status.trainer_pods
                                  if p.state != "running")
        if line != last:
            out(f"wait | {line}")
            last = line
        if v.failed:
            err(f"error: {v.reason}")
            return EXIT_FAILURE
        if v.done:
            return EXIT_OK
        if not v.found and clock() - start >= args.not_found_grace_secs:
            err(f"error: {v.reason}")
            return EXIT_CONFIG_ERROR
        if args.timeout_secs is not None and clock() - start >= args.timeout_secs:
            err(f"error: timed out after {args.timeout_secs:g} s: {v.reason}")
            return EXIT_TIMEOUT
        sleep(args.interval_secs)


def _tensorboard_answers(url: str, timeout: float = 5.0) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our service
            body = response.read(1 << 16)
            return response.status == 200, f"HTTP {response.status}, {len(body)} bytes"
    except urllib.error.HTTPError as e:
        return False, f"HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        return False, str(getattr(e, "reason", e))


def cmd_check(args, out: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep,
              clock: Callable[[], float] = time.monotonic) -> int:
    """The `helm test` hook (see the module docstring)."""
    deadline = clock() + args.timeout_secs
    tb_ok = args.tensorboard_url is None
    tb_detail = "not checked"
    state = ModelDirState(False, [], None)
    while True:
        if not tb_ok:
            tb_ok, tb_detail = _tensorboard_answers(args.tensorboard_url)
        state = read_model_dir(args.model_dir)
        if (tb_ok and state.checkpoints) or clock() >= deadline:
            break
        if tb_ok and not state.started and args.skip_if_not_started:
            break
        sleep(args.interval_secs)
    failed = False
    if args.tensorboard_url is None:
        out("skip | TensorBoard: not checked")
    elif tb_ok:
        out(f"ok   | TensorBoard answers at {args.tensorboard_url} ({tb_detail})")
    else:
        out(f"FAIL | TensorBoard at {args.tensorboard_url} did not answer within "
            f"{args.timeout_secs:g} s (last: {tb_detail})")
        failed = True
    if state.checkpoints:
        newest = state.checkpoints[-1]
        out(f"ok   | {args.model_dir} has {len(state.checkpoints)} checkpoint(s), newest at step {newest}"
            + (f"; training complete at step {state.final_step}" if state.final_step is not None else ""))
    elif not state.started:
        out(f"skip | training has not started ({args.model_dir} has no run_config.json): "
            "no checkpoint expected yet")
    else:
        out(f"FAIL | training has started but {args.model_dir} has no checkpoint after "
            f"{args.timeout_secs:g} s (the first is saved at the first --save-checkpoints-steps "
            "boundary; run `helm test` again later, or with a longer tests.timeoutSecs)")
        failed = True
    return EXIT_FAILURE if failed else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model.ops", description=__doc__.split("\n\n")[0],
                                     epilog="exit codes: 0 done, 1 the run (or a check) failed, "
                                     "2 bad usage / API unreachable / release not found, "
                                     "124 wait timed out",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{status,logs,wait,check}")

    def cluster_flags(p):
        p.add_argument("-n", "--namespace", help="default: the kubeconfig context's, or the pod's")
        p.add_argument("--release", default=os.environ.get("MNIST_RELEASE", "mnist-train"),
                       help="Helm release name (env MNIST_RELEASE; default: %(default)s)")
        p.add_argument("--chart-name", default="mnist-train",
                       help="the chart's app.kubernetes.io/name (its nameOverride; default: %(default)s)")
        p.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
        p.add_argument("--context", help="kubeconfig context (default: the current one)")
        p.add_argument("--in-cluster", action="store_true", default=None,
                       help="use the pod's service account (default: when running in a pod)")

    s = sub.add_parser("status", help="trainer pods, checkpoint, accuracy, TensorBoard")
    cluster_flags(s)
    s.add_argument("--model-dir", help="also read the newest checkpoint from this model dir "
                   "(a local path, e.g. a mounted claim, or gs://)")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")

    lg = sub.add_parser("logs", help="the evaluator's log (default), a worker's or TensorBoard's")
    cluster_flags(lg)
    who = lg.add_mutually_exclusive_group()
    who.add_argument("--worker", type=int, metavar="N", help="worker N (0 is the chief)")
    who.add_argument("--evaluator", dest="component", action="store_const", const="evaluator")
    who.add_argument("--tensorboard", dest="component", action="store_const", const="tensorboard")
    lg.set_defaults(component="evaluator")
    lg.add_argument("-f", "--follow", action="store_true", help="keep streaming; moves on to a "
                    "replacement pod (e.g. after a preemption)")
    lg.add_argument("--tail", type=int, default=None, metavar="LINES", help="only the last LINES lines")

    w = sub.add_parser("wait", help="until the trainer succeeded and the evaluator finished")
    cluster_flags(w)
    w.add_argument("--timeout-secs", type=float, help="give up (exit 124) after this long")
    w.add_argument("--interval-secs", type=float, default=10.0, help="poll interval (default: %(default)s)")
    w.add_argument("--not-found-grace-secs", type=float, default=60.0,
                   help="how long the release may be missing before exit 2 (default: %(default)s)")

    c = sub.add_parser("check", help="the helm test hook: TensorBoard answers, a checkpoint exists")
    c.add_argument("--model-dir", required=True, help="the release's model dir (local mount or gs://)")
    c.add_argument("--tensorboard-url", help="GET this and expect HTTP 200 (omit to skip)")
    c.add_argument("--timeout-secs", type=float, default=240.0,
                   help="how long to wait for TensorBoard and a first checkpoint (default: %(default)s)")
    c.add_argument("--interval-secs", type=float, default=5.0)
    c.add_argument("--skip-if-not-started", action="store_true",
                   help="do not wait for a checkpoint when training has not started yet")
    return parser


def main(argv: list[str] | None = None, api: KubeApi | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check":
            return cmd_check(args)
        if api is None:
            api, default_namespace = load_api(args.kubeconfig, args.context, args.in_cluster)
        else:
            default_namespace = "default"
        args.namespace = args.namespace or default_namespace
        command = {"status": cmd_status, "logs": cmd_logs, "wait": cmd_wait}[args.command]
        return command(api, args)
    except MnistTrainError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_CONFIG_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - API unreachable, refused...
        from kubernetes.client.exceptions import ApiException

        if isinstance(e, ApiException):
            print(f"error: the Kubernetes API answered {e.status} {e.reason}: "
                  f"{(e.body or '')[:300]}", file=sys.stderr, flush=True)
            return EXIT_CONFIG_ERROR
        if "urllib3" in type(e).__module__ or isinstance(e, OSError):
            print(f"error: cannot reach the Kubernetes API: {e}", file=sys.stderr, flush=True)
            return EXIT_CONFIG_ERROR
        raise


if __name__ == "__main__":
    sys.exit(main())
