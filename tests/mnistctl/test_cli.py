"""mnistctl/cli.py and the package's shape: `python -m mnistctl` runs, the parser is
the one the chart's commands are checked against (tests/chart), kubernetes is
imported by mnistctl/kube.py alone and TensorFlow by nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mnistctl import cli
from scripts.paths import REPO_ROOT
from tests.test_model_imports import imports

PACKAGE = REPO_ROOT / "mnistctl"


def test_python_m_mnistctl_runs():
    result = subprocess.run([sys.executable, "-m", "mnistctl", "--help"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "usage: python -m mnistctl" in result.stdout
    assert "{status,logs,wait,check,scaling}" in result.stdout
    result = subprocess.run([sys.executable, "-m", "mnistctl"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "arguments are required" in result.stderr


def test_only_kube_imports_kubernetes():
    importers = sorted(p.name for p in PACKAGE.glob("*.py")
                       if any(name.split(".")[0] == "kubernetes" for name, _ in imports(p)))
    assert importers == ["kube.py"]


def test_check_and_the_package_load_neither_tensorflow_nor_kubernetes(tmp_path):
    """The helm test hook's `check` reads the model dir only."""
    code = ("import importlib, pathlib, sys\n"
            "for p in sorted(pathlib.Path('mnistctl').glob('*.py')):\n"
            "    if p.stem not in ('__main__', 'kube'):\n"
            "        importlib.import_module('mnistctl.' + p.stem)\n"
            "from mnistctl import cli\n"
            f"code = cli.main(['check', '--model-dir', {str(tmp_path)!r}, '--timeout-secs', '0'])\n"
            "print(code, sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'kubernetes'}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0 []"


def test_parser_rejects_two_targets(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["logs", "--worker", "1", "--evaluator"])
    assert "not allowed with argument" in capsys.readouterr().err
