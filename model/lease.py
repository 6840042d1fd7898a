"""One owner per model directory: the chief's renewable lease, `<model-dir>/lease.json`.

Two trainer groups writing one directory interleave their checkpoints and
summaries and each believes it succeeded (issue 16). So before the chief
writes anything it takes the directory's lease:

- free (no lease.json) -> it creates one (create-if-absent; model/guarded_json.py);
- held by a live trainer of ANOTHER run -> refused at once (`LeaseHeld`, exit 2)
  naming the holder: run, host (the pod's name), pid, since when;
- held by a live trainer of the SAME run -> a restarted group during
  `helm upgrade`, while the old pods are still saving: it waits, with one log
  line, up to `MNIST_LEASE_WAIT_SECS` for the holder to release it or for it
  to expire, then takes it over; still held after that -> `LeaseHeld`;
- expired -> taken over (replace-if-unchanged, so two contenders cannot both win).

The holder renews the lease every TTL/4 from a thread (`MNIST_LEASE_TTL_SECS`,
default 30 s). A lease is expired when its wall-clock `expires_unix_time` has
passed, or when a contender has seen it unchanged for a whole TTL on its own
monotonic clock (so a SIGKILLed group blocks a restart for at most about one
TTL, whatever the clocks say). It is released (deleted, if still ours) on
every exit that Python sees. A holder that finds on renewal that its lease was
taken over has been frozen for longer than a TTL: it must not write another
byte, so it exits at once (exit 2); one that cannot renew for a whole TTL
(storage unreachable) exits 1. Only the chief takes the lease; the other
workers write nothing to the model directory.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

from model import log_lines
from model.errors import EXIT_CONFIG_ERROR, EXIT_FAILURE, ConfigError, MnistTrainError
from model.guarded_json import GuardedJson
from model.layout import LEASE_FILE, child

log = logging.getLogger(__name__)

TTL_ENV = "MNIST_LEASE_TTL_SECS"
WAIT_ENV = "MNIST_LEASE_WAIT_SECS"
DEFAULT_TTL_SECS = 30.0
# The chart's terminationGracePeriodSeconds (60) for the old group to save and
# exit, plus a TTL in case it was killed instead, plus a margin.
DEFAULT_WAIT_SECS = 180.0


class LeaseHeld(MnistTrainError):
    """Another live trainer owns the model directory (exit 2)."""


@dataclasses.dataclass(frozen=True)
class LeaseSettings:
    ttl_secs: float = DEFAULT_TTL_SECS
    wait_secs: float = DEFAULT_WAIT_SECS

    @classmethod
    def from_env(cls, environ=None) -> LeaseSettings:
        environ = os.environ if environ is None else environ
        values = {}
        for field, name in (("ttl_secs", TTL_ENV), ("wait_secs", WAIT_ENV)):
            raw = environ.get(name, "").strip()
            if not raw:
                continue
            try:
                values[field] = float(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None
            if not values[field] > 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {raw!r}")
        return cls(**values)


def _utc(unix_time: float) -> str:
    return datetime.datetime.fromtimestamp(unix_time, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def describe_holder(payload: dict, now: float | None = None) -> str:
    """`run R (what) on host H pid P since T, renewed N s ago` from a lease's contents."""
    now = time.time() if now is None else now
    holder = payload.get("holder") or {}
    renewed = payload.get("renewed_unix_time")
    ago = f", renewed {max(0.0, now - renewed):.0f} s ago" if isinstance(renewed, (int, float)) else ""
    what = f" ({payload['run_summary']})" if payload.get("run_summary") else ""
    return (f"run {payload.get('run_id', '?')}{what} on host {holder.get('host', '?')} "
            f"pid {holder.get('pid', '?')} since {payload.get('acquired_utc', '?')}{ago}")


def _exit_now(code: int, message: str) -> None:
    log.error("%s", message)
    logging.shutdown()
    os._exit(code)


class Lease:
    """The lease this process holds; `release()` (or the context manager) gives it back."""

    def __init__(self, path: str, store, payload: dict, generation, settings: LeaseSettings,
                 on_lost: Callable[[int, str], None]):
        self.path = path
        self.settings = settings
        self._store = store
        self._payload = payload
        self._generation = generation
        self._on_lost = on_lost
        self._lock = threading.Lock()  # heartbeat vs release
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, name="lease-heartbeat", daemon=True)
        self._thread.start()

    @property
    def payload(self) -> dict:
        return dict(self._payload)

    def _renew_once(self) -> bool | None:
        """True renewed, False taken over, None could not tell (I/O error)."""
        with self._lock:
            if self._generation is None:  # released
                return True
            now = time.time()
            payload = {**self._payload, "renewed_unix_time": now, "renewed_utc": _utc(now),
                       "expires_unix_time": now + self.settings.ttl_secs,
                       "renewals": self._payload.get("renewals", 0) + 1}
            try:
                generation = self._store.replace(payload, self._generation)
            except Exception as e:  # noqa: BLE001 - storage hiccups are retried until the TTL runs out
                log.warning("lease | cannot renew %s (%s: %s); retrying", self.path, type(e).__name__, e)
                return None
            if generation is None:
                return False
            self._payload, self._generation = payload, generation
            return True

    def _heartbeat(self) -> None:
        last_renewed = time.monotonic()
        while not self._stop.wait(self.settings.ttl_secs / 4):
            renewed = self._renew_once()
            if renewed:
                last_renewed = time.monotonic()
            elif renewed is False:
                try:
                    current = self._store.read()
                except Exception:  # noqa: BLE001
                    current = None
                holder = describe_holder(current[0]) if current else "nobody (it was deleted)"
                self._on_lost(EXIT_CONFIG_ERROR,
                              f"lease | lost {self.path}: it is now held by {holder}; this trainer "
                              "was not heard from for longer than the lease lasts, so it stops "
                              "at once without writing anything more")
                return
            elif time.monotonic() - last_renewed > self.settings.ttl_secs:
                self._on_lost(EXIT_FAILURE,
                              f"lease | could not renew {self.path} for {self.settings.ttl_secs:.0f} s; "
                              "another trainer may take the directory over, so this one stops "
                              "(restart it to resume)")
                return

    def release(self) -> None:
        """Stop renewing and delete the lease if it is still ours. Idempotent."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            generation, self._generation = self._generation, None
        if generation is None:
            return
        try:
            released = self._store.delete(generation)
        except Exception as e:  # noqa: BLE001 - it expires on its own
            log.warning("lease | could not release %s (%s); it expires in %.0f s", self.path, e,
                        self.settings.ttl_secs)
            return
        if released:
            log.info(log_lines.LEASE_RELEASED_FORMAT, self.path)

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(model_dir: str, *, run_id: str, run_summary: str = "",
            settings: LeaseSettings | None = None,
            on_lost: Callable[[int, str], None] = _exit_now, client=None) -> Lease:
    """Take `model_dir`'s lease for run `run_id` (see the module docstring).

    Raises `LeaseHeld` if a live trainer of another run holds it, or one of the
    same run still holds it after `settings.wait_secs`.
    """
    settings = settings or LeaseSettings.from_env()
    path = child(model_dir, LEASE_FILE)
    store = GuardedJson(path, client)
    host = socket.gethostname()
    token = uuid.uuid4().hex

    def fresh_payload() -> dict:
        now = time.time()
        return {"run_id": run_id, "run_summary": run_summary,
                "holder": {"host": host, "pid": os.getpid(), "token": token},
                "acquired_unix_time": now, "acquired_utc": _utc(now),
                "renewed_unix_time": now, "renewed_utc": _utc(now),
                "expires_unix_time": now + settings.ttl_secs, "ttl_secs": settings.ttl_secs,
                "renewals": 0}

    def held(payload: dict) -> LeaseHeld:
        return LeaseHeld(
            f"model directory {model_dir} is held by the trainer of another run: "
            f"{describe_holder(payload)} ({path}). Two runs cannot share a model directory: "
            "give this run another directory (on the chart: storage.modelDirName), or stop the "
            "other trainer first")

    seen: tuple[object, float] | None = None  # (generation, monotonic time first seen)
    waiting_since: float | None = None
    while True:
        current = store.read()
        if current is None:
            payload = fresh_payload()
            generation = store.create(payload)
            if generation is not None:
                log.info(log_lines.LEASE_ACQUIRED_FORMAT, path, run_id, settings.ttl_secs)
                return Lease(path, store, payload, generation, settings, on_lost)
            continue  # somebody created it first: look at what they wrote
        holder, generation = current
        now_mono = time.monotonic()
        if seen is None or seen[0] != generation:
            seen = (generation, now_mono)
        expires = holder.get("expires_unix_time")
        expired = ((isinstance(expires, (int, float)) and time.time() > expires)
                   or now_mono - seen[1] >= settings.ttl_secs)
        if expired:
            payload = fresh_payload()
            new_generation = store.replace(payload, generation)
            if new_generation is not None:
                log.info(log_lines.LEASE_TAKEN_OVER_FORMAT, path, describe_holder(holder),
                         settings.ttl_secs, run_id)
                return Lease(path, store, payload, new_generation, settings, on_lost)
            continue
        if holder.get("run_id") != run_id:
            raise held(holder)
        if waiting_since is None:
            waiting_since = now_mono
            log.info(log_lines.LEASE_WAITING_FORMAT, path, describe_holder(holder), settings.wait_secs)
        elif now_mono - waiting_since >= settings.wait_secs:
            raise LeaseHeld(
                f"model directory {model_dir} is still held after {settings.wait_secs:.0f} s by "
                f"{describe_holder(holder)} ({path}): another trainer group is training this same "
                "run. Stop it, or give this group another directory (on the chart: "
                "storage.modelDirName)")
        time.sleep(min(1.0, settings.ttl_secs / 10))
