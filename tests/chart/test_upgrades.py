"""`helm upgrade` through the admission layer's update rules (issue 12 item 3,
the rendering half; LIFECYCLE.md): the old and the new rendering of a
release, Helm's plan (create / update / delete), and the API server's and
webhooks' rules for every object updated in place.

- A chart version bump with unchanged values upgrades cleanly and leaves the
  trainer workload and the evaluator Job as they are (identical specs).
- A change of what the Jobs run (training.maxSteps, image, resources,
  workers) upgrades cleanly: the trainer workload and the evaluator are
  renamed (new run generation), so Helm deletes the old ones and creates the
  new ones; nothing immutable is updated.
- Jobs gone from the cluster (deleted by their TTL) are created again by the
  upgrade and pass admission.
"""

from __future__ import annotations

import shutil

import pytest
import yaml

from .admission import admit_all, plan_upgrade, upgrade_violations
from .admission.helm_upgrade import key, manifest
from .conftest import CHART_DIR, CI_DIR, NAMESPACE, RELEASE

LAUNCHERS = ["job", "jobset", "tfjob"]
WORKLOAD_KINDS = {"Job", "JobSet", "TFJob"}
CHANGES = {
    "maxSteps": ["training.maxSteps=16000"],
    "image": ["image.tag=0.1.1"],
    "resources": ["trainer.resources.limits.cpu=3"],
    "workers": ["trainer.workers=3"],
}


@pytest.fixture(scope="module")
def bumped_chart(tmp_path_factory):
    """A copy of the chart with a new chart version, values unchanged."""
    chart = tmp_path_factory.mktemp("bumped") / "mnist-train"
    shutil.copytree(CHART_DIR, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"] = "0.1.0" if meta["version"] != "0.1.0" else "0.2.0"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return chart


def render(renderer, launcher: str, set_values=(), chart=CHART_DIR) -> list[dict]:
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE,
            "-f", str(CI_DIR / "default-values.yaml"), "--set", f"trainer.launcher={launcher}"]
    for s in set_values:
        args += ["--set", s]
    result = renderer.run(*args)
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def workloads(docs: list[dict]) -> dict:
    """The trainer workload and the evaluator Job of a rendering (no hooks)."""
    return {key(d): d for d in manifest(docs) if d["kind"] in WORKLOAD_KINDS}


def assert_clean(old, new):
    violations = upgrade_violations(old, new)
    assert not violations, "helm upgrade fails:\n" + "\n".join(violations)


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_chart_version_bump_upgrades_cleanly(renderer, bumped_chart, launcher):
    old = render(renderer, launcher)
    new = render(renderer, launcher, chart=bumped_chart)
    assert_clean(old, new)
    plan = plan_upgrade(old, new)
    # The running training is untouched: same objects, identical specs.
    assert not plan.create and not plan.delete, (plan.names("create"), plan.names("delete"))
    old_work, new_work = workloads(old), workloads(new)
    assert old_work.keys() == new_work.keys()
    for k in old_work:
        assert old_work[k]["spec"] == new_work[k]["spec"], f"{k}: spec changed with the chart version"


@pytest.mark.parametrize("change", sorted(CHANGES))
@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_run_changes_replace_the_jobs(renderer, launcher, change):
    old = render(renderer, launcher)
    new = render(renderer, launcher, CHANGES[change])
    assert_clean(old, new)
    plan = plan_upgrade(old, new)
    old_work, new_work = workloads(old), workloads(new)
    # Every trainer workload and evaluator Job is replaced: the old ones are
    # deleted (their pods stop, the trainer saving a checkpoint), new ones
    # created; none is updated in place.
    assert {key(d) for d in plan.delete} >= old_work.keys()
    assert {key(d) for d in plan.create} >= new_work.keys()
    assert not old_work.keys() & new_work.keys()
    # Nothing else is created or deleted (the Service, PVC, TensorBoard stay).
    assert {key(d) for d in plan.create} == new_work.keys(), plan.names("create")
    assert {key(d) for d in plan.delete} == old_work.keys(), plan.names("delete")


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_jobs_deleted_by_their_ttl_are_created_again(renderer, launcher):
    """Helm creates an object of both manifests the cluster lacks: the Jobs a
    TTL deleted come back on `helm upgrade` (the trainer then finds its run
    complete and exits 0, LIFECYCLE.md item 4) and must pass admission."""
    docs = render(renderer, launcher)
    gone = workloads(docs).keys()
    live = {key(d) for d in manifest(docs)} - gone
    plan = plan_upgrade(docs, docs, live)
    assert {key(d) for d in plan.create} == gone
    assert not plan.delete
    assert not admit_all(plan.create)
    assert not upgrade_violations(docs, docs, live)
