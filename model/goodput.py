"""The goodput accounting of a run: from its record (model/goodput_record.py), how much of the
job's wall time became preserved training progress, and where the rest went.

Definitions (after Google's ml-goodput-measurement, github.com/AI-Hypercomputer/ml-goodput-measurement,
README "Badput Breakdown Details" and src/goodput_utils.py `BadputType`, which this mirrors without
needing a Cloud project or Cloud Logging):

    goodput = productive, preserved step time / the job's wall-clock time

The job's wall time runs from the first attempt's process start to the end of training (the final
checkpoint saved); a run extended after it completed starts a new job. Productive step time is
the time of loop calls that trained steps, less the tracing and compilation in the first call of
each attempt; it is *preserved* if no later attempt restored from a checkpoint older than those
steps (the final run's lineage). Badput is the rest, by cause (`CAUSES`; upstream's bucket in
brackets):

    startup          process start -> the training library (TensorFlow) imported   [PROGRAM_STARTUP,
                                                                                     accelerator init]
    cluster          -> the cluster formed: waiting for the peers                   [TPU_INITIALIZATION]
    data_load        -> MNIST loaded (and verified)                                 [DATA_LOADING_SYNC]
    restore          -> the model dir claimed and the newest checkpoint restored    [TRAINING_PREP,
                                                                                     CHECKPOINT_RESTORE]
    compile          -> the first loop call's end, less its steps at the ideal step time
                        (building the loop, tracing, compiling)                     [PROGRAM_STARTUP]
    checkpoint_save  the time the loop stood still for a save                       [CHECKPOINT_SAVE]
    evaluation       evaluation that stalls training: none here (the evaluator is
                     its own process and pod); kept so the breakdown is complete    [CUSTOM_BADPUT_EVENTS]
    disruption       an attempt's last record -> the next attempt's process start:
                     failure detection, the restart, the part of a dead attempt's
                     life it could not record                                       [INFRASTRUCTURE_RECOVERY]
    wasted_progress  step time of steps a later attempt trained again              [WASTED_PROGRESS]
    other            whatever the above do not cover (reporting, summaries, the
                     gaps between loop calls, the final bookkeeping)                [OTHER]

The ideal step time is the median per-step time of the loop calls that did not compile (upstream
computes an ideal step time the same way, from the step times it saw).

The record (model/goodput_record.py) is the per-attempt event files the chief and the
evaluator write; this module reads them (`read_events`, skipping a torn last line). The
evaluator's lag is its `eval_printed` time less the chief's save of that checkpoint.

`goodput.json` (layout.GOODPUT_SUMMARY), written atomically by the chief at training end, is
`compute()`'s result; `python -m mnistctl status --model-dir`, the local runner's summary and
the evaluator's final metrics read it. Nothing here imports TensorFlow at module level.
"""

from __future__ import annotations

import json
import logging
import statistics
import time

import os
import sys

from model import layout, log_lines

log = logging.getLogger(__name__)

VERSION = 1  # of the record's event lines (model/goodput_record.py) and of goodput.json
CAUSES = ("startup", "cluster", "data_load", "restore", "compile", "checkpoint_save", "evaluation",
          "disruption", "wasted_progress", "other")
# The marks of an attempt's start, in order, and the cause of the time up to each.
PHASES = (("process_start", None), ("imported", "startup"), ("cluster_formed", "cluster"),
          ("data_loaded", "data_load"), ("restored", "restore"))


# --- reading the record (local, or gs:// with or without TensorFlow) ----------------------------

def is_remote(path: str) -> bool:
    return "://" in path


def _without_tensorflow(path: str) -> bool:
    """A gs:// path read by a program that has not imported TensorFlow (mnistctl): model/gcs.py."""
    return path.startswith("gs://") and "tensorflow" not in sys.modules


def list_names(directory: str) -> list[str]:
    """The names in `directory` (none if it does not exist)."""
    if _without_tensorflow(directory):
        from model import gcs
        uri = gcs.parse_uri(directory)
        prefix = uri.object_name() + "/"
        names = gcs._list_names(gcs.make_client(), uri)  # noqa: SLF001 - the module's own lister
        return [n[len(prefix):] for n in names if "/" not in n[len(prefix):]]
    if is_remote(directory):
        import tensorflow as tf
        return [n.rstrip("/") for n in tf.io.gfile.listdir(directory)] if tf.io.gfile.isdir(directory) else []
    try:
        return os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []


def read_text(path: str) -> str | None:
    try:
        if _without_tensorflow(path):
            from model import gcs
            return gcs.read_text(path)
        if is_remote(path):
            import tensorflow as tf
            with tf.io.gfile.GFile(path, "r") as f:
                return f.read()
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except Exception as e:  # noqa: BLE001 - tf.errors.NotFoundError without importing TensorFlow
        if type(e).__name__ == "NotFoundError":
            return None
        raise


def parse_lines(text: str) -> list[dict]:
    """The events of one record file: a line that is not a whole JSON object (a torn last line)
    is skipped."""
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("event"), str) \
                and isinstance(event.get("time"), (int, float)):
            events.append(event)
    return events


def read_events(directory: str) -> list[dict]:
    """Every event of every record file (`*.jsonl`) in `directory`, oldest file first."""
    events = []
    for name in sorted(list_names(directory)):
        if name.endswith(".jsonl"):
            events += parse_lines(read_text(layout.child(directory, name)) or "")
    return events


# --- the evaluator's lag ---------------------------------------------------------------------------

def eval_lags(events: list[dict], eval_events: list[dict]) -> list[tuple[int, float]]:
    """(step, seconds from the chief's save of that checkpoint to the evaluator printing it),
    for each checkpoint both records know, oldest first."""
    saved: dict[int, float] = {}
    for e in events:
        if e["event"] == "checkpoint_save" and isinstance(e.get("step"), int):
            saved[e["step"]] = e["time"]  # the newest save of a step wins
    printed: dict[int, float] = {}
    for e in eval_events:
        if e["event"] == "eval_printed" and isinstance(e.get("step"), int):
            printed.setdefault(e["step"], e["time"])
    return [(s, round(max(0.0, printed[s] - saved[s]), 3)) for s in sorted(printed) if s in saved]


def lag_stats(lags: list[tuple[int, float]]) -> dict:
    seconds = [lag for _, lag in lags]
    return {"count": len(seconds),
            "median_secs": round(statistics.median(seconds), 3) if seconds else None,
            "worst_secs": max(seconds) if seconds else None,
            "worst_step": max(lags, key=lambda x: x[1])[0] if lags else None}


def final_metrics_fields(model_dir: str, eval_dir: str) -> dict:
    """What the evaluator's final metrics add: the run's goodput and its own lag."""
    try:
        summary = read_summary(model_dir) or {}
        events = read_events(layout.child(model_dir, layout.GOODPUT_DIR))
        lags = eval_lags(events, read_events(layout.child(eval_dir, layout.GOODPUT_DIR)))
    except Exception as e:  # noqa: BLE001 - the final metrics matter more than their goodput
        log.warning("goodput | cannot read the goodput record: %s: %s", type(e).__name__, e)
        return {"goodput": None, "eval_lag": None}
    return {"goodput": summary.get("goodput"), "eval_lag": lag_stats(lags)}


# --- the computation -----------------------------------------------------------------------------

def _attempts(events: list[dict]) -> list[list[dict]]:
    by_attempt: dict[str, list[dict]] = {}
    for e in events:
        if "attempt" in e:
            by_attempt.setdefault(str(e["attempt"]), []).append(e)
    attempts = [sorted(es, key=lambda e: e["time"]) for es in by_attempt.values()]
    return sorted(attempts, key=lambda es: (_start_of(es), es[0]["attempt"]))


def _start_of(events: list[dict]) -> float:
    return min(e.get("start", e["time"]) for e in events)


def _step_intervals(attempt: list[dict]) -> list[dict]:
    return [e for e in attempt if e["event"] == "steps" and e["last_step"] > e["first_step"]]


def compute(events: list[dict], eval_events: list[dict] = (), now: float | None = None) -> dict:
    """Goodput and badput by cause from a record's events (see the module docstring)."""
    attempts = _attempts(events)
    # A run extended after it completed (a larger --max-steps) is a new job: it starts after the
    # last attempt that reached its end.
    ended = [n for n, a in enumerate(attempts[:-1]) if any(e["event"] == "train_end" for e in a)]
    attempts = attempts[ended[-1] + 1:] if ended else attempts
    if not attempts:
        return {"goodput": None, "complete": False, "attempts": 0, "wall_secs": 0.0,
                "productive_secs": 0.0, "badput_secs": dict.fromkeys(CAUSES, 0.0),
                "badput_shares": dict.fromkeys(CAUSES, 0.0), "final_step": None, "eval_lag": lag_stats([])}
    ends = [e for e in attempts[-1] if e["event"] == "train_end"]
    complete = bool(ends)
    job_start = _start_of(attempts[0])
    job_end = ends[-1]["time"] if complete else (now if now is not None else
                                                 max(e["time"] for a in attempts for e in a))
    all_steps = [i for a in attempts for i in _step_intervals(a)]
    final_step = ends[-1]["step"] if complete else max((i["last_step"] for i in all_steps), default=0)
    per_step = [i["seconds"] / (i["last_step"] - i["first_step"]) for i in all_steps if not i.get("compile")]
    ideal = statistics.median(per_step) if per_step else None

    restored_at = [next((e.get("step", 0) for e in a if e["event"] == "restored"), 0) for a in attempts]
    bad = dict.fromkeys(CAUSES, 0.0)
    productive = 0.0
    lost_steps = 0
    disruptions = []
    for n, attempt in enumerate(attempts):
        keep_to = min(restored_at[n + 1:] + [final_step])  # steps past this were trained again
        marks = {e["event"]: e["time"] for e in attempt}
        previous = None
        for name, cause in PHASES:
            if name in marks:
                if previous is not None and cause:
                    bad[cause] += max(0.0, marks[name] - previous)
                previous = marks[name]
        for interval in _step_intervals(attempt):
            steps = interval["last_step"] - interval["first_step"]
            useful = interval["seconds"]
            if interval.get("compile"):
                useful = min(interval["seconds"], steps * ideal) if ideal else interval["seconds"]
                start_of_compile = marks.get("restored", previous if previous is not None else
                                             interval["time"] - interval["seconds"])
                bad["compile"] += max(0.0, interval["time"] - start_of_compile - useful)
            kept = min(max(keep_to - interval["first_step"], 0), steps)
            productive += useful * kept / steps
            bad["wasted_progress"] += useful * (steps - kept) / steps
            lost_steps += steps - kept
        for e in attempt:
            if e["event"] == "checkpoint_save":
                bad["checkpoint_save"] += max(0.0, e["time"] - e.get("start", e["time"]))
        if n + 1 < len(attempts):
            last = max(e["time"] for e in attempt)
            gap = max(0.0, _start_of(attempts[n + 1]) - last)
            bad["disruption"] += gap
            how = next((e["event"] for e in reversed(attempt)
                        if e["event"] in ("preempted", "interrupted", "failed")), "killed")
            disruptions.append({"attempt": n, "how": how, "restored_step": restored_at[n + 1],
                                "secs": round(gap, 3)})
    wall = max(0.0, job_end - job_start)
    bad["other"] = max(0.0, wall - productive - sum(bad.values()))
    shares = {k: round(v / wall, 4) if wall else 0.0 for k, v in bad.items()}
    return {
        "version": VERSION,
        "goodput": round(productive / wall, 4) if wall else None,
        "complete": complete,
        "attempts": len(attempts),
        "disruptions": disruptions,
        "job_start": round(job_start, 3), "job_end": round(job_end, 3),
        "wall_secs": round(wall, 3),
        "productive_secs": round(productive, 3),
        "badput_secs": {k: round(v, 3) for k, v in bad.items()},
        "badput_shares": shares,
        "badput_total_secs": round(sum(bad.values()), 3),
        "final_step": final_step,
        "steps_lost": lost_steps,
        "ideal_step_secs": round(ideal, 6) if ideal else None,
        "eval_lag": lag_stats(eval_lags(events, list(eval_events))),
    }


def biggest_badput(summary: dict) -> tuple[str, float]:
    """The cause with the most badput and its share."""
    shares = summary.get("badput_shares") or {}
    return max(shares.items(), key=lambda kv: kv[1], default=("none", 0.0))


def goodput_line_values(summary: dict) -> tuple:
    """The values of log_lines.GOODPUT_FORMAT for `summary`."""
    cause, share = biggest_badput(summary)
    return (summary["goodput"] or 0.0, summary["productive_secs"], summary["wall_secs"],
            summary["attempts"], cause, share)


def describe(summary: dict) -> str:
    """One line for people: goodput, wall time and the badput over 1% by cause."""
    if summary.get("goodput") is None:
        return "goodput: nothing recorded yet"
    parts = [f"{k} {v:.1%}" for k, v in sorted(summary["badput_shares"].items(), key=lambda kv: -kv[1])
             if v >= 0.01]
    return (f"goodput {summary['goodput']:.3f} of {summary['wall_secs']:.1f} s over "
            f"{summary['attempts']} attempt(s){'' if summary.get('complete') else ' (so far)'}"
            + (f"; badput: {', '.join(parts)}" if parts else ""))


# --- goodput.json and TensorBoard ---------------------------------------------------------------

def write_summary(model_dir: str, summary: dict) -> None:
    from model.atomic_write import write_json_atomically
    write_json_atomically(layout.child(model_dir, layout.GOODPUT_SUMMARY), summary)


def read_summary(model_dir: str) -> dict | None:
    """goodput.json's contents, or None if there is none (or it cannot be parsed)."""
    text = read_text(layout.child(model_dir, layout.GOODPUT_SUMMARY))
    try:
        summary = json.loads(text) if text else None
    except ValueError:
        return None
    return summary if isinstance(summary, dict) else None


def default_eval_record(model_dir: str) -> str:
    """The evaluator's record under its default --eval-dir (<model-dir>/eval)."""
    return layout.child(layout.child(model_dir, layout.EVAL_SUMMARY_DIR), layout.GOODPUT_DIR)


def summary_of(model_dir: str, now: float | None = None) -> dict | None:
    """goodput.json if training ended (its eval_lag brought up to date from the evaluator's
    record in the default eval dir), else the goodput so far; None if there is no record."""
    events = read_events(layout.child(model_dir, layout.GOODPUT_DIR))
    eval_events = read_events(default_eval_record(model_dir))
    summary = read_summary(model_dir)
    if summary is not None:
        if eval_events:
            summary["eval_lag"] = lag_stats(eval_lags(events, eval_events))
        return summary
    return compute(events, eval_events, now=now if now is not None else time.time()) if events else None


def scalars(summary: dict) -> dict[str, float]:
    """The TensorBoard scalars: goodput and each cause's badput share, under `goodput/`."""
    out = {"goodput/goodput": summary["goodput"] or 0.0}
    out.update({f"goodput/badput_{k}": v for k, v in summary["badput_shares"].items()})
    return out


def write_scalars(summary_writer, summary: dict, step: int) -> None:
    import tensorflow as tf
    with summary_writer.as_default(step=step):
        for tag, value in scalars(summary).items():
            tf.summary.scalar(tag, value)
    summary_writer.flush()


# --- the report at training end ----------------------------------------------------------------

def report_end(model_dir: str, step: int, summary_writer=None, flush=None) -> dict | None:
    """Training ended at `step` and its record is complete (`flush` writes what it holds):
    write goodput.json, log the goodput line and the TensorBoard scalars. Returns the summary
    (None if it could not be written: the accounting must not fail a finished run)."""
    try:
        if flush is not None:
            flush()
        summary = compute(read_events(layout.child(model_dir, layout.GOODPUT_DIR)),
                          read_events(default_eval_record(model_dir)))
        write_summary(model_dir, summary)
    except Exception as e:  # noqa: BLE001 - the accounting must not fail a finished run
        log.warning("goodput | could not write %s: %s: %s", layout.GOODPUT_SUMMARY, type(e).__name__, e)
        return None
    log.info(log_lines.GOODPUT_FORMAT, *goodput_line_values(summary))
    if summary_writer is not None:
        write_scalars(summary_writer, summary, step)
    return summary
