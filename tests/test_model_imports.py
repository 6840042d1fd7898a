"""model/ is the training library only: its import graph has no cycle, and it
needs neither the Kubernetes client nor, to be imported, Google Cloud Storage.

Read from the source (ast) so that a function-local import counts too, and
checked by importing every module in a fresh interpreter.
"""

from __future__ import annotations

import ast
import subprocess
import sys

from scripts.paths import REPO_ROOT

MODEL = REPO_ROOT / "model"


def module_name(path) -> str:
    return "model" if path.stem == "__init__" else f"model.{path.stem}"


def imports(path, *, top_level_only: bool = False) -> list[tuple[str, int]]:
    """(imported module, line) for each import in `path`; `from model import x` gives model.x."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "model":
                found += [(f"model.{alias.name}", node.lineno) for alias in node.names]
            else:
                found += [(f"{node.module}.{alias.name}", node.lineno) for alias in node.names]
                found.append((node.module, node.lineno))
    return found


def model_modules():
    return sorted(MODEL.glob("*.py"))


def import_graph() -> dict[str, set[str]]:
    names = {module_name(p) for p in model_modules()}
    return {module_name(p): {name for name, _ in imports(p) if name in names and name != module_name(p)}
            for p in model_modules()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as a path that returns to its start), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_import_graph_of_model_has_no_cycle():
    graph = import_graph()
    assert "model.layout" in graph and graph["model.export"]  # the walk sees the package
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_model_module_imports_kubernetes_or_the_operations_tool():
    offenders = [f"{p.name}:{line} imports {name}" for p in model_modules() for name, line in imports(p)
                 if name.split(".")[0] in ("kubernetes", "mnistctl", "tests", "scripts", "bench")]
    assert offenders == []


def test_no_model_module_imports_google_cloud_at_module_level():
    offenders = [f"{p.name}:{line} imports {name}" for p in model_modules()
                 for name, line in imports(p, top_level_only=True)
                 if name.startswith(("google.cloud", "google.api_core", "google.auth"))]
    assert offenders == []


def test_importing_every_model_module_loads_neither_kubernetes_nor_google_cloud():
    modules = [module_name(p) for p in model_modules() if p.stem != "__main__"]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] == 'kubernetes'}"
            " | {'google.cloud' for m in sys.modules if m.startswith('google.cloud')}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
