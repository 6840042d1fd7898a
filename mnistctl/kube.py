"""The API layer: the handful of read-only Kubernetes calls mnistctl makes, and its credentials.

The only module that imports the `kubernetes` client. Credentials come from a
kubeconfig (--kubeconfig, --context; the context's namespace is the default)
or, inside a pod, from its service account (--in-cluster, chosen
automatically when KUBERNETES_SERVICE_HOST is set and a token is mounted).
The calls need, in the release's namespace only: get/list on pods, pods/log,
services and batch jobs, and list on jobsets.jobset.x-k8s.io and
tfjobs.kubeflow.org when those launchers are used (see the chart README).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from mnistctl.exit_codes import OpsError

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class KubeApi:
    """The handful of read-only calls the commands make (all in one namespace)."""

    def __init__(self, api_client=None):
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    def pods(self, namespace: str, selector: str) -> list:
        return self.core.list_namespaced_pod(namespace, label_selector=selector).items

    def jobs(self, namespace: str, selector: str) -> list:
        return self.batch.list_namespaced_job(namespace, label_selector=selector).items

    def services(self, namespace: str, selector: str) -> list:
        return self.core.list_namespaced_service(namespace, label_selector=selector).items

    def custom_objects(self, namespace: str, resource: tuple[str, str, str], selector: str) -> list[dict]:
        group, version, plural = resource
        try:
            return self.custom.list_namespaced_custom_object(
                group, version, namespace, plural, label_selector=selector).get("items", [])
        except ApiException as e:
            if e.status in (403, 404):  # CRD not installed, or not ours to list
                return []
            raise

    def log(self, namespace: str, pod: str, container: str | None, tail_lines: int) -> str | None:
        try:
            return self.core.read_namespaced_pod_log(pod, namespace, container=container,
                                                     tail_lines=tail_lines)
        except ApiException as e:
            if e.status in (400, 404):  # not started yet, or gone
                return None
            raise

    def stream_log(self, namespace: str, pod: str, container: str | None, *, follow: bool,
                   tail_lines: int | None) -> Iterator[str]:
        response = self.core.read_namespaced_pod_log(
            pod, namespace, container=container, follow=follow, tail_lines=tail_lines,
            _preload_content=False)
        try:
            buffer = b""
            for chunk in response.stream(4096):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    yield line.decode("utf-8", "replace")
            if buffer:
                yield buffer.decode("utf-8", "replace")
        finally:
            response.release_conn()

    def pod_container(self, namespace: str, pod) -> str | None:
        return pod.spec.containers[0].name if pod.spec and pod.spec.containers else None


def load_api(kubeconfig: str | None = None, context: str | None = None,
             in_cluster: bool | None = None) -> tuple[KubeApi, str]:
    """(API, default namespace) from the service account in a pod, else a kubeconfig."""
    if in_cluster is None:
        in_cluster = bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and \
            os.path.exists(os.path.join(SA_DIR, "token")) and not kubeconfig and not context
    try:
        if in_cluster:
            config.load_incluster_config()
            try:
                with open(os.path.join(SA_DIR, "namespace")) as f:
                    namespace = f.read().strip() or "default"
            except OSError:
                namespace = "default"
        else:
            config.load_kube_config(config_file=kubeconfig, context=context)
            contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
            chosen = next((c for c in contexts if c["name"] == context), active) if context else active
            namespace = ((chosen or {}).get("context") or {}).get("namespace") or "default"
    except (ConfigException, OSError) as e:
        where = "the pod's service account" if in_cluster else "the kubeconfig"
        raise OpsError(f"cannot load Kubernetes credentials from {where}: {e}") from None
    return KubeApi(), namespace


def describe_api_error(error: Exception) -> str | None:
    """The `error: ...` line for an API that answered with an error or cannot be
    reached; None for any other exception."""
    if isinstance(error, ApiException):
        return f"the Kubernetes API answered {error.status} {error.reason}: {(error.body or '')[:300]}"
    if "urllib3" in type(error).__module__ or isinstance(error, OSError):
        return f"cannot reach the Kubernetes API: {error}"
    return None
