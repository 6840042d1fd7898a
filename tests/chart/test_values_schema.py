"""Bad values make `helm template` fail with a message that names the key."""

from __future__ import annotations

import pytest

from .conftest import CHART_DIR, CI_DIR

GOOD = ["--set", "image.repository=ghcr.io/example/mnist-train"]

BAD_VALUES = [
    # (--set arguments, key path the message must name, words it must contain)
    (["trainer.workers=0"], "/trainer/workers", "minimum"),
    (["trainer.workers=-3"], "/trainer/workers", "minimum"),
    (["training.model=resnet50"], "/training/model", "mlp"),
    (["trainer.launcher=mpijob"], "/trainer/launcher", "job"),
    (["trainer.gpusPerWorker=-1"], "/trainer/gpusPerWorker", "minimum"),
    (["storage.type=s3"], "/storage/type", "pvc"),
    (["storage.type=gcs"], "/storage/gcs/uri", "gs://"),
    (["storage.type=gcs", "storage.gcs.uri=s3://bucket/x"], "/storage/gcs/uri", "gs://"),
    (["image.repository="], "/image/repository", "minLength"),
    (["image.tag=latest"], "/image/tag", "latest"),
    (["image.digest=sha256:abc"], "/image/digest", "pattern"),
    (["trainer.terminationGracePeriodSeconds=10"], "/trainer/terminationGracePeriodSeconds", "minimum"),
    (["training.batchSize=0"], "/training/batchSize", "minimum"),
    (["training.allReduceDtype=float16"], "/training/allReduceDtype", "bfloat16"),
    (["training.gradientExchange=ring"], "/training/gradientExchange", "factors"),
    (["training.computeDtype=float16"], "/training/computeDtype", "bfloat16"),
    (["tensorboard.service.type=ExternalName"], "/tensorboard/service/type", "ClusterIP"),
    (["trainer.tfjob.restartPolicy=Always"], "/trainer/tfjob/restartPolicy", "OnFailure"),
    (["trainer.worker=3"], "/trainer", "worker"),  # a typo of trainer.workers
    (["storage.modelDirName=../escape"], "/storage/modelDirName", "pattern"),
]


@pytest.mark.parametrize("set_values,key,words", BAD_VALUES,
                         ids=[",".join(b[0]) for b in BAD_VALUES])
def test_bad_value_names_the_key(renderer, set_values, key, words):
    args = ["template", "t", str(CHART_DIR), *GOOD]
    for s in set_values:
        args += ["--set", s]
    result = renderer.run(*args)
    assert result.returncode != 0, f"{set_values} was accepted"
    assert f"'{key}'" in result.stderr, result.stderr
    assert words in result.stderr, result.stderr
    assert "panic" not in result.stderr


def test_missing_image_repository(renderer):
    """Without --set image.repository the chart refuses to render."""
    result = renderer.run("template", "t", str(CHART_DIR))
    assert result.returncode != 0
    assert "/image/repository" in result.stderr


def test_bad_values_file(renderer, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("image:\n  repository: x/y\ntrainer:\n  workers: two\n")
    result = renderer.run("template", "t", str(CHART_DIR), "-f", str(bad))
    assert result.returncode != 0 and "'/trainer/workers'" in result.stderr


def test_ci_scenarios_pass_the_schema(scenarios):
    assert set(scenarios) >= {p.name[:-12] for p in CI_DIR.glob("*-values.yaml")}


def test_release_name_with_a_dot_is_refused(renderer):
    result = renderer.run("template", "exp.1", str(CHART_DIR), *GOOD)
    assert result.returncode != 0 and "must not contain '.'" in result.stderr
