"""scripts/local_runner/cloud_storage.py's decisions and the runner's `helm test` hooks, without
pods: which remote URLs are refused and why, which buckets are served, TensorBoard's loader,
and when the hook Job starts (after the release's Jobs, not if one failed). The gcs scenario
itself runs end to end in tests/e2e/test_local_runner_gcs.py."""

from __future__ import annotations

import io
import json
import re

import pytest

from scripts.local_runner import cloud_storage
from scripts.local_runner.render import render
from scripts.local_runner.runner import RunOptions, is_test_hook
from tests.local_runner.fakes import ScriptedLauncher, run


def test_gs_urls_without_the_flag_are_refused_naming_the_value_and_the_flag():
    message = cloud_storage.refusal(["gs://b/x/run", "gs://b/x/run/eval"], local_gcs=False)
    for part in ("gs://b/x/run, gs://b/x/run/eval", "storage.type=gcs", "--local-gcs",
                 "reach no network beyond their own", "storage.type=pvc"):
        assert part in message, message
    assert cloud_storage.refusal(["gs://b/x/run"], local_gcs=True) is None
    assert cloud_storage.refusal([], local_gcs=False) is None


def test_other_remote_stores_are_refused_even_with_the_flag():
    message = cloud_storage.refusal(["gs://b/x", "s3://b/x"], local_gcs=True)
    assert "s3://b/x" in message and "cannot serve" in message, message


def test_the_buckets_served_are_those_the_urls_name():
    assert cloud_storage.buckets(["gs://b-1/x/y", "gs://b-1", "gs://other.bucket/z", "s3://no/x"]) == [
        "b-1", "other.bucket"]


def test_tensorboard_reads_gs_through_tensorflow_unless_told_otherwise():
    assert cloud_storage.tensorboard_args(["tensorboard"], ["--logdir", "gs://b/x"]) == [
        "--logdir", "gs://b/x", "--load_fast=false"]
    assert cloud_storage.tensorboard_args(["tensorboard"], ["--load_fast=true"]) == ["--load_fast=true"]
    assert cloud_storage.tensorboard_args(["python", "-m", "model"], ["evaluate"]) == ["evaluate"]


def test_a_local_copy_is_found_only_where_the_bucket_was_copied(tmp_path):
    (tmp_path / "bkt" / "x" / "run").mkdir(parents=True)
    assert cloud_storage.local_copy("gs://bkt/x/run", tmp_path) == tmp_path / "bkt" / "x" / "run"
    assert cloud_storage.local_copy("gs://bkt/x/other", tmp_path) is None
    assert cloud_storage.local_copy("/models/x", tmp_path) is None


@pytest.fixture(scope="module")
def with_hook(rendered, tmp_path_factory):  # `rendered` first: it skips without helm
    return render(set_values=["trainer.launcher=job"], skip_tests=False,
                  overlay_path=tmp_path_factory.mktemp("hook") / "values.yaml")


class HookLauncher(ScriptedLauncher):
    """ScriptedLauncher whose `helm test` pod exits 0 at once."""

    def __init__(self, trainer_code=0):
        super().__init__(trainer_code)
        self.codes["test"] = (0, 0.1)


@pytest.mark.parametrize("trainer_code", [0, 2])
def test_the_helm_test_hook_runs_after_the_release_and_not_after_a_failure(tmp_path, with_hook, trainer_code):
    hooks = [d["metadata"]["name"] for d in with_hook.docs if is_test_hook(d)]
    assert hooks == ["mnist-train-test"]
    launcher, out = HookLauncher(trainer_code), io.StringIO()
    code = run(with_hook, launcher, RunOptions(run_dir=tmp_path / "run", tick=0.05, shutdown_grace=2,
                                               helm_test=True), out)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    status = {w["component"]: w["status"] for w in summary["workloads"]}
    started = [p.component for p in launcher.started]
    if trainer_code == 0:
        assert code == 0 and status["test"] == "Complete", out.getvalue()
        assert started.index("test") > started.index("evaluator"), started
        assert "starting the `helm test` hook" in out.getvalue()
    else:
        assert code == 1 and status["test"] == "Stopped" and "test" not in started, out.getvalue()
        # (on a claim the hook reads what the trainer writes, so the consumers rule stops it first)
        assert re.search(r"Job/mnist-train-test: (stopping it|the `helm test` hook is not run)",
                         out.getvalue()), out.getvalue()


def test_without_helm_test_a_rendered_hook_is_listed_as_not_run(tmp_path, with_hook):
    launcher = HookLauncher()
    assert run(with_hook, launcher, RunOptions(run_dir=tmp_path / "run", tick=0.05, shutdown_grace=2)) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "test" not in [p.component for p in launcher.started]
    assert any("mnist-train-test" in n and "--helm-test" in n for n in summary["not_run"]), summary["not_run"]
