"""The rule for tests that need a tool this machine may lack: skip with the
reason on a laptop, fail in CI (CI=true), where .ci/run installs everything."""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str):
    """Skip (or, in CI, fail) the calling test because `reason`."""
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
