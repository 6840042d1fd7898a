"""Tests of model/cluster.py's resolve_cluster (pure: an injected environ, no TensorFlow).

create_strategy is not called here: it configures the process-wide TF
context. The multi-process tests exercise it for real.
"""

from __future__ import annotations

import json

import pytest

from model.cluster import DEFAULT_WORKER_PORT, resolve_cluster, worker_addresses
from model.errors import ConfigError


def tf_config(cluster, task=None, **extra) -> dict[str, str]:
    config = {"cluster": cluster, **extra}
    if task is not None:
        config["task"] = task
    return {"TF_CONFIG": json.dumps(config)}


def indexed_job(index="0", workers="3", prefix="mnist-worker", service="mnist-workers",
                port=None) -> dict[str, str]:
    env = {"JOB_COMPLETION_INDEX": index, "MNIST_NUM_WORKERS": workers,
           "MNIST_WORKER_HOSTNAME_PREFIX": prefix, "MNIST_WORKER_SERVICE": service}
    if port is not None:
        env["MNIST_WORKER_PORT"] = port
    return env


# --------------------------------------------------------------------------
# No cluster


@pytest.mark.parametrize("environ", [{}, {"TF_CONFIG": ""}, {"TF_CONFIG": "  \n"},
                                     {"JOB_COMPLETION_INDEX": ""}, {"PATH": "/bin"}])
def test_no_cluster_is_a_single_chief_worker(environ):
    info = resolve_cluster(environ)
    assert info.tf_config is None
    assert (info.task_type, info.task_index, info.num_workers) == ("worker", 0, 1)
    assert info.is_chief
    assert "single worker" in info.source


def test_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}))
    info = resolve_cluster()
    assert (info.task_index, info.num_workers, info.source) == (1, 2, "TF_CONFIG")
    monkeypatch.delenv("TF_CONFIG")
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    assert resolve_cluster().tf_config is None


# --------------------------------------------------------------------------
# Valid TF_CONFIG


@pytest.mark.parametrize("index,chief", [(0, True), (1, False), (2, False)])
def test_worker_list(index, chief):
    cluster = {"worker": ["host-0:2222", "host-1:2222", "10.0.0.3:12345"]}
    info = resolve_cluster(tf_config(cluster, {"type": "worker", "index": index}))
    assert info.tf_config == {"cluster": cluster, "task": {"type": "worker", "index": index}}
    assert (info.task_type, info.task_index, info.num_workers) == ("worker", index, 3)
    assert info.is_chief is chief
    assert info.source == "TF_CONFIG"


@pytest.mark.parametrize("task,chief", [
    ({"type": "chief", "index": 0}, True),
    ({"type": "worker", "index": 0}, False),  # worker 0 is not chief when there is a chief
    ({"type": "worker", "index": 1}, False),
])
def test_chief_and_workers(task, chief):
    cluster = {"chief": ["chief-0:2222"], "worker": ["w-0:2222", "w-1:2222"]}
    info = resolve_cluster(tf_config(cluster, task))
    assert info.num_workers == 3  # the chief trains too
    assert (info.task_type, info.task_index) == (task["type"], task["index"])
    assert info.is_chief is chief


def test_empty_chief_list_leaves_worker_0_chief():
    info = resolve_cluster(tf_config({"chief": [], "worker": ["a:1"]}, {"type": "worker", "index": 0}))
    assert info.is_chief and info.num_workers == 1


def test_extra_keys_are_kept():
    env = tf_config({"worker": ["a:1"]}, {"type": "worker", "index": 0}, environment="cloud")
    assert resolve_cluster(env).tf_config["environment"] == "cloud"


def test_ports_at_the_limits_are_valid():
    info = resolve_cluster(tf_config({"worker": ["a:1", "b:65535", "[::1]:2222"]},
                                     {"type": "worker", "index": 2}))
    assert info.num_workers == 3


# --------------------------------------------------------------------------
# Malformed TF_CONFIG


W0 = {"type": "worker", "index": 0}


def raw(cluster, task=W0) -> str:
    return json.dumps({"cluster": cluster, "task": task})


MALFORMED = {
    "invalid JSON": ('{"cluster": ', r"not valid JSON"),
    "not an object (list)": ('["worker"]', r"JSON object.*list"),
    "not an object (string)": ('"worker"', r"JSON object.*str"),
    "missing cluster": (json.dumps({"task": W0}), r'"cluster"'),
    "empty cluster": (raw({}), r'"cluster"'),
    "cluster not an object": (raw(["a:1"]), r'"cluster"'),
    "ps job": (raw({"worker": ["a:1"], "ps": ["p:1"]}), r"'ps' is not supported"),
    "addresses not a list": (raw({"worker": "a:1"}), r'cluster\["worker"\] must be a list'),
    "address not a string": (raw({"worker": ["a:1", 2222]}), r'cluster\["worker"\] must be a list'),
    "host without port": (raw({"worker": ["host"]}), r"'host' is not \"host:port\""),
    "port without host": (raw({"worker": [":2222"]}), r"':2222' is not \"host:port\""),
    "empty port": (raw({"worker": ["host:"]}), r"'host:' is not \"host:port\""),
    "port 0": (raw({"worker": ["host:0"]}), r"'host:0' is not \"host:port\""),
    "port 65536": (raw({"worker": ["host:65536"]}), r"'host:65536' is not"),
    "negative port": (raw({"worker": ["host:-1"]}), r"'host:-1' is not"),
    "bad chief address": (raw({"chief": ["c"], "worker": ["a:1"]}), r'cluster\["chief"\] address'),
    "missing task": (json.dumps({"cluster": {"worker": ["a:1"]}}), r'"task" object'),
    "task not an object": (raw({"worker": ["a:1"]}, "worker"), r'"task" object'),
    "task type not in cluster": (raw({"worker": ["a:1"]}, {"type": "chief", "index": 0}),
                                 r"task type 'chief' is not a job of the cluster \['worker'\]"),
    "missing task type": (raw({"worker": ["a:1"]}, {"index": 0}), r"task type None"),
    "index out of range": (raw({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": 2}),
                           r"task index 2 is out of range for 2 worker"),
    "negative index": (raw({"worker": ["a:1"]}, {"type": "worker", "index": -1}), r"task index -1"),
    "missing index": (raw({"worker": ["a:1"]}, {"type": "worker"}), r"task index None"),
    "string index": (raw({"worker": ["a:1"]}, {"type": "worker", "index": "0"}), r"task index '0'"),
    "float index": (raw({"worker": ["a:1"]}, {"type": "worker", "index": 0.0}), r"task index 0.0"),
    "bool index": (raw({"worker": ["a:1", "b:1"]}, {"type": "worker", "index": True}),
                   r"task index True"),
}


@pytest.mark.parametrize("config,pattern", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_tf_config_raises_config_error(config, pattern):
    with pytest.raises(ConfigError, match=pattern) as excinfo:
        resolve_cluster({"TF_CONFIG": config})
    assert "TF_CONFIG" in str(excinfo.value)


def test_malformed_tf_config_wins_over_a_valid_indexed_job():
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        resolve_cluster({"TF_CONFIG": "{", **indexed_job()})


@pytest.mark.parametrize("task_type", [["worker"], {"worker": 0}])
def test_unhashable_task_type_raises_config_error(task_type):
    with pytest.raises(ConfigError, match="task type"):
        resolve_cluster(tf_config({"worker": ["a:1"]}, {"type": task_type, "index": 0}))


def test_superscript_port_raises_config_error():
    with pytest.raises(ConfigError, match="host:port"):
        resolve_cluster(tf_config({"worker": ["a:²"]}, {"type": "worker", "index": 0}))


def test_more_than_one_chief_raises_config_error():
    with pytest.raises(ConfigError, match="chief"):
        resolve_cluster(tf_config({"chief": ["c0:1", "c1:1"], "worker": ["w:1"]},
                                  {"type": "worker", "index": 0}))


# --------------------------------------------------------------------------
# Indexed Job environment


def test_indexed_job_builds_the_worker_addresses():
    info = resolve_cluster(indexed_job(index="2", workers="4", prefix="mnist-train-worker",
                                       service="mnist-train-workers"))
    assert info.tf_config == {
        "cluster": {"worker": [f"mnist-train-worker-{i}.mnist-train-workers:2222" for i in range(4)]},
        "task": {"type": "worker", "index": 2}}
    assert (info.task_type, info.task_index, info.num_workers) == ("worker", 2, 4)
    assert not info.is_chief
    assert info.source == "Indexed Job environment"
    assert DEFAULT_WORKER_PORT == 2222


def test_worker_addresses_scheme():
    assert worker_addresses("mnist-train-trainer-3f9a2c", "mnist-train-workers", 2222, 2) == [
        "mnist-train-trainer-3f9a2c-0.mnist-train-workers:2222",
        "mnist-train-trainer-3f9a2c-1.mnist-train-workers:2222"]
    assert worker_addresses("p", "s", 1, 0) == []


def test_indexed_job_index_0_is_chief_and_port_is_configurable():
    info = resolve_cluster(indexed_job(index="0", workers="2", prefix="p", service="s", port="3333"))
    assert info.tf_config["cluster"]["worker"] == ["p-0.s:3333", "p-1.s:3333"]
    assert info.is_chief and info.task_index == 0 and info.num_workers == 2


def test_indexed_job_single_worker():
    info = resolve_cluster(indexed_job(index="0", workers="1", port="65535"))
    assert info.tf_config["cluster"]["worker"] == ["mnist-worker-0.mnist-workers:65535"]
    assert info.is_chief and info.num_workers == 1


def test_indexed_job_empty_port_uses_the_default():
    info = resolve_cluster(indexed_job(port=""))
    assert all(a.endswith(":2222") for a in info.tf_config["cluster"]["worker"])


def test_indexed_job_result_is_a_valid_tf_config():
    # What create_strategy writes to TF_CONFIG must itself parse.
    info = resolve_cluster(indexed_job(index="1", workers="3", port="4000"))
    again = resolve_cluster({"TF_CONFIG": json.dumps(info.tf_config)})
    assert again.tf_config == info.tf_config and again.is_chief == info.is_chief


def test_tf_config_wins_over_the_indexed_job():
    env = {**indexed_job(index="1", workers="3"),
           **tf_config({"worker": ["x:1", "y:1"]}, {"type": "worker", "index": 0})}
    info = resolve_cluster(env)
    assert info.source == "TF_CONFIG"
    assert info.tf_config["cluster"]["worker"] == ["x:1", "y:1"]
    assert (info.task_index, info.num_workers, info.is_chief) == (0, 2, True)


@pytest.mark.parametrize("missing", ["MNIST_NUM_WORKERS", "MNIST_WORKER_HOSTNAME_PREFIX",
                                     "MNIST_WORKER_SERVICE"])
def test_indexed_job_missing_variable(missing):
    env = indexed_job()
    del env[missing]
    with pytest.raises(ConfigError, match=missing) as excinfo:
        resolve_cluster(env)
    assert "JOB_COMPLETION_INDEX" in str(excinfo.value)


def test_indexed_job_empty_variable_counts_as_missing():
    with pytest.raises(ConfigError, match="MNIST_WORKER_SERVICE"):
        resolve_cluster(indexed_job(service=""))


def test_indexed_job_all_missing_named():
    with pytest.raises(ConfigError) as excinfo:
        resolve_cluster({"JOB_COMPLETION_INDEX": "0"})
    for name in ("MNIST_NUM_WORKERS", "MNIST_WORKER_HOSTNAME_PREFIX", "MNIST_WORKER_SERVICE"):
        assert name in str(excinfo.value)


@pytest.mark.parametrize("overrides,variable", [
    ({"workers": "three"}, "MNIST_NUM_WORKERS"),
    ({"workers": "2.0"}, "MNIST_NUM_WORKERS"),
    ({"workers": "0"}, "MNIST_NUM_WORKERS"),
    ({"workers": "-1"}, "MNIST_NUM_WORKERS"),
    ({"index": "x"}, "JOB_COMPLETION_INDEX"),
    ({"index": "-1"}, "JOB_COMPLETION_INDEX"),
    ({"index": "3", "workers": "3"}, "JOB_COMPLETION_INDEX"),
    ({"index": "7", "workers": "3"}, "JOB_COMPLETION_INDEX"),
    ({"port": "http"}, "MNIST_WORKER_PORT"),
    ({"port": "0"}, "MNIST_WORKER_PORT"),
    ({"port": "-5"}, "MNIST_WORKER_PORT"),
    ({"port": "65536"}, "MNIST_WORKER_PORT"),
])
def test_indexed_job_bad_values(overrides, variable):
    with pytest.raises(ConfigError, match=variable):
        resolve_cluster(indexed_job(**overrides))


def test_indexed_job_index_out_of_range_names_both_variables():
    with pytest.raises(ConfigError) as excinfo:
        resolve_cluster(indexed_job(index="3", workers="3"))
    assert "JOB_COMPLETION_INDEX=3" in str(excinfo.value)
    assert "MNIST_NUM_WORKERS=3" in str(excinfo.value)
