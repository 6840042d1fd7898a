"""Each rule of the admission layer (tests/chart/admission) rejects a bad
object: a rendered object of the chart, made to break exactly one rule."""

from __future__ import annotations

import copy

import pytest

from .admission import admit, apimachinery as am, plan_upgrade, update_violations
from .admission import jobset as jobset_webhook
from .admission.helm_upgrade import key


def one(rendering, kind, component=None):
    found = [d for d in rendering.docs if d["kind"] == kind and (
        component is None or d["metadata"]["labels"].get("app.kubernetes.io/component") == component)
        and "helm.sh/hook" not in (d["metadata"].get("annotations") or {})]
    assert len(found) == 1, (kind, component, len(found))
    return copy.deepcopy(found[0])


@pytest.fixture
def job(default_render):
    return one(default_render, "Job", "trainer")


@pytest.fixture
def jobset(scenarios):
    js = one(scenarios["jobset"], "JobSet")
    # Before the chart-names fix a rule name broke the webhook's regex (issue
    # 12); give such a rule a valid name so each test breaks exactly one rule.
    for i, rule in enumerate(js["spec"].get("failurePolicy", {}).get("rules", [])):
        if not jobset_webhook.RULE_NAME_RE.match(rule.get("name", "")):
            rule["name"] = f"Rule{i}"
    return js


@pytest.fixture
def tfjob(scenarios):
    return one(scenarios["tfjob"], "TFJob")


def pod(obj):
    if obj["kind"] == "JobSet":
        return obj["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    if obj["kind"] == "TFJob":
        return obj["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def rejects(obj, mutate, expected: str):
    assert admit(obj) == [], admit(obj)
    mutate(obj)
    found = admit(obj)
    assert any(expected in v for v in found), (expected, found)


# ------------------------------------------------------------ apimachinery

@pytest.mark.parametrize(("check", "good", "bad"), [
    (am.is_dns1123_label, "a-1", ["A", "a.b", "-a", "a-", "a" * 64, ""]),
    (am.is_dns1123_subdomain, "a.b-c", ["A.b", "a..b", "a_b", "a" * 254]),
    (am.is_dns1035_label, "a-1", ["1a", "a.b", "a" * 64]),
    (am.is_qualified_name, "example.com/a_B.c", ["a/b/c", "/a", "-a", "A_B/c", "a" * 64]),
    (am.is_valid_label_value, "", ["a b", "-a", "a" * 64]),
    (am.is_env_var_name, "MY_ENV.name-1", ["1A", "A=B", "..A", "A B"]),
    (am.is_valid_port_name, "grpc-1", ["123", "a--b", "-a", "abcdefghijklmnop", "A"]),
])
def test_name_syntax(check, good, bad):
    assert check(good) == []
    for value in bad:
        assert check(value), value


@pytest.mark.parametrize("value", ["1", "500m", "1.5Gi", "2e3", ".5", "+1k", 2, 0.5])
def test_quantity_parses(value):
    am.parse_quantity(value)


@pytest.mark.parametrize("value", ["abc", "1 Gi", "1GB", "1gi", "", "1.2.3", "Gi", True])
def test_quantity_refused(value):
    with pytest.raises(ValueError):
        am.parse_quantity(value)


def test_annotations_size_limit():
    assert am.validate_annotations({"a": "x" * 100}) == []
    assert am.validate_annotations({"a": "x" * am.TOTAL_ANNOTATION_SIZE_LIMIT})


# ------------------------------------------------------------ API server, create

@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda j: j["metadata"].__setitem__("name", "MNIST_Run"), "metadata.name"),
    (lambda j: j["metadata"].__setitem__("namespace", "My.NS"), "metadata.namespace"),
    (lambda j: j["metadata"]["labels"].__setitem__("team", "ml team"), "label 'team'"),
    (lambda j: j["metadata"]["labels"].__setitem__("bad key!", "x"), "label key"),
    (lambda j: j["metadata"]["labels"].__setitem__("n", 3), "is not a string"),
    (lambda j: j["metadata"].setdefault("annotations", {}).__setitem__("a b", "x"), "annotation key"),
    # a 61-character name: <name>-1 is 63, but the job-name label value is fine
    # only up to 63 and the Indexed hostname <name>-1 up to 63 too
    (lambda j: j["metadata"].__setitem__("name", "a" * 62), "will not able to create pod"),
    (lambda j: j["spec"].__setitem__("completions", -1), "completions: must be greater"),
    (lambda j: j["spec"].__setitem__("backoffLimitPerIndex", -1), "backoffLimitPerIndex: must be"),
    (lambda j: j["spec"].__delitem__("backoffLimitPerIndex"), "when maxFailedIndexes is specified"),
    (lambda j: j["spec"].__setitem__("maxFailedIndexes", 99), "maxFailedIndexes: must be less"),
    (lambda j: j["spec"].__delitem__("completions"), "when completion mode is Indexed"),
    (lambda j: j["spec"].__setitem__("completionMode", "NonIndexed"), "requires indexed completion"),
    (lambda j: j["spec"].__setitem__("parallelism", 100_001), "parallelism: must be less"),
    (lambda j: j["spec"].__setitem__("podReplacementPolicy", "TerminatingOrFailed"),
     "podReplacementPolicy: Unsupported"),
    (lambda j: j["spec"]["podFailurePolicy"]["rules"][1].__setitem__("action", "Restart"),
     "action: Unsupported"),
    (lambda j: j["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"].__setitem__(
        "containerName", "other"), "must be one of the container"),
    (lambda j: j["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"].__setitem__("values", [2, 1]),
     "must be ordered"),
    (lambda j: j["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"].__setitem__("values", [0]),
     "must not be 0"),
    (lambda j: j["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"].__setitem__("values", []),
     "at least one value"),
    (lambda j: j["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"].__setitem__("values", [3, 3]),
     "Duplicate"),
    (lambda j: j["spec"]["podFailurePolicy"]["rules"][1]["onExitCodes"].__setitem__("operator", "Eq"),
     "operator: Unsupported"),
    (lambda j: j["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0].__setitem__(
        "status", "Yes"), "status: Unsupported"),
    (lambda j: j["spec"]["podFailurePolicy"]["rules"][0].__setitem__(
        "onExitCodes", {"operator": "In", "values": [5]}), "specifying both"),
    (lambda j: j["spec"]["podFailurePolicy"]["rules"][0].__delitem__("onPodConditions"),
     "specifying one of"),
    (lambda j: j["spec"]["podFailurePolicy"].__setitem__("rules", [
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [i]}} for i in range(1, 22)]),
     "Too many"),
    (lambda j: pod(j).__setitem__("restartPolicy", "OnFailure"), 'only "Never" is supported'),
    (lambda j: pod(j).__setitem__("restartPolicy", "Always"), "restartPolicy: Required value"),
    (lambda j: pod(j)["containers"][0].__setitem__("name", "Trainer"), "name: a lowercase RFC 1123"),
    (lambda j: pod(j)["containers"][0].__delitem__("image"), "image: Required"),
    (lambda j: pod(j)["containers"].append(copy.deepcopy(pod(j)["containers"][0])), "Duplicate value"),
    (lambda j: pod(j)["containers"][0].setdefault("ports", []).append(
        {"name": "Grpc_Port", "containerPort": 1}), "ports.name"),
    (lambda j: pod(j)["containers"][0].setdefault("ports", []).append(
        {"name": "p", "containerPort": 70000}), "must be 1-65535"),
    (lambda j: pod(j)["containers"][0].setdefault("env", []).append({"name": "1X", "value": ""}),
     "env '1X'"),
    (lambda j: pod(j)["containers"][0]["resources"]["limits"].__setitem__("cpu", "abc"),
     "quantities must match"),
    (lambda j: pod(j)["containers"][0]["resources"]["requests"].__setitem__("cpu", "-1"),
     "greater than or equal to 0"),
    (lambda j: pod(j)["containers"][0]["resources"]["requests"].__setitem__("memory", "100Gi"),
     "must be less than or equal to memory limit"),
    (lambda j: pod(j)["containers"][0]["volumeMounts"][0].__setitem__("name", "nothing"),
     "volumeMounts 'nothing': Not found"),
    (lambda j: pod(j)["volumes"][0].__setitem__("name", "Tmp_Dir"), "volumes 'Tmp_Dir'"),
    (lambda j: pod(j)["volumes"].append(copy.deepcopy(pod(j)["volumes"][0])), "Duplicate value"),
    (lambda j: pod(j)["volumes"][1]["persistentVolumeClaim"].__setitem__("claimName", "My_Claim"),
     "can name no PersistentVolumeClaim"),
    (lambda j: pod(j)["volumes"][1]["persistentVolumeClaim"].__setitem__("claimName", ""),
     "claimName: Required"),
    (lambda j: pod(j).__setitem__("priorityClassName", "High Prio"), "priorityClassName"),
    (lambda j: pod(j).__setitem__("serviceAccountName", "SA"), "serviceAccountName"),
    (lambda j: pod(j).__setitem__("subdomain", "a.b"), "subdomain"),
    (lambda j: pod(j).__setitem__("hostname", "A"), "hostname"),
    (lambda j: pod(j).__setitem__("nodeSelector", {"pool": "gpu pool"}), "nodeSelector"),
    (lambda j: j["spec"]["template"]["metadata"]["labels"].__setitem__("x", "a b"),
     "template.metadata.labels"),
])
def test_api_server_rejects_a_bad_job(job, mutate, expected):
    rejects(job, mutate, expected)


def test_api_server_rejects_a_job_name_longer_than_a_label_value(job):
    """The API server copies a Job's name into its pods' job-name label
    (generateSelector): a non-Indexed Job named with 64+ characters fails."""
    job["spec"]["completionMode"] = "NonIndexed"
    for field in ("backoffLimitPerIndex", "maxFailedIndexes"):
        del job["spec"][field]
    rejects(job, lambda j: j["metadata"].__setitem__("name", "a" * 64),
            "label 'batch.kubernetes.io/job-name'")


def test_api_server_service_names_are_dns1035_labels(default_render):
    svc = one(default_render, "Service", "trainer")
    rejects(svc, lambda s: s["metadata"].__setitem__("name", "2024-sweep-workers"), "DNS-1035")
    svc = one(default_render, "Service", "trainer")
    rejects(svc, lambda s: s["spec"]["ports"][0].__setitem__("name", "Grpc"), "spec.ports.name")


def test_api_server_deployment_selector_must_match(default_render):
    deploy = one(default_render, "Deployment")
    rejects(deploy, lambda d: d["spec"]["selector"]["matchLabels"].__setitem__("x", "y"),
            "`selector` does not match")


def test_api_server_pvc_size_must_parse(default_render):
    pvc = one(default_render, "PersistentVolumeClaim")
    rejects(pvc, lambda p: p["spec"]["resources"]["requests"].__setitem__("storage", "10 GB"),
            "quantities must match")


# ------------------------------------------------------------ JobSet webhook

def rjob(js):
    return js["spec"]["replicatedJobs"][0]


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda js: js["spec"]["failurePolicy"]["rules"][0].__setitem__("name", "config-error"),
     "invalid failure policy rule name 'config-error'"),
    (lambda js: js["spec"]["failurePolicy"]["rules"][0].__setitem__("name", "a" * 129),
     "rule name of length 129"),
    (lambda js: js["spec"]["failurePolicy"]["rules"].append(
        copy.deepcopy(js["spec"]["failurePolicy"]["rules"][0])), "rule names are not unique"),
    (lambda js: js["spec"]["failurePolicy"]["rules"][0].__setitem__(
        "onJobFailureReasons", ["Evicted"]), "invalid job failure reason 'Evicted'"),
    (lambda js: js["spec"]["failurePolicy"]["rules"][0].__setitem__(
        "targetReplicatedJobs", ["ps"]), "invalid replicatedJob name 'ps' in failure policy"),
    (lambda js: js["spec"]["successPolicy"].__setitem__("targetReplicatedJobs", ["ps"]),
     "invalid replicatedJob name 'ps' does not appear"),
    (lambda js: js["spec"]["network"].__setitem__("subdomain", "2024-workers"), "DNS-1035"),
    (lambda js: rjob(js).__setitem__("groupName", "Group_1"), "groupName"),
    # 63 - len("-worker-0-2-abcde") = 46 characters leave room for 3 workers
    (lambda js: js["metadata"].__setitem__("name", "a" * 47), "pod names generated for this JobSet"),
    (lambda js: js["metadata"].__setitem__("name", "a" * 55), "job names generated for this JobSet"),
    # the child Jobs go through the API server
    (lambda js: rjob(js)["template"]["spec"].__setitem__("backoffLimit", -1),
     "-worker-0: : spec.backoffLimit"),
])
def test_jobset_webhook_rejects(jobset, mutate, expected):
    rejects(jobset, mutate, expected)


def test_jobset_pod_name_budget_counts_the_random_suffix(jobset):
    """46 characters + '-worker-0-<last index>' + '-abcde' is exactly 63
    (fewer than 11 workers): accepted; one more character is refused."""
    jobset["metadata"]["name"] = "a" * 46
    assert rjob(jobset)["template"]["spec"]["completions"] < 11
    assert admit(jobset) == []
    jobset["metadata"]["name"] = "a" * 47
    assert admit(jobset)


# ------------------------------------------------------------ TFJob webhook

@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda t: t["metadata"].__setitem__("name", "2024-sweep-trainer"), "metadata.name: should match"),
    (lambda t: pod(t)["containers"][0].__setitem__("name", "trainer"),
     "must have at least one container with name tensorflow"),
    (lambda t: pod(t)["containers"][0].__setitem__("image", ""), "image: Required"),
    (lambda t: pod(t).__setitem__("containers", []), "containers: Required value: must be specified"),
    (lambda t: t["spec"].__setitem__("tfReplicaSpecs", {}), "tfReplicaSpecs: Required"),
    (lambda t: t["spec"]["tfReplicaSpecs"].update({
        "Chief": copy.deepcopy(t["spec"]["tfReplicaSpecs"]["Worker"]),
        "Master": copy.deepcopy(t["spec"]["tfReplicaSpecs"]["Worker"])}), "more than 1 Chief or Master"),
    (lambda t: t["spec"]["runPolicy"].__setitem__("managedBy", "me"), "managedBy: Unsupported"),
    # the operator's Service for worker 99: <name>-worker-99 (64 here) must fit 63 characters
    (lambda t: (t["metadata"].__setitem__("name", "a" * 54),
                t["spec"]["tfReplicaSpecs"]["Worker"].__setitem__("replicas", 100)),
     "creates Service/" + "a" * 54 + "-worker-99"),
])
def test_tfjob_webhook_rejects(tfjob, mutate, expected):
    rejects(tfjob, mutate, expected)


# ------------------------------------------------------------ update rules

@pytest.mark.parametrize("mutate", [
    lambda j: j["spec"]["template"]["metadata"]["labels"].__setitem__("helm.sh/chart", "mnist-train-0.2.0"),
    lambda j: pod(j)["containers"][0].__setitem__("image", "x:2"),
    lambda j: j["spec"]["podFailurePolicy"]["rules"].pop(),
    lambda j: j["spec"].__setitem__("backoffLimitPerIndex", 5),
    lambda j: j["spec"].__setitem__("completions", 3),
    lambda j: j["spec"].__setitem__("completionMode", "NonIndexed"),
    lambda j: j["spec"].__setitem__("selector", {"matchLabels": {"a": "b"}}),
    lambda j: j["spec"].__setitem__("successPolicy", {"rules": [{"succeededCount": 1}]}),
    lambda j: j["spec"].__setitem__("managedBy", "example.com/x"),
], ids=["chart-label", "image", "podFailurePolicy", "backoffLimitPerIndex", "completions",
        "completionMode", "selector", "successPolicy", "managedBy"])
def test_job_update_rejects_immutable_changes(job, mutate):
    new = copy.deepcopy(job)
    mutate(new)
    assert update_violations(job, new), "no violation"


def test_job_update_accepts_mutable_changes(job):
    """Labels of the Job itself, ttl, and (Elastic Indexed Job) completions
    together with parallelism may change."""
    new = copy.deepcopy(job)
    new["metadata"]["labels"]["helm.sh/chart"] = "mnist-train-9.9.9"
    new["spec"]["ttlSecondsAfterFinished"] = 5
    assert update_violations(job, new) == []
    new["spec"]["completions"] = new["spec"]["parallelism"] = 3
    assert not [v for v in update_violations(job, new) if "completions" in v]


def test_jobset_update_rejects_replicated_jobs_change(jobset):
    new = copy.deepcopy(jobset)
    pod(new)["containers"][0]["image"] = "x:2"
    assert any("spec.replicatedJobs: Invalid value: field is immutable" in v
               for v in update_violations(jobset, new))
    suspended_old, suspended_new = copy.deepcopy(jobset), copy.deepcopy(jobset)
    for js in (suspended_old, suspended_new):
        js["spec"]["suspend"] = True
    pod(suspended_new)["nodeSelector"] = {"pool": "b"}
    assert update_violations(suspended_old, suspended_new) == []
    new = copy.deepcopy(jobset)
    new["spec"]["managedBy"] = "kueue.x-k8s.io/multikueue"
    assert any("spec.managedBy" in v for v in update_violations(jobset, new))


def test_tfjob_update_rejects_managed_by_change(tfjob):
    new = copy.deepcopy(tfjob)
    pod(new)["containers"][0]["image"] = "x:2"
    assert update_violations(tfjob, new) == []
    new["spec"]["runPolicy"]["managedBy"] = "kueue.x-k8s.io/multikueue"
    assert any("managedBy: Invalid value: field is immutable" in v for v in update_violations(tfjob, new))


@pytest.mark.parametrize(("kind", "mutate", "expected"), [
    ("Deployment", lambda d: d["spec"]["selector"]["matchLabels"].__setitem__("x", "y"), "spec.selector"),
    ("Service", lambda s: s["spec"].__setitem__("clusterIP", "10.0.0.9"), "spec.clusterIP"),
    ("PersistentVolumeClaim", lambda p: p["spec"].__setitem__("accessModes", ["ReadWriteOncePod"]),
     "spec is immutable"),
    ("PersistentVolumeClaim", lambda p: p["spec"]["resources"]["requests"].__setitem__("storage", "1Mi"),
     "can not be less"),
])
def test_update_rejects_other_immutable_fields(default_render, kind, mutate, expected):
    component = "trainer" if kind == "Service" else None
    old = one(default_render, kind, component)
    new = copy.deepcopy(old)
    mutate(new)
    assert any(expected in v for v in update_violations(old, new)), update_violations(old, new)


# ------------------------------------------------------------ Helm's plan

def test_helm_plan_create_update_delete_keep(default_render):
    old = copy.deepcopy(default_render.docs)
    new = copy.deepcopy(default_render.docs)
    trainer = one(default_render, "Job", "trainer")
    old_name = trainer["metadata"]["name"]
    new = [d for d in new if d["kind"] != "PersistentVolumeClaim"
           and not (d["kind"] == "Job" and d["metadata"]["name"] == old_name)]
    trainer["metadata"]["name"] += "-2"
    new.append(trainer)
    plan = plan_upgrade(old, new)
    assert plan.names("create") == {f"Job/{old_name}-2"}
    assert f"Job/{old_name}" in plan.names("delete")
    # helm.sh/resource-policy: keep
    pvc = one(default_render, "PersistentVolumeClaim")
    assert plan.names("keep") == {f"PersistentVolumeClaim/{pvc['metadata']['name']}"}
    # the `helm test` hook is no part of the manifest
    assert not any(n.endswith("-test") for what in ("create", "update", "delete")
                   for n in plan.names(what))
    tensorboard = one(default_render, "Deployment")
    assert f"Deployment/{tensorboard['metadata']['name']}" in plan.names("update")


def test_helm_plan_recreates_what_the_cluster_lost(default_render):
    """An object in both manifests but gone from the cluster (a Job deleted by
    its TTL) is created again, not updated; one gone from the cluster and
    dropped from the manifest is not deleted."""
    docs = default_render.docs
    evaluator = one(default_render, "Job", "evaluator")
    name = f"Job/{evaluator['metadata']['name']}"
    live = {key(d) for d in docs} - {key(evaluator)}
    plan = plan_upgrade(docs, docs, live)
    assert plan.names("create") == {name}
    plan = plan_upgrade(docs, [d for d in docs if key(d) != key(evaluator)], live)
    assert name not in plan.names("delete") | plan.names("create")
