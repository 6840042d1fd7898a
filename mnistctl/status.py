"""The whole release: collect its objects and logs, summarize them, judge and render.

`collect` asks the API (through mnistctl/kube.py's KubeApi, or anything with
the same methods) and reads a few pods' logs; `summarize` turns what came back
into a ReleaseStatus; `verdict` says done, failed (with the reason) or still
going; `render` is the `status` command's text.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING

from mnistctl.model_dir import newest_checkpoint
from model import goodput
from mnistctl.objects import (PodInfo, ServiceInfo, WorkloadInfo, custom_info, job_info, pod_info,
                              service_info)
from mnistctl.progress import Progress, error_line, newer_checkpoint, parse_evaluator_log, parse_trainer_log
from mnistctl.release import COMPONENT, DEFAULT_CHART_NAME, JOBSET, TFJOB, selector

if TYPE_CHECKING:
    from mnistctl.kube import KubeApi


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
              logs: dict[str, str] | None = None, model_dir_step: int | None = None,
              goodput_summary: dict | None = None) -> ReleaseStatus:
    """Turn API objects (kubernetes.client models; JobSet/TFJob as dicts), the logs read
    for some pods (by pod name) and what the model dir holds (its newest checkpoint, its
    goodput: model/goodput.py's summary) into a ReleaseStatus."""
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
        newer_checkpoint(progress, model_dir_step, "model dir")
    if goodput_summary is not None and goodput_summary.get("goodput") is not None:
        progress.goodput = {**goodput_summary, "source": "model dir"}
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
    if p.goodput:
        lines.append(f"goodput      {_goodput_text(p.goodput)}")
    v = verdict(status)
    lines.append(f"verdict      {'done' if v.done else 'FAILED' if v.failed else 'in progress'}: {v.reason}")
    return "\n".join(lines)


def _goodput_text(summary: dict) -> str:
    if "badput_shares" in summary:  # the whole summary, from the model dir
        return goodput.describe(summary) + f" (from the {summary['source']})"
    return (f"goodput {summary['goodput']:.3f} of {summary['wall_secs']:.1f} s over "
            f"{summary['attempts']} attempt(s); largest badput {summary['largest_badput']} "
            f"{summary['largest_badput_share']:.1%} (from the {summary['source']})")


def _pod_table(pods: list[PodInfo]) -> list[str]:
    if not pods:
        return ["             (no pods)"]
    width = max(len(p.name) for p in pods)
    rows = [f"  {'POD'.ljust(width)}  INDEX  PHASE      RESTARTS  STATE"]
    for p in pods:
        index = "-" if p.index is None else str(p.index)
        rows.append(f"  {p.name.ljust(width)}  {index:<5}  {p.phase:<9}  {p.restarts:<8}  {p.summary()}")
    return rows




def collect(api: KubeApi, namespace: str, release: str, *, chart: str = DEFAULT_CHART_NAME,
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
    model_dir_step = newest_checkpoint(model_dir) if model_dir else None
    return summarize(namespace, release, pods=pods, jobs=jobs, jobsets=jobsets, tfjobs=tfjobs,
                     services=services, logs=logs, model_dir_step=model_dir_step,
                     goodput_summary=goodput.summary_of(model_dir) if model_dir else None)
