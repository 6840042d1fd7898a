"""The names of everything the library writes in a model directory, without TensorFlow.

    <model-dir>/checkpoint                  the checkpoint state file (TensorFlow's
                                            CheckpointState text; the commit point)
    <model-dir>/ckpt-<step>.{index,data-*}  the chief's checkpoints, numbered by global step
    <model-dir>/run_config.json             the run's identity (model/run_identity.py)
    <model-dir>/lease.json, .lock           the chief's lease (model/lease.py) and the
                                            local lock of guarded JSON files (model/guarded_json.py)
    <model-dir>/training_complete.json      the completion marker: the final step
    <model-dir>/goodput/<attempt>.jsonl     the goodput record: one file per chief attempt
                                            (model/goodput_record.py); the evaluator's in <eval-dir>/goodput/
    <model-dir>/goodput.json                the run's goodput and badput, written at training end
    <model-dir>/train/                      the chief's summaries
    <model-dir>/eval/                       the evaluator's directory (default --eval-dir):
                                            eval_state.json, final_metrics.json, summaries
    <export-dir>/export_info.json           what an export holds (model/export.py);
    <export-dir>/export_complete.json       a gs:// export's completion marker (model/gcs.py)

Checkpoint code (model/checkpointing.py, with TensorFlow) and the operations
tool (mnistctl, which must not need TensorFlow) both read a model directory
through these names and parsers, so the layout is said once. Nothing here does
I/O; paths may be local or gs://.
"""

from __future__ import annotations

import hashlib
import json
import os
import re

CHECKPOINT_PREFIX = "ckpt"
CHECKPOINT_STATE = "checkpoint"
RUN_CONFIG = "run_config.json"
LEASE_FILE = "lease.json"
LOCK_NAME = ".lock"
COMPLETE_MARKER = "training_complete.json"
TRAIN_SUMMARY_DIR = "train"
EVAL_SUMMARY_DIR = "eval"
EVAL_STATE = "eval_state.json"
FINAL_METRICS = "final_metrics.json"
EXPORT_INFO = "export_info.json"
EXPORT_MARKER = "export_complete.json"
# The top-level entries tf.saved_model.save writes, plus the two above: a
# directory holding nothing else (and a saved_model.pb) is an export.
SAVED_MODEL_ENTRIES = frozenset({"saved_model.pb", "variables", "assets", "assets.extra",
                                 "fingerprint.pb", EXPORT_INFO, EXPORT_MARKER})
# Set aside, never deleted: a state file TensorFlow cannot parse (checkpointing.py).
UNREADABLE_STATE_PREFIX = f"{CHECKPOINT_STATE}.unreadable-"
WRITE_PROBE_PREFIX = ".write-test-"
GOODPUT_DIR = "goodput"  # the goodput record (model/goodput_record.py), in the model dir and the eval dir
GOODPUT_SUMMARY = "goodput.json"

_STEP_RE = re.compile(rf"{CHECKPOINT_PREFIX}-(\d+)$")
# What tf.train.Checkpoint.write leaves when it fails half-way: a directory
# <prefix>_temp holding part-<i>-of-<n>.{index,data-*}, each written as
# <file>.tempstate<digits> first.
FAILED_SAVE_DIR_RE = re.compile(rf"{CHECKPOINT_PREFIX}-\d+_temp$")
FAILED_SAVE_PART_RE = re.compile(r"part-\d+-of-\d+(\.index|\.data-\d+-of-\d+)?(\.tempstate\d+)?$")
# A CheckpointState text proto's path lines (tensorflow/python/checkpoint/checkpoint_management.py
# writes `model_checkpoint_path: "..."` and one `all_model_checkpoint_paths: "..."` per checkpoint).
_STATE_LINE_RE = re.compile(r'^\s*(?:all_)?model_checkpoint_paths?:\s*"(.*)"\s*$', re.MULTILINE)


def child(directory: str, name: str) -> str:
    """`directory`/`name` for a local path or a gs:// URI."""
    if "://" in directory:
        return f"{directory.rstrip('/')}/{name}"
    return os.path.join(directory, name)


def resolve(model_dir: str, path: str) -> str:
    """A path a state file names, made absolute: a relative one is inside `model_dir`."""
    return path if os.path.isabs(path) or "://" in path else child(model_dir, path)


def checkpoint_name(step: int) -> str:
    """The file prefix of the checkpoint saved at `step` (`ckpt-<step>`)."""
    return f"{CHECKPOINT_PREFIX}-{step}"


def checkpoint_glob(model_dir: str) -> str:
    """A glob for every checkpoint's .index file in `model_dir`."""
    return child(model_dir, f"{CHECKPOINT_PREFIX}-*.index")


def step_of(checkpoint_path: str) -> int | None:
    """The global step a checkpoint path was saved at, from its name."""
    match = _STEP_RE.search(checkpoint_path)
    return int(match.group(1)) if match else None


def by_step(paths) -> list[str]:
    """Checkpoint paths oldest first (names without a step first)."""
    return sorted(paths, key=lambda p: step_of(p) if step_of(p) is not None else -1)


def state_file_paths(model_dir: str, text: str) -> list[str]:
    """The checkpoint paths a `checkpoint` state file's text names, each once,
    made absolute (relative ones are inside `model_dir`)."""
    return [resolve(model_dir, p) for p in dict.fromkeys(_STATE_LINE_RE.findall(text))]


def worker_temp_prefix(model_dir: str, task_index: int) -> str:
    """The name prefix of non-chief worker `task_index`'s private checkpoint
    directory (in the system's temporary directory), fixed per model directory."""
    digest = hashlib.sha256(model_dir.encode()).hexdigest()[:12]
    return f"mnist-train-worker{task_index}-{digest}-"


def complete_marker(final_step: int, checkpoint_path: str) -> dict:
    """The completion marker's contents."""
    return {"final_step": final_step, "checkpoint": os.path.basename(checkpoint_path)}


def final_step_of(marker: dict | str | None) -> int | None:
    """The final step a completion marker (parsed, or its text) records; None if
    there is none or it is unreadable."""
    if isinstance(marker, str):
        try:
            marker = json.loads(marker)
        except ValueError:
            return None
    if not isinstance(marker, dict):
        return None
    final = marker.get("final_step")
    return final if isinstance(final, int) and not isinstance(final, bool) else None


def not_an_export(entries: set[str]) -> str | None:
    """What makes a directory with these top-level entries not a previous export,
    or None if it is one (a marker, or nothing but a SavedModel's files)."""
    if not entries or EXPORT_INFO in entries or EXPORT_MARKER in entries:
        return None
    if "saved_model.pb" in entries and entries <= SAVED_MODEL_ENTRIES:
        return None
    found = sorted(entries - SAVED_MODEL_ENTRIES) or sorted(entries)
    shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    return f"it holds {shown}, which is not a previous export (no {EXPORT_INFO}, not a bare SavedModel)"
