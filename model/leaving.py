"""How the workers of a group end their processes: together, and without TensorFlow's teardown.

Measured on this project's 2-worker LeNet-5 runs (2026-12-02): after the `done` line, destroying
the distributed dataset's iterator blocked until the peer worker destroyed its own or was seen
gone. It took 0.01-2.9 s when both workers did it at once (they finished at the same
millisecond), 10-12 s when the peer had already exited, and 58 s for the non-chief of the chart's
default run whose chief had left first; the Indexed Job completed only then. With the
interpreter's teardown skipped on a non-chief alone, the chief waited instead (14-89 s) until
the coordination service missed the non-chief's heartbeats.

So a worker of a group:
1. keeps the loop's TensorFlow objects until its process ends (`hold`), so nothing destroys the
   iterator while a peer may already be gone;
2. leaves in order (`leave_together`): each non-chief tells the chief's coordination service
   that it is leaving, then exits; the chief exits once every non-chief has said so, or after a
   deadline. The chief hosts the service, so it goes last: a non-chief never talks to a service
   that is gone;
3. exits without the interpreter's teardown (model/cli.py `exit_process`), so none of TensorFlow's
   objects is destroyed at all.

The ordered leaving is only for the trainer's complete exits (done, preempted after saving,
interrupted), which every worker of the group reaches at the same agreed step. A failed worker
(a peer died) just exits, also without the teardown: its teardown waited 30 s for the dead peer.
"""

from __future__ import annotations

import logging
import time

from model import log_lines
from model.cluster import ClusterInfo

log = logging.getLogger(__name__)

# Long enough for a peer that has its done line to reach this point (milliseconds apart when
# measured), short enough that a peer that died after its done line delays the Job little.
DEFAULT_LEAVE_TIMEOUT_SECS = 30.0

_held: list = []


def hold(*objects) -> None:
    """Keep `objects` (a group's loop: its iterator, compiled function) alive until the process
    ends. Replaces what an earlier train() call held, so a process that trains again holds only
    its latest loop."""
    _held[:] = objects


def leaving_key(task_type: str, task_index: int) -> str:
    """The coordination service key a task sets when it leaves."""
    return f"mnist-train/leaving/{task_type}/{task_index}"


def peers(cluster: ClusterInfo) -> list[tuple[str, int]]:
    """The group's other tasks, as (type, index)."""
    return [(task_type, index) for task_type, index, _ in cluster.tasks()
            if (task_type, index) != (cluster.task_type, cluster.task_index)]


def leave_together(cluster: ClusterInfo, timeout_secs: float = DEFAULT_LEAVE_TIMEOUT_SECS,
                   coordination=None, clock=time.monotonic) -> None:
    """Say this task is leaving (a non-chief), or wait until every non-chief has said so (the
    chief), for at most `timeout_secs`. Never raises: a peer that does not answer only ends the
    wait, with a warning. `coordination` is TensorFlow's eager context (tests pass a fake)."""
    if cluster.tf_config is None:
        return
    if coordination is None:
        from tensorflow.python.eager import context
        coordination = context.context()
    started = clock()
    if not cluster.is_chief:
        try:
            coordination.set_config_key_value(leaving_key(cluster.task_type, cluster.task_index), "1")
        except Exception as e:  # noqa: BLE001 - the chief is gone: nobody is left to tell
            log.warning("leave | could not tell the chief this worker is leaving (%s)", e)
        return
    waiting = peers(cluster)
    for task_type, index in waiting:
        remaining = timeout_secs - (clock() - started)
        try:
            if remaining <= 0:
                raise TimeoutError("no time left")
            coordination.get_config_key_value(leaving_key(task_type, index),
                                              timeout_in_ms=max(1, int(remaining * 1000)))
        except Exception as e:  # noqa: BLE001 - exit anyway: the run's outputs are complete
            log.warning("leave | %s %d did not say it was leaving within %.0f s (%s); exiting anyway",
                        task_type, index, timeout_secs, type(e).__name__)
            return
    log.info(log_lines.LEAVE_TOGETHER_FORMAT, len(waiting), clock() - started)
