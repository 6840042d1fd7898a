"""The release's objects: how the chart labels them, and the selectors that find them.

Labels from the chart's templates/_helpers.tpl: app.kubernetes.io/instance=<release>,
app.kubernetes.io/name=<chart name> (mnist-train unless nameOverride) and
app.kubernetes.io/component=trainer, evaluator or tensorboard.
"""

from __future__ import annotations

INSTANCE = "app.kubernetes.io/instance"
NAME = "app.kubernetes.io/name"
COMPONENT = "app.kubernetes.io/component"
DEFAULT_CHART_NAME = "mnist-train"
# Where a worker's index is: an Indexed Job's (also a JobSet's) label and
# annotation, the training operator's labels for a TFJob.
INDEX_KEYS = ("batch.kubernetes.io/job-completion-index", "training.kubeflow.org/replica-index",
              "replica-index")
# (group, version, plural) of the custom trainers.
JOBSET = ("jobset.x-k8s.io", "v1alpha2", "jobsets")
TFJOB = ("kubeflow.org", "v1", "tfjobs")


def selector(release: str, chart: str, component: str | None = None) -> str:
    parts = [f"{INSTANCE}={release}", f"{NAME}={chart}"]
    if component:
        parts.append(f"{COMPONENT}={component}")
    return ",".join(parts)


def index_of(pod) -> int | None:
    """A trainer pod's worker index, from its labels or annotations."""
    for source in (pod.metadata.labels or {}, pod.metadata.annotations or {}):
        for key in INDEX_KEYS:
            value = source.get(key)
            if value is not None and str(value).isdigit():
                return int(value)
    return None
