"""mnistctl/progress.py: what the chief's and the evaluator's logs say."""

from __future__ import annotations

from mnistctl.progress import Progress, error_line, parse_evaluator_log, parse_trainer_log
from tests.mnistctl.api_shapes import CHIEF_LOG, CONFIG_ERROR_LOG, EVALUATOR_LOG, FINAL_EVALUATOR_LOG


def test_log_parsing():
    progress = parse_trainer_log(CHIEF_LOG, Progress())
    assert (progress.step, progress.checkpoint_step, progress.training_done) == (2100, 2000, False)
    parse_evaluator_log(EVALUATOR_LOG, progress)
    assert (progress.eval_step, progress.eval_accuracy) == (2000, 0.9733)
    final = parse_evaluator_log(FINAL_EVALUATOR_LOG, Progress())
    assert (final.final_step, final.test_accuracy, final.checkpoint_step) == (30000, 0.9839, 30000)
    plain = parse_evaluator_log("After 700 training step(s), validation accuracy = 0.95\n", Progress())
    assert (plain.eval_step, plain.eval_accuracy) == (700, 0.95)
    assert error_line(CONFIG_ERROR_LOG).startswith("error: MNIST file not found")


def test_a_broken_json_event_falls_back_to_the_tutorial_lines():
    text = ('{"event": "eval", "step": 900, "validation_accuracy": \n'
            "After 800 training step(s), validation accuracy = 0.9\n")
    progress = parse_evaluator_log(text, Progress())
    assert (progress.eval_step, progress.eval_accuracy) == (800, 0.9)
