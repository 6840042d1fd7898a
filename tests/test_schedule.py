"""Tests of model/schedule.py and model/throughput.py: the training loop's step
boundaries and its images/s, in plain Python (no TensorFlow, a fake clock)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from model.schedule import Schedule, SaveTimer
from model.throughput import ThroughputMeter


class FakeClock:
    """A monotonic clock the test moves by hand (the real one cannot be steered)."""

    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def run_calls(schedule: Schedule, start: int = 0) -> list:
    """Every boundary of an uninterrupted run from `start`, as the loop meets them."""
    step, last_saved, boundaries = start, (start or None), []
    while step < schedule.max_steps:
        ran = schedule.steps_to_run(step)
        step += ran
        boundary = schedule.after_call(step, ran, save_agreed=False, stop_agreed=False,
                                       last_saved=last_saved)
        last_saved = step if boundary.checkpoint else last_saved
        boundaries.append(boundary)
    return boundaries


# The intervals of a 25-step CLI run (--save-summaries-steps 5 --log-every-steps 10
# --save-checkpoints-steps 7 --steps-per-loop 4): its output printed progress lines
# at 10, 20 and 25 and saved ckpt-7, -14, -21 and -25.
CLI_RUN = Schedule(max_steps=25, summary_every=5, log_every=10, checkpoint_every=7, steps_per_loop=4)


def test_each_call_ends_at_the_nearest_boundary_of_any_kind():
    assert [b.step for b in run_calls(CLI_RUN)] == [4, 5, 7, 10, 14, 15, 19, 20, 21, 25]


def test_summaries_progress_lines_and_checkpoints_fall_on_their_intervals_and_at_the_end():
    boundaries = run_calls(CLI_RUN)
    assert [b.step for b in boundaries if b.summarize] == [5, 10, 15, 20, 25]
    assert [b.step for b in boundaries if b.log] == [10, 20, 25]
    assert [b.step for b in boundaries if b.checkpoint] == [7, 14, 21, 25]
    assert not any(b.stop for b in boundaries)


def test_a_resumed_run_counts_its_intervals_from_step_zero():
    boundaries = run_calls(dataclasses.replace(CLI_RUN, max_steps=33), start=25)
    assert [b.step for b in boundaries] == [28, 30, 33]
    assert [b.step for b in boundaries if b.log] == [30, 33]
    assert [b.step for b in boundaries if b.checkpoint] == [28, 33]


def test_without_a_checkpoint_interval_only_the_end_is_saved():
    schedule = Schedule(max_steps=250, summary_every=100, log_every=100, checkpoint_every=None,
                        steps_per_loop=100)
    boundaries = run_calls(schedule)
    assert [b.step for b in boundaries] == [100, 200, 250]
    assert [b.step for b in boundaries if b.checkpoint] == [250]


def test_steps_per_loop_bounds_a_call_between_far_boundaries():
    schedule = Schedule(max_steps=1000, summary_every=1000, log_every=1000, checkpoint_every=None,
                        steps_per_loop=30)
    assert schedule.steps_to_run(0) == 30
    assert schedule.steps_to_run(990) == 10


def test_an_agreed_save_checkpoints_off_the_interval():
    boundary = CLI_RUN.after_call(12, 2, save_agreed=True, stop_agreed=False, last_saved=7)
    assert boundary.checkpoint and not boundary.stop and not boundary.log


def test_an_agreed_stop_ran_no_step_saves_once_and_stops():
    # The call that agreed to stop ran no step: nothing to summarize or log.
    boundary = CLI_RUN.after_call(12, 0, save_agreed=False, stop_agreed=True, last_saved=7)
    assert (boundary.summarize, boundary.log, boundary.checkpoint, boundary.stop) == \
        (False, False, True, True)
    # Stopping right where a checkpoint was saved saves nothing again.
    boundary = CLI_RUN.after_call(14, 0, save_agreed=True, stop_agreed=True, last_saved=14)
    assert boundary.stop and not boundary.checkpoint


def test_no_step_is_saved_twice():
    assert not CLI_RUN.after_call(25, 4, save_agreed=True, stop_agreed=False, last_saved=25).checkpoint


def test_the_save_timer_is_due_after_its_seconds_and_restarts_at_each_save():
    clock = FakeClock()
    timer = SaveTimer(60.0, clock)
    clock.now += 59.9
    assert not timer.due()
    clock.now += 0.1
    assert timer.due()
    timer.saved()
    assert not timer.due()
    clock.now += 60
    assert timer.due()


def test_without_seconds_the_save_timer_is_never_due():
    clock = FakeClock()
    timer = SaveTimer(None, clock)
    clock.now += 1e9
    assert not timer.due()


def test_the_first_call_is_left_out_of_the_runs_rate_but_not_out_of_the_window():
    clock = FakeClock()
    meter = ThroughputMeter(images_per_step=100, clock=clock)
    assert meter.images_per_sec == 0.0
    meter.call_started()
    clock.now += 5.0  # 10 steps, tracing included
    assert meter.call_ended(10) == pytest.approx(5.0)
    assert meter.calls == 1 and meter.images_per_sec == 0.0
    meter.call_started()
    clock.now += 0.5
    meter.call_ended(10)
    clock.now += 0.5  # time between calls counts in the window only
    assert meter.window_rate() == pytest.approx(20 * 100 / 6.0)
    assert meter.images_per_sec == pytest.approx(10 * 100 / 0.5)


def test_each_window_starts_where_the_previous_one_ended():
    clock = FakeClock()
    meter = ThroughputMeter(images_per_step=50, clock=clock)
    for _ in range(3):
        meter.call_started()
        clock.now += 1.0
        meter.call_ended(4)
    meter.window_rate()
    meter.call_started()
    clock.now += 2.0
    meter.call_ended(8)
    assert meter.window_rate() == pytest.approx(8 * 50 / 2.0)
    assert meter.images_per_sec == pytest.approx((4 + 4 + 8) * 50 / 4.0)
    assert meter.window_rate() == 0.0  # no step since


def test_the_schedule_and_the_meter_do_not_import_tensorflow():
    code = ("import sys; import model.schedule, model.throughput; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
