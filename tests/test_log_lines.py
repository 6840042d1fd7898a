"""Each log line of model/log_lines.py: formatted with its format, parsed back by its pattern.

A format and a pattern that drift apart fail here, not in a parser that
silently stops matching the trainer's output."""

from __future__ import annotations

import pytest

from model import log_lines as L

SHA = "0123456789abcdef" * 4
RUN = "90a79c3d84ca"

# (format, values, pattern, the groups parsed back)
LINES = [
    (L.CLUSTER_FORMED_FORMAT, ("Indexed Job environment", "worker", 1, 2, "RING", 2), L.CLUSTER_FORMED,
     dict(source="Indexed Job environment", task="worker:1", workers="2", all_reduce="RING", replicas="2")),
    (L.TRAIN_START_FORMAT, ("lenet5", 200, 1000, 200, 2, True), L.TRAIN_START,
     dict(model="lenet5", step="200", max_steps="1000", global_batch="200", replicas="2", chief="True")),
    (L.TRAIN_RESTORED_FORMAT, ("gs://b/m/ckpt-200", 200), L.TRAIN_RESTORED,
     dict(path="gs://b/m/ckpt-200", step="200")),
    (L.TRAIN_EXCHANGE_FORMAT, ("fc1 factors, the rest all-reduced", "bfloat16"), L.TRAIN_EXCHANGE,
     dict(plan="fc1 factors, the rest all-reduced", wire="bfloat16")),
    (L.TRAIN_COMPILED_FORMAT, (100, 4.07), L.TRAIN_COMPILED, dict(steps="100", seconds="4.1")),
    (L.TRAIN_PROGRESS_FORMAT, (300, 0.34121, 0.94, 0.8, 5300.4), L.TRAIN_PROGRESS,
     dict(step="300", loss="0.3412", batch_accuracy="0.9400", lr="0.80000", images_per_sec="5300")),
    (L.TRAIN_PROGRESS_FORMAT, (7, float("nan"), 0.1, 0.8, 10.0), L.TRAIN_PROGRESS,
     dict(step="7", loss="nan")),
    (L.TRAIN_SAVED_FORMAT, (1000, "/m/ckpt-1000"), L.TRAIN_SAVED, dict(step="1000", path="/m/ckpt-1000")),
    (L.STOP_REQUESTED_SIGINT_FORMAT, (), L.STOP_REQUESTED, dict(signal="Ctrl-C")),
    (L.STOP_REQUESTED_SIGTERM_FORMAT, (), L.STOP_REQUESTED, dict(signal="SIGTERM")),
    (L.TRAIN_PREEMPTED_FORMAT, (2400,), L.TRAIN_PREEMPTED, dict(step="2400")),
    (L.TRAIN_INTERRUPTED_FORMAT, (2400, 2400), L.TRAIN_INTERRUPTED, dict(step="2400")),
    (L.TRAIN_DONE_FORMAT, (30000, 5321.6, SHA), L.TRAIN_DONE,
     dict(step="30000", images_per_sec="5322", sha256=SHA)),
    (L.TRAIN_DONE_FORMAT, (30, 0.0, SHA), L.TRAIN_DONE, dict(step="30", images_per_sec="0")),
    (L.GOODPUT_FORMAT, (0.9712, 41.23, 42.46, 2, "disruption", 0.0151), L.GOODPUT,
     dict(goodput="0.9712", productive="41.2", wall="42.5", attempts="2", cause="disruption",
          share="0.0151")),
    (L.EVAL_VALIDATION_FORMAT, (1000, 0.9612), L.EVAL_VALIDATION, dict(step="1000", accuracy="0.9612")),
    (L.EVAL_VALIDATION_FORMAT, (10, 1e-05), L.EVAL_VALIDATION, dict(step="10", accuracy="1e-05")),
    (L.EVAL_TEST_FORMAT, (30000, 0.9839), L.EVAL_TEST, dict(step="30000", accuracy="0.9839", already=None)),
    (L.EVAL_TEST_FORMAT + L.ALREADY_EVALUATED, (30000, 0.9839), L.EVAL_TEST,
     dict(step="30000", accuracy="0.9839", already=L.ALREADY_EVALUATED)),
    (L.EXPORTED_FORMAT, ("mlp", 30, "gs://b/export"), L.EXPORTED,
     dict(model="mlp", step="30", path="gs://b/export")),
    (L.EXPORTED_BEST_FORMAT, (20, 0.9733, "", "/e"), L.EXPORTED_BEST,
     dict(step="20", accuracy="0.9733", rank=None, path="/e")),
    (L.EXPORTED_BEST_FORMAT, (20, 0.9733, L.BEST_RANK_FORMAT % 2, "/e"), L.EXPORTED_BEST,
     dict(step="20", rank="2", path="/e")),
    (L.CONFIG_FORMAT, ("model=mlp model_dir=/m max_steps=20",), L.CONFIG,
     dict(settings="model=mlp model_dir=/m max_steps=20")),
    (L.ERROR_FORMAT, ("--model must be 'mlp' or 'lenet5', got 'vgg'",), L.ERROR,
     dict(message="--model must be 'mlp' or 'lenet5', got 'vgg'")),
    (L.RUN_NEW_FORMAT, (RUN, "mlp, 2 workers x batch 100, seed 0", "/m/run_config.json"), L.RUN_NEW,
     dict(run_id=RUN, summary="mlp, 2 workers x batch 100, seed 0", path="/m/run_config.json")),
    (L.RUN_RESUMING_FORMAT, (RUN, 200, 1000), L.RUN_RESUMING,
     dict(run_id=RUN, step="200", max_steps="1000", extended_id=None)),
    (L.RUN_EXTENDING_FORMAT, (RUN, 1000, 2000), L.RUN_RESUMING,
     dict(extended_id=RUN, from_step="1000", max_steps="2000", run_id=None)),
    (L.ALREADY_COMPLETE_FORMAT, (30, 30), L.ALREADY_COMPLETE, dict(step="30", max_steps="30")),
    (L.LEASE_ACQUIRED_FORMAT, ("/m/lease.json", RUN, 30.0), L.LEASE_ACQUIRED,
     dict(path="/m/lease.json", run_id=RUN)),
    (L.LEASE_TAKEN_OVER_FORMAT, ("/m/lease.json", "pod a (pid 7)", 30.0, RUN), L.LEASE_TAKEN_OVER,
     dict(path="/m/lease.json", holder="pod a (pid 7)", run_id=RUN)),
    (L.LEASE_WAITING_FORMAT, ("/m/lease.json", "pod a (pid 7)", 180.0), L.LEASE_WAITING,
     dict(path="/m/lease.json", holder="pod a (pid 7)", secs="180")),
    (L.LEASE_RELEASED_FORMAT, ("/m/lease.json",), L.LEASE_RELEASED, dict(path="/m/lease.json")),
    (L.LEAVE_TOGETHER_FORMAT, (3, 0.0412), L.LEAVE_TOGETHER, dict(waited="3", secs="0.04")),
    (L.PREDICTION_FORMAT, (7, 0.98765, "my digits/seven.png"), L.PREDICTION,
     dict(digit="7", probability="0.9877", path="my digits/seven.png")),
]


@pytest.mark.parametrize("line_format,values,pattern,groups", LINES,
                         ids=[f"{i}-{line[2].pattern[1:20]}" for i, line in enumerate(LINES)])
def test_a_formatted_line_parses_back_to_its_values(line_format, values, pattern, groups):
    line = line_format % values
    match = pattern.match(line)
    assert match, f"{pattern.pattern!r} does not match its own line {line!r}"
    assert {k: match[k] for k in groups} == groups
    # Among other output, as parsers read it.
    found = pattern.search(f"malloc | x\n{line}\nnext")
    assert found and {k: found[k] for k in groups} == groups


def test_every_format_in_the_module_is_tested_here():
    formats = {name for name in dir(L) if name.endswith("_FORMAT")}
    tested = {name for name in formats if any(getattr(L, name) in (f, f.removesuffix(L.ALREADY_EVALUATED))
                                              for f, *_ in LINES)}
    assert formats - tested <= {"BEST_RANK_FORMAT"}, f"untested formats: {sorted(formats - tested)}"


def test_a_pattern_matches_only_at_the_start_of_a_line():
    line = L.TRAIN_SAVED_FORMAT % (10, "/m/ckpt-10")
    assert not L.TRAIN_SAVED.match("[trainer-0] " + line)


def test_the_evaluators_json_events_round_trip_and_other_lines_are_not_events():
    final = {"event": "final", "final_step": 30, "test_accuracy": 0.9839, "best_step": 20}
    line = L.eval_event_line(final)
    assert L.parse_eval_event(line) == final
    assert L.EVAL_EVENT.search(f"After 30 training step(s), test accuracy = 0.9839\n{line}\n")
    assert L.parse_eval_event(L.EVAL_TEST_FORMAT % (30, 0.9839)) is None
    assert L.parse_eval_event('{"step": 3}') is None  # JSON, but not one of the evaluator's events
