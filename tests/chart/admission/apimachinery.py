"""Name, label and quantity syntax of k8s.io/apimachinery, as the API server
and the operators' webhooks call it.

Source: kubernetes/kubernetes staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go,
pkg/api/validation/objectmeta.go and pkg/api/resource/quantity.go (v1.35; the
same rules in v1.31 except where noted). Each function returns the list of
error messages, empty when the value is valid, as upstream does.
"""

from __future__ import annotations

import re
from decimal import Decimal

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
DNS1035_LABEL_MAX = 63
QUALIFIED_NAME_MAX = 63
LABEL_VALUE_MAX = 63
# objectmeta.go TotalAnnotationSizeLimitB
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * (1 << 10)

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_RE = re.compile(f"^{_DNS1123_LABEL}$")
_DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_DNS1035_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
# IsEnvVarName, v1.31 (RelaxedEnvironmentVariableValidation, default on since
# v1.34, accepts any printable ASCII but '='; the chart must pass on 1.31).
_ENV_VAR_NAME_RE = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# IsValidPortName
_PORT_NAME_CHARS_RE = re.compile(r"^[-a-z0-9]+$")
_PORT_NAME_ONE_LETTER_RE = re.compile(r".*[a-z].*")


def _too_long(value: str, limit: int) -> list[str]:
    return [f"must be no more than {limit} characters"] if len(value) > limit else []


def is_dns1123_label(value: str) -> list[str]:
    errs = _too_long(value, DNS1123_LABEL_MAX)
    if not _DNS1123_LABEL_RE.match(value):
        errs.append("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                    "or '-', and must start and end with an alphanumeric character")
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = _too_long(value, DNS1123_SUBDOMAIN_MAX)
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                    "characters, '-' or '.', and must start and end with an alphanumeric character")
    return errs


def is_dns1035_label(value: str) -> list[str]:
    errs = _too_long(value, DNS1035_LABEL_MAX)
    if not _DNS1035_LABEL_RE.match(value):
        errs.append("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                    "start with an alphabetic character, and end with an alphanumeric character")
    return errs


def is_qualified_name(value: str) -> list[str]:
    """IsQualifiedName: [prefix/]name, prefix a DNS-1123 subdomain."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
        errs = []
    elif len(parts) == 2:
        prefix, name = parts
        errs = ["prefix part must be non-empty"] if not prefix else [
            f"prefix part {e}" for e in is_dns1123_subdomain(prefix)]
    else:
        return ["a qualified name must consist of alphanumeric characters, '-', '_' or '.', "
                "with an optional DNS subdomain prefix and '/'"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > QUALIFIED_NAME_MAX:
        errs.append(f"name part must be no more than {QUALIFIED_NAME_MAX} characters")
    if name and not _QUALIFIED_NAME_RE.match(name):
        errs.append("name part must consist of alphanumeric characters, '-', '_' or '.', and "
                    "must start and end with an alphanumeric character")
    return errs


def is_valid_label_value(value: str) -> list[str]:
    errs = _too_long(value, LABEL_VALUE_MAX)
    if not _LABEL_VALUE_RE.match(value):
        errs.append("a valid label must be an empty string or consist of alphanumeric characters, "
                    "'-', '_' or '.', and must start and end with an alphanumeric character")
    return errs


def is_env_var_name(value: str) -> list[str]:
    errs = []
    if not _ENV_VAR_NAME_RE.match(value):
        errs.append("a valid environment variable name must consist of alphabetic characters, "
                    "digits, '_', '-', or '.', and must not start with a digit")
    # hasChDirPrefix
    if value in (".", "..") or value.startswith(".."):
        errs.append("must not be '.' or '..' or start with '..'")
    return errs


def is_valid_port_name(value: str) -> list[str]:
    errs = []
    if not 1 <= len(value) <= 15:
        errs.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARS_RE.match(value):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _PORT_NAME_ONE_LETTER_RE.match(value):
        errs.append("must contain at least one letter (a-z)")
    if "--" in value:
        errs.append("must not contain consecutive hyphens")
    if value.startswith("-") or value.endswith("-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def validate_labels(labels: dict) -> list[str]:
    """ValidateLabels (apimachinery/pkg/apis/meta/v1/validation): keys are
    qualified names, values label values (a YAML number or boolean is not a
    string at all: the API server refuses it while decoding)."""
    errs = []
    for key, value in (labels or {}).items():
        errs += [f"label key {key!r}: {e}" for e in is_qualified_name(str(key))]
        if not isinstance(value, str):
            errs.append(f"label {key!r}: value {value!r} is not a string")
            continue
        errs += [f"label {key!r}: value {value!r}: {e}" for e in is_valid_label_value(value)]
    return errs


def validate_annotations(annotations: dict) -> list[str]:
    """ValidateAnnotations (apimachinery/pkg/api/validation/objectmeta.go):
    keys are qualified names (checked lower-cased), all keys and values
    together at most 256 KiB."""
    errs, total = [], 0
    for key, value in (annotations or {}).items():
        errs += [f"annotation key {key!r}: {e}" for e in is_qualified_name(str(key).lower())]
        if not isinstance(value, str):
            errs.append(f"annotation {key!r}: value {value!r} is not a string")
            value = str(value)
        total += len(key) + len(value)
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(f"annotations: may not have more than {TOTAL_ANNOTATION_SIZE_LIMIT} bytes")
    return errs


# quantity.go parseQuantityString: a signed decimal number, then one suffix:
# binary SI (Ki..Ei), decimal SI (n u m "" k M G T P E) or a decimal exponent.
_QUANTITY_RE = re.compile(
    r"^(?P<number>[+-]?(\d+\.?\d*|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$")
_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
           "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": 1,
           "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}


def parse_quantity(value) -> Decimal:
    """resource.ParseQuantity; raises ValueError as the API server refuses
    ("quantities must match the regular expression ...")."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a quantity")
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    match = _QUANTITY_RE.match(str(value))
    if not match:
        raise ValueError(f"quantities must match the regular expression "
                         f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$': {value!r}")
    suffix = match.group("suffix") or ""
    number = Decimal(match.group("number"))
    if suffix[:1] in ("e", "E"):
        return number * Decimal(10) ** int(suffix[1:])
    return number * Decimal(_SUFFIX[suffix])
