"""Helpers that walk rendered manifests: pod specs, Job specs, containers."""

from __future__ import annotations

from dataclasses import dataclass

COMPONENT = "app.kubernetes.io/component"


@dataclass
class Pod:
    """A pod template found in a rendered object."""

    owner: dict  # the rendered object (Job, Deployment, JobSet, TFJob)
    template: dict  # {metadata, spec}

    @property
    def spec(self) -> dict:
        return self.template["spec"]

    @property
    def labels(self) -> dict:
        return (self.template.get("metadata") or {}).get("labels") or {}

    @property
    def component(self) -> str:
        return self.labels.get(COMPONENT, "")

    @property
    def where(self) -> str:
        return f"{self.owner['kind']}/{self.owner['metadata']['name']}"


def pod_templates(doc: dict) -> list[Pod]:
    kind, spec = doc["kind"], doc.get("spec") or {}
    if kind in ("Job", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        return [Pod(doc, spec["template"])]
    if kind == "CronJob":
        return [Pod(doc, spec["jobTemplate"]["spec"]["template"])]
    if kind == "Pod":
        return [Pod(doc, {"metadata": doc.get("metadata", {}), "spec": spec})]
    if kind == "JobSet":
        return [Pod(doc, rj["template"]["spec"]["template"]) for rj in spec["replicatedJobs"]]
    if kind == "TFJob":
        return [Pod(doc, rs["template"]) for rs in spec["tfReplicaSpecs"].values()]
    return []


def all_pods(docs: list[dict]) -> list[Pod]:
    return [p for d in docs for p in pod_templates(d)]


def job_specs(doc: dict) -> list[dict]:
    """batch/v1 Job specs: a Job's, or the Job templates of a JobSet."""
    if doc["kind"] == "Job":
        return [doc["spec"]]
    if doc["kind"] == "JobSet":
        return [rj["template"]["spec"] for rj in doc["spec"]["replicatedJobs"]]
    return []


def containers(pod_spec: dict) -> list[dict]:
    """Every container of a pod: init, regular and ephemeral."""
    return [*(pod_spec.get("initContainers") or []), *(pod_spec.get("containers") or []),
            *(pod_spec.get("ephemeralContainers") or [])]


def env_values(container: dict) -> dict[str, str]:
    """Literal env values by name (valueFrom entries map to None)."""
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def arg_value(args: list[str], flag: str) -> str | None:
    """The value after `flag` (or of `flag=value`) in an argument list."""
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def by_component(docs: list[dict], component: str) -> list[Pod]:
    return [p for p in all_pods(docs) if p.component == component]


def only(items: list, what: str):
    assert len(items) == 1, f"expected exactly one {what}, found {len(items)}"
    return items[0]


def embedded_workloads(doc: dict) -> list[dict]:
    """The pod templates a JobSet or TFJob embeds, as batch/v1 Jobs, for
    scanners that know only core kinds (checkov): each replicated Job of a
    JobSet (what the JobSet controller creates), each replica type of a TFJob
    (its pods run to completion like a Job's; as a Pod, checkov would ask for
    the liveness/readiness probes it does not ask of Job pods), named
    `<parent>-<replicated job or replica type>`. Each carries the parent's
    annotations (the `checkov.io/skip` reasons are there) besides its
    template's own."""
    meta = doc.get("metadata") or {}
    parent_notes = meta.get("annotations") or {}

    def metadata(name: str, template_meta: dict) -> dict:
        return {"name": f"{meta['name']}-{name.lower()}", "namespace": meta.get("namespace"),
                "labels": dict((template_meta or {}).get("labels") or {}),
                "annotations": {**((template_meta or {}).get("annotations") or {}), **parent_notes}}

    if doc["kind"] == "JobSet":
        return [{"apiVersion": "batch/v1", "kind": "Job",
                 "metadata": metadata(rj["name"], rj["template"].get("metadata")),
                 "spec": rj["template"]["spec"]}
                for rj in doc["spec"]["replicatedJobs"]]
    if doc["kind"] == "TFJob":
        return [{"apiVersion": "batch/v1", "kind": "Job",
                 "metadata": metadata(rtype, rs["template"].get("metadata")),
                 "spec": {"template": rs["template"]}}
                for rtype, rs in doc["spec"]["tfReplicaSpecs"].items()]
    return []
