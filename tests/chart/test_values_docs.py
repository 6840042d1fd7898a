"""values.yaml, values.schema.json and the chart README say the same thing.

The `## @param` comments of values.yaml are the one source of the values'
documentation (scripts/chart_docs): the README's parameter tables and the
schema's descriptions are generated from them and must be up to date.

values.yaml and the schema list the same keys. The rule, for free-form maps:
- a key of values.yaml is a *leaf* where readme-generator-for-helm sees one
  (lib/parser.js createValuesObject, 2.7.2: dot-object's flattening): a scalar,
  an empty map or list (`podAnnotations: {}`, `tolerations: []`) or a list of
  strings; a leaf's contents are free-form for this test (the schema's
  `items`, `patternProperties` or `additionalProperties` validate them, which
  test_values_schema.py and test_values_admission.py exercise);
- every path of values.yaml must be allowed by the schema: a named property,
  or a key matching `patternProperties` (e.g. `resources.requests.cpu`);
- every property the schema names must be in values.yaml, except below the
  Kubernetes objects the chart passes through to the manifests (the security
  contexts and each `resources`): there the schema allows the optional fields
  of the Kubernetes type, and values.yaml sets only the chart's defaults; and
  except `global`, which Helm itself passes to every chart.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from scripts import chart_docs
from tests.requirements import unavailable

from .conftest import CHART_DIR

VALUES_TEXT = (CHART_DIR / "values.yaml").read_text()
SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
KUBERNETES_OBJECTS = re.compile(r"^(podSecurityContext|securityContext|.*\.resources)(\.|$)")
HELM_OWN = {"global"}


def leaf_paths(node, path=()) -> list[tuple]:
    """values.yaml's leaves, as readme-generator-for-helm sees them (module docstring)."""
    if isinstance(node, dict) and node:
        return [p for key, value in node.items() for p in leaf_paths(value, (*path, key))]
    if isinstance(node, list) and node and not all(isinstance(v, str) for v in node):
        return [p for i, value in enumerate(node) for p in leaf_paths(value, (*path, i))]
    return [path]


def leaf_keys(values: dict) -> list[str]:
    """The leaves' dotted names, as `## @param` spells them."""
    return [".".join(map(str, path)) for path in leaf_paths(values)]


def _resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _child(schema: dict, node: dict, key: str) -> dict | None:
    """The schema of `key` inside `node`, or None when the schema refuses it."""
    node = _resolve(schema, node)
    if key in node.get("properties", {}):
        return node["properties"][key]
    for pattern, sub in node.get("patternProperties", {}).items():
        if re.search(pattern, key):
            return sub
    extra = node.get("additionalProperties", True)
    return extra if isinstance(extra, dict) else ({} if extra else None)


def schema_mismatches(values: dict, schema: dict) -> list[str]:
    """Keys of values.yaml the schema does not allow, and schema properties values.yaml lacks."""
    problems = []
    for path in leaf_paths(values):
        node = schema
        for part in path:
            node = _child(schema, node, str(part))
            if node is None:
                problems.append(f"values.yaml key {'.'.join(map(str, path))} is not in values.schema.json")
                break

    def walk(node: dict, path: list[str], value):
        for key, prop in _resolve(schema, node).get("properties", {}).items():
            here = ".".join([*path, key])
            present = isinstance(value, dict) and key in value
            if not present and here not in HELM_OWN and not KUBERNETES_OBJECTS.match(here):
                problems.append(f"values.schema.json property {here} is not in values.yaml")
            walk(prop, [*path, key], value.get(key) if present else None)

    walk(schema, [], values)
    return problems


def param_mismatches(values_text: str) -> list[str]:
    """Leaves without an @param, @params of no leaf, and @extras of no key group."""
    leaves = set(leaf_keys(yaml.safe_load(values_text)))
    params = set(chart_docs.tagged(values_text, chart_docs.PARAM))
    groups = {leaf.rsplit(".", n)[0] for leaf in leaves for n in range(1, leaf.count(".") + 1)}
    problems = [f"{key} has no `## @param {key} ...` in values.yaml" for key in sorted(leaves - params)]
    problems += [f"`## @param {key}` names no key of values.yaml" for key in sorted(params - leaves)]
    problems += [f"`## @extra {key}` names no group of keys of values.yaml"
                 for key in sorted(set(chart_docs.tagged(values_text, chart_docs.EXTRA)) - groups)]
    problems += [f"`## @skip {key}`: every key is documented here"
                 for key in sorted(chart_docs.tagged(values_text, chart_docs.SKIP))]
    return problems


def library_enums() -> dict[str, list[str]]:
    """The lists of the training library each schema enum must equal (by schema path)."""
    from model import config
    from model.networks import NETWORKS

    return {
        "training.model": list(NETWORKS),
        "training.preset": list(config.PRESETS),
        "training.allReduceDtype": list(config.ALL_REDUCE_DTYPES),
        "training.computeDtype": list(config.COMPUTE_DTYPE_CHOICES),
        "training.gradientExchange": list(config.GRADIENT_EXCHANGES),
    }


def enum_mismatches(schema: dict, expected: dict[str, list[str]]) -> list[str]:
    problems = []
    for path, want in expected.items():
        node = schema
        for part in path.split("."):
            node = _resolve(schema, node)["properties"][part]
        if sorted(node.get("enum", [])) != sorted(want):  # the order is free
            problems.append(f"values.schema.json {path} enum {node.get('enum')} != the library's {want}")
    return problems


def _without_line(text: str, line: str) -> str:
    lines = text.splitlines(keepends=True)
    assert sum(item.strip() == line.strip() for item in lines) == 1, line
    return "".join(item for item in lines if item.strip() != line.strip())


# ---------------------------------------------------------------- the generated files

def test_readme_tables_are_generated():
    """README.md's `## Parameters` tables are what readme-generator-for-helm makes of values.yaml."""
    if chart_docs.generator() is None:
        unavailable(f"readme-generator-for-helm (node) is not installed: run `{chart_docs.INSTALL_COMMAND}` "
                    "(needs node and npm), or `make chart-docs`")
    assert chart_docs.README.read_text() == chart_docs.generated_readme(), \
        "charts/mnist-train/README.md is stale: run `make chart-docs` and commit the result"


def test_readme_check_sees_a_changed_param(tmp_path):
    """The staleness check can fail: a changed @param description changes the tables."""
    if chart_docs.generator() is None:
        unavailable(f"readme-generator-for-helm (node) is not installed: run `{chart_docs.INSTALL_COMMAND}`")
    values = tmp_path / "values.yaml"
    values.write_text(VALUES_TEXT.replace("## @param trainer.workers Number of workers",
                                          "## @param trainer.workers How many workers"))
    assert chart_docs.generated_readme(values) != chart_docs.README.read_text()


def test_generator_names_a_key_without_param(tmp_path):
    """`make chart-docs` refuses values.yaml with an undocumented key, naming it."""
    if chart_docs.generator() is None:
        unavailable(f"readme-generator-for-helm (node) is not installed: run `{chart_docs.INSTALL_COMMAND}`")
    values = tmp_path / "values.yaml"
    values.write_text(VALUES_TEXT.replace("  port: 2222\n", "  port: 2222\n  portName: grpc\n"))
    with pytest.raises(RuntimeError, match="Missing metadata for key: trainer.portName"):
        chart_docs.generated_readme(values)


def test_install_script_without_node(tmp_path):
    """Without node/npm the installer says what to install and fails, or with
    --optional (`make tools`) says so and succeeds."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dirname").symlink_to(shutil.which("dirname"))
    script = str(chart_docs.REPO_ROOT / "scripts" / "install_chart_docs_tool.sh")
    env = {"PATH": str(bin_dir), "TOOLS_DIR": str(tmp_path / "tools")}
    strict = subprocess.run(["/bin/bash", script], env=env, capture_output=True, text=True, check=False)
    assert strict.returncode == 1 and "node not found: install Node.js" in strict.stderr, strict.stderr
    optional = subprocess.run(["/bin/bash", script, "--optional"], env=env, capture_output=True, text=True,
                              check=False)
    assert optional.returncode == 0 and "node not found" in optional.stderr, optional.stderr
    assert not (tmp_path / "tools").exists()


def test_schema_descriptions_are_generated():
    """Each values key's schema description is its @param (editors show them)."""
    assert (CHART_DIR / "values.schema.json").read_text() == chart_docs.generated_schema(), \
        "charts/mnist-train/values.schema.json is stale: run `make chart-docs` and commit the result"
    params = chart_docs.tagged(VALUES_TEXT)
    assert SCHEMA["properties"]["training"]["properties"]["batchSize"]["description"] \
        == params["training.batchSize"]
    changed = VALUES_TEXT.replace("## @param training.batchSize Batch size PER WORKER",
                                  "## @param training.batchSize Batch size of each worker")
    assert chart_docs.schema_text(chart_docs.described_schema(SCHEMA, changed)) \
        != chart_docs.generated_schema()


# ---------------------------------------------------------------- values.yaml <-> @param <-> schema

def test_every_key_has_a_param():
    assert param_mismatches(VALUES_TEXT) == []


@pytest.mark.parametrize("change,problem", [
    (lambda t: _without_line(t, "## @param training.saveSummariesSteps Write TensorBoard training "
                                "summaries every N steps."),
     "training.saveSummariesSteps has no"),
    (lambda t: t.replace("  port: 2222\n", "  port: 2222\n  portName: grpc\n"), "trainer.portName has no"),
    (lambda t: t + "## @param checkov.skips Nothing.\n", "`## @param checkov.skips` names no key"),
    (lambda t: t + "## @skip trainer\n", "`## @skip trainer`"),
], ids=["param removed", "key added", "param of no key", "skip"])
def test_param_check_can_fail(change, problem):
    problems = param_mismatches(change(VALUES_TEXT))
    assert any(problem in p for p in problems), problems


def test_values_and_schema_have_the_same_keys():
    assert schema_mismatches(yaml.safe_load(VALUES_TEXT), SCHEMA) == []


def test_keys_are_camel_case():
    for key in leaf_keys(yaml.safe_load(VALUES_TEXT)):
        for part in key.split("."):
            assert part[0].islower() and "_" not in part and "-" not in part, f"{key} is not camelCase"


def _drop(values: dict, dotted: str) -> dict:
    values = json.loads(json.dumps(values))
    *path, last = dotted.split(".")
    node = values
    for part in path:
        node = node[part]
    del node[last]
    return values


@pytest.mark.parametrize("values_change,schema_change,problem", [
    (lambda v: _drop(v, "training.saveSummariesSteps"), None,
     "property training.saveSummariesSteps is not in values.yaml"),
    (lambda v: _drop(v, "trainer.jobset"), None, "property trainer.jobset is not in values.yaml"),
    (lambda v: {**v, "extra": 1}, None, "key extra is not in values.schema.json"),
    (lambda v: {**v, "trainer": {**v["trainer"], "resources": {"requests": {"gpu": 1}}}}, None,
     "key trainer.resources.requests.gpu is not in values.schema.json"),
    (None, lambda s: _drop(s, "properties.tensorboard.properties.ingress.properties.path"),
     "key tensorboard.ingress.path is not in values.schema.json"),
], ids=["key removed", "group removed", "unknown key", "unknown resource", "schema property removed"])
def test_schema_check_can_fail(values_change, schema_change, problem):
    values, schema = yaml.safe_load(VALUES_TEXT), SCHEMA
    if values_change:
        values = values_change(values)
    if schema_change:
        schema = schema_change(schema)
    problems = schema_mismatches(values, schema)
    assert any(problem in p for p in problems), problems


def test_free_form_and_kubernetes_fields_are_not_mismatches():
    """Entries of free-form maps, and Kubernetes fields values.yaml leaves out, are allowed."""
    values = yaml.safe_load(VALUES_TEXT)
    values["trainer"]["podAnnotations"] = {"example.com/team": "ml"}
    values["trainer"]["resources"]["limits"]["nvidia.com/gpu"] = 1
    values["podSecurityContext"]["supplementalGroups"] = [2000]
    assert schema_mismatches(values, SCHEMA) == []
    assert "supplementalGroups" in SCHEMA["properties"]["podSecurityContext"]["properties"]


# ---------------------------------------------------------------- enums = the library's lists

def test_schema_enums_are_the_librarys_lists():
    assert enum_mismatches(SCHEMA, library_enums()) == []


def test_enum_check_can_fail():
    schema = json.loads(json.dumps(SCHEMA))
    schema["properties"]["training"]["properties"]["model"]["enum"].append("resnet50")
    schema["properties"]["training"]["properties"]["computeDtype"]["enum"] = ["float32"]
    problems = enum_mismatches(schema, library_enums())
    assert len(problems) == 2 and "training.model" in problems[0] and "computeDtype" in problems[1], problems
