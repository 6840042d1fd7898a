"""`helm template` of the chart with the user's values plus a local overlay.

The overlay (LOCAL_OVERLAY) only fills in what a cluster install must be
told and a local run cannot know (the image repository, which is required);
every other value comes from the chart's defaults and the user's `-f` files
and `--set`s, so what runs is what the chart renders.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import yaml

from scripts.paths import CHART_DIR, REPO_ROOT, TOOLS_BIN

DEFAULT_RELEASE = "mnist-train"
DEFAULT_NAMESPACE = "mnist-train"

# Applied first, so the user's values override it.
LOCAL_OVERLAY = {
    # The process launcher runs the repository's code, not an image; the
    # chart requires a repository, so name the image a container launcher builds.
    "image": {"repository": "localhost/mnist-train"},
}


class RenderError(Exception):
    """helm is missing or the chart does not render; the message says what to do."""


def find_helm() -> str | None:
    """env HELM, else .tools/bin/helm (bash scripts/install_k8s_tools.sh), else PATH."""
    if os.environ.get("HELM"):
        return os.environ["HELM"]
    local = TOOLS_BIN / "helm"
    if os.access(local, os.X_OK):
        return str(local)
    return shutil.which("helm")


@dataclasses.dataclass
class Rendering:
    text: str
    docs: list[dict]
    release: str
    namespace: str
    command: list[str]

    def of_kind(self, *kinds: str) -> list[dict]:
        return [d for d in self.docs if d.get("kind") in kinds]


def parse_documents(text: str) -> list[dict]:
    docs = [d for d in yaml.safe_load_all(text) if d]
    for d in docs:
        if not isinstance(d, dict) or "kind" not in d or "metadata" not in d:
            raise RenderError(f"not a Kubernetes object: {str(d)[:200]}")
    return docs


def render(*, chart: Path = CHART_DIR, release: str = DEFAULT_RELEASE, namespace: str = DEFAULT_NAMESPACE,
           values_files: list[str] = (), set_values: list[str] = (), set_string_values: list[str] = (),
           overlay_path: Path, helm: str | None = None, skip_tests: bool = True) -> Rendering:
    helm = helm or find_helm()
    if not helm:
        raise RenderError("helm not found (env HELM, .tools/bin/helm or PATH); install the pinned one "
                          "with `bash scripts/install_k8s_tools.sh` (or `make tools`)")
    overlay_path.parent.mkdir(parents=True, exist_ok=True)
    overlay_path.write_text("# The local runner's overlay; the user's values override it.\n"
                            + yaml.safe_dump(LOCAL_OVERLAY, sort_keys=True))
    # Test hooks (helm.sh/hook: test) are left out unless asked for (--helm-test): the runner then
    # runs them after the release's Jobs, in the namespace where the Services' names resolve.
    cmd = [helm, "template", release, str(chart), "--namespace", namespace,
           *(["--skip-tests"] if skip_tests else []), "-f", str(overlay_path)]
    for f in values_files:
        cmd += ["-f", str(f)]
    for s in set_values:
        cmd += ["--set", s]
    for s in set_string_values:
        cmd += ["--set-string", s]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise RenderError(f"helm template failed ({' '.join(cmd[1:])}):\n{result.stderr.strip()}")
    return Rendering(result.stdout, parse_documents(result.stdout), release, namespace, cmd)


def load_manifest(path: Path, release: str, namespace: str) -> Rendering:
    """An already-rendered manifest (e.g. `helm template ... > all.yaml`, or k8s/)."""
    files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    text = "\n---\n".join(f.read_text() for f in files if f.name != "kustomization.yaml")
    docs = parse_documents(text)
    for d in docs:  # rendered for a namespace: take it from the objects
        namespace = d["metadata"].get("namespace", namespace)
    return Rendering(text, docs, release, namespace, ["(manifest)", str(path)])
