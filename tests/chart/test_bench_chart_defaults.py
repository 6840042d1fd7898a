"""bench/chart_defaults.py: the benches that start trainers by hand take the chart's default
training flags from its rendering, so a changed default in values.yaml reaches them."""

from __future__ import annotations

import yaml

from bench import chart_defaults
from scripts.paths import REPO_ROOT


def test_the_benches_train_with_the_charts_default_flags(helm, monkeypatch):
    monkeypatch.setenv("HELM", helm)
    chart_defaults.trainer_args.cache_clear()
    args = chart_defaults.trainer_args()
    values = yaml.safe_load((REPO_ROOT / "charts/mnist-train/values.yaml").read_text())["training"]
    assert chart_defaults.flag_value("--save-checkpoints-steps") == str(values["saveCheckpointsSteps"])
    assert chart_defaults.flag_value("--compute-dtype") == values["computeDtype"]
    assert not set(chart_defaults.HARNESS_FLAGS) & set(args), args  # the harness sets those itself
    assert "train" not in args
