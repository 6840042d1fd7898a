"""A NodePort or LoadBalancer TensorBoard is not silently unreachable.

Such a Service receives traffic from outside the cluster (the client's
address, or a node's with externalTrafficPolicy Cluster); with NetworkPolicies
on, TensorBoard's policy admits only the peers it lists, so the chart refuses
to render unless networkPolicy.tensorboard.from holds an ipBlock peer, and
says what to set.
"""

from __future__ import annotations

import pytest

from .conftest import CHART_DIR, CI_DIR


def template(renderer, *set_values: str):
    args = ["template", "t", str(CHART_DIR), "-f", str(CI_DIR / "default-values.yaml")]
    for s in set_values:
        args += ["--set", s]
    return renderer.run(*args)


@pytest.mark.parametrize("service_type", ["LoadBalancer", "NodePort"])
@pytest.mark.parametrize("peers", [
    [],
    # An ingress controller's pods: still no outside address.
    ["networkPolicy.tensorboard.from[0].namespaceSelector.matchLabels.team=ingress"],
])
def test_exposed_without_an_outside_peer_is_refused(renderer, service_type, peers):
    result = template(renderer, f"tensorboard.service.type={service_type}", *peers)
    assert result.returncode != 0
    for words in (f"tensorboard.service.type={service_type}", "unreachable",
                  "networkPolicy.tensorboard.from[0].ipBlock.cidr=", "networkPolicy.enabled=false"):
        assert words in result.stderr, result.stderr


@pytest.mark.parametrize("service_type", ["LoadBalancer", "NodePort"])
def test_exposed_with_an_ip_block_admits_it(renderer, service_type):
    rendering = renderer.render(values_files=[CI_DIR / "default-values.yaml"], set_values=[
        f"tensorboard.service.type={service_type}",
        "networkPolicy.tensorboard.from[0].ipBlock.cidr=203.0.113.0/24"])
    service = rendering.one("Service", "mnist-train-tensorboard")
    assert service["spec"]["type"] == service_type
    policy = rendering.one("NetworkPolicy", "mnist-train-tensorboard")
    (rule,) = policy["spec"]["ingress"]
    assert {"ipBlock": {"cidr": "203.0.113.0/24"}} in rule["from"]
    assert {"protocol": "TCP", "port": 6006} in rule["ports"]


@pytest.mark.parametrize("settings", [
    ["tensorboard.service.type=LoadBalancer", "networkPolicy.enabled=false"],
    ["tensorboard.service.type=NodePort", "tensorboard.enabled=false"],
    ["tensorboard.service.type=ClusterIP"],
])
def test_nothing_to_admit(renderer, settings):
    result = template(renderer, *settings)
    assert result.returncode == 0, result.stderr
