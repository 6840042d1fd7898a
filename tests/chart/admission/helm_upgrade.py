"""What `helm upgrade` does with two renderings of a release.

Source: helm/helm v4.1.4 (05fa379):
- pkg/kube/client.go `update()`: every object of the new manifest that the
  cluster lacks is created -- also when it was in the old manifest too (its
  Job deleted by ttlSecondsAfterFinished, say); every other object of the
  new manifest is updated in place (server-side apply by default); every
  object of the old manifest that is not in the new one is deleted, unless
  annotated `helm.sh/resource-policy: keep`, and skipped if already gone;
- pkg/kube/resource.go isMatchingInfo: objects are the same when name,
  namespace and group+kind match (the API version may change);
- hooks (`helm.sh/hook` annotation) are not part of the release manifest
  (pkg/release/util SortManifests): they never take part in an upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RESOURCE_POLICY = "helm.sh/resource-policy"  # pkg/kube/resource_policy.go
KEEP = "keep"
HOOK = "helm.sh/hook"


def key(doc: dict) -> tuple[str, str, str, str]:
    """(group, kind, namespace, name): isMatchingInfo's identity."""
    api_version = doc.get("apiVersion", "")
    group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
    meta = doc.get("metadata") or {}
    return group, doc.get("kind", ""), meta.get("namespace") or "", meta.get("name", "")


def annotations(doc: dict) -> dict:
    return (doc.get("metadata") or {}).get("annotations") or {}


def manifest(docs: list[dict]) -> list[dict]:
    """The release manifest: the rendered objects without hooks."""
    return [d for d in docs if HOOK not in annotations(d)]


@dataclass
class UpgradePlan:
    create: list[dict] = field(default_factory=list)
    update: list[tuple[dict, dict]] = field(default_factory=list)  # (old, new)
    delete: list[dict] = field(default_factory=list)
    keep: list[dict] = field(default_factory=list)  # in old only, kept by resource-policy

    def names(self, what: str) -> set[str]:
        items = getattr(self, what)
        docs = [new for _, new in items] if what == "update" else items
        return {f"{d['kind']}/{d['metadata']['name']}" for d in docs}


def plan_upgrade(old_docs: list[dict], new_docs: list[dict], live=None) -> UpgradePlan:
    """The plan of `helm upgrade` from `old_docs` to `new_docs`. `live`: the
    keys of the objects still in the cluster (default: all of old_docs)."""
    old = {key(d): d for d in manifest(old_docs)}
    live = set(old) if live is None else set(live)
    plan = UpgradePlan()
    new = manifest(new_docs)
    for doc in new:
        k = key(doc)
        if k not in live or k not in old:
            plan.create.append(doc)
        else:
            plan.update.append((old[k], doc))
    new_keys = {key(d) for d in new}
    for k, doc in old.items():
        if k in new_keys or k not in live:
            continue
        (plan.keep if annotations(doc).get(RESOURCE_POLICY) == KEEP else plan.delete).append(doc)
    return plan
