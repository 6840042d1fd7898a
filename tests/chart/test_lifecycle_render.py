"""The chart's names and specs across `helm upgrade` (the run generation:
mnist-train.runGeneration in _helpers.tpl; the user's view: the chart README,
"Upgrades, rollbacks and uninstalls").

A Job's spec.template, a JobSet's replicatedJobs and a TFJob's replica specs
are immutable, so a release upgrade must either leave them byte-identical
(same names) or give them new names (Helm deletes the old objects and creates
the new ones). Compared here by rendering an old and a new release.
"""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from .conftest import CHART_DIR, CI_DIR, IMAGE_REPOSITORY, Renderer, helm_template_args
from .manifests import all_pods, env_values

DEFAULTS = [CI_DIR / "default-values.yaml"]
LAUNCHERS = ["job", "jobset", "tfjob"]
VERSION_LABELS = ("helm.sh/chart", "app.kubernetes.io/version")
GENERATION = re.compile(r"-([0-9a-f]{6})$")


def run_objects(rendering) -> dict[str, dict]:
    """The trainer workload and the evaluator Job, by component."""
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in rendering.docs
            if d["kind"] in ("Job", "JobSet", "TFJob")
            and d["metadata"]["labels"]["app.kubernetes.io/component"] in ("trainer", "evaluator")}


def stable_objects(rendering) -> set[tuple[str, str]]:
    """Every object but the trainer workload and the evaluator Job."""
    run = [id(d) for d in run_objects(rendering).values()]
    return {(d["kind"], d["metadata"]["name"]) for d in rendering.docs if id(d) not in run}


def render(renderer, launcher, *set_values, release="mnist-train"):
    return renderer.render(values_files=DEFAULTS, release=release,
                           set_values=[f"trainer.launcher={launcher}", *set_values])


@pytest.fixture(scope="module")
def render_bumped(helm, tmp_path_factory):
    """Renders a copy of the chart whose version and appVersion are bumped and whose run
    objects' templates gain a comment (a chart release that changes no spec)."""
    root = tmp_path_factory.mktemp("bumped")
    chart = root / "mnist-train"
    shutil.copytree(CHART_DIR, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"], meta["appVersion"] = "9.9.9", "9.9.9"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    edits = 0
    for template in (chart / "templates").glob("*.yaml"):
        edited, count = re.subn(r'^(\{\{- define "mnist-train\.(trainer|evaluator)\.spec[^\n]*\n)',
                                r"\1# A comment of a new chart version.\n", template.read_text(), flags=re.M)
        template.write_text(edited)
        edits += count
    assert edits == 4, "expected the spec templates of job, jobset, tfjob and the evaluator"
    renderer = Renderer(helm, root)

    def render_copy(set_values) -> list[dict]:
        args = helm_template_args(DEFAULTS, set_values)
        args[2] = str(chart)
        result = renderer.run(*args)
        assert result.returncode == 0, result.stderr
        return [d for d in yaml.safe_load_all(result.stdout) if d]
    return render_copy


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_a_chart_version_bump_leaves_names_and_specs_identical(renderer, render_bumped, launcher):
    """Same values, new chart version (image tag pinned): the immutable specs do not change,
    TensorBoard's pod template neither (no needless rollout); only metadata labels do."""
    pinned = [f"trainer.launcher={launcher}", "image.tag=0.1.0"]
    old = renderer.render(values_files=DEFAULTS, set_values=pinned)
    new_docs = render_bumped(pinned)
    new = {(d["kind"], d["metadata"]["name"]): d for d in new_docs}
    for doc in old.docs:
        key = (doc["kind"], doc["metadata"]["name"])
        assert key in new, f"{key} is renamed by a chart version bump"
        assert doc.get("spec") == new[key].get("spec"), f"{key}: the spec changes with the chart version"
    trainer = run_objects(old)["trainer"]
    assert new[(trainer["kind"], trainer["metadata"]["name"])]["metadata"]["labels"]["helm.sh/chart"] == \
        "mnist-train-9.9.9"


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_no_pod_template_carries_the_chart_version(renderer, launcher):
    rendering = render(renderer, launcher)
    for pod in all_pods(rendering.docs):
        assert not set(VERSION_LABELS) & set(pod.labels), f"{pod.where}: {pod.labels}"
    for doc in rendering.find("JobSet"):
        for rjob in doc["spec"]["replicatedJobs"]:
            assert not set(VERSION_LABELS) & set(rjob["template"]["metadata"]["labels"])


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_more_steps_give_the_run_objects_new_names_and_nothing_else(renderer, launcher):
    old, new = render(renderer, launcher), render(renderer, launcher, "training.maxSteps=20000")
    old_run, new_run = run_objects(old), run_objects(new)
    for component in ("trainer", "evaluator"):
        assert old_run[component]["metadata"]["name"] != new_run[component]["metadata"]["name"]
    # One run generation shared by the trainer and the evaluator.
    for run in (old_run, new_run):
        generations = {GENERATION.search(d["metadata"]["name"]).group(1) for d in run.values()}
        assert len(generations) == 1, generations
    assert stable_objects(old) == stable_objects(new)
    old_deployment, new_deployment = old.one("Deployment"), new.one("Deployment")
    assert old_deployment["spec"]["selector"] == new_deployment["spec"]["selector"]
    assert old_deployment["spec"] == new_deployment["spec"]


@pytest.mark.parametrize("change", [
    "tensorboard.podLabels.team=vision",
    "tensorboard.podAnnotations.note=x",
    "serviceAccount.annotations.note=x",
    "networkPolicy.enabled=false",
    "tests.timeoutSecs=120",
])
def test_changes_outside_the_run_specs_keep_the_names(renderer, change):
    old, new = render(renderer, "job"), render(renderer, "job", change)
    for component in ("trainer", "evaluator"):
        assert run_objects(old)[component] == run_objects(new)[component]


@pytest.mark.parametrize("change", [
    "training.maxSteps=20000", "training.batchSize=50", f"image.repository={IMAGE_REPOSITORY}-2",
    "trainer.resources.limits.memory=9Gi", "evaluator.evalIntervalSecs=60", "trainer.podLabels.team=vision",
])
def test_changes_of_the_run_specs_change_the_names(renderer, change):
    old, new = render(renderer, "job"), render(renderer, "job", change)
    old_run, new_run = run_objects(old), run_objects(new)
    for component in ("trainer", "evaluator"):
        assert old_run[component]["metadata"]["name"] != new_run[component]["metadata"]["name"]


@pytest.mark.parametrize("launcher", ["job", "jobset"])
def test_the_workers_find_each_other_under_the_generation_name(renderer, launcher):
    rendering = render(renderer, launcher)
    trainer = run_objects(rendering)["trainer"]
    (pod,) = all_pods([trainer])
    env = env_values(pod.spec["containers"][0])
    suffix = "-worker-0" if launcher == "jobset" else ""
    assert env["MNIST_WORKER_HOSTNAME_PREFIX"] == trainer["metadata"]["name"] + suffix
