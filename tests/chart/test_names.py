"""Object and pod names the API server and the operators accept, for any release name.

The rules, each from the upstream source named beside it, are applied to
every name the chart renders and to the names the controllers derive from
them (pod host names, JobSet pods and Jobs, TFJob pods and Services), over a
sweep of release names (1 to 53 characters, Helm's limit; with and without
the chart name; starting with a digit) and worker counts up to the schema's
maximum. The scheme itself (mnist-train.fullname in _helpers.tpl): the chart
name first, one length budget for the base, a hash of the full name when it
is cut, and the run generation on the trainer and the evaluator.
"""

from __future__ import annotations

import json
import re

import pytest

from .conftest import CHART_DIR, CI_DIR

DEFAULTS = [CI_DIR / "default-values.yaml"]
MAX_WORKERS = json.loads((CHART_DIR / "values.schema.json").read_text())[
    "properties"]["trainer"]["properties"]["workers"]["maximum"]

# k8s.io/apimachinery v0.31 pkg/util/validation/validation.go: IsDNS1123Label,
# IsDNS1035Label (both at most 63 characters), IsDNS1123Subdomain (at most 253).
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# The 5 random characters the API server appends to a generateName (the
# JobSet webhook checks `<pod name>-abcde`).
RANDOM_SUFFIX = "-abcde"


def label_errors(name: str, what: str, dns1035: bool = False) -> list[str]:
    pattern = DNS1035_LABEL if dns1035 else DNS1123_LABEL
    kind = "DNS-1035" if dns1035 else "DNS-1123"
    errors = []
    if len(name) > 63:
        errors.append(f"{what} {name!r} is {len(name)} characters (a {kind} label has at most 63)")
    if not pattern.match(name):
        errors.append(f"{what} {name!r} is not a {kind} label")
    return errors


def derived_names(doc: dict) -> list[tuple[str, str, bool]]:
    """(name, what, must be DNS-1035) of the names an object's controller derives from it."""
    name, spec = doc["metadata"]["name"], doc.get("spec") or {}
    kind = doc["kind"]
    out = []
    if kind == "Job" and spec.get("completionMode") == "Indexed":
        # kubernetes v1.31 pkg/controller/job/indexed_job_utils.go: an Indexed Job's
        # pod i gets hostname <job>-<i> (validated as a DNS-1123 label).
        out.append((f"{name}-{spec['completions'] - 1}", "pod hostname", False))
    if kind == "JobSet":
        # JobSet v0.12.0 pkg/webhooks/jobset_webhook.go (ValidateCreate), names from
        # pkg/util/placement/placement.go GenJobName/GenPodName.
        out.append((spec["network"]["subdomain"], "JobSet subdomain (its Service)", True))
        for rjob in spec["replicatedJobs"]:
            last_job, last_pod = rjob["replicas"] - 1, rjob["template"]["spec"]["completions"] - 1
            out.append((f"{name}-{rjob['name']}-{last_job}", "JobSet child Job", True))
            out.append((f"{name}-{rjob['name']}-{last_job}-{last_pod}{RANDOM_SUFFIX}", "JobSet pod", True))
    if kind == "TFJob":
        # training-operator v1.9.0 pkg/webhooks/tensorflow/tfjob_webhook.go (the TFJob name
        # is a DNS-1035 label); pkg/controller.v1/common/util.go GenGeneralName names each
        # replica's pod and Service <tfjob>-<type>-<index>.
        out.append((name, "TFJob name", True))
        for rtype, rspec in spec["tfReplicaSpecs"].items():
            out.append((f"{name}-{rtype.lower()}-{rspec['replicas'] - 1}", "TFJob pod and Service", True))
    return out


def name_errors(docs: list[dict]) -> list[str]:
    errors = []
    for doc in docs:
        name, kind = doc["metadata"]["name"], doc["kind"]
        if kind in ("Service", "Job", "JobSet", "TFJob"):
            # Services: DNS-1035 (kubernetes v1.31 pkg/apis/core/validation ValidateService);
            # Jobs: the name is the batch.kubernetes.io/job-name label value of their pods,
            # at most 63 characters.
            errors += label_errors(name, f"{kind} name", dns1035=kind == "Service")
        elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
            errors.append(f"{kind} name {name!r} is not a DNS-1123 subdomain")
        for derived, what, dns1035 in derived_names(doc):
            errors += label_errors(derived, f"{what} of {kind}/{name}", dns1035)
    return errors


def workload(rendering, component: str) -> dict:
    return next(d for d in rendering.docs if d["kind"] in ("Job", "JobSet", "TFJob")
                and d["metadata"]["labels"]["app.kubernetes.io/component"] == component)


# -- the checks themselves reject what the API server and webhooks reject ----------------------


def test_the_name_checks_reject_bad_names():
    jobset = {"kind": "JobSet", "metadata": {"name": "r" * 30 + "-trainer-0123ab"},
              "spec": {"network": {"subdomain": "x-workers"},
                       "replicatedJobs": [{"name": "worker", "replicas": 1,
                                           "template": {"spec": {"completions": 1000}}}]}}
    # 45 + "-worker-0-999" + "-abcde" = 64 characters: the webhook refuses it.
    assert any("JobSet pod" in e for e in name_errors([jobset]))
    jobset["metadata"]["name"] = jobset["metadata"]["name"][1:]
    assert name_errors([jobset]) == []
    assert name_errors([{"kind": "Service", "metadata": {"name": "2024-sweep-workers"}}])
    job = {"kind": "Job", "metadata": {"name": "j" * 60},
           "spec": {"completionMode": "Indexed", "completions": 1000}}
    assert any("pod hostname" in e for e in name_errors([job]))
    tfjob = {"kind": "TFJob", "metadata": {"name": "t" * 53},
             "spec": {"tfReplicaSpecs": {"Worker": {"replicas": 1000}}}}
    assert any("TFJob pod" in e for e in name_errors([tfjob]))
    assert name_errors([{"kind": "NetworkPolicy", "metadata": {"name": "My_Policy"}}])


# -- every name, any release name, any worker count --------------------------------------------

RELEASES = [
    "a",  # 1 character
    "exp1",
    "2024-sweep",  # starts with a digit: Service names must still start with a letter
    "r" * 17,  # base mnist-train-<17> = 29 characters: exactly the budget
    "r" * 18,  # one over: cut and hashed
    "mnist-train",
    "mnist-train-" + "s" * 17,  # the release is the base: 29
    "mnist-train-" + "s" * 41,  # 53 characters, Helm's maximum
    "9" + "x" * 52,  # 53 characters starting with a digit
    "lr-sweep-" + "x" * 44,  # 53
]


@pytest.mark.parametrize("launcher", ["job", "jobset", "tfjob"])
@pytest.mark.parametrize("release", RELEASES)
def test_every_name_is_valid_at_the_maximum_worker_count(renderer, release, launcher):
    rendering = renderer.render(values_files=DEFAULTS, release=release,
                                set_values=[f"trainer.launcher={launcher}", f"trainer.workers={MAX_WORKERS}"])
    assert name_errors(rendering.docs) == []


@pytest.mark.parametrize("workers", [1, 9, 10, 100, MAX_WORKERS])
def test_jobset_pod_names_fit_at_the_longest_release_name(renderer, workers):
    rendering = renderer.render(values_files=DEFAULTS, release="x" * 53,
                                set_values=["trainer.launcher=jobset", f"trainer.workers={workers}"])
    assert name_errors(rendering.docs) == []


def test_a_release_name_starting_with_a_digit_gets_the_chart_name_first(renderer):
    rendering = renderer.render(values_files=DEFAULTS, release="2024-sweep")
    services = {d["metadata"]["name"] for d in rendering.find("Service")}
    assert services == {"mnist-train-2024-sweep-workers", "mnist-train-2024-sweep-tensorboard"}
    assert re.fullmatch(r"mnist-train-2024-sweep-trainer-[0-9a-f]{6}",
                        workload(rendering, "trainer")["metadata"]["name"])


def test_long_release_names_differing_after_the_cut_give_different_names(renderer):
    """A sweep `...-seed-1`, `...-seed-2`: no object of one may share a name with the other."""
    stem = "mnist-train-learning-rate-sweep-2024-seed-"
    first, second = (renderer.render(values_files=DEFAULTS, release=stem + str(i)) for i in (1, 2))
    names = [{(d["kind"], d["metadata"]["name"]) for d in r.docs} for r in (first, second)]
    assert not names[0] & names[1], names[0] & names[1]
    for rendering in (first, second):
        assert name_errors(rendering.docs) == []


def test_every_name_derives_from_one_base(renderer):
    """<base>-<component>, with the run generation on the trainer and the evaluator (one suffix for both)."""
    rendering = renderer.render(values_files=DEFAULTS, release="r" * 40)
    base = rendering.one("ServiceAccount")["metadata"]["name"]
    assert len(base) == 29 and re.fullmatch(r"mnist-train-r{10}-[0-9a-f]{6}", base), base
    trainer = workload(rendering, "trainer")["metadata"]["name"]
    generation = trainer.rsplit("-", 1)[1]
    assert trainer == f"{base}-trainer-{generation}"
    assert workload(rendering, "evaluator")["metadata"]["name"] == f"{base}-evaluator-{generation}"
    expected = {("Service", f"{base}-workers"), ("Service", f"{base}-tensorboard"),
                ("Deployment", f"{base}-tensorboard"), ("PersistentVolumeClaim", f"{base}-models"),
                ("NetworkPolicy", f"{base}-default-deny"), ("NetworkPolicy", f"{base}-trainer"),
                ("NetworkPolicy", f"{base}-tensorboard"), ("Job", f"{base}-test")}
    assert expected <= {(d["kind"], d["metadata"]["name"]) for d in rendering.docs}
    assert all(d["metadata"]["name"].startswith(base) for d in rendering.docs)


@pytest.mark.parametrize("override", ["fullnameOverride=2024-run", "nameOverride=Mnist"])
def test_a_base_name_that_is_no_dns_label_is_refused(renderer, override):
    result = renderer.run("template", "r", str(CHART_DIR), "-f", str(DEFAULTS[0]), "--set", override)
    key = override.split("=")[0]
    assert result.returncode != 0 and key in result.stderr, result.stderr
