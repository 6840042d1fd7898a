"""Validate custom resources against the openAPIV3Schema of their CRDs.

Run with the tools virtualenv's Python (it has jsonschema and PyYAML):

    .venv-tools/bin/python tests/chart/crd_validate.py CRD_DIR MANIFEST...

Every document of a MANIFEST whose apiVersion/kind a CRD in CRD_DIR defines
is validated against that version's schema; other documents are ignored
(kubernetes-validate checks those). The schema is made strict first, as the
API server's field validation is with `kubectl apply --validate=strict`: an
object schema with `properties` rejects unknown fields unless it says
`x-kubernetes-preserve-unknown-fields` or has `additionalProperties`.

Prints one JSON object: {"validated": [[file, kind, name], ...],
"errors": [[file, kind, name, path, message], ...]}; exits 1 on any error.
"""

from __future__ import annotations

import copy
import json
import pathlib
import sys

import jsonschema
import yaml


def strict(schema):
    """A copy of an OpenAPI v3 schema that rejects unknown fields."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (node.get("type") == "object" and "properties" in node
                    and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def load_crds(crd_dir: pathlib.Path) -> dict:
    """{(apiVersion, kind): schema} for every served version of every CRD."""
    schemas = {}
    for path in sorted(crd_dir.glob("*.y*ml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served", True):
                    schemas[(f"{group}/{version['name']}", kind)] = strict(
                        version["schema"]["openAPIV3Schema"])
    return schemas


def main(argv: list[str]) -> int:
    crd_dir, manifests = pathlib.Path(argv[0]), argv[1:]
    schemas = load_crds(crd_dir)
    if not schemas:
        print(json.dumps({"validated": [], "errors": [[str(crd_dir), "", "", "", "no CRDs found"]]}))
        return 1
    validated, errors = [], []
    for manifest in manifests:
        for doc in yaml.safe_load_all(pathlib.Path(manifest).read_text()):
            if not doc:
                continue
            key = (doc.get("apiVersion"), doc.get("kind"))
            if key not in schemas:
                continue
            name = (doc.get("metadata") or {}).get("name", "")
            validator = jsonschema.Draft7Validator(schemas[key])
            found = False
            for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
                found = True
                path = "/".join(str(p) for p in error.absolute_path)
                errors.append([manifest, doc["kind"], name, path, error.message])
            if not found:
                validated.append([manifest, doc["kind"], name])
    print(json.dumps({"validated": validated, "errors": errors}))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
