"""The goodput record: the append-only, per-attempt event files the trainer's chief and the
evaluator write while they run (model/goodput.py reads them and does the accounting).

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
    `eval_printed` event per checkpoint scored.

The events an attempt's start leaves, in order, are model/goodput.py's `PHASES`, and
model/goodput.py reads the record back (`read_events`, which skips a torn last line). Writing
the record must never stop training or evaluation: a failure to write is a warning. Nothing
here imports TensorFlow at module level.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time

from model import goodput, layout
from model.goodput import VERSION

log = logging.getLogger(__name__)

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

class RecordFile:
    """One process's record file: local lines are appended, a gs:// object is replaced whole."""

    def __init__(self, directory: str, name: str):
        self.path = layout.child(directory, name)
        self.remote = goodput.is_remote(directory)
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
            if name in dict(goodput.PHASES):
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
        for name, _ in goodput.PHASES:
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
        return goodput.report_end(self.model_dir, step, summary_writer, flush=self.file.flush)


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


# --- the evaluator's record ----------------------------------------------------------------------

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


def reset_process_marks() -> None:
    """Forget this process's marks and records (for tests that run several attempts in one process)."""
    with _process_lock:
        _process_marks.clear()
    _evaluator_files.clear()
    _current.recorder = None
