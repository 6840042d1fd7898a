"""Fixtures of the chart tests: the tools, and each scenario rendered once.

Tools are looked up as follows (`make tools` installs them):
- helm: env HELM, else .tools/bin/helm, else PATH;
- kubectl: env KUBECTL, else .tools/bin/kubectl, else PATH;
- checkov, kubernetes-validate and the Python with jsonschema:
  .venv-tools/bin/ (env TOOLS_VENV overrides the virtualenv), else PATH.
A test that needs a missing tool is skipped with the reason, and fails
instead when CI=true.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
from dataclasses import dataclass, field

import pytest

from scripts.paths import CHART_DIR, K8S_DIR, REPO_ROOT, TOOLS_BIN  # noqa: F401 (K8S_DIR re-exported)
from tests.requirements import in_ci, unavailable  # noqa: F401 (in_ci: for the chart tests)
import yaml

CI_DIR = CHART_DIR / "ci"
# shared/ lies beside the clone, here and in CI.
CRD_DIR = REPO_ROOT.parent / "shared" / "schemas" / "crds"
TOOLS_VENV_BIN = pathlib.Path(os.environ.get("TOOLS_VENV", REPO_ROOT / ".venv-tools")) / "bin"

RELEASE = "mnist-train"
# Rendering into a named namespace: the `default` namespace is a checkov
# finding (CKV_K8S_21), and k8s/ is rendered the same way.
NAMESPACE = "mnist-train"
# The placeholder image of ci/default-values.yaml and of k8s/.
IMAGE_REPOSITORY = "ghcr.io/example/mnist-train"

SCENARIOS = sorted(p.name[: -len("-values.yaml")] for p in CI_DIR.glob("*-values.yaml"))


def missing_tool(message: str):
    """Skip the test, or fail it in CI where every tool must be present."""
    unavailable(message + " (run `make tools`)")


def find_tool(name: str, env: str | None = None, local: pathlib.Path | None = None) -> str | None:
    if env and os.environ.get(env):
        return os.environ[env]
    if local is not None and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


@pytest.fixture(scope="session")
def helm() -> str:
    path = find_tool("helm", "HELM", TOOLS_BIN / "helm")
    if not path:
        missing_tool("helm not found (env HELM, .tools/bin/helm or PATH)")
    return path


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = find_tool("kubectl", "KUBECTL", TOOLS_BIN / "kubectl")
    if not path:
        missing_tool("kubectl not found (env KUBECTL, .tools/bin/kubectl or PATH)")
    return path


@pytest.fixture(scope="session")
def checkov() -> str:
    path = find_tool("checkov", None, TOOLS_VENV_BIN / "checkov")
    if not path:
        missing_tool(f"checkov not found ({TOOLS_VENV_BIN} or PATH)")
    return path


@pytest.fixture(scope="session")
def kubernetes_validate() -> str:
    path = find_tool("kubernetes-validate", None, TOOLS_VENV_BIN / "kubernetes-validate")
    if not path:
        missing_tool(f"kubernetes-validate not found ({TOOLS_VENV_BIN} or PATH)")
    return path


@pytest.fixture(scope="session")
def tools_python(kubernetes_validate) -> str:
    """The Python of the tools virtualenv (jsonschema, kubernetes_validate)."""
    python = pathlib.Path(kubernetes_validate).parent / "python"
    if not os.access(python, os.X_OK):
        missing_tool(f"no python beside {kubernetes_validate}")
    probe = subprocess.run([str(python), "-c", "import jsonschema, yaml, kubernetes_validate"],
                           check=False, capture_output=True, text=True)
    if probe.returncode != 0:
        missing_tool(f"{python} lacks jsonschema/PyYAML/kubernetes_validate: {probe.stderr.strip()}")
    return str(python)


@pytest.fixture(scope="session")
def crd_dir() -> pathlib.Path:
    if not any(CRD_DIR.glob("*.yaml")):
        missing_tool(f"no CRD schemas in {CRD_DIR} (shared/ beside the repository)")
    return CRD_DIR


@dataclass
class Rendering:
    """One `helm template` output: its text, file and documents."""

    text: str
    path: pathlib.Path
    docs: list = field(default_factory=list)

    def find(self, kind: str, name: str | None = None) -> list[dict]:
        return [d for d in self.docs
                if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]

    def one(self, kind: str, name: str | None = None) -> dict:
        found = self.find(kind, name)
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
        return found[0]

    def component(self, kind: str, component: str) -> dict:
        """The one `kind` object of a component: the trainer's and evaluator's names
        carry the run generation (`mnist-train-trainer-3f9a2c`), so tests find them by label."""
        found = [d for d in self.docs if d["kind"] == kind
                 and (d["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == component]
        assert len(found) == 1, f"expected one {kind} of component {component}, found {len(found)}"
        return found[0]


def helm_template_args(values_files=(), set_values=(), release=RELEASE, namespace=NAMESPACE):
    args = ["template", release, str(CHART_DIR), "--namespace", namespace]
    for f in values_files:
        args += ["-f", str(f)]
    for s in set_values:
        args += ["--set", s]
    return args


class Renderer:
    """Runs `helm template` and caches each distinct rendering for the session."""

    def __init__(self, helm: str, out_dir: pathlib.Path):
        self.helm = helm
        self.out_dir = out_dir
        self.cache: dict[tuple, Rendering] = {}

    def run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([self.helm, *args], check=False, capture_output=True, text=True, cwd=REPO_ROOT)

    def render(self, values_files=(), set_values=(), release=RELEASE, namespace=NAMESPACE) -> Rendering:
        key = (tuple(map(str, values_files)), tuple(set_values), release, namespace)
        if key not in self.cache:
            result = self.run(*helm_template_args(values_files, set_values, release, namespace))
            assert result.returncode == 0, f"helm template {key} failed:\n{result.stderr}"
            path = self.out_dir / f"render-{len(self.cache):03d}.yaml"
            path.write_text(result.stdout)
            docs = [d for d in yaml.safe_load_all(result.stdout) if d]
            self.cache[key] = Rendering(result.stdout, path, docs)
        return self.cache[key]

    def scenario(self, name: str) -> Rendering:
        return self.render(values_files=[CI_DIR / f"{name}-values.yaml"])


@pytest.fixture(scope="session")
def renderer(helm, tmp_path_factory) -> Renderer:
    return Renderer(helm, tmp_path_factory.mktemp("renders"))


@pytest.fixture(scope="session")
def scenarios(renderer) -> dict[str, Rendering]:
    """Every ci/*-values.yaml scenario, rendered once."""
    return {name: renderer.scenario(name) for name in SCENARIOS}


@pytest.fixture(scope="session")
def default_render(renderer) -> Rendering:
    return renderer.scenario("default")
