"""JobSet v0.12.0's admission webhook, and the API server's validation of the
Jobs the JobSet controller creates from it.

Source: kubernetes-sigs/jobset v0.12.0 (tag v0.12.0),
pkg/webhooks/jobset_webhook.go (Default, ValidateCreate, validateFailurePolicy,
ValidateUpdate) and pkg/util/placement/placement.go (GenJobName, GenPodName);
api/jobset/v1alpha2/jobset_types.go (groupName defaults to "default").
"""

from __future__ import annotations

import re

from . import apimachinery as am
from . import apiserver
from .apiserver import where

# jobset_webhook.go ruleNameFmt, minRuleNameLength, maxRuleNameLength
RULE_NAME_RE = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
RULE_NAME_LENGTH = (1, 128)
# validOnJobFailureReasons
JOB_FAILURE_REASONS = {"BackoffLimitExceeded", "DeadlineExceeded", "FailedIndexes",
                       "MaxFailedIndexesExceeded", "PodFailurePolicy"}
# ValidateCreate appends a 5-character stand-in for the random pod suffix.
POD_NAME_SUFFIX = "-abcde"
DEFAULT_GROUP_NAME = "default"


def job_name(jobset_name: str, replicated_job: str, job_index: int) -> str:
    """placement.GenJobName"""
    return f"{jobset_name}-{replicated_job}-{job_index}"


def pod_name(jobset_name: str, replicated_job: str, job_index: int, pod_index: int) -> str:
    """placement.GenPodName (without the random suffix)"""
    return f"{jobset_name}-{replicated_job}-{job_index}-{pod_index}"


def _failure_policy_violations(js: dict, rjob_names: set[str]) -> list[str]:
    """validateFailurePolicy"""
    rules = ((js.get("spec") or {}).get("failurePolicy") or {}).get("rules") or []
    found, by_name = [], {}
    for index, rule in enumerate(rules):
        # Default(): an unnamed rule is named failurePolicyRule<index>
        name = rule.get("name") or f"failurePolicyRule{index}"
        if not RULE_NAME_LENGTH[0] <= len(name) <= RULE_NAME_LENGTH[1]:
            found.append(f"invalid failure policy rule name of length {len(name)}")
        by_name.setdefault(name, []).append(index)
        if not RULE_NAME_RE.match(name):
            found.append(f"invalid failure policy rule name '{name}', a failure policy rule name must "
                         "start with an alphabetic character, optionally followed by a string of "
                         "alphanumeric characters or '_,:', and must end with an alphanumeric "
                         "character or '_'")
        for target in rule.get("targetReplicatedJobs") or []:
            if target not in rjob_names:
                found.append(f"invalid replicatedJob name '{target}' in failure policy does not appear "
                             "in .spec.ReplicatedJobs")
        for reason in rule.get("onJobFailureReasons") or []:
            if reason not in JOB_FAILURE_REASONS:
                found.append(f"invalid job failure reason '{reason}' in failure policy is not a "
                             "recognized job failure reason")
    for name, indices in by_name.items():
        if len(indices) > 1:
            found.append(f"rule names are not unique, rules with indices {indices} all have "
                         f"the same name '{name}'")
    return found


def child_jobs(js: dict) -> list[dict]:
    """The Jobs the JobSet controller creates (one per replica of each
    replicated Job), as the API server receives them; pod templates get the
    webhook's defaults (Indexed, restartPolicy OnFailure when unset)."""
    meta = js.get("metadata") or {}
    jobs = []
    for rjob in (js.get("spec") or {}).get("replicatedJobs") or []:
        template = rjob.get("template") or {}
        spec = dict(template.get("spec") or {})
        spec.setdefault("completionMode", "Indexed")
        pod = dict(spec.get("template") or {})
        pod["spec"] = dict(pod.get("spec") or {})
        pod["spec"].setdefault("restartPolicy", "OnFailure")
        spec["template"] = pod
        for index in range(int(rjob.get("replicas", 1))):
            jobs.append({"apiVersion": "batch/v1", "kind": "Job",
                         "metadata": {"name": job_name(meta.get("name", ""), rjob.get("name", ""), index),
                                      "namespace": meta.get("namespace"),
                                      "labels": (template.get("metadata") or {}).get("labels")},
                         "spec": spec})
    return jobs


def create_violations(js: dict) -> list[str]:
    """ValidateCreate (for the fields the chart sets), then the child Jobs
    through the API server's ValidateJob."""
    spec = js.get("spec") or {}
    name = (js.get("metadata") or {}).get("name", "")
    found = []
    subdomain = (spec.get("network") or {}).get("subdomain")
    if subdomain:
        found += [f"spec.network.subdomain {subdomain!r}: {e}"
                  for e in am.is_dns1123_subdomain(subdomain) + am.is_dns1035_label(subdomain)]
    rjob_names = set()
    for i, rjob in enumerate(spec.get("replicatedJobs") or []):
        path = f"spec.replicatedJobs[{i}]"
        rjob_names.add(rjob.get("name", ""))
        group = rjob.get("groupName", DEFAULT_GROUP_NAME)
        found += [f"{path}.groupName {group!r}: {e}" for e in am.is_dns1035_label(group)]
        replicas = int(rjob.get("replicas", 1))
        longest_job = job_name(name, rjob.get("name", ""), replicas - 1)
        if am.is_dns1035_label(longest_job):
            found.append(f"{path}.name: {longest_job!r}: JobSet name is too long, job names "
                         "generated for this JobSet will exceed 63 characters")
        jspec = (rjob.get("template") or {}).get("spec") or {}
        if jspec.get("completionMode", "Indexed") == "Indexed" and jspec.get("completions") is not None:
            longest_pod = pod_name(name, rjob.get("name", ""), replicas - 1,
                                   int(jspec["completions"]) - 1) + POD_NAME_SUFFIX
            if am.is_dns1035_label(longest_pod):
                found.append(f"{path}.name: {longest_pod!r}: JobSet name is too long, pod names "
                             "generated for this JobSet will exceed 63 characters")
    for target in (spec.get("successPolicy") or {}).get("targetReplicatedJobs") or []:
        if target not in rjob_names:
            found.append(f"invalid replicatedJob name '{target}' does not appear in .spec.ReplicatedJobs")
    found += _failure_policy_violations(js, rjob_names)
    found = [f"{where(js)}: {e} (JobSet v0.12.0 webhook)" for e in found]
    for job in child_jobs(js):
        found += [f"{where(js)} creates {e}" for e in apiserver.create_violations(job)]
    return found


def update_violations(old: dict, new: dict) -> list[str]:
    """ValidateUpdate: spec.replicatedJobs and spec.managedBy are immutable
    (with the ElasticJobSet gate off, the default in v0.12.0; a suspended
    JobSet may change its pod templates' labels, annotations, nodeSelector,
    tolerations and schedulingGates)."""
    o, n = old.get("spec") or {}, new.get("spec") or {}
    found = []
    if o.get("suspend") or n.get("suspend"):
        mutable = ("nodeSelector", "tolerations", "schedulingGates")

        def munge(rjobs):
            out = []
            for rjob in rjobs or []:
                pod = ((rjob.get("template") or {}).get("spec") or {}).get("template") or {}
                out.append((rjob.get("name"), {k: v for k, v in rjob.items() if k != "template"},
                            {k: v for k, v in (rjob.get("template") or {}).items() if k != "spec"},
                            {k: v for k, v in ((rjob.get("template") or {}).get("spec") or {}).items()
                             if k != "template"},
                            {k: v for k, v in (pod.get("spec") or {}).items() if k not in mutable}))
            return out
        changed = munge(o.get("replicatedJobs")) != munge(n.get("replicatedJobs"))
    else:
        changed = o.get("replicatedJobs") != n.get("replicatedJobs")
    if changed:
        found.append("spec.replicatedJobs: Invalid value: field is immutable")
    if o.get("managedBy") != n.get("managedBy"):
        found.append("spec.managedBy: Invalid value: field is immutable")
    return [f"{where(new)}: {e} (JobSet v0.12.0 webhook)" for e in found]
