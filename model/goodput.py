"""The goodput record of a run and what it says: how much of the job's wall time became
preserved training progress, and where the rest went.

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

The record
    `<model-dir>/goodput/<attempt>.jsonl` (layout.GOODPUT_DIR): one file per attempt (one chief
    process), written by the chief only, one JSON object a line, each complete in itself: `event`,
    `time` (time.time() at its end), `attempt`, and the event's fields (`start` for spans).
    One file per attempt rather than one shared file, because Cloud Storage cannot append: on
    gs:// the attempt's object is replaced whole (an object upload is atomic: readers see the old
    or the new object, never a torn one); on a local path the line is appended with one write()
    to a file no other process writes, so a torn last line (a pod killed mid-write, a full disk)
    can only end the file of an attempt that is over: the reader skips it, and no later append
    lands after it. A gs:// attempt object is rewritten at every event except step intervals,
    which wait at most `REMOTE_FLUSH_SECS`; both go through tf.io.gfile there (the trainer has
    TensorFlow) and plain file I/O locally.
    The evaluator keeps its own record in `<eval-dir>/goodput/evaluator-<attempt>.jsonl`: one
    `eval_printed` event per checkpoint scored; its lag is that time less the chief's save of
    that checkpoint.

`goodput.json` (layout.GOODPUT_SUMMARY), written atomically by the chief at training end, is
`compute()`'s result; `python -m mnistctl status --model-dir`, the local runner's summary and
the evaluator's final metrics read it. Nothing here imports TensorFlow at module level.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import statistics
import sys
import threading
import time

from model import layout, log_lines

log = logging.getLogger(__name__)

VERSION = 1
CAUSES = ("startup", "cluster", "data_load", "restore", "compile", "checkpoint_save", "evaluation",
          "disruption", "wasted_progress", "other")
# The marks of an attempt's start, in order, and the cause of the time up to each.
PHASES = (("process_start", None), ("imported", "startup"), ("cluster_formed", "cluster"),
          ("data_loaded", "data_load"), ("restored", "restore"))
REMOTE_FLUSH_SECS = 30.0
EVALUATOR_PREFIX = "evaluator-"

_process_marks: dict[str, float] = {}
_process_lock = threading.Lock()
_current = threading.local()


# --- when this process started ------------------------------------------------------------------

def process_start_time() -> float:
    """This process's start (wall clock): $MNIST_PROCESS_START if set (a launcher's or a pod's
    own clock), else /proc/self/stat's start time, else this module's import."""
    env = os.environ.get("MNIST_PROCESS_START")
    if env:
        try:
            return float(env)
        except ValueError:
            pass
    try:
        with open("/proc/self/stat") as f:
            # Field 22 (starttime, clock ticks after boot) comes after the ")" ending the name.
            fields = f.read().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


_IMPORTED_AT = time.time()


def mark(name: str) -> None:
    """A process-wide mark (`imported`, `cluster_formed`): the first time wins."""
    with _process_lock:
        _process_marks.setdefault(name, time.time())


# --- storage: local append or whole-object replace ---------------------------------------------

def _is_remote(path: str) -> bool:
    return "://" in path


def _without_tensorflow(path: str) -> bool:
    """A gs:// path read by a program that has not imported TensorFlow (mnistctl): model/gcs.py."""
    return path.startswith("gs://") and "tensorflow" not in sys.modules


def _list(directory: str) -> list[str]:
    """The names in `directory` (none if it does not exist)."""
    if _without_tensorflow(directory):
        from model import gcs
        uri = gcs.parse_uri(directory)
        prefix = uri.object_name() + "/"
        names = gcs._list_names(gcs.make_client(), uri)  # noqa: SLF001 - the module's own lister
        return [n[len(prefix):] for n in names if "/" not in n[len(prefix):]]
    if _is_remote(directory):
        import tensorflow as tf
        return [n.rstrip("/") for n in tf.io.gfile.listdir(directory)] if tf.io.gfile.isdir(directory) else []
    try:
        return os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _read(path: str) -> str | None:
    try:
        if _without_tensorflow(path):
            from model import gcs
            return gcs.read_text(path)
        if _is_remote(path):
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
    for name in sorted(_list(directory)):
        if name.endswith(".jsonl"):
            events += parse_lines(_read(layout.child(directory, name)) or "")
    return events


class RecordFile:
    """One process's record file: local lines are appended, a gs:// object is replaced whole."""

    def __init__(self, directory: str, name: str):
        self.path = layout.child(directory, name)
        self.remote = _is_remote(directory)
        self.lines: list[str] = []
        self.last_flush = 0.0
        if self.remote:
            import tensorflow as tf
            tf.io.gfile.makedirs(directory)
        else:
            os.makedirs(directory, exist_ok=True)

    def add(self, event: dict, *, urgent: bool = True) -> None:
        line = json.dumps(event, sort_keys=True) + "\n"
        try:
            if not self.remote:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(line)  # one write() of one whole line
                return
            self.lines.append(line)
            if urgent or time.monotonic() - self.last_flush >= REMOTE_FLUSH_SECS:
                self.flush()
        except OSError as e:  # the record must never stop training
            log.warning("goodput | could not write %s: %s", self.path, e)

    def flush(self) -> None:
        if self.remote and self.lines:
            import tensorflow as tf
            with tf.io.gfile.GFile(self.path, "w") as f:  # one object upload: whole or nothing
                f.write("".join(self.lines))
            self.last_flush = time.monotonic()


# --- the chief's recorder -----------------------------------------------------------------------

class Recorder:
    """One training attempt's events. Held per thread (in-process tests run several workers as
    threads); writes nothing until `open` is called by the chief, then writes what it held."""

    def __init__(self, marks: dict[str, float]):
        self.marks = dict(marks)  # start-phase marks before the record is open
        self.attempt = ""
        self.file: RecordFile | None = None
        self.model_dir: str | None = None
        self.pending: dict | None = None  # step intervals not yet written
        self.calls = 0
        self.ended = False

    def event(self, name: str, *, urgent: bool = True, at: float | None = None, **fields) -> None:
        if self.file is None:
            if name in dict(PHASES):
                self.marks.setdefault(name, at or time.time())
            return
        if name != "steps":
            self._flush_steps()
        self.file.add({"v": VERSION, "attempt": self.attempt, "event": name,
                       "time": round(at or time.time(), 4), **fields}, urgent=urgent)

    def open(self, model_dir: str, is_chief: bool, on_exit=None) -> None:
        """Start writing: the chief's own attempt file, beginning with the marks held so far.
        `on_exit` (the train call's ExitStack) gets `self.on_exit`, which records how it ended."""
        if on_exit is not None:
            on_exit.push(self.on_exit)
        if not is_chief or self.file is not None:
            return
        start = min(self.marks.values(), default=time.time())
        self.attempt = f"{int(start * 1000):013d}-{socket.gethostname()}-{os.getpid()}"
        self.model_dir = model_dir
        try:
            self.file = RecordFile(layout.child(model_dir, layout.GOODPUT_DIR), self.attempt + ".jsonl")
        except Exception as e:  # noqa: BLE001 - the record must never stop training
            log.warning("goodput | cannot keep a record in %s: %s: %s", model_dir, type(e).__name__, e)
            return
        for name, _ in PHASES:
            if name in self.marks:
                self.event(name, at=self.marks[name])

    def steps(self, step: int, ran: int, seconds: float, *, report: bool) -> None:
        """A loop call that ran `ran` steps ending at `step` in `seconds`; written at a progress
        report (`report`) or before the next other event."""
        if self.file is None or ran <= 0:
            return
        self.calls += 1
        now = time.time()
        if self.calls == 1:  # the first call traces and compiles: its own event
            self.event("steps", first_step=step - ran, last_step=step, seconds=round(seconds, 4),
                       start=round(now - seconds, 4), compile=True, urgent=False)
            return
        if self.pending is None:
            self.pending = {"first_step": step - ran, "last_step": step, "seconds": 0.0,
                            "start": round(now - seconds, 4), "calls": 0}
        self.pending["last_step"] = step
        self.pending["seconds"] += seconds
        self.pending["calls"] += 1
        if report:
            self._flush_steps()

    def _flush_steps(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            pending["seconds"] = round(pending["seconds"], 4)
            self.event("steps", urgent=False, **pending)

    def span(self, name: str, **fields):
        """A context manager: the span `name` (e.g. checkpoint_save) from entry to exit."""
        return _Span(self, name, fields)

    def on_exit(self, exc_type, exc, tb) -> bool:
        """An ExitStack exit callback: how the attempt ended, if not at `finish`."""
        if exc_type is not None and not self.ended:
            kind = {"Interrupted": "interrupted", "Preempted": "preempted"}.get(exc_type.__name__, "failed")
            self.event(kind, step=getattr(exc, "step", None), error=exc_type.__name__)
        if self.file is not None:
            self.file.flush()
        attempt_ended()
        return False

    def finish(self, step: int, summary_writer=None) -> dict | None:
        """Training ended at `step`: record it, write goodput.json, log the goodput line and
        the TensorBoard scalars. Returns the summary (None on a non-chief)."""
        if self.file is None:
            return None
        self.event("train_end", step=step)
        self.ended = True
        try:
            self.file.flush()
            summary = compute(read_events(layout.child(self.model_dir, layout.GOODPUT_DIR)),
                          read_events(default_eval_record(self.model_dir)))
            write_summary(self.model_dir, summary)
        except Exception as e:  # noqa: BLE001 - the accounting must not fail a finished run
            log.warning("goodput | could not write %s: %s: %s", layout.GOODPUT_SUMMARY, type(e).__name__, e)
            return None
        log.info(log_lines.GOODPUT_FORMAT, *goodput_line_values(summary))
        if summary_writer is not None:
            write_scalars(summary_writer, summary, step)
        return summary


class _Span:
    def __init__(self, recorder: Recorder, name: str, fields: dict):
        self.recorder, self.name, self.fields = recorder, name, fields

    def __enter__(self):
        self.start = time.time()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.recorder.event(self.name, start=round(self.start, 4), **self.fields)
        return False


def begin() -> Recorder:
    """A new attempt's recorder for this thread (train() calls it first). The process's own
    start marks go to attempts begun before any attempt in this process ended; a later attempt
    in the same process starts at this call."""
    with _process_lock:
        reused = _process_marks.get("_attempt_ended")
        marks = ({"process_start": time.time()} if reused else
                 {"process_start": process_start_time(),
                  **{k: v for k, v in _process_marks.items() if not k.startswith("_")}})
    _current.recorder = Recorder(marks)
    return _current.recorder


def current() -> Recorder:
    """This thread's recorder (a silent one if begin() was not called)."""
    recorder = getattr(_current, "recorder", None)
    if recorder is None:
        recorder = _current.recorder = Recorder({})
    return recorder


def attempt_ended() -> None:
    with _process_lock:
        _process_marks["_attempt_ended"] = time.time()


# --- the evaluator's lag ---------------------------------------------------------------------------

_evaluator_files: dict[str, RecordFile] = {}


def eval_printed(eval_dir: str, step: int) -> None:
    """The evaluator printed checkpoint `step`'s accuracy line now."""
    try:
        record = _evaluator_files.get(eval_dir)
        if record is None:
            name = f"{EVALUATOR_PREFIX}{int(process_start_time() * 1000):013d}-{os.getpid()}.jsonl"
            record = _evaluator_files[eval_dir] = RecordFile(layout.child(eval_dir, layout.GOODPUT_DIR),
                                                             name)
        record.add({"v": VERSION, "event": "eval_printed", "step": step, "time": round(time.time(), 4)})
    except Exception as e:  # noqa: BLE001 - the record must never stop the evaluator
        log.warning("goodput | cannot record in %s: %s: %s", eval_dir, type(e).__name__, e)


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
    text = _read(layout.child(model_dir, layout.GOODPUT_SUMMARY))
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


def reset_process_marks() -> None:
    """Forget this process's marks and records (for tests that run several attempts in one process)."""
    with _process_lock:
        _process_marks.clear()
    _evaluator_files.clear()
    _current.recorder = None
