"""What the training loop does at each step boundary, in plain Python.

The loop (model/train.py) runs its steps in calls of the compiled
`train_loop`; between two calls it may write summaries, print a progress
line, save a checkpoint or stop. `Schedule` decides all of that from the step
counts and the flags the workers agreed on, so the policy is read and tested
here without TensorFlow: every worker computes the same answers from the same
agreed inputs, which keeps their collectives in step.

`SaveTimer` is the time-based checkpoint policy (--save-checkpoints-secs):
only the chief's clock counts, and its wish to save travels to the other
workers in the all-reduced control flags.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable


@dataclasses.dataclass(frozen=True)
class Boundary:
    """What to do after a loop call that ended at `step`."""

    step: int
    summarize: bool  # write the TensorBoard scalars
    log: bool  # print the progress line
    checkpoint: bool  # save a checkpoint (never twice at one step)
    stop: bool  # a stop was agreed before max_steps: save, then end the process


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Step-count intervals: each one ends a loop call where it falls."""

    max_steps: int
    summary_every: int
    log_every: int
    checkpoint_every: int | None  # None: checkpoints only at the end, on request and on stop
    steps_per_loop: int

    def steps_to_run(self, step: int) -> int:
        """Steps in the next loop call from `step`: up to the nearest boundary of any kind."""
        ends = [self.max_steps, _next_multiple(step, self.summary_every),
                _next_multiple(step, self.log_every), step + self.steps_per_loop]
        if self.checkpoint_every is not None:
            ends.append(_next_multiple(step, self.checkpoint_every))
        return min(ends) - step

    def after_call(self, step: int, ran: int, *, save_agreed: bool, stop_agreed: bool,
                   last_saved: int | None) -> Boundary:
        """The actions due at `step`, reached by a call that ran `ran` steps.

        `save_agreed` and `stop_agreed` are the all-reduced control flags (any
        worker asked); a call that agreed to stop ran no step (`ran` is 0).
        `last_saved` is the step of the newest checkpoint this run wrote or
        restored, None if there is none yet.
        """
        at_end = step == self.max_steps
        summarize = ran > 0 and (step % self.summary_every == 0 or at_end)
        log = ran > 0 and (step % self.log_every == 0 or at_end)
        interval = self.checkpoint_every is not None and step % self.checkpoint_every == 0
        checkpoint = (save_agreed or stop_agreed or at_end or interval) and step != last_saved
        return Boundary(step, summarize, log, checkpoint, stop=stop_agreed and step < self.max_steps)


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


class SaveTimer:
    """Whether --save-checkpoints-secs have passed since the last save (never, if `secs` is None)."""

    def __init__(self, secs: float | None, clock: Callable[[], float] = time.monotonic):
        self._secs = secs
        self._clock = clock
        self._last = clock()

    def due(self) -> bool:
        return self._secs is not None and self._clock() - self._last >= self._secs

    def saved(self) -> None:
        """A checkpoint was just written: the interval starts again."""
        self._last = self._clock()
