"""training-operator v1.9.0's TFJob admission webhook, and the API server's
validation of the Services the operator creates for it.

Sources: kubeflow/training-operator v1.9.0 (tag v1.9.0, 6f74c7f),
pkg/webhooks/tensorflow/tfjob_webhook.go (validateTFJob,
validateTFReplicaSpecs), pkg/common/util/webhooks.go (ValidateRunPolicy,
ValidateRunPolicyUpdate), pkg/apis/kubeflow.org/v1/tensorflow_types.go
(TFJobDefaultContainerName, IsChiefOrMaster) and
pkg/controller.v1/common/util.go GenGeneralName (the name of replica i's
pod and Service).
"""

from __future__ import annotations

from . import apimachinery as am
from . import apiserver
from .apiserver import where

DEFAULT_CONTAINER_NAME = "tensorflow"
CHIEF_OR_MASTER = {"Chief", "Master"}
# webhooks.go supportedJobControllers
SUPPORTED_MANAGED_BY = {"kubeflow.org/training-operator", "kueue.x-k8s.io/multikueue"}


def replica_name(tfjob_name: str, replica_type: str, index: int) -> str:
    """GenGeneralName: the pod and Service of one replica."""
    return f"{tfjob_name}-{replica_type.lower()}-{index}".replace("/", "-")


def create_violations(tfjob: dict) -> list[str]:
    """validateTFJob (no old object), then the per-replica Services the
    operator creates through the API server (a Service name is a DNS-1035
    label, so <name>-worker-<i> must fit 63 characters)."""
    name = (tfjob.get("metadata") or {}).get("name", "")
    spec = tfjob.get("spec") or {}
    found = [f"metadata.name: should match: {e}" for e in am.is_dns1035_label(name)]
    managed_by = (spec.get("runPolicy") or {}).get("managedBy")
    if managed_by is not None and managed_by not in SUPPORTED_MANAGED_BY:
        found.append(f"spec.runPolicy.managedBy: Unsupported value {managed_by!r}")
    replica_specs = spec.get("tfReplicaSpecs")
    if not replica_specs:
        found.append("spec.tfReplicaSpecs: Required value: must be required")
    chiefs = 0
    for rtype, rspec in (replica_specs or {}).items():
        path = f"spec.tfReplicaSpecs[{rtype}].template.spec.containers"
        containers = (((rspec or {}).get("template") or {}).get("spec") or {}).get("containers") or []
        if not containers:
            found.append(f"{path}: Required value: must be specified")
        chiefs += rtype in CHIEF_OR_MASTER
        for i, container in enumerate(containers):
            if not container.get("image"):
                found.append(f"{path}[{i}].image: Required value")
        if DEFAULT_CONTAINER_NAME not in [c.get("name") for c in containers]:
            found.append(f"{path}: Required value: must have at least one container with name "
                         f"{DEFAULT_CONTAINER_NAME}")
    if chiefs > 1:
        found.append("spec.tfReplicaSpecs: Forbidden: must not have more than 1 Chief or Master role")
    found = [f"{where(tfjob)}: {e} (training-operator v1.9.0 webhook)" for e in found]
    for rtype, rspec in (replica_specs or {}).items():
        replicas = int((rspec or {}).get("replicas", 1))
        if replicas > 0:
            service = {"apiVersion": "v1", "kind": "Service",
                       "metadata": {"name": replica_name(name, rtype, replicas - 1)}}
            found += [f"{where(tfjob)} creates {e}" for e in apiserver.object_meta_violations(service)]
    return found


def update_violations(old: dict, new: dict) -> list[str]:
    """validateTFJob with the old object: runPolicy.managedBy is immutable;
    everything else may change (the operator does not restart running pods
    for it)."""
    o = ((old.get("spec") or {}).get("runPolicy") or {}).get("managedBy")
    n = ((new.get("spec") or {}).get("runPolicy") or {}).get("managedBy")
    if o != n:
        return [f"{where(new)}: spec.runPolicy.managedBy: Invalid value: field is immutable "
                "(training-operator v1.9.0 webhook)"]
    return []
