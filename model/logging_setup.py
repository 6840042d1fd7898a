"""How `python -m model` logs: the project's own lines and real warnings and errors, not
TensorFlow's chatter (unless asked for).

By default (`--log-level` INFO, WARNING or ERROR, and no TF_CPP_* variable set by the user):

- TensorFlow's C++ logging keeps ERROR and FATAL: TF_CPP_MIN_LOG_LEVEL=2 is set before
  TensorFlow is imported (the library reads it once, when it loads). That drops the
  C++ INFO and WARNING lines (the CPU feature notice, the CUDA stub's "could not find
  cuda drivers", the coordination service's and the collectives' INFO lines).
- Loading TensorFlow 2.21 prints two lines that TF_CPP_MIN_LOG_LEVEL does not reach (they go
  through Abseil's C++ logging, which has no environment switch): absl's "All log messages
  before absl::InitializeLog() is called are written to STDERR" and the oneDNN INFO notice
  (tensorflow/core/util/port.cc), each once per TensorFlow shared library. `import_tensorflow()`
  captures stderr while TensorFlow loads and passes on every line except those INFO lines and
  absl's notice, so a genuine warning or error printed while loading still shows.
- TensorFlow's Python loggers keep WARNING and above: `tensorflow` ("Using MirroredStrategy
  with devices ...", "Collective all_reduce tensors ...") and `absl` ("Sharding callback
  duration: N microseconds", which tensorflow/python/checkpoint/functional_saver.py logs with
  absl.logging.info at every checkpoint save).

`--log-level DEBUG` leaves all of it as TensorFlow has it. TF_CPP_MIN_LOG_LEVEL=2 is also the
image's default (Dockerfile ENV, which the local runner's pods copy), so it counts as unset; any
other TF_CPP_MIN_LOG_LEVEL, or a TF_CPP_MAX_VLOG_LEVEL, means the user is steering TensorFlow's
C++ logging: it is left to them (nothing set, nothing filtered while loading). The Python
loggers follow --log-level either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile

from model import log_lines

TF_CPP_QUIET_LEVEL = "2"  # 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR
TF_PYTHON_LOGGERS = ("tensorflow", "absl")

_quiet_import = False  # configure() decides; import_tensorflow() reads it


def configure(log_level: str) -> None:
    """The project's lines on stdout at `log_level`; TensorFlow quiet unless DEBUG (see above).

    Call before TensorFlow is imported."""
    global _quiet_import
    logging.basicConfig(level=log_level, stream=sys.stdout, format="%(message)s", force=True)
    debug = logging.getLevelName(log_level) <= logging.DEBUG
    user_steers_cpp = (os.environ.get("TF_CPP_MIN_LOG_LEVEL", TF_CPP_QUIET_LEVEL) != TF_CPP_QUIET_LEVEL
                       or bool(os.environ.get("TF_CPP_MAX_VLOG_LEVEL")))
    if not debug and not user_steers_cpp:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = TF_CPP_QUIET_LEVEL
    _quiet_import = not debug and not user_steers_cpp
    for name in TF_PYTHON_LOGGERS:
        # NOTSET: follow the root logger (DEBUG shows TensorFlow's INFO and DEBUG lines).
        logging.getLogger(name).setLevel(logging.NOTSET if debug else max(logging.WARNING,
                                                                           logging.getLevelName(log_level)))


def import_tensorflow():
    """`import tensorflow`, without its loading chatter when configure() made the logs quiet."""
    if _quiet_import and "tensorflow" not in sys.modules:
        with _stderr_without(is_tf_loading_chatter):
            import tensorflow as tf
    else:
        import tensorflow as tf
    return tf


def is_tf_loading_chatter(line: str) -> bool:
    """absl's pre-initialisation notice, or a C++ INFO line (all of them ignore TF_CPP_MIN_LOG_LEVEL
    while TensorFlow loads)."""
    if log_lines.TF_ABSL_PREINIT.match(line):
        return True
    cpp = log_lines.TF_CPP_LOG.match(line)
    return cpp is not None and cpp["severity"] == "I"


@contextlib.contextmanager
def _stderr_without(drop):
    """Inside the block, file descriptor 2 (C++ and Python alike) goes to a file; afterwards its
    lines for which `drop(line)` is false are written to the real stderr, in order."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", errors="replace").splitlines(True)
                    if not drop(line)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
