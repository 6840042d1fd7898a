"""The goodput record and its computation (model/goodput_record.py, model/goodput.py).

Synthetic records (hand-written event lines with round numbers) prove the arithmetic: a clean
run, a SIGKILL whose steps past the last checkpoint are recomputed, a SIGTERM that loses none,
a torn last line. The recorder is exercised with real files (a local append and a whole-object
replace on TensorFlow's ram:// filesystem, a stand-in for gs:// that cannot append either), and
the session's real training run (`trained_dir`) shows the hooks in train.py write what the
computation needs (tests/test_evaluate.py's happy path checks the evaluator's goodput and lag).
"""

from __future__ import annotations

import json
import logging

import pytest

from model import goodput, goodput_record, layout, log_lines


def ev(attempt: str, event: str, time: float, **fields) -> dict:
    return {"v": 1, "attempt": attempt, "event": event, "time": time, **fields}


def steps(attempt, first, last, start, end, compile=False):
    return ev(attempt, "steps", end, first_step=first, last_step=last, seconds=end - start, start=start,
              compile=compile)


def start_phases(a: str, t0: float) -> list[dict]:
    """Startup 5 s, cluster 2 s, data 1 s, restore 2 s, starting at t0."""
    return [ev(a, "process_start", t0), ev(a, "imported", t0 + 5), ev(a, "cluster_formed", t0 + 7),
            ev(a, "data_loaded", t0 + 8)]


def clean_record() -> list[dict]:
    """0-10 s start phases, first call 10-16 s (100 steps; 1 s of them productive at the ideal
    0.01 s/step, so 5 s compile), then 100-step calls of 1 s each with a 0.5 s save after 200
    and 300."""
    a = "A"
    return [*start_phases(a, 0.0), ev(a, "restored", 10.0, step=0),
            steps(a, 0, 100, 10.0, 16.0, compile=True),
            steps(a, 100, 200, 16.0, 17.0),
            ev(a, "checkpoint_save", 17.5, start=17.0, step=200),
            steps(a, 200, 300, 17.5, 18.5),
            ev(a, "checkpoint_save", 19.0, start=18.5, step=300),
            ev(a, "train_end", 19.0, step=300)]


def test_a_clean_run_splits_its_wall_time_into_goodput_and_each_cause():
    s = goodput.compute(clean_record())
    assert s["complete"] and s["attempts"] == 1 and s["final_step"] == 300
    assert s["wall_secs"] == 19.0
    assert s["ideal_step_secs"] == pytest.approx(0.01)
    assert s["productive_secs"] == pytest.approx(3.0)  # 300 steps at 0.01 s
    assert s["goodput"] == pytest.approx(3.0 / 19.0, abs=1e-4)
    bad = s["badput_secs"]
    assert (bad["startup"], bad["cluster"], bad["data_load"], bad["restore"]) == (5.0, 2.0, 1.0, 2.0)
    assert bad["compile"] == pytest.approx(5.0)  # restored at 10, first call ends at 16, 1 s of it steps
    assert bad["checkpoint_save"] == pytest.approx(1.0)
    assert bad["wasted_progress"] == 0 and bad["disruption"] == 0 and s["steps_lost"] == 0
    assert s["productive_secs"] + s["badput_total_secs"] == pytest.approx(s["wall_secs"], abs=0.01)
    assert set(s["badput_shares"]) == set(goodput.CAUSES)


def test_a_sigkill_counts_the_steps_past_the_last_checkpoint_as_wasted_and_the_gap_as_disruption():
    """Attempt A saves at 200, trains 200-300 and dies (no end record); B restores 200 at 30 s."""
    b = "B"
    record = [e for e in clean_record() if e["time"] <= 18.5 and e["event"] != "train_end"]
    record = [*record, *start_phases(b, 30.0), ev(b, "restored", 40.0, step=200),
              steps(b, 200, 300, 40.0, 43.0, compile=True), steps(b, 300, 400, 43.0, 44.0),
              ev(b, "checkpoint_save", 44.5, start=44.0, step=400), ev(b, "train_end", 44.5, step=400)]
    s = goodput.compute(record)
    assert s["attempts"] == 2 and s["final_step"] == 400
    assert s["steps_lost"] == 100
    assert s["badput_secs"]["wasted_progress"] == pytest.approx(1.0)  # A's 200-300 at 0.01 s/step
    assert s["badput_secs"]["disruption"] == pytest.approx(30.0 - 18.5)
    assert s["disruptions"] == [{"attempt": 0, "how": "killed", "restored_step": 200, "secs": 11.5}]
    assert s["productive_secs"] == pytest.approx(4.0)  # 400 preserved steps
    assert s["badput_secs"]["startup"] == pytest.approx(10.0)  # both attempts' start-up
    assert s["productive_secs"] + s["badput_total_secs"] == pytest.approx(s["wall_secs"], abs=0.01)


def test_a_sigterm_saves_first_so_nothing_is_wasted_and_the_disruption_is_named():
    a, b = "A", "B"
    record = [e for e in clean_record() if e["event"] != "train_end"]
    record = [*record, ev(a, "preempted", 19.1, step=300, error="Preempted"),
              *start_phases(b, 25.0), ev(b, "restored", 35.0, step=300),
              steps(b, 300, 400, 35.0, 37.0, compile=True), ev(b, "train_end", 37.0, step=400)]
    s = goodput.compute(record)
    assert s["steps_lost"] == 0 and s["badput_secs"]["wasted_progress"] == 0
    assert s["disruptions"][0]["how"] == "preempted"
    assert s["badput_secs"]["disruption"] == pytest.approx(25.0 - 19.1)


def test_a_run_extended_after_it_completed_is_measured_from_the_extension():
    c = "C"
    record = [*clean_record(), *start_phases(c, 1000.0), ev(c, "restored", 1010.0, step=300),
              steps(c, 300, 400, 1010.0, 1013.0, compile=True), ev(c, "train_end", 1013.0, step=400)]
    s = goodput.compute(record)
    assert s["attempts"] == 1 and s["wall_secs"] == 13.0 and s["badput_secs"]["disruption"] == 0


def test_a_torn_last_line_is_skipped_and_the_rest_of_the_record_counts(tmp_path):
    record_dir = tmp_path / layout.GOODPUT_DIR
    record_dir.mkdir()
    lines = [json.dumps(e) for e in clean_record()]
    (record_dir / "A.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:25])
    events = goodput.read_events(str(record_dir))
    assert len(events) == len(lines) - 1
    s = goodput.compute(events, now=19.0)
    assert not s["complete"] and s["final_step"] == 300 and s["goodput"] > 0


def test_the_evaluators_lag_is_its_printed_time_less_the_chiefs_save():
    eval_events = [{"event": "eval_printed", "step": 200, "time": 18.5},
                   {"event": "eval_printed", "step": 300, "time": 22.0}]
    s = goodput.compute(clean_record(), eval_events)
    assert goodput.eval_lags(clean_record(), eval_events) == [(200, 1.0), (300, 3.0)]
    assert s["eval_lag"] == {"count": 2, "median_secs": 2.0, "worst_secs": 3.0, "worst_step": 300}


@pytest.fixture
def fresh_marks():
    goodput_record.reset_process_marks()
    yield
    goodput_record.reset_process_marks()


def run_recorder(model_dir: str, *, is_chief: bool = True, fail: bool = False) -> goodput_record.Recorder:
    """A recorder through an attempt's life, as train.py drives it."""
    import contextlib

    goodput_record.mark("imported")
    recorder = goodput_record.begin()
    recorder.event("data_loaded")
    with contextlib.ExitStack() as on_exit:
        if fail:
            on_exit.enter_context(pytest.raises(RuntimeError))
        recorder.open(model_dir, is_chief, on_exit)
        recorder.event("restored", step=0)
        recorder.steps(10, 10, 0.5, report=False)  # the compiling call
        recorder.steps(20, 10, 0.1, report=False)
        recorder.steps(30, 10, 0.1, report=True)
        with recorder.span("checkpoint_save", step=30):
            pass
        if fail:
            raise RuntimeError("a peer died")
        recorder.finish(30)
    return recorder


def test_the_chief_writes_one_self_describing_line_per_event_and_goodput_json(tmp_path, fresh_marks, caplog):
    with caplog.at_level(logging.INFO, logger="model.goodput"):
        recorder = run_recorder(str(tmp_path))
    files = list((tmp_path / layout.GOODPUT_DIR).iterdir())
    assert [f.name for f in files] == [recorder.attempt + ".jsonl"]
    events = [json.loads(line) for line in files[0].read_text().splitlines()]
    assert [e["event"] for e in events] == ["process_start", "imported", "data_loaded", "restored",
                                            "steps", "steps", "checkpoint_save", "train_end"]
    assert all(e["attempt"] == recorder.attempt and e["v"] == goodput.VERSION for e in events)
    assert events[5]["first_step"] == 10 and events[5]["last_step"] == 30  # two calls, one report
    summary = json.loads((tmp_path / layout.GOODPUT_SUMMARY).read_text())
    assert summary["complete"] and summary["final_step"] == 30 and 0 < summary["goodput"] <= 1
    line = next(r.getMessage() for r in caplog.records if log_lines.GOODPUT.match(r.getMessage()))
    assert float(log_lines.GOODPUT.match(line)["goodput"]) == pytest.approx(summary["goodput"], abs=1e-4)


def test_a_worker_that_is_not_the_chief_writes_nothing(tmp_path, fresh_marks):
    run_recorder(str(tmp_path), is_chief=False)
    assert list(tmp_path.iterdir()) == []


def test_an_attempt_that_fails_records_how_and_its_successor_restarts_the_clock(tmp_path, fresh_marks):
    first = run_recorder(str(tmp_path), fail=True)
    second = run_recorder(str(tmp_path))
    assert first.attempt != second.attempt
    events = goodput.read_events(str(tmp_path / layout.GOODPUT_DIR))
    failed = [e for e in events if e["event"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"] == "RuntimeError" and failed[0]["attempt"] == first.attempt
    # The second attempt in this process does not reuse the process's start time.
    starts = sorted(e["time"] for e in events if e["event"] == "process_start")
    assert len(starts) == 2 and starts[1] >= max(e["time"] for e in events if e["attempt"] == first.attempt)
    summary = goodput.read_summary(str(tmp_path))
    assert summary["attempts"] == 2 and summary["disruptions"][0]["how"] == "failed"


def test_a_remote_record_is_replaced_whole_at_each_event(fresh_marks):
    """ram:// (TensorFlow's in-memory filesystem) has "://" like gs:// and takes the same path:
    the attempt's object rewritten whole through tf.io.gfile."""
    import tensorflow as tf

    model_dir = "ram://goodput-test/model"
    recorder = run_recorder(model_dir)
    text = tf.io.gfile.GFile(f"{model_dir}/{layout.GOODPUT_DIR}/{recorder.attempt}.jsonl").read()
    assert [json.loads(line)["event"] for line in text.splitlines()][-1] == "train_end"
    assert goodput.read_summary(model_dir)["final_step"] == 30


def test_the_session_run_left_a_complete_record_goodput_json_and_scalars(trained_dir):
    """The real 30-step run (tests/conftest.py): the hooks in train.py wrote every phase."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = goodput.read_events(str(trained_dir / layout.GOODPUT_DIR))
    names = [e["event"] for e in events]
    for name in ("process_start", "data_loaded", "restored", "steps", "checkpoint_save", "train_end"):
        assert name in names, names
    assert [e["step"] for e in events if e["event"] == "checkpoint_save"] == [10, 20, 30]
    covered = sorted((e["first_step"], e["last_step"]) for e in events if e["event"] == "steps")
    assert covered[0][0] == 0 and covered[-1][1] == 30
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:]))  # no step missing or counted twice
    summary = goodput.read_summary(str(trained_dir))
    assert summary == goodput.compute(events)
    assert summary["complete"] and summary["attempts"] == 1 and 0 < summary["goodput"] < 1
    tags = EventAccumulator(str(trained_dir / layout.TRAIN_SUMMARY_DIR), size_guidance={"tensors": 0})
    tags.Reload()
    assert {"goodput/goodput", "goodput/badput_compile"} <= set(tags.Tags()["tensors"])



def test_mnistctl_status_shows_goodput_from_the_model_dir_or_else_the_chiefs_line(tmp_path):
    from mnistctl.status import render, summarize
    from tests.mnistctl.api_shapes import NS, RELEASE, in_progress_release

    snap = in_progress_release()
    line = log_lines.GOODPUT_FORMAT % (0.9712, 41.2, 42.4, 2, "disruption", 0.0151)
    chief = "mnist-train-trainer-0-7xk2p"
    snap["logs"] = {**snap["logs"], chief: snap["logs"][chief] + "\n" + line + "\n"}
    text = render(summarize(NS, RELEASE, **snap))
    assert ("goodput      goodput 0.971 of 42.4 s over 2 attempt(s); largest badput disruption 1.5% "
            "(from the chief's log)") in text
    goodput.write_summary(str(tmp_path), goodput.compute(clean_record()))
    text = render(summarize(NS, RELEASE, **snap, goodput_summary=goodput.summary_of(str(tmp_path))))
    assert "goodput      goodput 0.158 of 19.0 s over 1 attempt(s); badput: " in text
    assert "startup 26.3%" in text and "(from the model dir)" in text


def test_a_record_that_cannot_be_written_never_stops_training_or_evaluation(tmp_path, fresh_marks, caplog):
    (tmp_path / layout.GOODPUT_DIR).write_text("a file where the record's directory should be")
    run_recorder(str(tmp_path))  # raises nothing
    goodput_record.eval_printed(str(tmp_path), 10)
    assert not (tmp_path / layout.GOODPUT_SUMMARY).exists()
    assert sum("goodput | cannot" in r.getMessage() for r in caplog.records) == 2
