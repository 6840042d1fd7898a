"""`python -m model` logs the project's lines and real warnings and errors, not TensorFlow's chatter
(model/logging_setup.py); `--log-level DEBUG` or the user's own TF_CPP_MIN_LOG_LEVEL bring it back."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys

import pytest

from model import log_lines, logging_setup
from scripts.paths import REPO_ROOT

# What TensorFlow 2.21 printed at the start of `python -m model train` before logging_setup.py
# (and still prints for `import tensorflow` on its own, whatever TF_CPP_MIN_LOG_LEVEL says).
ABSL_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
ONEDNN_INFO = ("I0000 00:00:1796185118.201683   16372 port.cc:153] oneDNN custom operations are on. "
               "You may see slightly different numerical results due to floating-point round-off errors")
CPP_ERROR = "E0000 00:00:1796185118.201683   16372 cuda_executor.cc:1228] failed call to cuInit: 100"
# The project's lines: "<topic> | ...", the evaluator's Caicloud-style lines and its JSON events.
PROJECT_LINE = re.compile(r"^(?:[a-z]+ \| |After \d+ training step\(s\), |\{\")")


def test_tensorflows_loading_chatter_is_recognised_and_real_messages_are_not():
    assert logging_setup.is_tf_loading_chatter(ABSL_NOTICE + "\n")
    assert logging_setup.is_tf_loading_chatter(ONEDNN_INFO + "\n")
    assert not logging_setup.is_tf_loading_chatter(CPP_ERROR + "\n")
    assert not logging_setup.is_tf_loading_chatter("W0000 00:00:1.2 7 port.cc:1] a warning\n")
    assert not logging_setup.is_tf_loading_chatter("ImportError: libcuda.so.1: cannot open\n")
    assert not logging_setup.is_tf_loading_chatter("malloc | glibc 2.36\n")


def test_stderr_is_filtered_at_the_file_descriptor_while_tensorflow_loads(capfd):
    """C++ writes to file descriptor 2 directly: the filter must work below sys.stderr."""
    with logging_setup._stderr_without(logging_setup.is_tf_loading_chatter):
        os.write(2, f"{ABSL_NOTICE}\n{ONEDNN_INFO}\n{CPP_ERROR}\n".encode())
        os.write(2, b"ImportError: a real problem\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == f"{CPP_ERROR}\nImportError: a real problem\nafter\n"


@pytest.fixture
def restored_logging(monkeypatch):
    """configure() changes the root logger, two library loggers and the environment: undo it."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level,
             {name: logging.getLogger(name).level for name in logging_setup.TF_PYTHON_LOGGERS})
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    monkeypatch.delenv("TF_CPP_MAX_VLOG_LEVEL", raising=False)
    monkeypatch.setattr(logging_setup, "_quiet_import", False)
    yield monkeypatch
    root.handlers[:], root.level = saved[0], saved[1]
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.parametrize("level,env,cpp_level,quiet,tf_python_level", [
    ("INFO", {}, "2", True, logging.WARNING),
    ("ERROR", {}, "2", True, logging.ERROR),
    ("INFO", {"TF_CPP_MIN_LOG_LEVEL": "2"}, "2", True, logging.WARNING),  # the image's ENV
    ("INFO", {"TF_CPP_MIN_LOG_LEVEL": "0"}, "0", False, logging.WARNING),  # the user's own choice
    ("INFO", {"TF_CPP_MAX_VLOG_LEVEL": "1"}, None, False, logging.WARNING),
    ("DEBUG", {}, None, False, logging.NOTSET),
])
def test_quiet_by_default_and_tensorflows_lines_back_with_debug_or_the_users_setting(
        restored_logging, level, env, cpp_level, quiet, tf_python_level):
    for name, value in env.items():
        restored_logging.setenv(name, value)
    logging_setup.configure(level)
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == cpp_level
    assert logging_setup._quiet_import is quiet
    assert logging.getLogger().level == logging.getLevelName(level)
    for name in logging_setup.TF_PYTHON_LOGGERS:  # "Using MirroredStrategy", "Sharding callback ..."
        assert logging.getLogger(name).level == tf_python_level, name


def test_train_and_evaluate_print_only_the_projects_lines(tmp_path, trained_dir):
    """A real `python -m model train` and `evaluate`, with the user's plain environment
    (no TF_CPP_MIN_LOG_LEVEL): every line they print is one of the project's."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_CPP_MAX_VLOG_LEVEL", "TF_CONFIG", "TF_LOGDIR",
                        "MNIST_MODEL", "TF_MAX_STEPS")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    eval_dir = tmp_path / "evaluated"
    shutil.copytree(trained_dir, eval_dir)
    commands = {
        # Two checkpoint saves: each logged "Sharding callback duration" through absl.
        "train": ["train", "--model", "mlp", "--model-dir", str(tmp_path / "trained"), "--max-steps", "10",
                  "--steps-per-loop", "5", "--log-every-steps", "5", "--save-checkpoints-steps", "5"],
        "evaluate": ["evaluate", "--model-dir", str(eval_dir)],
    }
    processes = {name: subprocess.Popen([sys.executable, "-m", "model", *args], cwd=REPO_ROOT, env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                 for name, args in commands.items()}
    outputs = {name: p.communicate(timeout=240) for name, p in processes.items()}
    for name, (stdout, stderr) in outputs.items():
        report = f"python -m model {name}:\n--- stdout\n{stdout}--- stderr\n{stderr}"
        assert processes[name].returncode == 0, report
        assert stderr == "", report
        lines = stdout.splitlines()
        assert lines[0].startswith("malloc | ") and log_lines.CONFIG.match(lines[1]), report
        strangers = [line for line in lines if not PROJECT_LINE.match(line)]
        assert not strangers, report
    assert len(list(log_lines.TRAIN_SAVED.finditer(outputs["train"][0]))) == 2, outputs["train"][0]
    assert log_lines.EVAL_TEST.search(outputs["evaluate"][0]), outputs["evaluate"][0]
