"""--upgrade: the plan from one rendering to the next, as Helm and the API server apply it
(upgrade.py), the engine running only what the plan starts, and the CLI's refusals."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys

import pytest

from scripts.local_runner.runner import RunOptions
from scripts.local_runner.upgrade import existing_objects, plan_upgrade
from scripts.paths import REPO_ROOT
from tests.local_runner.fakes import ScriptedLauncher, job_doc, one, run


def pvc_doc(name, keep=True):
    annotations = {"helm.sh/resource-policy": "keep"} if keep else {}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "annotations": annotations}, "spec": {}}


def summary_of(*states):
    return {"workloads": [{"kind": k, "name": n, "status": s, "finished_wall": t} for k, n, s, t in states]}


def plan_between(old, new, summary=None, now=1000.0):
    live, gone = existing_objects(old, summary, now_wall=now)
    return plan_upgrade(old, new, live, gone)


def verbs(plan):
    return {a.ref: a.verb for a in plan.actions}


def test_upgrade_plan_deletes_creates_and_leaves_identical_objects_alone():
    old = [job_doc("train-aaa"), job_doc("eval-aaa"), pvc_doc("models"), pvc_doc("scratch", keep=False)]
    new = [job_doc("train-bbb", args=("--max-steps", "200")), job_doc("eval-aaa"), pvc_doc("models")]
    plan = plan_between(old, new, summary_of(("Job", "train-aaa", "Complete", 990.0),
                                             ("Job", "eval-aaa", "Complete", 995.0)))
    assert verbs(plan) == {"Job/train-bbb": "create", "Job/eval-aaa": "unchanged",
                           "PersistentVolumeClaim/models": "unchanged", "Job/train-aaa": "delete",
                           "PersistentVolumeClaim/scratch": "delete"}
    assert not plan.refusals
    # The unchanged, finished Job runs nothing; the new one runs.
    assert plan.finished_unchanged("Job", "eval-aaa").status == "Complete"
    assert plan.finished_unchanged("Job", "train-bbb") is None


def test_upgrade_plan_keeps_objects_with_the_keep_resource_policy():
    plan = plan_between([job_doc("t"), pvc_doc("models")], [job_doc("t")])
    assert verbs(plan) == {"Job/t": "unchanged", "PersistentVolumeClaim/models": "keep"}


@pytest.mark.parametrize("change, field", [
    (lambda s: s["template"]["spec"]["containers"][0]["args"].append("--more"), "spec.template"),
    (lambda s: s["template"]["metadata"]["labels"].update({"helm.sh/chart": "c-2"}), "spec.template"),
    (lambda s: s.update(podFailurePolicy={"rules": []}), "spec.podFailurePolicy"),
    (lambda s: s.update(backoffLimitPerIndex=3), "spec.backoffLimitPerIndex"),
    (lambda s: s.update(completions=2, parallelism=2), "spec.completions"),
    (lambda s: s.update(completionMode="NonIndexed"), "spec.completionMode"),
])
def test_upgrade_refuses_a_change_to_an_immutable_job_field(change, field):
    old = job_doc("t")
    new = copy.deepcopy(old)
    change(new["spec"])
    plan = plan_between([old], [new], summary_of(("Job", "t", "Complete", 999.0)))
    assert len(plan.refusals) == 1 and plan.refusals[0].startswith(f"Job/t: {field}"), plan.refusals
    assert "immutable" in plan.refusals[0]


def test_upgrade_allows_the_mutable_job_fields_and_metadata():
    old = job_doc("t", ttl=100, activeDeadlineSeconds=600)
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"helm.sh/chart": "c-2"}
    new["spec"].update(ttlSecondsAfterFinished=50, activeDeadlineSeconds=900, backoffLimit=4)
    plan = plan_between([old], [new], summary_of(("Job", "t", "Complete", 999.0)))
    assert not plan.refusals and verbs(plan) == {"Job/t": "update"}
    assert plan.finished_unchanged("Job", "t").status == "Complete"  # updated in place: still finished


def test_upgrade_refuses_immutable_jobset_and_tfjob_fields():
    jobset = {"kind": "JobSet", "metadata": {"name": "js"},
              "spec": {"replicatedJobs": [{"name": "w", "template": job_doc("x")}],
                       "failurePolicy": {"maxRestarts": 1}, "ttlSecondsAfterFinished": 10}}
    changed = copy.deepcopy(jobset)
    changed["spec"]["failurePolicy"]["maxRestarts"] = 2
    changed["spec"]["ttlSecondsAfterFinished"] = 20  # mutable
    assert [r.split(":")[1].strip() for r in plan_between([jobset], [changed]).refusals] == [
        "spec.failurePolicy"]
    tfjob = {"kind": "TFJob", "metadata": {"name": "tf"},
             "spec": {"runPolicy": {"managedBy": "kubeflow.org/training-operator"}, "tfReplicaSpecs": {}}}
    changed = copy.deepcopy(tfjob)
    changed["spec"]["tfReplicaSpecs"] = {"Worker": {"replicas": 2}}  # training-operator v1.9 allows it
    assert not plan_between([tfjob], [changed]).refusals
    changed["spec"]["runPolicy"]["managedBy"] = "kueue.x-k8s.io/multikueue"
    assert plan_between([tfjob], [changed]).refusals == [
        "TFJob/tf: spec.runPolicy.managedBy: field is immutable (the API server refuses this update)"]


def test_upgrade_recreates_a_finished_job_its_ttl_deleted():
    old = [job_doc("t", ttl=60), job_doc("e", ttl=60)]
    summary = summary_of(("Job", "t", "Complete", 900.0), ("Job", "e", "Complete", 950.0))
    plan = plan_between(old, old, summary, now=980.0)  # t finished 80 s ago, e 30 s ago
    assert verbs(plan) == {"Job/t": "create", "Job/e": "unchanged"}
    assert plan.action("Job", "t").why == "in both renderings, but no longer exists"
    assert plan.gone == ["Job/t: deleted by its ttlSecondsAfterFinished (60 s) 80 s after it finished "
                         "(Complete)"]
    # A stopped (not finished) Job has no TTL running: it exists, unfinished, and runs on.
    plan = plan_between(old, old, summary_of(("Job", "t", "Stopped", None)), now=10**9)
    assert verbs(plan) == {"Job/t": "unchanged", "Job/e": "unchanged"}
    assert plan.finished_unchanged("Job", "t") is None


def test_upgrade_without_a_previous_summary_treats_every_workload_as_unfinished():
    plan = plan_between([job_doc("t", ttl=0)], [job_doc("t", ttl=0)], summary=None)
    assert verbs(plan) == {"Job/t": "unchanged"} and plan.finished_unchanged("Job", "t") is None


def test_runner_upgrade_runs_only_what_the_plan_starts(tmp_path, rendered):
    """The Runner with a plan (ScriptedLauncher, no processes): finished Jobs the upgrade leaves alone
    start no pod; a new one does; the plan lands in summary.json."""
    rendering = rendered["job"]
    options = RunOptions(run_dir=tmp_path / "run", tick=0.05, shutdown_grace=2, progress_every=0)
    assert run(rendering, ScriptedLauncher(), options) == 0
    previous = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert all(w["finished_wall"] for w in previous["workloads"] if w["kind"] == "Job")

    live, gone = existing_objects(rendering.docs, previous)
    launcher, out = ScriptedLauncher(), io.StringIO()
    plan = plan_upgrade(rendering.docs, rendering.docs, live, gone)
    code = run(rendering, launcher, options, out, upgrade=plan)
    assert code == 0, out.getvalue()
    assert launcher.started == [] and launcher.setups == [[]], "an unchanged upgrade started pods"
    assert "summary | upgrade: " in out.getvalue() and "unchanged Job/mnist-train-trainer" in out.getvalue()
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert {a["verb"] for a in summary["upgrade"]["actions"]} == {"unchanged"}
    jobs = {w["name"]: w for w in summary["workloads"] if w["kind"] == "Job"}
    assert all(w["status"] == "Complete" for w in jobs.values())
    assert (tmp_path / "run" / "rendered.previous.yaml").read_text() == rendering.text

    # Both Jobs deleted by their TTL (finished long ago): re-created, so they run again.
    for w in previous["workloads"]:
        w["finished_wall"] = w["finished_wall"] and w["finished_wall"] - 10**6
    live, gone = existing_objects(rendering.docs, previous)
    evaluator = one(rendering, "Job", "evaluator")["metadata"]["name"]
    trainer = one(rendering, "Job", "trainer")["metadata"]["name"]
    assert sorted(line.split(":")[0] for line in gone) == sorted([f"Job/{trainer}", f"Job/{evaluator}"])
    launcher = ScriptedLauncher()
    code = run(rendering, launcher, options, upgrade=plan_upgrade(rendering.docs, rendering.docs, live, gone))
    assert code == 0 and {p.component for p in launcher.started} == {"trainer", "evaluator", "tensorboard"}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "scripts.local_runner", "--progress-every", "0", *args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def test_cli_upgrade_refusals_exit_2_and_change_nothing(tmp_path, runner_ready):
    import yaml
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    old = yaml.safe_dump_all([job_doc("t", args=("--max-steps", "100"))])
    (run_dir / "rendered.yaml").write_text(old)
    (run_dir / "summary.json").write_text(json.dumps(summary_of(("Job", "t", "Complete", 1.0))))
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump_all([job_doc("t", args=("--max-steps", "200"))]))
    result = run_cli("--upgrade", "--run-dir", str(run_dir), "--manifest", str(new))
    assert result.returncode == 2, result.stdout + result.stderr
    assert ("--upgrade refused, nothing was changed: Job/t: spec.template: field is immutable"
            in result.stdout), result.stdout
    assert (run_dir / "rendered.yaml").read_text() == old and not (run_dir / "logs").exists()

    result = run_cli("--upgrade", "--run-dir", str(tmp_path / "empty"), "--manifest", str(new))
    assert result.returncode == 2 and "holds no previous run (no rendered.yaml)" in result.stdout
    result = run_cli("--upgrade", "--fresh", "--run-dir", str(run_dir), "--manifest", str(new))
    assert result.returncode == 2 and "--upgrade applies a rendering to the previous run" in result.stdout
