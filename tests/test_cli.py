"""`python -m model ...` as a user runs it: flags, environment, exit codes, files written.

Every command is a real subprocess. The ones that import TensorFlow are
started together by the `runs` fixture so their start-up overlaps.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model import log_lines
from scripts.paths import MNIST_DIR, REPO_ROOT
from tests.requirements import unavailable

PY = sys.executable
# Variables the CLI reads; tests start from an environment without any of them.
CLEARED = ("TF_CONFIG", "JOB_COMPLETION_INDEX", "MNIST_NUM_WORKERS", "MNIST_WORKER_HOSTNAME_PREFIX",
           "MNIST_WORKER_SERVICE", "MNIST_WORKER_PORT", "MNIST_MODEL", "MNIST_DATA_DIR", "TF_LOGDIR",
           "TF_MAX_STEPS", "TF_SAVE_CHECKPOINTS_SECS", "TF_SAVE_SUMMARIES_STEPS")
TIMEOUT = 180
TRAIN_ARGS = ["train", "--model", "mlp", "--max-steps", "20", "--save-checkpoints-steps", "10"]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@dataclasses.dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return (f"python -m model {' '.join(self.args)} -> {self.returncode}\n"
                f"--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}")


class Command:
    """A started `python -m model` process; output goes to files so pipes never fill."""

    def __init__(self, args: list[str], log_dir: Path, name: str, env: dict[str, str],
                 prefix: tuple[str, ...] = ()):
        self.args = args
        self.out, self.err = log_dir / f"{name}.out", log_dir / f"{name}.err"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.process = subprocess.Popen([*prefix, PY, "-m", "model", *args], cwd=REPO_ROOT, env=env,
                                            stdin=subprocess.DEVNULL, stdout=out, stderr=err)

    def result(self, timeout: float = TIMEOUT) -> Result:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"python -m model {' '.join(self.args)} did not finish in {timeout} s:\n"
                        f"{self.out.read_text()}\n{self.err.read_text()}")
        return Result(self.args, code, self.out.read_text(), self.err.read_text())

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run(args: list[str], tmp_path: Path, timeout: float = 60, **env: str) -> Result:
    return Command(args, tmp_path, "cmd", cli_env(**env)).result(timeout)


def checkpoint_steps(model_dir: Path) -> list[int]:
    return sorted(int(m.group(1)) for p in model_dir.glob("ckpt-*.index")
                  if (m := re.fullmatch(r"ckpt-(\d+)\.index", p.name)))


def config_line(result: Result) -> str:
    match = log_lines.CONFIG.search(result.stdout)
    assert match, str(result)
    return match["settings"]


def assert_clean_error(result: Result, *needles: str) -> str:
    """Exit 2 with one `error:` line on stderr naming `needles`, and no traceback."""
    assert result.returncode == 2, str(result)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, str(result)
    for needle in needles:
        assert needle in errors[0], str(result)
    assert "Traceback" not in result.output, str(result)
    return errors[0]


# --------------------------------------------------------------------------
# The TensorFlow-importing commands, started in parallel


# The second run on the finished directory takes everything from the environment.
RERUN_ENV = dict(MNIST_MODEL="mlp", TF_MAX_STEPS="20", TF_SAVE_SUMMARIES_STEPS="5",
                 TF_SAVE_CHECKPOINTS_SECS="3600")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    logs = root / "logs"
    logs.mkdir()
    dirs = {name: root / name for name in ("flags", "decoy", "no_data", "bad_tf_config")}
    specs = {
        # The tiny run; its flags must win over the decoy environment.
        "flags": ([*TRAIN_ARGS, "--model-dir", str(dirs["flags"]), "--save-summaries-steps", "10"],
                  dict(TF_MAX_STEPS="3", TF_LOGDIR=str(dirs["decoy"]), MNIST_MODEL="lenet5",
                       TF_SAVE_SUMMARIES_STEPS="1")),
        "no_model_dir": (["train", "--model", "mlp", "--max-steps", "5"], {}),
        "no_data": (["train", "--model", "mlp", "--max-steps", "5", "--model-dir", str(dirs["no_data"]),
                     "--data-dir", str(root / "missing-data")], {}),
        "bad_tf_config": (["train", "--model", "mlp", "--max-steps", "5",
                           "--model-dir", str(dirs["bad_tf_config"])],
                          dict(TF_CONFIG=json.dumps({"cluster": {"worker": ["localhost"]},
                                                     "task": {"type": "worker", "index": 0}}))),
    }
    commands = {name: Command(args, logs, name, cli_env(**env)) for name, (args, env) in specs.items()}
    results, first_run = {}, {}
    try:
        results["flags"] = commands["flags"].result()
        flags_dir = dirs["flags"]
        if results["flags"].returncode == 0:
            first_run = {p.relative_to(flags_dir).as_posix(): p.stat().st_mtime_ns
                         for p in flags_dir.rglob("*") if p.is_file()}
            commands["rerun"] = Command(["train"], logs, "rerun",
                                        cli_env(TF_LOGDIR=str(flags_dir), **RERUN_ENV))
        for name, command in commands.items():
            if name not in results:
                results[name] = command.result()
    finally:
        for command in commands.values():
            command.kill()
    return dict(results=results, dirs=dirs, root=root, first_run=first_run)


# --------------------------------------------------------------------------
# Help and argument errors (no TensorFlow import)


ENV_VARS = ["TF_MAX_STEPS", "TF_LOGDIR", "TF_SAVE_CHECKPOINTS_SECS", "TF_SAVE_SUMMARIES_STEPS",
            "TF_CONFIG", "MNIST_MODEL", "MNIST_DATA_DIR", "JOB_COMPLETION_INDEX", "MNIST_NUM_WORKERS",
            "MNIST_WORKER_HOSTNAME_PREFIX", "MNIST_WORKER_SERVICE", "MNIST_WORKER_PORT"]
EXIT_CODE_DOCS = [r"exit codes", r"\b0 done", r"\b1 failure", r"\b2 bad configuration",
                  r"\b42 preempted"]


@pytest.mark.parametrize("command", [[], ["train"], ["evaluate"]])
def test_help_documents_environment_and_exit_codes(tmp_path, command):
    result = run([*command, "--help"], tmp_path)
    assert result.returncode == 0, str(result)
    assert result.stdout.startswith("usage: python -m model")
    for name in ENV_VARS:
        assert name in result.stdout, f"{name} missing from {' '.join(command)} --help"
    for pattern in EXIT_CODE_DOCS:
        assert re.search(pattern, result.stdout), f"{pattern!r} missing from --help"
    assert "<prefix>-<i>.<service>:<port>" in result.stdout
    assert "default 2222" in result.stdout


def test_train_help_lists_the_flags(tmp_path):
    result = run(["train", "--help"], tmp_path)
    for flag in ["--model", "--model-dir", "--data-dir", "--max-steps", "--save-checkpoints-steps",
                 "--save-checkpoints-secs", "--save-summaries-steps", "--preset", "--batch-size",
                 "--momentum", "--seed", "--steps-per-loop", "--collective-timeout-secs",
                 "--all-reduce-dtype", "--compute-dtype", "--gradient-exchange"]:
        assert flag in result.stdout


def model_choices(command: str) -> list[str]:
    import argparse

    from model.cli import build_parser

    [commands] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    [model] = [a for a in commands.choices[command]._actions if a.dest == "model"]
    return list(model.choices)


@pytest.mark.parametrize("command", ["train", "evaluate", "export"])
def test_model_choices_are_the_networks_the_library_builds(command):
    """A network added to model/networks.py reaches every command's --model (and every preset)."""
    from model import config
    from model.networks import NETWORKS

    assert model_choices(command) == list(NETWORKS)
    for name, models in config.PRESETS.items():
        assert sorted(models) == sorted(NETWORKS), f"preset {name!r}"


def test_a_new_network_name_reaches_the_cli(monkeypatch):
    from model import config

    monkeypatch.setattr(config, "NETWORK_NAMES", (*config.NETWORK_NAMES, "resnet"))
    assert all(model_choices(command)[-1] == "resnet" for command in ("train", "evaluate", "export"))


def test_export_help_documents_tf_logdir(tmp_path):
    result = run(["export", "--help"], tmp_path)
    assert result.returncode == 0, str(result)
    assert "TF_LOGDIR" in result.stdout and "--export-dir" in result.stdout


def test_export_help_documents_exit_codes(tmp_path):
    result = run(["export", "--help"], tmp_path)
    for pattern in EXIT_CODE_DOCS:
        assert re.search(pattern, result.stdout), f"{pattern!r} missing from export --help"


@pytest.mark.parametrize("args,needle", [
    (["train", "--model", "resnet", "--model-dir", "x"], "invalid choice: 'resnet'"),
    (["evaluate", "--model", "resnet"], "invalid choice: 'resnet'"),
    (["train", "--model", "mlp", "--max-steps", "-1"], "--max-steps"),
    (["train", "--model", "mlp", "--batch-size", "0"], "--batch-size"),
    (["train", "--model", "mlp", "--save-checkpoints-secs", "0"], "--save-checkpoints-secs"),
    (["train", "--model", "mlp", "--no-such-flag"], "--no-such-flag"),
    (["train", "--model", "mlp", "--all-reduce-dtype", "float16"], "--all-reduce-dtype"),
    (["train", "--model", "mlp", "--compute-dtype", "float16"], "--compute-dtype"),
    (["train", "--model", "mlp", "--gradient-exchange", "ring"], "--gradient-exchange"),
    (["export", "--model-dir", "x"], "--export-dir"),
    ([], "required"),
    (["fit"], "invalid choice: 'fit'"),
])
def test_argument_errors_exit_2(tmp_path, args, needle):
    result = run(args, tmp_path)
    assert result.returncode == 2, str(result)
    assert needle in result.stderr, str(result)
    assert "Traceback" not in result.output


def test_missing_model_exits_2_naming_mnist_model(tmp_path):
    result = run(["train", "--model-dir", str(tmp_path / "m")], tmp_path)
    assert_clean_error(result, "--model", "MNIST_MODEL")
    assert not (tmp_path / "m").exists()


def test_bad_mnist_model_env_exits_2(tmp_path):
    result = run(["train", "--model-dir", str(tmp_path / "m")], tmp_path, MNIST_MODEL="vgg")
    assert_clean_error(result, "MNIST_MODEL", "'vgg'")


def test_non_integer_tf_max_steps_exits_2_naming_it(tmp_path):
    result = run(["train", "--model", "mlp", "--model-dir", str(tmp_path / "m")], tmp_path,
                 TF_MAX_STEPS="abc")
    assert_clean_error(result, "TF_MAX_STEPS", "'abc'")
    assert not (tmp_path / "m").exists()


# A bad cluster is refused before TensorFlow is imported (-X importtime lists every import)


def tensorflow_imports(importtime_stderr: str) -> list[str]:
    return [line for line in importtime_stderr.splitlines()
            if line.startswith("import time:") and re.search(r"\|\s*tensorflow(\.\S*)?$", line)]


@pytest.mark.parametrize("env,needles", [
    (dict(TF_CONFIG=json.dumps({"cluster": {"worker": ["localhost"]},
                                "task": {"type": "worker", "index": 0}})),
     ["TF_CONFIG", "'localhost'", "host:port"]),
    (dict(TF_CONFIG="{not json"), ["TF_CONFIG is not valid JSON"]),
    (dict(JOB_COMPLETION_INDEX="2", MNIST_NUM_WORKERS="2", MNIST_WORKER_HOSTNAME_PREFIX="w",
          MNIST_WORKER_SERVICE="s"), ["JOB_COMPLETION_INDEX=2", "MNIST_NUM_WORKERS=2"]),
    (dict(JOB_COMPLETION_INDEX="0"), ["MNIST_NUM_WORKERS", "MNIST_WORKER_SERVICE"]),
])
def test_a_bad_cluster_is_refused_without_importing_tensorflow(tmp_path, env, needles):
    args = ["train", "--model", "mlp", "--model-dir", str(tmp_path / "m")]
    process = subprocess.run([PY, "-X", "importtime", "-m", "model", *args], cwd=REPO_ROOT,
                             env=cli_env(**env), stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=60)
    result = Result(args, process.returncode, process.stdout, process.stderr)
    assert_clean_error(result, *needles)
    assert any(line.endswith("model.cluster") for line in process.stderr.splitlines()), str(result)
    assert tensorflow_imports(process.stderr) == [], str(result)
    assert not (tmp_path / "m").exists()


# --------------------------------------------------------------------------
# Configuration errors found after TensorFlow is imported


def test_missing_model_dir_exits_2_naming_tf_logdir(runs):
    assert_clean_error(runs["results"]["no_model_dir"], "--model-dir", "TF_LOGDIR")


def test_missing_data_dir_exits_2_and_writes_nothing(runs):
    result = runs["results"]["no_data"]
    line = assert_clean_error(result, str(runs["root"] / "missing-data"), "train-images-idx3-ubyte",
                              "does not exist")
    assert "MNIST file not found" in line
    assert "train | start" not in result.stdout
    assert not runs["dirs"]["no_data"].exists(), sorted(p.name for p in runs["dirs"]["no_data"].rglob("*"))


def test_malformed_tf_config_exits_2_before_training(runs):
    result = runs["results"]["bad_tf_config"]
    assert_clean_error(result, "TF_CONFIG", "'localhost'", "host:port")
    # Rejected before the strategy is created, let alone training started.
    assert "cluster |" not in result.stdout and "train | start" not in result.stdout, str(result)
    assert not runs["dirs"]["bad_tf_config"].exists()


# --------------------------------------------------------------------------
# Model directories no restart can make usable: exit 2, not 1 (which restarts the group)

def _mount_namespace() -> tuple[str, ...] | None:
    """How to run a command in a private mount namespace: `unshare -m` as root, `unshare -r -m`
    (its own user namespace) as a normal user where unprivileged user namespaces work, else None."""
    if shutil.which("unshare") is None:
        return None
    if os.geteuid() == 0:
        return ("unshare", "-m")
    from scripts.local_runner import userns
    return None if userns.probe() else ("unshare", "-r", "-m")


MOUNT_NS = _mount_namespace()
# In a private mount namespace: the directory "$0" bind-mounted read-only, or
# a 3 MB tmpfs mounted on it (an MLP checkpoint is about 5 MB), then the command.
READ_ONLY_MOUNT = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
FULL_DISK = ('mount -t tmpfs -o size=3m tmpfs "$0" && "$@"; code=$?; '
             'ls -A "$0/model" > "$0.listing"; exit $code')


@pytest.fixture(scope="module")
def unusable(tmp_path_factory):
    root = tmp_path_factory.mktemp("unusable")
    logs = root / "logs"
    logs.mkdir()
    (root / "a-file").write_text("not a directory\n")
    read_only, full = root / "read-only", root / "full"
    read_only.mkdir()
    full.mkdir()
    train = ["train", "--model", "mlp", "--max-steps", "20", "--save-checkpoints-steps", "10"]
    specs = {"file": ([*train, "--model-dir", str(root / "a-file")], ()),
             "proc": ([*train, "--model-dir", "/proc/mnist-model"], ())}
    if MOUNT_NS:
        specs["read_only"] = ([*train, "--model-dir", str(read_only / "model")],
                              (*MOUNT_NS, "sh", "-c", READ_ONLY_MOUNT, str(read_only)))
        specs["full"] = ([*train, "--model-dir", str(full / "model")],
                         (*MOUNT_NS, "sh", "-c", FULL_DISK, str(full)))
    else:  # no mount namespace to be had: a directory without write permission
        read_only.chmod(0o555)
        specs["read_only"] = ([*train, "--model-dir", str(read_only / "model")], ())
    commands = {name: Command(args, logs, name, cli_env(), prefix)
                for name, (args, prefix) in specs.items()}
    try:
        results = {name: command.result() for name, command in commands.items()}
    finally:
        for command in commands.values():
            command.kill()
        read_only.chmod(0o755)
    return dict(results=results, root=root)


@pytest.mark.parametrize("name,needles", [
    ("file", ["a-file", "is not a directory"]),
    ("proc", ["/proc/mnist-model", "cannot use", "No such file or directory"]),
    ("read_only", ["read-only/model", "cannot use", "Read-only file system" if MOUNT_NS
                   else "Permission denied"]),
])
def test_an_unusable_model_dir_exits_2_naming_it(unusable, name, needles):
    result = unusable["results"][name]
    assert_clean_error(result, *needles)
    assert "train | start" not in result.stdout, str(result)


def test_a_full_disk_exits_2_and_leaves_no_temporary_checkpoint(unusable):
    """A real full filesystem: the first checkpoint does not fit."""
    if MOUNT_NS is None:
        unavailable("mounting a small tmpfs needs root, or unprivileged user namespaces "
                    "(`unshare -r -m` fails here)")
    result = unusable["results"]["full"]
    assert_clean_error(result, "no space left", "ckpt-10", "run again to resume")
    listing = (unusable["root"] / "full.listing").read_text().split()
    assert not [name for name in listing if "_temp" in name or "tempstate" in name], listing
    assert "removed" in result.stdout and "ckpt-10_temp" in result.stdout, str(result)


# --------------------------------------------------------------------------
# A tiny real run, its environment fallbacks, and a second run on the finished directory


def test_tiny_run_succeeds_and_writes_its_model_dir(runs):
    result = runs["results"]["flags"]
    model_dir = runs["dirs"]["flags"]
    assert result.returncode == 0, str(result)
    assert checkpoint_steps(model_dir) == [10, 20]
    assert (model_dir / "checkpoint").is_file()
    run_config = json.loads((model_dir / "run_config.json").read_text())
    assert run_config["model"] == "mlp"
    assert run_config["created"]["max_steps"] == 20 and "max_steps" not in run_config["hparams"]
    assert run_config["hparams"]["batch_size"] == 100
    marker = json.loads((model_dir / "training_complete.json").read_text())
    assert marker == {"final_step": 20, "checkpoint": "ckpt-20"}
    events = [name for name in runs["first_run"] if name.startswith("train/events.out.tfevents.")]
    assert len(events) == 1, runs["first_run"]
    assert b"loss" in (model_dir / events[0]).read_bytes()
    [progress] = [m for m in log_lines.TRAIN_PROGRESS.finditer(result.stdout) if m["step"] == "20"]
    assert float(progress["loss"]) > 0 and 0 <= float(progress["batch_accuracy"]) <= 1, str(result)
    assert progress["lr"] == "0.10000", str(result)
    saved = {m["step"]: m["path"] for m in log_lines.TRAIN_SAVED.finditer(result.stdout)}
    assert saved["10"] == str(model_dir / "ckpt-10"), str(result)
    assert log_lines.TRAIN_DONE.search(result.stdout)["step"] == "20", str(result)
    assert "Traceback" not in result.output


def test_flags_win_over_the_environment(runs):
    result = runs["results"]["flags"]
    assert result.returncode == 0, str(result)
    config = config_line(result)
    assert "model=mlp " in config  # not MNIST_MODEL=lenet5
    assert f"model_dir={runs['dirs']['flags']} " in config  # not TF_LOGDIR
    assert "max_steps=20 " in config  # not TF_MAX_STEPS=3
    assert "save_summaries_steps=10 " in config  # not TF_SAVE_SUMMARIES_STEPS=1
    assert not runs["dirs"]["decoy"].exists()


def test_data_dir_defaults_to_the_bundled_copy(runs):
    assert f"data_dir={MNIST_DIR} " in config_line(runs["results"]["flags"])


def test_environment_fallbacks(runs):
    # The second run had no flags at all: model, model dir and schedule from the environment.
    assert "rerun" in runs["results"], "the first run failed"
    result = runs["results"]["rerun"]
    assert result.returncode == 0, str(result)
    config = config_line(result)
    for field in ("model=mlp ", f"model_dir={runs['dirs']['flags']} ", "max_steps=20 ",
                  "save_summaries_steps=5 ", "save_checkpoints_secs=3600.0 "):
        assert field in config, config


def test_second_run_on_a_finished_dir_does_not_train(runs):
    assert runs["results"]["flags"].returncode == 0, "the first run failed"
    assert "rerun" in runs["results"]
    result = runs["results"]["rerun"]
    model_dir = runs["dirs"]["flags"]
    assert result.returncode == 0, str(result)
    restored = log_lines.TRAIN_RESTORED.search(result.stdout)
    assert (restored["path"], restored["step"]) == (str(model_dir / "ckpt-20"), "20"), str(result)
    trained = (log_lines.TRAIN_COMPILED, log_lines.TRAIN_PROGRESS, log_lines.TRAIN_SAVED)
    assert not any(p.search(result.stdout) for p in trained), str(result)
    assert log_lines.ALREADY_COMPLETE.search(result.stdout)["step"] == "20", str(result)
    assert log_lines.TRAIN_DONE.search(result.stdout)["step"] == "20", str(result)
    assert checkpoint_steps(model_dir) == [10, 20]
    # No checkpoint was rewritten.
    for name in ("checkpoint", "ckpt-10.index", "ckpt-20.index", "ckpt-20.data-00000-of-00001"):
        assert (model_dir / name).stat().st_mtime_ns == runs["first_run"][name], name
    marker = json.loads((model_dir / "training_complete.json").read_text())
    assert marker["final_step"] == 20


# --------------------------------------------------------------------------
# In process, stopped before the strategy is created


@pytest.fixture
def main_until_strategy(monkeypatch):
    """model.cli.main, with create_strategy replaced by a sentinel that raises."""
    import logging

    import model.cluster
    from model.cli import main

    class StrategyReached(Exception):
        pass

    def fake_create_strategy(*args, **kwargs):
        raise StrategyReached

    monkeypatch.setattr(model.cluster, "create_strategy", fake_create_strategy)
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")  # main() sets it; undone afterwards
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield main
    root.handlers[:] = handlers
    root.setLevel(level)


def test_in_process_sentinel_is_reached_with_a_valid_config(main_until_strategy, tmp_path, capsys):
    # Control for the test below: a valid configuration gets as far as the strategy (exit 1).
    assert main_until_strategy(["train", "--model", "mlp", "--model-dir", str(tmp_path / "m")]) == 1
    assert "StrategyReached" in capsys.readouterr().out


def test_zero_tf_save_summaries_steps_is_rejected(main_until_strategy, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TF_SAVE_SUMMARIES_STEPS", "0")
    assert main_until_strategy(["train", "--model", "mlp", "--model-dir", str(tmp_path / "m")]) == 2
    assert "TF_SAVE_SUMMARIES_STEPS" in capsys.readouterr().err
