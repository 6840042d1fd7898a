"""`helm upgrade` on a run directory: which objects a second rendering deletes, updates and creates.

Helm applies an upgrade object by object (Helm v4.1.4 pkg/kube/client.go,
Client.update): an object of the new rendering that exists is updated in
place (a patch the API server validates against the live object), one that
does not exist is created (also when it was in the old rendering but is
gone, e.g. a Job its ttlSecondsAfterFinished removed), and then an object
only in the old rendering is deleted with background propagation (a Job's
pods get SIGTERM and their grace period), unless it carries
`helm.sh/resource-policy: keep`.

The "cluster" here is what the previous local run left in its run dir: its
rendering (rendered.yaml) and the status of each workload (summary.json).
`existing_objects` turns those into the objects that still exist;
`plan_upgrade` compares them with the new rendering. The plan is generic: it
knows kinds and Kubernetes' rules, never a chart's component names.

An update the API server would refuse (an immutable field of a Job, JobSet
or TFJob spec) refuses the whole upgrade here before anything changes (Helm
would already have created the new objects and updated the others, then
fail the release without deleting the old ones; a run dir keeps one state,
so the runner refuses cleanly instead); the
complete admission rules live in the chart tests (tests/chart/admission/);
this keeps only the immutability checks an upgrade needs.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

RESOURCE_POLICY = "helm.sh/resource-policy"
TERMINAL = ("Complete", "Failed")

# Immutable fields of a workload's spec, as the API server / webhook checks them on update.
# Job: kubernetes/kubernetes pkg/apis/batch/validation/validation.go, ValidateJobSpecUpdate
# (the tree read has spec.managedBy and spec.successPolicy in it: Kubernetes v1.31 or later):
# completions (mutable only for an elastic Indexed Job, in tandem with parallelism), selector,
# template (scheduling directives of a suspended Job excepted: not modelled, the runner never
# suspends), completionMode, podFailurePolicy,
# backoffLimitPerIndex, managedBy, successPolicy.
# JobSet: kubernetes-sigs/jobset v0.12.0 pkg/webhooks/jobset_webhook.go ValidateUpdate
# (replicatedJobs, managedBy; pod templates of a suspended JobSet excepted) and the CRD's CEL
# rules (failurePolicy, successPolicy).
# TFJob: kubeflow/training-operator v1.9.0 pkg/webhooks/tensorflow/tfjob_webhook.go ValidateUpdate
# -> pkg/common/util/webhooks.go ValidateRunPolicyUpdate (runPolicy.managedBy only).
IMMUTABLE_SPEC_FIELDS = {
    "Job": ("completions", "selector", "template", "completionMode", "podFailurePolicy",
            "backoffLimitPerIndex", "managedBy", "successPolicy"),
    "JobSet": ("replicatedJobs", "managedBy", "failurePolicy", "successPolicy"),
    "TFJob": ("runPolicy.managedBy",),
}


def object_key(doc: dict) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def ref(key: tuple[str, str]) -> str:
    return f"{key[0]}/{key[1]}"


def _field(spec: dict, dotted: str):
    value = spec
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def immutable_changes(old: dict, new: dict) -> list[str]:
    """The immutable spec fields an update from `old` to `new` changes (empty: the update is allowed)."""
    if old["kind"] != new["kind"]:
        return ["kind"]
    fields = IMMUTABLE_SPEC_FIELDS.get(new["kind"], ())
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    return [f"spec.{f}" for f in fields if _field(old_spec, f) != _field(new_spec, f)]


def ttl_seconds_after_finished(doc: dict) -> float | None:
    """The workload's ttlSecondsAfterFinished (TFJob: under runPolicy), or None."""
    spec = doc.get("spec") or {}
    value = spec.get("ttlSecondsAfterFinished")
    if value is None:
        value = (spec.get("runPolicy") or {}).get("ttlSecondsAfterFinished")
    return None if value is None else float(value)


@dataclasses.dataclass
class LiveObject:
    """One object as the previous run left it."""

    doc: dict
    status: str = ""  # a workload's status in the previous run (Complete, Failed, Stopped, ...)
    finished_wall: float | None = None  # when it became Complete/Failed (time.time())

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


@dataclasses.dataclass
class Action:
    verb: str  # create | update | unchanged | delete | keep
    kind: str
    name: str
    why: str
    doc: dict | None = None  # the new rendering's object (None for delete/keep)
    previous: LiveObject | None = None  # the object as it exists (None for create)

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"

    def line(self) -> str:
        return f"{self.verb} {self.ref}" + (f" ({self.why})" if self.why else "")

    def as_dict(self) -> dict:
        return {"verb": self.verb, "kind": self.kind, "name": self.name, "why": self.why,
                "previous_status": self.previous.status if self.previous else None}


@dataclasses.dataclass
class UpgradePlan:
    actions: list[Action]
    refusals: list[str]  # updates the API server would refuse; any refuses the whole upgrade
    gone: list[str]  # objects of the old rendering that no longer existed (and why)

    def action(self, kind: str, name: str) -> Action | None:
        return next((a for a in self.actions if (a.kind, a.name) == (kind, name)), None)

    def count(self, verb: str) -> int:
        return sum(1 for a in self.actions if a.verb == verb)

    def finished_unchanged(self, kind: str, name: str) -> LiveObject | None:
        """The previous object when it exists, is finished and stays (so it runs nothing now)."""
        action = self.action(kind, name)
        if action and action.verb in ("update", "unchanged") and action.previous and action.previous.finished:
            return action.previous
        return None

    def as_dict(self) -> dict:
        return {"actions": [a.as_dict() for a in self.actions], "refusals": self.refusals,
                "gone": self.gone}


def existing_objects(old_docs: list[dict], previous_summary: dict | None,
                     now_wall: float | None = None) -> tuple[dict, list[str]]:
    """The old rendering's objects that still exist -> LiveObject, and what is gone and why.

    A workload the previous run finished (Complete/Failed) is gone once its
    ttlSecondsAfterFinished has passed since it finished. A workload the
    previous run stopped (Ctrl-C, --timeout) or never started still exists,
    unfinished, as it would in a cluster. Without a readable summary (the
    previous runner was killed) every workload exists, unfinished.
    """
    now_wall = time.time() if now_wall is None else now_wall
    states = {(w["kind"], w["name"]): w for w in (previous_summary or {}).get("workloads") or []}
    live, gone = {}, []
    for doc in old_docs:
        key = object_key(doc)
        state = states.get(key) or {}
        obj = LiveObject(doc, state.get("status") or "", state.get("finished_wall"))
        ttl = ttl_seconds_after_finished(doc)
        if obj.finished and ttl is not None and obj.finished_wall is not None \
                and now_wall >= obj.finished_wall + ttl:
            gone.append(f"{ref(key)}: deleted by its ttlSecondsAfterFinished ({ttl:g} s) "
                        f"{now_wall - obj.finished_wall:.0f} s after it finished ({obj.status})")
            continue
        live[key] = obj
    return live, gone


def plan_upgrade(old_docs: list[dict], new_docs: list[dict], live: dict, gone: list[str] = ()) -> UpgradePlan:
    """What `helm upgrade` from old_docs to new_docs does, given the objects that exist (`live`)."""
    new_keys = [object_key(d) for d in new_docs]
    if len(set(new_keys)) != len(new_keys):
        dupes = sorted({ref(k) for k in new_keys if new_keys.count(k) > 1})
        return UpgradePlan([], [f"the new rendering defines {', '.join(dupes)} more than once"], list(gone))
    old_keys = {object_key(d) for d in old_docs}
    actions, refusals = [], []
    for doc in new_docs:
        key = object_key(doc)
        current = live.get(key)
        if current is None:
            why = ("only in the new rendering" if key not in old_keys
                   else "in both renderings, but no longer exists")
            actions.append(Action("create", *key, why, doc=doc))
            continue
        if current.doc == doc:
            status = f"{current.status} in the previous run" if current.status else ""
            actions.append(Action("unchanged", *key, status, doc=doc, previous=current))
            continue
        changed = immutable_changes(current.doc, doc)
        if changed:
            refusals.append(f"{ref(key)}: {', '.join(changed)}: field is immutable (the API server refuses "
                            "this update)")
        status = f"; {current.status} in the previous run" if current.status else ""
        actions.append(Action("update", *key, f"updated in place{status}", doc=doc, previous=current))
    for key, current in live.items():
        if key in new_keys:
            continue
        annotations = current.doc["metadata"].get("annotations") or {}
        if annotations.get(RESOURCE_POLICY) == "keep":
            actions.append(Action("keep", *key, f"only in the old rendering; {RESOURCE_POLICY}: keep",
                                  previous=current))
        else:
            actions.append(Action("delete", *key, "only in the old rendering", previous=current))
    return UpgradePlan(actions, refusals, list(gone))


def read_previous_summary(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
