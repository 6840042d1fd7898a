"""The chart's values documentation, generated from one source: the
`## @param key description` comments of charts/mnist-train/values.yaml.

- README.md's parameter tables (its `## Parameters` section) are written by
  Bitnami's readme-generator-for-helm, pinned in scripts/chart_docs/package-lock.json
  and installed into .tools/node/ by scripts/install_chart_docs_tool.sh;
- values.schema.json's `description` of every key values.yaml has is the
  key's `@param` (or `@extra`) text, written by this module. Properties that
  values.yaml leaves out (optional Kubernetes fields of the security contexts)
  keep the schema's own description; the upstream rules behind a key's
  validation are cited in its `$comment`.

`python -m scripts.chart_docs` regenerates both; `--check` changes nothing and
exits 1 when either is stale (`make chart-docs`, `make chart-docs-check`).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "mnist-train"
VALUES = CHART_DIR / "values.yaml"
README = CHART_DIR / "README.md"
SCHEMA = CHART_DIR / "values.schema.json"
INSTALL_COMMAND = "bash scripts/install_chart_docs_tool.sh"

# The tag grammar of readme-generator-for-helm 2.7.2, lib/parser.js
# (paramRegex, extraRegex, skipRegex with the default config.json: comments "##").
_TAG = r"^\s*##\s*@{tag}\s*([^\s]+)\s*(\[.*?\])?\s*(.*)$"
PARAM = re.compile(_TAG.format(tag="param"))
EXTRA = re.compile(_TAG.format(tag="extra"))
SKIP = re.compile(r"^\s*##\s*@skip\s*([^\s]+)\s*(.*)$")


def tagged(values_text: str, pattern: re.Pattern = PARAM) -> dict[str, str]:
    """{dotted key: description} of every `pattern` tag (PARAM, EXTRA or SKIP) in values.yaml."""
    found = {}
    for line in values_text.splitlines():
        match = pattern.match(line)
        if match:
            found[match.group(1)] = match.groups()[-1].strip()
    return found


def generator() -> pathlib.Path | None:
    """The installed readme-generator, or None (install it with INSTALL_COMMAND)."""
    tools = pathlib.Path(os.environ.get("TOOLS_DIR", REPO_ROOT / ".tools"))
    path = tools / "node" / "node_modules" / ".bin" / "readme-generator"
    return path if os.access(path, os.X_OK) and shutil.which("node") else None


def generated_readme(values: pathlib.Path = VALUES, readme: pathlib.Path = README) -> str:
    """README.md as the generator rewrites it from `values` (run on a temporary copy)."""
    tool = generator()
    if tool is None:
        raise FileNotFoundError(f"readme-generator-for-helm is not installed; run: {INSTALL_COMMAND}")
    with tempfile.TemporaryDirectory() as tmp:
        copy = pathlib.Path(tmp) / "README.md"
        shutil.copyfile(readme, copy)
        result = subprocess.run([str(tool), "--values", str(values), "--readme", str(copy)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            # The generator prints which keys lack (or have stray) metadata.
            raise RuntimeError(f"readme-generator-for-helm failed on {values}:\n"
                               f"{result.stdout}{result.stderr}")
        return copy.read_text()


def _has_key(values: dict, path: list[str]) -> bool:
    for key in path:
        if not isinstance(values, dict) or key not in values:
            return False
        values = values[key]
    return True


def described_schema(schema: dict, values_text: str) -> dict:
    """`schema` with each values key's description taken from its @param (or @extra)."""
    values = yaml.safe_load(values_text)
    docs = {**tagged(values_text, EXTRA), **tagged(values_text, PARAM)}
    schema = json.loads(json.dumps(schema))

    def walk(node: dict, path: list[str]):
        for key, prop in node.get("properties", {}).items():
            here = [*path, key]
            dotted = ".".join(here)
            if dotted in docs:
                prop["description"] = docs[dotted]
            elif _has_key(values, here):
                prop.pop("description", None)  # a group of keys: its keys are documented
            walk(prop, here)

    walk(schema, [])
    return schema


def schema_text(schema: dict) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def generated_schema(values: pathlib.Path = VALUES, schema: pathlib.Path = SCHEMA) -> str:
    return schema_text(described_schema(json.loads(schema.read_text()), values.read_text()))


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m scripts.chart_docs",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is stale")
    args = parser.parse_args(argv)
    try:
        generated = ((README, generated_readme()), (SCHEMA, generated_schema()))
    except (FileNotFoundError, RuntimeError) as e:
        print(f"chart_docs: {e}", file=sys.stderr)
        return 2
    stale = []
    for path, text in generated:
        if path.read_text() == text:
            continue
        if args.check:
            stale.append(path.relative_to(REPO_ROOT))
        else:
            path.write_text(text)
            print(f"chart_docs: wrote {path.relative_to(REPO_ROOT)}")
    if stale:
        print(f"chart_docs: {', '.join(map(str, stale))} stale; run: make chart-docs", file=sys.stderr)
        return 1
    if args.check:
        print("chart_docs: README.md and values.schema.json are up to date")
    return 0
