"""Images per second of the training loop, as the progress and done lines report them.

Two rates: a window's (from the previous progress line or summary to this
one, wall clock, so it includes the loop's own work between calls) and the
run's (the time inside loop calls only, leaving out the first call, which
traces and compiles the loop). Plain Python with an injectable clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ThroughputMeter:
    """Counts the steps of each loop call; `images_per_step` is the global batch."""

    def __init__(self, images_per_step: int, clock: Callable[[], float] = time.monotonic):
        self._images_per_step = images_per_step
        self._clock = clock
        self._window_start = clock()
        self._window_steps = 0
        self._timed_images = 0
        self._timed_seconds = 0.0
        self._call_start = 0.0
        self.calls = 0  # loop calls finished so far

    def call_started(self) -> None:
        self._call_start = self._clock()

    def call_ended(self, steps: int) -> float:
        """The call that just returned ran `steps` steps; returns its seconds."""
        elapsed = self._clock() - self._call_start
        if self.calls:  # the first call includes tracing: keep it out of the run's rate
            self._timed_images += steps * self._images_per_step
            self._timed_seconds += elapsed
        self.calls += 1
        self._window_steps += steps
        return elapsed

    def window_rate(self) -> float:
        """Images/s since the previous call of this method (or since the meter began); starts a new window."""
        now = self._clock()
        rate = self._window_steps * self._images_per_step / max(now - self._window_start, 1e-9)
        self._window_start, self._window_steps = now, 0
        return rate

    @property
    def images_per_sec(self) -> float:
        """The run's rate over every timed call; 0.0 before there is one."""
        return self._timed_images / self._timed_seconds if self._timed_seconds else 0.0
