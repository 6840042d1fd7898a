"""`helm template` refuses the values a Kubernetes API server would refuse.

Names, label keys and values, annotation keys, quantities and the restricted
Pod Security Standard the chart promises are checked by values.schema.json
(its `definitions` cite the upstream source, kubernetes/kubernetes v1.35) and,
where a schema cannot say it clearly, by templates/_validate.tpl. Each bad
value must be refused by `helm template` with a message that names the key;
the schema's patterns are checked against upstream's own examples; and no
value may be nulled (`--set trainer.resources=null`) into a crash inside Helm.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from .conftest import CHART_DIR, CI_DIR
from .manifests import all_pods, containers

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
DEFINITIONS = SCHEMA.get("definitions", {})  # .get: so that the tests run (and fail) on a schema without them
LONG = "a" * 64


def template(renderer, tmp_path, values: dict, *set_values: str):
    """`helm template` with the placeholder image, `values` as a values file
    (so that map keys with dots or spaces need no --set escaping)."""
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    args = ["template", "t", str(CHART_DIR), "-f", str(CI_DIR / "default-values.yaml"), "-f", str(path)]
    for s in set_values:
        args += ["--set", s]
    return renderer.run(*args)


def refused(result, key: str, *words: str):
    assert result.returncode != 0, f"accepted; expected a refusal naming {key}"
    assert "panic" not in result.stderr and "nil pointer" not in result.stderr, result.stderr
    assert key in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


# (values, what the message must contain: the key path, then further words)
BAD = [
    # Names: DNS-1123/1035 labels and subdomains (IsDNS1123Label, IsDNS1035Label,
    # IsDNS1123Subdomain in staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go).
    ({"fullnameOverride": "MNIST_Run"}, "'/fullnameOverride'"),
    ({"fullnameOverride": "2024-sweep"}, "'/fullnameOverride'"),  # a Service name starts with a letter
    ({"fullnameOverride": LONG}, "'/fullnameOverride'", "maxLength"),
    ({"nameOverride": "My_Chart"}, "'/nameOverride'"),
    ({"trainer": {"priorityClassName": "High Prio"}}, "'/trainer/priorityClassName'"),
    ({"evaluator": {"priorityClassName": "high_prio"}}, "'/evaluator/priorityClassName'"),
    ({"tensorboard": {"priorityClassName": "-low"}}, "'/tensorboard/priorityClassName'"),
    ({"storage": {"pvc": {"existingClaim": "My_Claim"}}}, "'/storage/pvc/existingClaim'"),
    ({"storage": {"pvc": {"storageClassName": "Fast SSD"}}}, "'/storage/pvc/storageClassName'"),
    ({"serviceAccount": {"name": "Trainer SA"}}, "'/serviceAccount/name'"),
    ({"imagePullSecrets": [{"name": "Reg_Cred"}]}, "'/imagePullSecrets/0/name'"),
    ({"imagePullSecrets": [{"name": "regcred", "namespace": "x"}]}, "'/imagePullSecrets/0'", "namespace"),
    ({"scheduling": {"schedulerName": "Volcano Scheduler"}}, "'/scheduling/schedulerName'"),
    ({"tensorboard": {"ingress": {"enabled": True, "className": "My Nginx"}}},
     "'/tensorboard/ingress/className'"),
    ({"tensorboard": {"ingress": {"enabled": True, "host": "TensorBoard.example.com"}}},
     "'/tensorboard/ingress/host'"),
    ({"tensorboard": {"ingress": {"enabled": True, "host": "tb_1.example.com"}}},
     "'/tensorboard/ingress/host'"),
    ({"tensorboard": {"ingress": {"enabled": True, "host": "10.0.0.1"}}},
     "tensorboard.ingress.host", "not an IP address"),
    ({"tensorboard": {"ingress": {"enabled": True, "path": "/tb/../admin"}}},
     "tensorboard.ingress.path", '"/../"'),
    ({"tensorboard": {"ingress": {"enabled": True, "path": "/tb/."}}}, "tensorboard.ingress.path", "'/.'"),
    ({"tensorboard": {"ingress": {"enabled": True, "tlsSecretName": "TLS"}}},
     "'/tensorboard/ingress/tlsSecretName'"),
    ({"storage": {"type": "gcs", "gcs": {"uri": "gs://bucket/x", "existingSecret": "Key_File"}}},
     "'/storage/gcs/existingSecret'"),
    ({"storage": {"gcs": {"secretKey": ".."}}}, "'/storage/gcs/secretKey'"),
    ({"storage": {"gcs": {"secretKey": "key/json"}}}, "'/storage/gcs/secretKey'"),
    # Quantities (the Quantity grammar of staging/src/k8s.io/apimachinery/pkg/api/resource/quantity.go;
    # resource quantities are non-negative: pkg/apis/core/validation/validation.go).
    ({"trainer": {"resources": {"limits": {"cpu": "abc"}}}}, "'/trainer/resources/limits/cpu'"),
    ({"trainer": {"resources": {"requests": {"memory": "2GB"}}}}, "'/trainer/resources/requests/memory'"),
    ({"evaluator": {"resources": {"limits": {"memory": "-1Gi"}}}}, "'/evaluator/resources/limits/memory'"),
    ({"evaluator": {"resources": {"limits": {"cpu": -1}}}}, "'/evaluator/resources/limits/cpu'", "minimum"),
    ({"tensorboard": {"resources": {"requests": {"cpu": "1.5.0"}}}}, "'/tensorboard/resources/requests/cpu'"),
    ({"tests": {"resources": {"limits": {"cpu": "1 cpu"}}}}, "'/tests/resources/limits/cpu'"),
    ({"trainer": {"resources": {"limits": {"gpu": 1}}}}, "'/trainer/resources/limits'", "'gpu'"),
    ({"tmpSizeLimit": "1GB"}, "'/tmpSizeLimit'"),
    ({"storage": {"pvc": {"size": "5 Gi"}}}, "'/storage/pvc/size'"),
    ({"storage": {"pvc": {"size": "0Gi"}}}, "storage.pvc.size", "greater than zero"),
    # Requests against limits (validateResourceRequirements, pkg/apis/core/validation/validation.go):
    # request <= limit; an extended resource is a whole number, never overcommitted, its limit set.
    ({"trainer": {"resources": {"requests": {"cpu": "4"}}}},
     "trainer.resources.requests.cpu=4", "less than or equal to trainer.resources.limits.cpu=2"),
    ({"evaluator": {"resources": {"requests": {"memory": "3Gi"}}}}, "evaluator.resources.requests.memory"),
    ({"tensorboard": {"resources": {"requests": {"memory": "2048Mi"}}}},
     "tensorboard.resources.requests.memory"),
    ({"tests": {"resources": {"requests": {"cpu": "1e3"}}}}, "tests.resources.requests.cpu"),
    ({"trainer": {"gpusPerWorker": 1, "resources": {"requests": {"nvidia.com/gpu": 2}}}},
     "trainer.resources.requests.nvidia.com/gpu=2", "must equal trainer.gpusPerWorker=1"),
    ({"trainer": {"resources": {"requests": {"example.com/fpga": 1}}}},
     "trainer.resources.requests.example.com/fpga", "trainer.resources.limits.example.com/fpga"),
    ({"evaluator": {"resources": {"limits": {"example.com/fpga": "0.5"}}}},
     "evaluator.resources.limits.example.com/fpga", "whole number"),
    # Label keys and values (IsQualifiedName, IsValidLabelValue), in every user label map;
    # node selectors are validated as labels (ValidatePodSpec).
    ({"commonLabels": {"team": "data science"}}, "'/commonLabels/team'"),
    ({"commonLabels": {"team": LONG}}, "'/commonLabels/team'", "maxLength"),
    ({"trainer": {"podLabels": {"my label": "x"}}}, "'/trainer/podLabels'", "'my label'"),
    ({"trainer": {"podLabels": {"example.com/": "x"}}}, "'/trainer/podLabels'", "'example.com/'"),
    ({"evaluator": {"podLabels": {"run": "-x-"}}}, "'/evaluator/podLabels/run'"),
    ({"tensorboard": {"podLabels": {"Example.com/run": "x"}}},
     "'/tensorboard/podLabels'", "'Example.com/run'"),
    ({"trainer": {"nodeSelector": {"pool": "gpu nodes"}}}, "'/trainer/nodeSelector/pool'"),
    ({"evaluator": {"nodeSelector": {"bad key": "x"}}}, "'/evaluator/nodeSelector'", "'bad key'"),
    ({"tensorboard": {"nodeSelector": {"pool": 1}}}, "'/tensorboard/nodeSelector/pool'", "string"),
    ({"trainer": {"tolerations": [{"key": "bad key", "operator": "Exists"}]}},
     "'/trainer/tolerations/0/key'"),
    # Annotation keys (ValidateAnnotations: qualified names, compared in lower case).
    ({"trainer": {"podAnnotations": {"my note": "x"}}}, "'/trainer/podAnnotations'", "'my note'"),
    ({"evaluator": {"podAnnotations": {"a/b/c": "x"}}}, "'/evaluator/podAnnotations'", "'a/b/c'"),
    ({"tensorboard": {"podAnnotations": {"x": 1}}}, "'/tensorboard/podAnnotations/x'", "string"),
    ({"serviceAccount": {"annotations": {"iam.gke.io/gcp service account": "x"}}},
     "'/serviceAccount/annotations'"),
    ({"tensorboard": {"ingress": {"annotations": {"nginx ingress/auth": "x"}}}},
     "'/tensorboard/ingress/annotations'"),
    # Environment variable names (validateEnvVarName, relaxed: printable ASCII but '=').
    ({"trainer": {"extraEnv": [{"name": "A=B", "value": "x"}]}}, "'/trainer/extraEnv/0/name'"),
    ({"evaluator": {"extraEnv": [{"name": "TAB\tNAME", "value": "x"}]}}, "'/evaluator/extraEnv/0/name'"),
    ({"trainer": {"extraEnv": [{"name": "N", "value": 1}]}}, "'/trainer/extraEnv/0/value'", "string"),
    # NetworkPolicy peers (ValidateNetworkPolicyPeer, ValidateIPBlock, pkg/apis/networking/validation).
    ({"networkPolicy": {"tensorboard": {"from": [{}]}}},
     "'/networkPolicy/tensorboard/from/0'", "minProperties"),
    ({"networkPolicy": {"tensorboard": {"from": [{"ipBlock": {"cidr": "10.0.0.0/8"},
                                                  "namespaceSelector": {}}]}}},
     "'/networkPolicy/tensorboard/from/0'", "maxProperties"),
    ({"networkPolicy": {"tensorboard": {"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}}},
     "'/networkPolicy/tensorboard/from/0/ipBlock/cidr'"),
    ({"networkPolicy": {"tensorboard": {"from": [{"ipBlock": {"cidr": "010.0.0.0/8"}}]}}},
     "'/networkPolicy/tensorboard/from/0/ipBlock/cidr'"),
    ({"networkPolicy": {"tensorboard": {"from": [{"ipBlock": {"cidr": "10.0.0.1"}}]}}},
     "'/networkPolicy/tensorboard/from/0/ipBlock/cidr'"),
    # The restricted Pod Security Standard (staging/src/k8s.io/pod-security-admission/policy/).
    ({"securityContext": {"runAsUser": 0}}, "'/securityContext/runAsUser'", "minimum"),
    ({"podSecurityContext": {"runAsUser": 0}}, "'/podSecurityContext/runAsUser'", "minimum"),
    ({"podSecurityContext": {"runAsNonRoot": False}}, "'/podSecurityContext/runAsNonRoot'"),
    ({"securityContext": {"runAsNonRoot": False}}, "'/securityContext/runAsNonRoot'"),
    ({"securityContext": {"privileged": True}}, "'/securityContext/privileged'"),
    ({"securityContext": {"allowPrivilegeEscalation": True}}, "'/securityContext/allowPrivilegeEscalation'"),
    ({"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}, "'/securityContext/capabilities/add/0'"),
    ({"securityContext": {"capabilities": {"drop": ["NET_RAW"]}}}, "'/securityContext/capabilities/drop'"),
    ({"securityContext": {"procMount": "Unmasked"}}, "'/securityContext/procMount'"),
    ({"podSecurityContext": {"seccompProfile": {"type": "Unconfined"}}},
     "'/podSecurityContext/seccompProfile/type'"),
    ({"securityContext": {"appArmorProfile": {"type": "Unconfined"}}},
     "'/securityContext/appArmorProfile/type'"),
    ({"podSecurityContext": {"seLinuxOptions": {"user": "system_u"}}},
     "'/podSecurityContext/seLinuxOptions'", "'user'"),
    ({"podSecurityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}},
     "'/podSecurityContext'", "'sysctls'"),
    ({"securityContext": {"windowsOptions": {"hostProcess": True}}},
     "'/securityContext'", "'windowsOptions'"),
]


@pytest.mark.parametrize("values,key_and_words", [(b[0], b[1:]) for b in BAD],
                         ids=[json.dumps(b[0], separators=(",", ":"))[:80] for b in BAD])
def test_api_server_refusals_are_helm_template_refusals(renderer, tmp_path, values, key_and_words):
    refused(template(renderer, tmp_path, values), *key_and_words)


# Nulled keys: `--set X=null` deletes X from the merged values; the schema then
# reports the missing key instead of a template crashing on it.
NULLED = [
    ("trainer.resources", "'/trainer'", "'resources'"),
    ("evaluator.resources", "'/evaluator'", "'resources'"),
    ("tensorboard.resources", "'/tensorboard'", "'resources'"),
    ("tests.resources", "'/tests'", "'resources'"),
    ("securityContext", "''", "'securityContext'"),
    ("podSecurityContext", "''", "'podSecurityContext'"),
    ("securityContext.capabilities", "'/securityContext'", "'capabilities'"),
    ("podSecurityContext.seccompProfile", "'/podSecurityContext'", "'seccompProfile'"),
    ("storage.pvc", "'/storage'", "'pvc'"),
    ("storage.gcs.workloadIdentity", "'/storage/gcs'", "'workloadIdentity'"),
    ("tensorboard.service", "'/tensorboard'", "'service'"),
    ("networkPolicy.tensorboard", "'/networkPolicy'", "'tensorboard'"),
    ("trainer.port", "'/trainer'", "'port'"),
    ("tmpSizeLimit", "''", "'tmpSizeLimit'"),
    ("training.preset", "'/training'", "'preset'"),
]


@pytest.mark.parametrize("key,where,missing", NULLED, ids=[n[0] for n in NULLED])
def test_nulled_key_is_named(renderer, tmp_path, key, where, missing):
    refused(template(renderer, tmp_path, {}, f"{key}=null"), where, "missing property", missing)


def test_nullable_keys_may_be_nulled(renderer, tmp_path):
    """The keys documented as nullable (null: none/the default) render with null."""
    result = template(renderer, tmp_path, {}, "training.maxSteps=null", "trainer.activeDeadlineSeconds=null",
                      "trainer.ttlSecondsAfterFinished=null", "evaluator.activeDeadlineSeconds=null",
                      "evaluator.ttlSecondsAfterFinished=null")
    assert result.returncode == 0, result.stderr


def test_every_key_is_required_or_nullable():
    """Every key of values.yaml is required by its parent in the schema (so
    nulling it is refused by name) unless the schema allows null for it, and
    so does every key added later. The Pod Security contexts list their own
    required keys (the rest may be removed)."""
    def walk(values, schema, path):
        props = schema.get("properties")
        if not isinstance(values, dict) or props is None:
            return
        for key, value in values.items():
            sub = props[key]
            nullable = isinstance(sub.get("type"), list) and "null" in sub["type"]
            assert nullable or key in schema.get("required", []), \
                f"{path}/{key}: add it to the schema's required list of {path or '/'} (or allow null)"
            if key not in ("podSecurityContext", "securityContext"):
                walk(value, sub, f"{path}/{key}")
    walk(VALUES, SCHEMA, "")


# Values the API server accepts must still render, unchanged.
GOOD = {
    "nameOverride": "mnist",
    "fullnameOverride": "exp-42",
    "imagePullSecrets": [{"name": "regcred.v2"}],
    "commonLabels": {"example.com/team": "ml-platform", "cost-center": "", "tier": "A_1.b"},
    "trainer": {
        "resources": {"requests": {"cpu": "1500m", "memory": "1536Mi", "ephemeral-storage": "1e9",
                                   "example.com/fpga": 1},
                      "limits": {"cpu": 2, "memory": "1.5Gi", "example.com/fpga": "1", "hugepages-2Mi": "0"}},
        "gpusPerWorker": 1,
        "priorityClassName": "training.high-priority",
        "podLabels": {"Run": "seed-1"},
        "podAnnotations": {"Example.COM/Owner": "someone with spaces"},
        "nodeSelector": {"cloud.google.com/gke-nodepool": "pool-1"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "extraEnv": [{"name": "my.var-1", "value": "1"},
                     {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
    },
    "networkPolicy": {"tensorboard": {"from": [
        {"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}},
        {"ipBlock": {"cidr": "2001:db8::/32"}},
        {"namespaceSelector": {"matchLabels": {"team": "ml"}}, "podSelector": {}}]}},
    "evaluator": {"resources": {"requests": {"cpu": 0.5}}},
    "tensorboard": {"ingress": {"enabled": True, "className": "nginx", "host": "*.tb.example.com",
                                "tlsSecretName": "tb-tls", "path": "/runs/"}},
    "storage": {"pvc": {"existingClaim": "models.shared", "storageClassName": "standard-rwx"}},
    "serviceAccount": {"name": "trainer"},
    "scheduling": {"schedulerName": "volcano"},
    "podSecurityContext": {
        "runAsUser": 2000, "runAsGroup": 0, "fsGroup": 2000, "supplementalGroups": [3000],
        "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/train.json"}},
    "securityContext": {"runAsUser": 2000, "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                        "seLinuxOptions": {"type": "container_t", "level": "s0:c1,c2"},
                        "appArmorProfile": {"type": "RuntimeDefault"}},
    "tmpSizeLimit": "512Mi",
}


def test_valid_values_render(renderer, tmp_path):
    result = template(renderer, tmp_path, GOOD)
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    trainer = next(p for p in all_pods(docs) if p.component == "trainer")
    assert trainer.spec["priorityClassName"] == "training.high-priority"
    assert trainer.spec["securityContext"]["runAsUser"] == 2000
    assert trainer.labels["Run"] == "seed-1"
    assert trainer.spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    for pod in all_pods(docs):
        for container in containers(pod.spec):
            assert container["securityContext"]["capabilities"]["add"] == ["NET_BIND_SERVICE"], pod.where


# ------------------------------------------------------- the patterns against upstream's examples

def pattern(definition: str) -> re.Pattern:
    return re.compile(DEFINITIONS[definition]["pattern"])


def matches(definition: str, value: str) -> bool:
    schema = DEFINITIONS[definition]
    return bool(pattern(definition).search(value)) and len(value) <= schema.get("maxLength", len(value))


# TestIsDNS1123Label / TestIsDNS1123Subdomain in
# staging/src/k8s.io/apimachinery/pkg/util/validation/validation_test.go
DNS1123_LABEL_GOOD = [
    "a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a", "1--a--b--2", "a" * 63
]
DNS1123_LABEL_BAD = [
    "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_", "_a", "a_b", "1_",
    "_1", "1_2", ".", "a.", ".a", "a.b", "1.", ".1", "1.2", " ", "a ", " a", "a b", "1 ", " 1", "1 2",
    "a" * 64
]
DNS1123_SUBDOMAIN_GOOD = [
    "a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a", "1--a--b--2", "a.a", "ab.a",
    "abc.a", "a1.a", "a-1.a", "a--1--2--b.a", "a.1", "ab.1", "abc.1", "a1.1", "a-1.1", "a--1--2--b.1",
    "0.a", "01.a", "012.a", "1a.a", "1-a.a", "1--a--b--2", "0.1", "01.1", "012.1", "1a.1", "1-a.1",
    "1--a--b--2.1", "a.b.c.d.e", "aa.bb.cc.dd.ee", "1.2.3.4.5", "11.22.33.44.55", "a" * 253
]
DNS1123_SUBDOMAIN_BAD = [
    "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_", "_a", "a_b", "1_",
    "_1", "1_2", ".", "a.", ".a", "a..b", "1.", ".1", "1..2", " ", "a ", " a", "a b", "1 ", " 1", "1 2",
    "A.a", "aB.a", "ab.A", "A1.a", "a1.A", "A.1", "aB.1", "A1.1", "1A.1", "0.A", "01.A", "012.A", "1A.a",
    "1a.A", "A.B.C.D.E", "AA.BB.CC.DD.EE", "a.B.c.d.e", "aa.bB.cc.dd.ee", "a@b", "a,b", "a_b", "a;b", "a:b",
    "a%b", "a?b", "a$b", "a" * 254
]
# TestIsQualifiedName and TestIsValidLabelValue, same file.
QUALIFIED_GOOD = [
    "simple", "now-with-dashes", "1-starts-with-num", "1234", "simple/simple", "now-with-dashes/simple",
    "now-with-dashes/now-with-dashes", "now.with.dots/simple", "now-with.dashes-and.dots/simple",
    "1-num.2-num/3-num", "1234/5678", "1.2.3.4/5678", "Uppercase_Is_OK_123",
    "example.com/Uppercase_Is_OK_123", "requests.storage-foo", "a" * 63, "a" * 253 + "/" + "b" * 63
]
QUALIFIED_BAD = [
    "nospecialchars%^=@", "cantendwithadash-", "-cantstartwithadash-", "only/one/slash", "Example.com/abc",
    "example_com/abc", "example.com/", "/simple", "a" * 64, "a" * 254 + "/abc"
]
LABEL_VALUE_GOOD = [
    "simple", "now-with-dashes", "1-starts-with-num", "end-with-num-1", "1234", "a" * 63, ""
]
LABEL_VALUE_BAD = [
    "nospecialchars%^=@", "Tama-nui-te-rā.is.Māori.sun", "\\backslashes\\are\\bad", "-starts-with-dash",
    "ends-with-dash-", ".starts.with.dot", "ends.with.dot.", "a" * 64
]
# Mostly from TestQuantityParse (staging/src/k8s.io/apimachinery/pkg/api/resource/quantity_test.go) and
# the parse-grid inputs of quantity_exact_grid_test.go, plus a few of ours; negative quantities are bad
# here because resource quantities must be >= 0. The pattern is stricter than upstream's scanner only on
# degenerate inputs such as "." or "+", which that scanner reads as zero.
QUANTITY_GOOD = [
    "0", "0n", "0u", "0m", "0Ki", "0k", "0Mi", "0M", "0Gi", "0G", "0Ti", "0T", "9.01", "1.", "1.G", ".001",
    ".0001k", "5e-3", "1e3", "1E6", "1e+3", "1E", "1Ei", "100m", "1.5Gi", "+1", "12345678e3", "0.5Mi",
    "1024Ki", "750n", "3u"
]
QUANTITY_BAD = [
    "1.1.M", "1+1.0M", "0.1mi", "0.1am", "aoeu", ".5i", "1i", "-3.01i", "-3.01e-", " 1", "1 ", "1K", "1ki",
    "1KiB", "1e", "1e+", "1e1.5", "1e3k", "1..5", "1,5", "1_000", "0x10", "Inf", "NaN", "-1", "", "."
]


def label_key_ok(key: str) -> bool:
    labels = DEFINITIONS["labels"]
    (key_pattern,) = labels["patternProperties"]
    prefix = key.rsplit("/", 1)[0] if "/" in key else ""
    return bool(re.search(key_pattern, key)) and len(prefix) <= 253


def label_value_ok(value: str) -> bool:
    (value_schema,) = DEFINITIONS["labels"]["patternProperties"].values()
    return bool(re.search(value_schema["pattern"], value)) and len(value) <= value_schema["maxLength"]


@pytest.mark.parametrize("definition,good,bad", [
    ("dns1123Label", DNS1123_LABEL_GOOD, DNS1123_LABEL_BAD),
    ("dns1123Subdomain", DNS1123_SUBDOMAIN_GOOD, DNS1123_SUBDOMAIN_BAD),
])
def test_name_patterns_agree_with_upstream(definition, good, bad):
    assert [v for v in good if not matches(definition, v)] == []
    assert [v for v in bad if matches(definition, v)] == []


def test_label_patterns_agree_with_upstream():
    """Upstream bounds a key's prefix at 253 characters; the schema's pattern
    cannot (Go's regexp has no look-ahead), so that one bound is checked here
    by label_key_ok and left to the API server for real values."""
    assert [k for k in QUALIFIED_GOOD if not label_key_ok(k)] == []
    assert [k for k in QUALIFIED_BAD if label_key_ok(k)] == []
    assert [v for v in LABEL_VALUE_GOOD if not label_value_ok(v)] == []
    assert [v for v in LABEL_VALUE_BAD if label_value_ok(v)] == []


def test_quantity_pattern_agrees_with_upstream():
    assert [q for q in QUANTITY_GOOD if not pattern("quantity").search(q)] == []
    assert [q for q in QUANTITY_BAD if pattern("quantity").search(q)] == []


def test_every_rule_cites_its_upstream_source():
    assert DEFINITIONS, "values.schema.json has no definitions"
    for name, definition in DEFINITIONS.items():
        text = json.dumps(definition)
        assert "kubernetes/kubernetes v1.35" in text or name in ("resources",), name
