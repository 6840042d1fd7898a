"""The admission layer of the chart tests: what a real cluster answers when the
chart's rendered objects are created, or updated by `helm upgrade`.

Each module encodes one upstream source, each rule once, with the file and
version it comes from:
- apimachinery: names, label values, qualified names, quantities;
- apiserver: the Kubernetes API server's validation of the kinds the chart renders;
- jobset: JobSet v0.12.0's admission webhook;
- tfjob: training-operator v1.9.0's TFJob webhook (and the Services it creates);
- helm_upgrade: which objects `helm upgrade` (Helm v4.1.4) creates, updates, deletes.

`admit(docs)` and `upgrade_violations(old, new)` return human-readable
violations, one string each ("Kind/name: field: message"), empty when the
cluster would accept everything.
"""

from __future__ import annotations

from . import apiserver, jobset, tfjob
from .helm_upgrade import UpgradePlan, plan_upgrade


def admit(doc: dict) -> list[str]:
    """Violations the API server and the operators' webhooks report when
    `doc` is created."""
    found = apiserver.create_violations(doc)
    if doc.get("kind") == "JobSet":
        found += jobset.create_violations(doc)
    elif doc.get("kind") == "TFJob":
        found += tfjob.create_violations(doc)
    return found


def admit_all(docs: list[dict]) -> list[str]:
    return [v for doc in docs for v in admit(doc)]


def update_violations(old: dict, new: dict) -> list[str]:
    """Violations reported when `old` (live) is updated to `new` in place.
    An update is validated in full too (ValidateJobSpecUpdate calls
    ValidateJobSpec; a webhook's ValidateUpdate sees the new object)."""
    found = apiserver.create_violations(new) + apiserver.update_violations(old, new)
    if new.get("kind") == "JobSet":
        found += jobset.update_violations(old, new)
    elif new.get("kind") == "TFJob":
        found += tfjob.update_violations(old, new)
    return found


def upgrade_violations(old_docs: list[dict], new_docs: list[dict], live=None) -> list[str]:
    """Violations of `helm upgrade` from the rendering `old_docs` (installed)
    to `new_docs`: created objects go through the create rules, objects in
    both through the update rules. `live` (keys, see helm_upgrade.key) is what
    still exists in the cluster; default: everything of `old_docs`."""
    plan = plan_upgrade(old_docs, new_docs, live)
    found = [v for doc in plan.create for v in admit(doc)]
    for old, new in plan.update:
        found += update_violations(old, new)
    return found


__all__ = ["UpgradePlan", "admit", "admit_all", "plan_upgrade", "update_violations",
           "upgrade_violations"]
