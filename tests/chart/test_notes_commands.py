"""The commands NOTES.txt prints do what they say on a real cluster.

- `kubectl logs -l <selector>` prints only the last 10 lines of each pod
  unless --tail=-1, and follows at most --max-log-requests pods (default 5):
  every selector form carries both, with room for every attempt of the pod.
- `kubectl wait --for=condition=complete` waits out its whole timeout when the
  Job fails; NOTES prints `python -m mnistctl wait` instead, which returns at
  once on a failure (exit 1, tests/mnistctl/test_commands.py::test_wait_fails_with_the_reason).
Names come from the rendered objects, not from this file.
"""

from __future__ import annotations

import shlex
import subprocess

import pytest
import yaml

from mnistctl import cli

from .conftest import CI_DIR, NAMESPACE, RELEASE
from .manifests import by_component
from .test_notes import notes


def commands(text: str) -> list[list[str]]:
    return [shlex.split(line) for line in text.splitlines()
            if line.strip().startswith(("kubectl ", "python -m mnistctl "))]


def flag(argv: list[str], name: str) -> str | None:
    for arg in argv:
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def values_of(scenario: str, *overrides: dict) -> dict:
    merged = yaml.safe_load((CI_DIR.parent / "values.yaml").read_text())

    def merge(into, new):
        for key, value in new.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value
    for extra in (yaml.safe_load((CI_DIR / f"{scenario}-values.yaml").read_text()), *overrides):
        merge(merged, extra)
    return merged


@pytest.mark.parametrize("scenario", ["default", "jobset", "tfjob", "trainer-only"])
def test_no_kubectl_wait_for_complete(renderer, scenario):
    text = notes(renderer, scenario)
    assert not [c for c in commands(text) if c[:2] == ["kubectl", "wait"]]
    waits = [c for c in commands(text) if c[:4] == ["python", "-m", "mnistctl", "wait"]]
    assert len(waits) == 1, text
    args = cli.build_parser().parse_args(waits[0][3:])
    values = values_of(scenario)
    assert (args.namespace, args.release, args.chart_name) == (NAMESPACE, RELEASE, "mnist-train")
    deadline = (values["evaluator"]["activeDeadlineSeconds"] if values["evaluator"]["enabled"]
                else values["trainer"]["activeDeadlineSeconds"])
    assert args.timeout_secs == deadline


def test_wait_names_the_chart_when_renamed(renderer):
    text = notes(renderer, "default", "--set", "nameOverride=mnist",
                 "--set", "evaluator.activeDeadlineSeconds=null")
    (wait,) = [c for c in commands(text) if c[:4] == ["python", "-m", "mnistctl", "wait"]]
    args = cli.build_parser().parse_args(wait[3:])
    assert args.chart_name == "mnist" and args.timeout_secs is None


@pytest.mark.parametrize("scenario", ["default", "jobset", "trainer-only"])
def test_selector_logs_print_everything(renderer, scenarios, scenario):
    text = notes(renderer, scenario)
    values = values_of(scenario)
    logs = [c for c in commands(text) if c[:2] == ["kubectl", "logs"]]
    selected = [c for c in logs if "-l" in c]
    assert selected, text
    trainer = values["trainer"]
    attempts = {
        "trainer": 1 + (trainer["jobset"]["maxRestarts"] if trainer["launcher"] == "jobset"
                        else trainer["backoffLimitPerIndex"]),
        "evaluator": 1 + values["evaluator"]["backoffLimit"],
    }
    for argv in selected:
        assert flag(argv, "--tail") == "-1", argv
        selector = dict(part.split("=", 1) for part in argv[argv.index("-l") + 1].split(","))
        component = selector["app.kubernetes.io/component"]
        assert int(flag(argv, "--max-log-requests")) >= attempts[component], argv
        # The selector (but the index label the Job controller adds) matches the rendered pods.
        pods = by_component(scenarios[scenario].docs, component)
        assert pods, component
        for pod in pods:
            wanted = {k: v for k, v in selector.items() if not k.startswith("batch.kubernetes.io/")}
            assert wanted.items() <= pod.labels.items(), pod.where


def test_evaluator_logs_name_the_rendered_job(renderer, scenarios):
    text = notes(renderer, "default")
    (evaluator,) = [d for d in scenarios["default"].find("Job")
                    if d["metadata"]["labels"].get("app.kubernetes.io/component") == "evaluator"]
    assert f"kubectl logs -f job/{evaluator['metadata']['name']} -n {NAMESPACE}" in text


@pytest.mark.parametrize("scenario", ["default", "jobset", "tfjob"])
def test_kubectl_knows_every_flag(renderer, kubectl, scenario):
    """Each --flag of each kubectl command is one the installed kubectl offers."""
    for argv in commands(notes(renderer, scenario)):
        if argv[0] != "kubectl":
            continue
        help_text = subprocess.run([kubectl, argv[1], "--help"], capture_output=True, text=True,
                                   check=True).stdout + subprocess.run(
            [kubectl, "options"], capture_output=True, text=True, check=True).stdout
        for arg in argv[2:]:
            if arg.startswith("--"):
                assert f"{arg.split('=', 1)[0]}=" in help_text, (arg, argv)
