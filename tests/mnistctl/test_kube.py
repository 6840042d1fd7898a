"""mnistctl/kube.py: credentials from a kubeconfig or a pod's service account, and an API that
cannot be reached (a loopback port nobody listens on; no API server runs here)."""

from __future__ import annotations

import pytest

from mnistctl import cli, kube
from mnistctl.exit_codes import OpsError
from scripts.ports import free_port


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:%d"}
users:
- name: u
  user: {token: not-a-real-token}
contexts:
- name: training
  context: {cluster: c, user: u, namespace: team-a}
- name: other
  context: {cluster: c, user: u}
current-context: training
"""


def test_kubeconfig_namespace_and_context(tmp_path):
    path = tmp_path / "config"
    path.write_text(KUBECONFIG % 1)
    assert kube.load_api(str(path))[1] == "team-a"
    assert kube.load_api(str(path), context="other")[1] == "default"
    with pytest.raises(OpsError, match="kubeconfig"):
        kube.load_api(str(path), context="missing")
    with pytest.raises(OpsError, match="service account"):
        kube.load_api(in_cluster=True)


def test_unreachable_api_is_a_clear_error(tmp_path, capsys):
    port = free_port()  # a loopback port nobody listens on
    path = tmp_path / "config"
    path.write_text(KUBECONFIG % port)
    code = cli.main(["status", "--kubeconfig", str(path)])
    assert code == 2 and "cannot reach the Kubernetes API" in capsys.readouterr().err
