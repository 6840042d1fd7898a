"""Fixtures of the local runner's unit tests: the chart rendered by the runner's own render()."""

from __future__ import annotations

import pytest

from scripts.local_runner.render import find_helm, render
from tests.e2e.conftest import runner_ready, unavailable  # noqa: F401 - runner_ready is a fixture


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """The chart rendered by the runner's own render(), per launcher."""
    if not find_helm():
        unavailable("helm not found (run `make tools`)")
    tmp = tmp_path_factory.mktemp("render")
    out = {}
    for launcher in ("job", "jobset", "tfjob"):
        out[launcher] = render(set_values=[f"trainer.launcher={launcher}"],
                               overlay_path=tmp / f"{launcher}.yaml")
    return out
