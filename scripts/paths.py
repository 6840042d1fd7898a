"""Where things are in the checkout: the repository root and the few paths tests, bench and scripts share.

The one place that works out the root from a file's location. The library (model/) does not
import this: its default data directory is found relative to the installed package (see
`model.cli`), which is the same directory in a checkout.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MNIST_DIR = REPO_ROOT / "data" / "mnist"  # the bundled copy of MNIST
CHART_DIR = REPO_ROOT / "charts" / "mnist-train"
K8S_DIR = REPO_ROOT / "k8s"  # manifests rendered from the chart (`make k8s`)
RUNS_DIR = REPO_ROOT / "runs"  # the local runner's run directories
TOOLS_BIN = REPO_ROOT / ".tools" / "bin"  # helm and kubectl (scripts/install_k8s_tools.sh)
# The tools' virtualenv (requirements-tools.txt, `make tools`): the manifest checkers and matplotlib,
# kept out of the training environment. TOOLS_VENV overrides it (tests/chart/conftest.py too).
TOOLS_PYTHON = Path(os.environ.get("TOOLS_VENV", REPO_ROOT / ".venv-tools")) / "bin" / "python"
