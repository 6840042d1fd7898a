"""The Kubernetes API server's validation of the kinds the chart renders, on
create and on update.

Sources (kubernetes/kubernetes, v1.35; the same rules hold in v1.31):
- pkg/apis/core/validation/validation.go: ValidateObjectMeta name rules per
  kind (ValidateServiceName is NameIsDNS1035Label, most others
  NameIsDNSSubdomain), ValidatePodSpec/validateContainers (container, port,
  env and volume names, resources, hostname/subdomain, priorityClassName,
  serviceAccountName, claimName), ValidateService(Update),
  ValidatePersistentVolumeClaimUpdate;
- pkg/apis/batch/validation/validation.go: ValidateJob, validateJobSpec,
  validatePodFailurePolicy(Rule), validatePodReplacementPolicy,
  ValidateJobSpecUpdate, validateCompletions;
- pkg/registry/batch/job/strategy.go generateSelector: the labels the API
  server adds to a Job's pod template (its name becomes a label value);
- pkg/apis/apps/validation/validation.go ValidateDeploymentSpec and
  pkg/registry/apps/deployment/strategy.go ValidateUpdate (apps/v1 selector
  is immutable).
"""

from __future__ import annotations

from . import apimachinery as am
from .apimachinery import parse_quantity


def where(doc: dict) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def _errs(doc: dict, path: str, messages: list[str]) -> list[str]:
    return [f"{where(doc)}: {path}: {m}" for m in messages]


# ---------------------------------------------------------------- metadata

# ValidateObjectMeta's nameFn per kind (validation.go: ValidateServiceName =
# NameIsDNS1035Label; ValidateNamespaceName = NameIsDNSLabel; Pods, Jobs,
# Deployments, ConfigMaps, Secrets, ServiceAccounts, PVCs, NetworkPolicies,
# Ingresses: NameIsDNSSubdomain).
NAME_RULES = {"Service": am.is_dns1035_label, "Namespace": am.is_dns1123_label}


def object_meta_violations(doc: dict) -> list[str]:
    meta = doc.get("metadata") or {}
    name = meta.get("name") or ""
    found = []
    if not name:
        found += _errs(doc, "metadata.name", ["Required value: name or generateName is required"])
    else:
        rule = NAME_RULES.get(doc.get("kind"), am.is_dns1123_subdomain)
        found += _errs(doc, "metadata.name", [f"Invalid value {name!r}: {e}" for e in rule(name)])
    if meta.get("namespace"):
        found += _errs(doc, "metadata.namespace", am.is_dns1123_label(meta["namespace"]))
    found += _errs(doc, "metadata.labels", am.validate_labels(meta.get("labels")))
    found += _errs(doc, "metadata.annotations", am.validate_annotations(meta.get("annotations")))
    return found


# ---------------------------------------------------------------- pods

def _names(items) -> list[str]:
    return [i.get("name", "") for i in items or []]


def _duplicates(names: list[str]) -> list[str]:
    seen, dups = set(), []
    for n in names:
        if n in seen:
            dups.append(n)
        seen.add(n)
    return dups


def resources_violations(resources: dict) -> list[str]:
    """ValidateResourceRequirements: every quantity parses, is not negative,
    and a request is not above its limit."""
    found, parsed = [], {}
    for kind in ("limits", "requests"):
        for name, value in ((resources or {}).get(kind) or {}).items():
            try:
                quantity = parse_quantity(value)
            except ValueError as e:
                found.append(f"resources.{kind}[{name}]: Invalid value {value!r}: {e}")
                continue
            if quantity < 0:
                found.append(f"resources.{kind}[{name}]: must be greater than or equal to 0")
            parsed[(kind, name)] = quantity
    for (kind, name), request in parsed.items():
        limit = parsed.get(("limits", name))
        if kind == "requests" and limit is not None and request > limit:
            found.append(f"resources.requests[{name}]: Invalid value: must be less than or "
                         f"equal to {name} limit of {resources['limits'][name]}")
    return found


def container_violations(container: dict, volume_names: set[str]) -> list[str]:
    found = [f"name: {e}" for e in am.is_dns1123_label(container.get("name", ""))]
    if not container.get("image"):
        found.append("image: Required value")
    port_names = []
    for port in container.get("ports") or []:
        if port.get("name"):
            port_names.append(port["name"])
            found += [f"ports.name {port['name']!r}: {e}" for e in am.is_valid_port_name(port["name"])]
        if not 0 < int(port.get("containerPort", 0)) < 65536:
            found.append(f"ports.containerPort: {port.get('containerPort')!r} must be 1-65535")
    found += [f"ports.name {d!r}: Duplicate value" for d in _duplicates(port_names)]
    for env in container.get("env") or []:
        found += [f"env {env.get('name')!r}: {e}" for e in am.is_env_var_name(env.get("name", ""))]
    found += resources_violations(container.get("resources"))
    for mount in container.get("volumeMounts") or []:
        if mount.get("name") not in volume_names:
            found.append(f"volumeMounts {mount.get('name')!r}: Not found")
    return found


def pod_spec_violations(spec: dict) -> list[str]:
    """ValidatePodSpec, for the fields the chart sets."""
    found = []
    volumes = spec.get("volumes") or []
    volume_names = set(_names(volumes))
    for volume in volumes:
        found += [f"volumes {volume.get('name')!r}: {e}" for e in am.is_dns1123_label(volume.get("name", ""))]
        claim = volume.get("persistentVolumeClaim")
        if claim is not None:
            if not claim.get("claimName"):
                found.append(f"volumes {volume.get('name')!r}: "
                             "persistentVolumeClaim.claimName: Required value")
            else:
                # The pod is admitted with any claimName, but a claim is a
                # PersistentVolumeClaim, named by NameIsDNSSubdomain: a name
                # that is not one refers to a claim that cannot exist, and the
                # pod stays Pending for ever.
                found += [f"volumes {volume.get('name')!r}: claimName {claim['claimName']!r} can "
                          f"name no PersistentVolumeClaim: {e}"
                          for e in am.is_dns1123_subdomain(claim["claimName"])]
        secret = volume.get("secret")
        if secret is not None and not secret.get("secretName"):
            found.append(f"volumes {volume.get('name')!r}: secret.secretName: Required value")
    found += [f"volumes {d!r}: Duplicate value" for d in _duplicates(_names(volumes))]
    all_containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    if not spec.get("containers"):
        found.append("containers: Required value")
    for c in all_containers:
        found += [f"containers[{c.get('name')}].{e}" for e in container_violations(c, volume_names)]
    found += [f"containers {d!r}: Duplicate value" for d in _duplicates(_names(all_containers))]
    for field in ("hostname", "subdomain"):
        if spec.get(field):
            found += [f"{field} {spec[field]!r}: {e}" for e in am.is_dns1123_label(spec[field])]
    for field in ("priorityClassName", "serviceAccountName"):
        # ValidatePriorityClassName, ValidateServiceAccountName: NameIsDNSSubdomain
        if spec.get(field):
            found += [f"{field} {spec[field]!r}: {e}" for e in am.is_dns1123_subdomain(spec[field])]
    found += [f"nodeSelector: {e}" for e in am.validate_labels(spec.get("nodeSelector"))]
    if spec.get("restartPolicy", "Always") not in ("Always", "OnFailure", "Never"):
        found.append(f"restartPolicy: Unsupported value {spec['restartPolicy']!r}")
    return found


def pod_template_violations(template: dict) -> list[str]:
    """ValidatePodTemplateSpec: the template's labels, annotations and spec."""
    meta = template.get("metadata") or {}
    found = [f"metadata.labels: {e}" for e in am.validate_labels(meta.get("labels"))]
    found += [f"metadata.annotations: {e}" for e in am.validate_annotations(meta.get("annotations"))]
    return found + [f"spec.{e}" for e in pod_spec_violations(template.get("spec") or {})]


# ---------------------------------------------------------------- Jobs

# batch/validation.go
MAX_POD_FAILURE_POLICY_RULES = 20
MAX_PARALLELISM_INDEXED = 100_000
POD_FAILURE_POLICY_ACTIONS = {"Count", "FailIndex", "FailJob", "Ignore"}


def _pod_failure_policy_violations(spec: dict) -> list[str]:
    """validatePodFailurePolicy / validatePodFailurePolicyRule(OnExitCodes)."""
    rules = (spec.get("podFailurePolicy") or {}).get("rules") or []
    tspec = (spec.get("template") or {}).get("spec") or {}
    container_names = set(_names(tspec.get("containers"))) | set(_names(tspec.get("initContainers")))
    found = []
    if len(rules) > MAX_POD_FAILURE_POLICY_RULES:
        found.append(f"podFailurePolicy.rules: Too many: {len(rules)}")
    for i, rule in enumerate(rules):
        path = f"podFailurePolicy.rules[{i}]"
        action = rule.get("action", "")
        if action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            found.append(f"{path}.action: requires the backoffLimitPerIndex to be set")
        elif action not in POD_FAILURE_POLICY_ACTIONS:
            found.append(f"{path}.action: Unsupported value {action!r}")
        codes, conditions = rule.get("onExitCodes"), rule.get("onPodConditions")
        if codes is not None:
            if codes.get("operator") not in ("In", "NotIn"):
                found.append(f"{path}.onExitCodes.operator: Unsupported value {codes.get('operator')!r}")
            name = codes.get("containerName")
            if name is not None and name not in container_names:
                found.append(f"{path}.onExitCodes.containerName: Invalid value {name!r}: must be one "
                             "of the container or initContainer names in the pod template")
            values = codes.get("values") or []
            if not values:
                found.append(f"{path}.onExitCodes.values: at least one value is required")
            if codes.get("operator") == "In" and 0 in values:
                found.append(f"{path}.onExitCodes.values: must not be 0 for the In operator")
            if _duplicates(values):
                found.append(f"{path}.onExitCodes.values: Duplicate value")
            if values != sorted(values):
                found.append(f"{path}.onExitCodes.values: must be ordered")
        for pattern in conditions or []:
            if pattern.get("status") not in ("True", "False", "Unknown"):
                found.append(f"{path}.onPodConditions.status: Unsupported value {pattern.get('status')!r}")
        if codes is not None and conditions:
            found.append(f"{path}: specifying both OnExitCodes and OnPodConditions is not supported")
        if codes is None and not conditions:
            found.append(f"{path}: specifying one of OnExitCodes and OnPodConditions is required")
    return found


def job_spec_violations(spec: dict) -> list[str]:
    """validateJobSpec (the part shared by a Job and a JobSet's Job template)."""
    found = []
    for field in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit",
                  "ttlSecondsAfterFinished", "backoffLimitPerIndex", "maxFailedIndexes"):
        if spec.get(field) is not None and spec[field] < 0:
            found.append(f"{field}: must be greater than or equal to 0")
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        found.append("backoffLimitPerIndex: Required value: when maxFailedIndexes is specified")
    mode = spec.get("completionMode")
    if mode not in (None, "NonIndexed", "Indexed"):
        found.append(f"completionMode: Unsupported value {mode!r}")
    if mode == "Indexed":
        if spec.get("completions") is None:
            found.append("completions: Required value: when completion mode is Indexed")
        if (spec.get("parallelism") or 0) > MAX_PARALLELISM_INDEXED:
            found.append(f"parallelism: must be less than or equal to {MAX_PARALLELISM_INDEXED}")
        if (spec.get("completions") is not None and spec.get("maxFailedIndexes") is not None
                and spec["maxFailedIndexes"] > spec["completions"]):
            found.append("maxFailedIndexes: must be less than or equal to completions")
    else:
        for field in ("backoffLimitPerIndex", "maxFailedIndexes"):
            if spec.get(field) is not None:
                found.append(f"{field}: requires indexed completion mode")
    if spec.get("podFailurePolicy") is not None:
        found += _pod_failure_policy_violations(spec)
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None:
        # validatePodReplacementPolicy: only Failed with a podFailurePolicy
        allowed = ({"Failed"} if spec.get("podFailurePolicy") is not None
                   else {"Failed", "TerminatingOrFailed"})
        if replacement not in allowed:
            found.append(f"podReplacementPolicy: Unsupported value {replacement!r}: "
                         f"supported {sorted(allowed)}")
    found += [f"template.{e}" for e in pod_template_violations(spec.get("template") or {})]
    restart = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy", "")
    if restart in ("Always", ""):
        found.append('template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"')
    elif restart not in ("OnFailure", "Never"):
        found.append(f"template.spec.restartPolicy: Unsupported value {restart!r}")
    elif spec.get("podFailurePolicy") is not None and restart != "Never":
        found.append('template.spec.restartPolicy: only "Never" is supported when '
                     'podFailurePolicy is specified')
    return found


# pkg/registry/batch/job/strategy.go generateSelector: unless manualSelector,
# the API server labels the pod template with the Job's name.
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


def job_violations(doc: dict) -> list[str]:
    """ValidateJob: metadata, the spec, the generated labels, and (Indexed)
    the longest pod host name <name>-<completions-1> as a DNS-1123 label."""
    spec, name = doc.get("spec") or {}, (doc.get("metadata") or {}).get("name", "")
    found = [f"spec.{e}" for e in job_spec_violations(spec)]
    if not spec.get("manualSelector"):
        found += [f"spec.template.metadata.labels: {e}"
                  for e in am.validate_labels({k: name for k in JOB_NAME_LABELS})]
    if spec.get("completionMode") == "Indexed" and (spec.get("completions") or 0) > 0:
        hostname = f"{name}-{spec['completions'] - 1}"
        if am.is_dns1123_label(hostname):
            found.append(f"metadata.name: Invalid value {name!r}: will not able to create pod "
                         f"with invalid DNS label: {hostname}")
    return _errs(doc, "", found)


def job_update_violations(old: dict, new: dict) -> list[str]:
    """ValidateJobSpecUpdate: selector, template, completionMode,
    podFailurePolicy, backoffLimitPerIndex, managedBy, successPolicy are
    immutable; completions too, except (ElasticIndexedJob, GA in 1.31) an
    Indexed Job's completions changed together with an equal parallelism.
    (A suspended Job that never started may change scheduling directives:
    not a state `helm upgrade` meets.)"""
    o, n = old.get("spec") or {}, new.get("spec") or {}
    found = []
    for field in ("selector", "template", "completionMode", "podFailurePolicy",
                  "backoffLimitPerIndex", "managedBy", "successPolicy"):
        if o.get(field) != n.get(field):
            found.append(f"spec.{field}: Invalid value: field is immutable")
    if o.get("completions") != n.get("completions"):
        if n.get("completionMode") != "Indexed":
            found.append("spec.completions: Invalid value: field is immutable")
        elif n.get("completions") != n.get("parallelism"):
            found.append("spec.completions: can only be modified in tandem with spec.parallelism")
    return _errs(new, "", found)


# ---------------------------------------------------------------- others

def _selector_matches(selector: dict, labels: dict) -> bool:
    labels = labels or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        value, op = labels.get(expr["key"]), expr["operator"]
        if ((op == "In" and value not in expr.get("values", []))
                or (op == "NotIn" and value in expr.get("values", []))
                or (op == "Exists" and expr["key"] not in labels)
                or (op == "DoesNotExist" and expr["key"] in labels)):
            return False
    return True


def deployment_violations(doc: dict) -> list[str]:
    """ValidateDeploymentSpec: a selector, matching the template's labels; the
    template's restartPolicy Always."""
    spec = doc.get("spec") or {}
    template = spec.get("template") or {}
    found = [f"spec.template.{e}" for e in pod_template_violations(template)]
    selector = spec.get("selector")
    if not selector:
        found.append("spec.selector: Required value")
    elif not _selector_matches(selector, (template.get("metadata") or {}).get("labels")):
        found.append("spec.template.metadata.labels: `selector` does not match template `labels`")
    if (template.get("spec") or {}).get("restartPolicy", "Always") != "Always":
        found.append("spec.template.spec.restartPolicy: Unsupported value")
    return _errs(doc, "", found)


def service_violations(doc: dict) -> list[str]:
    """ValidateService: port names (required with several ports, unique),
    selector labels."""
    spec = doc.get("spec") or {}
    ports = spec.get("ports") or []
    found = []
    for port in ports:
        name = port.get("name")
        if not name and len(ports) > 1:
            found.append("spec.ports.name: Required value")
        elif name:
            found += [f"spec.ports.name {name!r}: {e}" for e in am.is_dns1123_label(name)]
    found += [f"spec.ports.name {d!r}: Duplicate value" for d in _duplicates([p.get("name") for p in ports])]
    found += [f"spec.selector: {e}" for e in am.validate_labels(spec.get("selector"))]
    return _errs(doc, "", found)


def pvc_violations(doc: dict) -> list[str]:
    storage = (((doc.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")
    if storage is None:
        return _errs(doc, "spec.resources.requests.storage", ["Required value"])
    try:
        parse_quantity(storage)
    except ValueError as e:
        return _errs(doc, "spec.resources.requests.storage", [str(e)])
    return []


def network_policy_violations(doc: dict) -> list[str]:
    selector = (doc.get("spec") or {}).get("podSelector") or {}
    return _errs(doc, "spec.podSelector", am.validate_labels(selector.get("matchLabels")))


POD_KINDS = {"Pod"}


def create_violations(doc: dict) -> list[str]:
    found = object_meta_violations(doc)
    kind = doc.get("kind")
    if kind == "Job":
        found += job_violations(doc)
    elif kind == "Deployment":
        found += deployment_violations(doc)
    elif kind == "Service":
        found += service_violations(doc)
    elif kind == "PersistentVolumeClaim":
        found += pvc_violations(doc)
    elif kind == "NetworkPolicy":
        found += network_policy_violations(doc)
    elif kind in POD_KINDS:
        found += _errs(doc, "spec", pod_spec_violations(doc.get("spec") or {}))
    return found


def update_violations(old: dict, new: dict) -> list[str]:
    """The immutable fields of an in-place update, per kind."""
    kind = new.get("kind")
    o, n = old.get("spec") or {}, new.get("spec") or {}
    if kind == "Job":
        return job_update_violations(old, new)
    if kind == "Deployment" and o.get("selector") != n.get("selector"):
        return _errs(new, "spec.selector", ["Invalid value: field is immutable"])
    # ValidateServiceUpdate: clusterIP(s) are immutable (a headless Service
    # stays headless) unless the type becomes ExternalName.
    if kind == "Service" and n.get("type") != "ExternalName" and o.get("clusterIP") != n.get("clusterIP"):
        return _errs(new, "spec.clusterIP", ["Invalid value: field is immutable"])
    if kind == "PersistentVolumeClaim":
        # ValidatePersistentVolumeClaimUpdate: the spec is immutable except
        # resources.requests (storage may only grow) and volumeAttributesClassName.
        strip = ("resources", "volumeAttributesClassName")
        if {k: v for k, v in o.items() if k not in strip} != {k: v for k, v in n.items() if k not in strip}:
            return _errs(new, "spec", ["Forbidden: spec is immutable after creation except "
                                       "resources.requests and volumeAttributesClassName for bound claims"])
        old_size = ((o.get("resources") or {}).get("requests") or {}).get("storage")
        new_size = ((n.get("resources") or {}).get("requests") or {}).get("storage")
        if old_size and new_size and parse_quantity(new_size) < parse_quantity(old_size):
            return _errs(new, "spec.resources.requests.storage",
                         ["Forbidden: field can not be less than previous value"])
    return []
