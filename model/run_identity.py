"""What a run IS, recorded once in `<model-dir>/run_config.json`, and the start-up checks.

A run is defined by what it learns from and how: the network, the
hyperparameters (not `max_steps`: more steps extend a run), the per-worker
batch, the number of workers and so the global batch, and the training data
(by digest, not by path). How the steps are computed (`EXECUTION`: compute
dtype, the gradients' dtype on the wire, the gradient exchange) is recorded
as the run was created but may change on a resume, with one line saying so:
the checkpoint is float32 whichever is used, and they change the sums only
by rounding (a float32 run resumed with bfloat16 layers on faster hardware
is the same run). The
chief records these when the run is created (create-if-absent, see
model/guarded_json.py) and never rewrites them; `run_id` is a digest of them.
A start whose configuration defines a different run is refused (exit 2) with
each differing field, old -> new, and what to do.

A changed worker count or `--batch-size` is refused rather than remapped:
with one global batch for the whole run, the data position (global step x
global batch, model/input_pipeline.py) and the learning-rate schedule (one
decay per epoch of the global batch, model/train_state.py) stay exactly those
of an uninterrupted run.

`claim()` is the start-up sequence (the chief takes the directory's lease
first, model/lease.py, then the identity is checked or recorded); `log_start()`
says what this start does once the step is known. No TensorFlow here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import logging
import socket
import time

import numpy as np

from model import lease as leases
from model import log_lines
from model.errors import ConfigError
from model.guarded_json import GuardedJson
from model.layout import COMPLETE_MARKER, RUN_CONFIG, child, final_step_of

log = logging.getLogger(__name__)

FORMAT = 2  # run_config.json without "format": written before runs had an identity
# Hyperparameters that do not define the run: a resume may change them.
NOT_IDENTITY = ("max_steps",)
# How the steps are computed: recorded, not compared (see the module docstring).
EXECUTION = ("compute_dtype", "all_reduce_dtype", "gradient_exchange")
WHAT_TO_DO = ("start a separate run in another directory (on the chart: set "
              "storage.modelDirName), or delete {model_dir} to replace this run")


class RunMismatch(ConfigError):
    """The model directory holds another run (exit 2)."""


def data_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of the training examples in order (shape, dtype and bytes)."""
    digest = hashlib.sha256()
    for array in (images, labels):
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class RunIdentity:
    model: str
    hparams: dict  # Hyperparameters as a dict, without NOT_IDENTITY
    num_workers: int
    global_batch: int
    compute_dtype: str
    all_reduce_dtype: str
    gradient_exchange: str
    data_sha256: str

    @classmethod
    def of(cls, config, *, num_workers: int, global_batch: int, train_images, train_labels):
        """The identity of `config` (a model.train.TrainConfig) on this cluster and data."""
        hparams = {k: v for k, v in dataclasses.asdict(config.hparams).items() if k not in NOT_IDENTITY}
        return cls(model=config.model, hparams=hparams, num_workers=num_workers,
                   global_batch=global_batch, compute_dtype=config.compute_dtype,
                   all_reduce_dtype=config.all_reduce_dtype,
                   gradient_exchange=config.gradient_exchange,
                   data_sha256=data_digest(train_images, train_labels))

    def fields(self) -> dict:
        """Flat `name -> value` of what defines the run (not `EXECUTION`);
        hyperparameters as `hparams.<name>`."""
        flat = {k: v for k, v in dataclasses.asdict(self).items() if k not in EXECUTION}
        hparams = flat.pop("hparams")
        return {"model": flat.pop("model"), **{f"hparams.{k}": v for k, v in hparams.items()}, **flat}

    @property
    def run_id(self) -> str:
        canonical = json.dumps(self.fields(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    def summary(self) -> str:
        workers = f"{self.num_workers} worker{'s' if self.num_workers != 1 else ''}"
        batch, seed = self.hparams.get("batch_size"), self.hparams.get("seed")
        return f"{self.model}, {workers} x batch {batch}, seed {seed}"

    def record(self, max_steps: int) -> dict:
        now = time.time()
        return {"format": FORMAT, "run_id": self.run_id, **dataclasses.asdict(self),
                "created": {"utc": datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
                            .strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "host": socket.gethostname(), "max_steps": max_steps}}


def _recorded_fields(record: dict) -> dict:
    """The identity fields a run_config.json records, flattened like `RunIdentity.fields`."""
    hparams = {k: v for k, v in (record.get("hparams") or {}).items() if k not in NOT_IDENTITY}
    flat = {"model": record.get("model"), **{f"hparams.{k}": v for k, v in hparams.items()}}
    if record.get("format") is None:  # an earlier version recorded the model and hparams only
        return flat
    for name in ("num_workers", "global_batch", "data_sha256"):
        flat[name] = record.get(name)
    return flat


def differences(record: dict, identity: RunIdentity) -> list[str]:
    """`field: old → new` for every identity field `record` and `identity` disagree on."""
    recorded, current = _recorded_fields(record), identity.fields()
    if record.get("format") is None:
        current = {k: v for k, v in current.items() if k == "model" or k.startswith("hparams.")}
    names = list(dict.fromkeys([*recorded, *current]))
    return [f"{name}: {_show(recorded.get(name))} → {_show(current.get(name))}"
            for name in names if recorded.get(name) != current.get(name)]


def execution_changes(record: dict, identity: RunIdentity) -> list[str]:
    """`setting: recorded → now` for each `EXECUTION` setting this start changes."""
    return [f"{name}: {record[name]} → {getattr(identity, name)}" for name in EXECUTION
            if name in record and record[name] != getattr(identity, name)]


def _show(value) -> str:
    if value is None:
        return "(not set)"
    return value[:12] + "…" if isinstance(value, str) and len(value) == 64 else str(value)


def _refuse(model_dir: str, record: dict, diffs: list[str]) -> RunMismatch:
    created = record.get("created") or {}
    when = f", created {created['utc']} on {created.get('host', '?')}" if created.get("utc") else ""
    return RunMismatch(
        f"model directory {model_dir} holds another run (run {record.get('run_id', '?')}{when}; "
        f"{child(model_dir, RUN_CONFIG)}); this configuration differs in {'; '.join(diffs)}. "
        "A run's model, hyperparameters, batch size, worker count and data are "
        "fixed when it is created; only --max-steps may change on resume. To train this "
        f"configuration, {WHAT_TO_DO.format(model_dir=model_dir)}")


def check_or_record(model_dir: str, identity: RunIdentity, *, max_steps: int, write: bool,
                    client=None) -> dict | None:
    """The run's record in `model_dir`, created from `identity` if there is none.

    Raises `RunMismatch` if the directory holds another run. With `write`
    False (non-chief workers) nothing is written and None is returned while
    there is no record yet.
    """
    store = GuardedJson(child(model_dir, RUN_CONFIG), client)
    while True:
        found = store.read()
        if found is None:
            if not write:
                return None
            record = identity.record(max_steps)
            if store.create(record) is None:
                continue  # created meanwhile: compare with it
            log.info(log_lines.RUN_NEW_FORMAT, identity.run_id, identity.summary(),
                     child(model_dir, RUN_CONFIG))
            return record
        record, generation = found
        diffs = differences(record, identity)
        if diffs:
            raise _refuse(model_dir, record, diffs)
        changed = execution_changes(record, identity)
        if changed and write:
            log.info("run | resuming run %s with other execution settings (%s): the same run, "
                     "computed differently", record.get("run_id", "?"), "; ".join(changed))
        if record.get("format") is not None or not write:
            return record
        # An earlier version's record: same model and hyperparameters. It never
        # said how many workers trained, so this start's count is recorded now.
        upgraded = identity.record(max_steps)
        upgraded["created"] = {**upgraded["created"], "upgraded_from": record}
        if store.replace(upgraded, generation) is None:
            continue
        log.warning("run | %s was written by an earlier version without the worker count, "
                    "compute settings or data digest; recorded this start's (%s) as run %s. If the "
                    "run was started with another worker count, its data position and "
                    "learning-rate schedule changed here", child(model_dir, RUN_CONFIG),
                    identity.summary(), identity.run_id)
        return upgraded


def claim(model_dir: str, identity: RunIdentity, *, max_steps: int, is_chief: bool,
          on_exit: contextlib.ExitStack, settings: leases.LeaseSettings | None = None,
          client=None) -> dict | None:
    """Start-up: the chief takes the directory's lease (released by `on_exit`),
    then the run's identity is checked, and recorded if new (chief only)."""
    if is_chief:
        lease = leases.acquire(model_dir, run_id=identity.run_id, run_summary=identity.summary(),
                               settings=settings, client=client)
        on_exit.callback(lease.release)
    return check_or_record(model_dir, identity, max_steps=max_steps, write=is_chief, client=client)


def log_start(model_dir: str, identity: RunIdentity, start_step: int, max_steps: int,
              client=None) -> bool:
    """One line on what this start does; True if the run is already complete at
    `max_steps` (there is nothing to train)."""
    if start_step >= max_steps:
        log.info(log_lines.ALREADY_COMPLETE_FORMAT, start_step, max_steps)
        return True
    if start_step == 0:
        return False
    try:
        marker = GuardedJson(child(model_dir, COMPLETE_MARKER), client).read()
    except ConfigError:  # damaged: it is rewritten at the end anyway
        marker = None
    final = final_step_of(marker[0]) if marker else None
    if final is not None and final <= start_step:
        log.info(log_lines.RUN_EXTENDING_FORMAT, identity.run_id, start_step, max_steps)
    else:
        log.info(log_lines.RUN_RESUMING_FORMAT, identity.run_id, start_step, max_steps)
    return False
