"""Where this process sits in the training cluster, and the strategy for it.

All `TF_CONFIG` and strategy logic lives here. The cluster is resolved, in
order, from:

1. `TF_CONFIG` when set (Kubeflow TFJob, JobSet or by hand);
2. an Indexed Job's environment, as the Helm chart sets it:
   - `JOB_COMPLETION_INDEX`: this worker's index (set by Kubernetes);
   - `MNIST_NUM_WORKERS`: how many workers train together;
   - `MNIST_WORKER_HOSTNAME_PREFIX`: pod hostnames are `<prefix>-<index>`;
   - `MNIST_WORKER_SERVICE`: the headless Service (the pods' `subdomain`);
   - `MNIST_WORKER_PORT`: the gRPC port, default 2222;
   worker i is then `<prefix>-<i>.<service>:<port>`;
3. otherwise a single worker with no cluster at all.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Mapping

from model import log_lines
from model.errors import ConfigError
from model.signals import StartupGuard, release_stop_signals

log = logging.getLogger(__name__)

DEFAULT_WORKER_PORT = 2222
# No per-collective timeout by default: TensorFlow enforces one with a sleeping
# thread per collective op (measured: ~30,000 threads per worker at 120 s),
# while the coordination service already fails the group within ~15 s when a
# peer dies or freezes (it stops heartbeating).
DEFAULT_COLLECTIVE_TIMEOUT_SECS = 0.0
DEFAULT_STARTUP_TIMEOUT_SECS = 600.0

ENV_INDEX = "JOB_COMPLETION_INDEX"
ENV_NUM_WORKERS = "MNIST_NUM_WORKERS"
ENV_HOSTNAME_PREFIX = "MNIST_WORKER_HOSTNAME_PREFIX"
ENV_SERVICE = "MNIST_WORKER_SERVICE"
ENV_PORT = "MNIST_WORKER_PORT"


@dataclasses.dataclass(frozen=True)
class ClusterInfo:
    """This task's place in the cluster."""

    tf_config: dict | None  # None: a single worker without a cluster
    task_type: str
    task_index: int
    num_workers: int
    source: str  # where it came from, for the start-up log

    @property
    def is_chief(self) -> bool:
        if self.tf_config is None:
            return True
        if self.task_type == "chief":
            return True
        has_chief = bool(self.tf_config["cluster"].get("chief"))
        return self.task_type == "worker" and self.task_index == 0 and not has_chief

    def tasks(self) -> list[tuple[str, int, str]]:
        """Every task of the group that trains (the chief, then the workers) as (type, index,
        address), in TF_CONFIG's order; empty without a cluster."""
        jobs = (self.tf_config or {}).get("cluster", {})
        return [(task_type, index, address) for task_type in ("chief", "worker")
                for index, address in enumerate(jobs.get(task_type, []))]


def _parse_tf_config(raw: str) -> dict:
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"TF_CONFIG is not valid JSON ({e}): {raw[:200]!r}") from None
    if not isinstance(config, dict):
        raise ConfigError(f"TF_CONFIG must be a JSON object, got {type(config).__name__}")
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise ConfigError('TF_CONFIG needs a non-empty "cluster" object, e.g. '
                          '{"cluster": {"worker": ["host:2222"]}, "task": {"type": "worker", "index": 0}}')
    for job, addresses in cluster.items():
        if job not in ("chief", "worker"):
            raise ConfigError(f'TF_CONFIG cluster job {job!r} is not supported by '
                              'MultiWorkerMirroredStrategy; expected "chief" and/or "worker"')
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise ConfigError(f'TF_CONFIG cluster["{job}"] must be a list of "host:port" strings, '
                              f'got {addresses!r}')
        for address in addresses:
            host, _, port = address.rpartition(":")
            if not host or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536:
                raise ConfigError(f'TF_CONFIG cluster["{job}"] address {address!r} is not "host:port"')
    if len(cluster.get("chief", [])) > 1:
        raise ConfigError(f'TF_CONFIG may name at most one "chief", got {cluster["chief"]}')
    everyone = [a for addresses in cluster.values() for a in addresses]
    if len(set(everyone)) != len(everyone):
        raise ConfigError(f"TF_CONFIG lists an address twice: {everyone}")
    if not isinstance(task, dict):
        raise ConfigError('TF_CONFIG needs a "task" object with "type" and "index"')
    task_type, task_index = task.get("type"), task.get("index")
    if not isinstance(task_type, str) or task_type not in cluster:
        raise ConfigError(f'TF_CONFIG task type {task_type!r} is not a job of the cluster {sorted(cluster)}')
    if not isinstance(task_index, int) or isinstance(task_index, bool) \
            or not 0 <= task_index < len(cluster[task_type]):
        raise ConfigError(f'TF_CONFIG task index {task_index!r} is out of range for '
                          f'{len(cluster[task_type])} {task_type}(s)')
    return config


def _int_env(environ: Mapping[str, str], name: str, minimum: int) -> int:
    raw = environ.get(name, "")
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def worker_addresses(hostname_prefix: str, service: str, port: int, num_workers: int) -> list[str]:
    """The workers' `host:port` addresses, in index order: worker i is
    `<hostname_prefix>-<i>.<service>:<port>` (the one place this scheme is written)."""
    return [f"{hostname_prefix}-{i}.{service}:{port}" for i in range(num_workers)]


def _indexed_job_tf_config(environ: Mapping[str, str]) -> dict:
    missing = [n for n in (ENV_NUM_WORKERS, ENV_HOSTNAME_PREFIX, ENV_SERVICE) if not environ.get(n)]
    if missing:
        raise ConfigError(f"{ENV_INDEX} is set, so this looks like an Indexed Job, but "
                          f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set")
    num_workers = _int_env(environ, ENV_NUM_WORKERS, 1)
    index = _int_env(environ, ENV_INDEX, 0)
    if index >= num_workers:
        raise ConfigError(f"{ENV_INDEX}={index} is out of range for {ENV_NUM_WORKERS}={num_workers}")
    port = _int_env(environ, ENV_PORT, 1) if environ.get(ENV_PORT) else DEFAULT_WORKER_PORT
    if port > 65535:
        raise ConfigError(f"{ENV_PORT} must be a port number, got {port}")
    workers = worker_addresses(environ[ENV_HOSTNAME_PREFIX], environ[ENV_SERVICE], port, num_workers)
    return {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}


def resolve_cluster(environ: Mapping[str, str] | None = None) -> ClusterInfo:
    """Work out this task's cluster from the environment (see module docstring)."""
    environ = os.environ if environ is None else environ
    if environ.get("TF_CONFIG", "").strip():
        config, source = _parse_tf_config(environ["TF_CONFIG"]), "TF_CONFIG"
    elif environ.get(ENV_INDEX, "").strip():
        config, source = _indexed_job_tf_config(environ), "Indexed Job environment"
    else:
        return ClusterInfo(None, "worker", 0, 1, "single worker (no TF_CONFIG)")
    task = config["task"]
    num_workers = sum(len(v) for v in config["cluster"].values())
    return ClusterInfo(config, task["type"], task["index"], num_workers, source)


def create_strategy(cluster: ClusterInfo | None = None,
                    collective_timeout_secs: float = DEFAULT_COLLECTIVE_TIMEOUT_SECS,
                    startup_timeout_secs: float | None = DEFAULT_STARTUP_TIMEOUT_SECS,
                    guard: StartupGuard | None = None):
    """A MultiWorkerMirroredStrategy for `cluster` (resolved from the environment if None).

    For a multi-worker cluster, `guard` (model/signals.py) ends this worker if
    its peers have not all joined within `startup_timeout_secs`, or if SIGTERM
    or SIGINT arrives meanwhile; the CLI creates it before importing
    TensorFlow. Without one, a guard is created here and closed on return
    (then signals that arrive while TensorFlow's threads start may be missed).

    Must run before any other TensorFlow op in the process: collective ops are
    configured at context creation. RING all-reduce on CPU, NCCL when GPUs are
    visible; GPU memory grows on demand so an evaluator can share the node.
    """
    import tensorflow as tf

    cluster = cluster or resolve_cluster()
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    implementation = (tf.distribute.experimental.CommunicationImplementation.NCCL if gpus
                      else tf.distribute.experimental.CommunicationImplementation.RING)
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=implementation, timeout_seconds=collective_timeout_secs or None)
    if cluster.tf_config is None:
        resolver = None
        os.environ.pop("TF_CONFIG", None)
    else:
        # TFConfigClusterResolver reads the environment; the Indexed Job case
        # has no TF_CONFIG of its own, so write the one we built.
        os.environ["TF_CONFIG"] = json.dumps(cluster.tf_config)
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    # MultiWorkerMirroredStrategy waits for every worker forever: a worker that
    # is frozen or never scheduled would hang the group instead of failing it.
    own_guard = resolver is not None and guard is None
    if own_guard:
        guard = StartupGuard()
    try:
        if resolver is not None:
            # The peers' addresses: what a user checks first when the group never forms.
            peers = [address for _, _, address in cluster.tasks()]
            log.info("cluster | waiting for all %d workers to join (up to %s): %s", cluster.num_workers,
                     f"{startup_timeout_secs:g} s" if startup_timeout_secs else "no limit", ", ".join(peers))
            guard.joining(startup_timeout_secs)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(
            cluster_resolver=resolver, communication_options=options)
        if resolver is not None:
            guard.joined()
    finally:
        if own_guard:
            guard.close()
            release_stop_signals()
    log.info(log_lines.CLUSTER_FORMED_FORMAT, cluster.source, cluster.task_type, cluster.task_index,
             cluster.num_workers, "NCCL" if gpus else "RING", strategy.num_replicas_in_sync)
    return strategy
