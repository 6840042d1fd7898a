"""Project exceptions and the process exit codes they map to.

The exit codes are part of the contract with Kubernetes: the chart's
podFailurePolicy ignores PREEMPTED (the pod is replaced without counting
against the backoff limit) and fails the whole Job at once on CONFIG_ERROR,
since retrying a bad flag or a corrupt dataset cannot succeed.
"""

# Exit codes of `python -m model ...`.
EXIT_OK = 0
EXIT_FAILURE = 1  # unexpected error, e.g. a peer worker died: restart the group
EXIT_CONFIG_ERROR = 2  # bad flags, bad TF_CONFIG, bad data: do not retry
EXIT_PREEMPTED = 42  # SIGTERM received, checkpoint saved: restart and resume
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT): checkpoint saved if training had started


class MnistTrainError(Exception):
    """Base class of errors that are the user's input, not a bug.

    The CLI prints the message (no traceback) and exits with EXIT_CONFIG_ERROR.
    """


class ConfigError(MnistTrainError):
    """A flag, environment variable or TF_CONFIG is malformed or inconsistent."""


class DataError(MnistTrainError):
    """An input file is missing, malformed or fails its checksum."""


class ModelDirError(MnistTrainError):
    """The model directory cannot be used: not a directory, read-only, no permission, full."""


class CheckpointError(MnistTrainError):
    """The model directory holds checkpoints, but none can be restored."""
