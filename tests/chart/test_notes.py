"""NOTES.txt prints the exact commands to follow the run (rendered by a
client-side dry-run install, which needs no cluster)."""

from __future__ import annotations

import re

import pytest

from .conftest import CHART_DIR, CI_DIR, NAMESPACE


def notes(renderer, scenario: str, *extra: str) -> str:
    result = renderer.run("install", "mnist-train", str(CHART_DIR), "--namespace", NAMESPACE,
                          "--dry-run=client", "-f", str(CI_DIR / f"{scenario}-values.yaml"), *extra)
    assert result.returncode == 0, result.stderr
    assert "NOTES:" in result.stdout
    return result.stdout.split("NOTES:", 1)[1]


def test_notes_default(renderer):
    text = notes(renderer, "default")
    assert re.search(r"kubectl logs -f job/mnist-train-evaluator-[0-9a-f]{6} -n mnist-train", text)
    assert "kubectl port-forward -n mnist-train svc/mnist-train-tensorboard 6006:6006" in text
    assert re.search(r"kubectl get job/mnist-train-trainer-[0-9a-f]{6} -n mnist-train", text)
    assert "http://127.0.0.1:6006/" in text


@pytest.mark.parametrize("scenario,kind", [("jobset", "jobset"), ("tfjob", "tfjob")])
def test_notes_launchers(renderer, scenario, kind):
    assert re.search(rf"kubectl get {kind}/mnist-train-trainer-[0-9a-f]{{6}} ", notes(renderer, scenario))


def test_notes_without_evaluator_and_tensorboard(renderer):
    text = notes(renderer, "trainer-only")
    assert "evaluator" not in text and "port-forward" not in text
