"""User label maps cannot break the selectors: the headless Service, the
NetworkPolicies and TensorBoard's Deployment select pods by the chart's
selector labels; a user map setting one of them is refused by name."""

from __future__ import annotations

import pytest
import yaml

from .conftest import CHART_DIR, CI_DIR
from .manifests import all_pods

DEFAULTS = [CI_DIR / "default-values.yaml"]
USER_LABEL_MAPS = ["commonLabels", "trainer.podLabels", "evaluator.podLabels", "tensorboard.podLabels"]
RESERVED = ["app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
            "app.kubernetes.io/managed-by"]


def escaped(label: str) -> str:
    return label.replace(".", "\\.")


@pytest.mark.parametrize("label", RESERVED)
@pytest.mark.parametrize("key", USER_LABEL_MAPS)
def test_a_user_label_map_cannot_set_a_selector_label(renderer, key, label):
    result = renderer.run("template", "r", str(CHART_DIR), "-f", str(DEFAULTS[0]),
                          "--set", f"{key}.{escaped(label)}=other")
    assert result.returncode != 0, f"{key} may set {label}"
    assert f'{key} must not set the label "{label}"' in result.stderr, result.stderr


def test_other_user_labels_reach_every_pod_once(renderer):
    rendering = renderer.render(values_files=DEFAULTS, set_values=[
        "commonLabels.team=vision", f"commonLabels.{escaped('app.kubernetes.io/part-of')}=platform",
        "trainer.podLabels.role=worker"])
    for pod in all_pods(rendering.docs):
        assert pod.labels["team"] == "vision" and pod.labels["app.kubernetes.io/part-of"] == "platform"
        assert pod.labels["app.kubernetes.io/instance"] == "mnist-train"
        assert ("role" in pod.labels) == (pod.component == "trainer")
    # No duplicate keys in the rendered YAML (the last one would silently win).
    list(yaml.load_all(rendering.text, Loader=UniqueKeyLoader))


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses a mapping with a repeated key."""

    def construct_mapping(self, node, deep=False):
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        repeated = {k for k in keys if keys.count(k) > 1}
        if repeated:
            raise yaml.constructor.ConstructorError(None, None, f"repeated keys {repeated}", node.start_mark)
        return super().construct_mapping(node, deep=deep)
