"""NOTES.txt prints the exact commands to follow the run (rendered by a
client-side dry-run install, which needs no cluster)."""

from __future__ import annotations

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
    assert "kubectl logs -f job/mnist-train-evaluator -n mnist-train" in text
    assert "kubectl port-forward -n mnist-train svc/mnist-train-tensorboard 6006:6006" in text
    assert "kubectl get job/mnist-train-trainer -n mnist-train" in text
    assert "http://127.0.0.1:6006/" in text


@pytest.mark.parametrize("scenario,status", [("jobset", "kubectl get jobset/mnist-train-trainer"),
                                             ("tfjob", "kubectl get tfjob/mnist-train-trainer")])
def test_notes_launchers(renderer, scenario, status):
    assert status in notes(renderer, scenario)


def test_notes_without_evaluator_and_tensorboard(renderer):
    text = notes(renderer, "trainer-only")
    assert "evaluator" not in text and "port-forward" not in text
