"""model/lease.py and model/guarded_json.py: one live owner per model directory.

Real files, real threads and real processes (a holder is SIGKILLed, not
simulated); the gs:// cases run google-cloud-storage in this process against
the Cloud Storage endpoint of scripts/gcs_endpoint.py (the `gcs_endpoint`
fixture): fake-gcs-server, reached through the endpoint's TLS front over
https on this machine's loopback (`host_url`). fake-gcs-server itself refuses
a stale `ifGenerationMatch` on inserts with HTTP 412, as Cloud Storage does
(https://cloud.google.com/storage/docs/request-preconditions); on deletes it
ignores it, and the front enforces it (the one thing not the emulator's own).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from model import lease as leases
from model import log_lines
from model.errors import EXIT_CONFIG_ERROR, EXIT_FAILURE, ConfigError
from model.guarded_json import GuardedJson
from tests.multiworker import Cluster, done_line
from tests.test_gcs import REPO

RUN_A, RUN_B = "aaaaaaaaaaaa", "bbbbbbbbbbbb"


def settings(ttl=5.0, wait=5.0) -> leases.LeaseSettings:
    return leases.LeaseSettings(ttl_secs=ttl, wait_secs=wait)


def lease_file(directory) -> dict:
    return json.loads((directory / leases.LEASE_FILE).read_text())


def messages(caplog) -> str:
    """The log messages alone, one a line (what the log_lines patterns match)."""
    return "\n".join(r.getMessage() for r in caplog.records)


class LostRecorder:
    """`on_lost` for in-process holders: records instead of ending the test process."""

    def __init__(self):
        self.calls: list[tuple[int, str]] = []
        self.event = threading.Event()

    def __call__(self, code, message):
        self.calls.append((code, message))
        self.event.set()


# ---------------------------------------------------------------- guarded files

def test_create_fails_if_present_and_replace_or_delete_fail_if_changed(tmp_path):
    store = GuardedJson(str(tmp_path / "f.json"))
    assert store.read() is None
    first = store.create({"n": 1})
    assert first is not None and store.create({"n": 2}) is None
    assert store.read() == ({"n": 1}, first)
    second = store.replace({"n": 3}, first)
    assert second is not None and second != first
    assert store.replace({"n": 4}, first) is None  # somebody else's view of it is stale
    assert store.delete(first) is False
    assert store.read()[0] == {"n": 3}
    assert store.delete(second) is True and store.read() is None


def test_only_one_of_many_concurrent_creators_or_replacers_wins(tmp_path):
    """Two processes' worth of contention, as threads: the flock is per open file."""
    store_path = str(tmp_path / "f.json")
    results: list = []
    barrier = threading.Barrier(8)

    def create(i):
        barrier.wait()
        results.append(GuardedJson(store_path).create({"winner": i}))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1
    _, generation = GuardedJson(store_path).read()
    results.clear()
    barrier.reset()

    def replace(i):
        barrier.wait()
        results.append(GuardedJson(store_path).replace({"winner": i}, generation))

    threads = [threading.Thread(target=replace, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is not None for r in results) == 1


def test_a_stale_generation_loses_even_when_the_bytes_are_the_same(tmp_path):
    """A replace that rewrote identical bytes still changes the generation, so a second
    writer holding the old one loses (with a content hash alone both won: ABA)."""
    store = GuardedJson(str(tmp_path / "f.json"))
    first = store.create({"winner": 0})
    assert first is not None
    assert store.replace({"winner": 0}, first) is not None
    assert store.replace({"winner": 1}, first) is None
    assert store.read()[0] == {"winner": 0}


def test_a_damaged_file_is_a_config_error_naming_it(tmp_path):
    (tmp_path / "f.json").write_text("{ not json")
    with pytest.raises(ConfigError, match=r"f\.json is not valid JSON"):
        GuardedJson(str(tmp_path / "f.json")).read()


# ---------------------------------------------------------------- the lease, in process

def test_a_free_directory_is_taken_then_released(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    with leases.acquire(str(tmp_path), run_id=RUN_A, run_summary="mlp", settings=settings()) as held:
        payload = lease_file(tmp_path)
        assert payload["run_id"] == RUN_A and payload["holder"]["pid"] == os.getpid()
        assert held.payload["holder"]["token"] == payload["holder"]["token"]
    assert not (tmp_path / leases.LEASE_FILE).exists()
    assert log_lines.LEASE_ACQUIRED.search(messages(caplog))["run_id"] == RUN_A
    assert log_lines.LEASE_RELEASED.search(messages(caplog))


def test_another_runs_live_lease_is_refused_naming_the_holder(tmp_path):
    with leases.acquire(str(tmp_path), run_id=RUN_A, run_summary="mlp, seed 0", settings=settings()):
        before = (tmp_path / leases.LEASE_FILE).read_bytes()
        t0 = time.monotonic()
        with pytest.raises(leases.LeaseHeld) as refused:
            leases.acquire(str(tmp_path), run_id=RUN_B, settings=settings())
        assert time.monotonic() - t0 < 1, "a different run must be refused at once, not wait"
        message = str(refused.value)
        for part in (f"run {RUN_A} (mlp, seed 0)", f"pid {os.getpid()}", "since ",
                     "storage.modelDirName", str(tmp_path)):
            assert part in message, message
        assert (tmp_path / leases.LEASE_FILE).read_bytes() == before


def test_the_holder_renews_its_lease(tmp_path):
    with leases.acquire(str(tmp_path), run_id=RUN_A, settings=settings(ttl=1.0)):
        first = lease_file(tmp_path)
        time.sleep(2.0)
        later = lease_file(tmp_path)
        assert later["renewals"] >= 2 and later["expires_unix_time"] > first["expires_unix_time"]
        # Renewed: still live well past its first TTL, so another run is still refused.
        with pytest.raises(leases.LeaseHeld):
            leases.acquire(str(tmp_path), run_id=RUN_B, settings=settings(ttl=1.0))


def test_the_same_run_waits_for_the_holder_to_release(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    holder = leases.acquire(str(tmp_path), run_id=RUN_A, settings=settings(ttl=5))
    threading.Timer(0.8, holder.release).start()
    t0 = time.monotonic()
    with leases.acquire(str(tmp_path), run_id=RUN_A, settings=settings(ttl=5, wait=10)):
        waited = time.monotonic() - t0
    assert 0.7 < waited < 4, waited
    match = log_lines.LEASE_WAITING.search(messages(caplog))
    assert match and f"run {RUN_A}" in match["holder"], caplog.text


def test_the_same_run_is_refused_if_the_holder_stays_live_past_the_wait(tmp_path):
    with leases.acquire(str(tmp_path), run_id=RUN_A, settings=settings(ttl=0.4)):
        t0 = time.monotonic()
        with pytest.raises(leases.LeaseHeld, match=r"still held after 1 s by run aaaaaaaaaaaa"):
            leases.acquire(str(tmp_path), run_id=RUN_A, settings=settings(ttl=0.4, wait=1))
        assert time.monotonic() - t0 < 3


def test_a_holder_whose_lease_was_taken_over_stops_and_leaves_the_new_one(tmp_path):
    lost = LostRecorder()
    holder = leases.acquire(str(tmp_path), run_id=RUN_A, settings=settings(ttl=0.4), on_lost=lost)
    # What a contender does once the lease looks expired to it (e.g. this
    # holder was frozen): replace it at the generation it read.
    store = GuardedJson(str(tmp_path / leases.LEASE_FILE))
    payload, generation = store.read()
    while store.replace({**payload, "holder": {"host": "elsewhere", "pid": 7}}, generation) is None:
        payload, generation = store.read()
    assert lost.event.wait(3), "the holder did not notice"
    code, message = lost.calls[0]
    assert code == EXIT_CONFIG_ERROR and "host elsewhere pid 7" in message
    holder.release()
    assert lease_file(tmp_path)["holder"]["host"] == "elsewhere", "release deleted the new lease"


def test_a_holder_that_cannot_renew_for_a_ttl_stops(tmp_path):
    lost = LostRecorder()
    holder = leases.acquire(str(tmp_path), run_id=RUN_A, settings=settings(ttl=0.4), on_lost=lost)

    def broken(*_):
        raise OSError("storage unreachable")

    holder._store.replace = broken  # the one fault a local disk cannot be made to produce
    assert lost.event.wait(3)
    assert lost.calls[0][0] == EXIT_FAILURE and "could not renew" in lost.calls[0][1]
    holder.release()


@pytest.mark.parametrize("name, value", [(leases.TTL_ENV, "abc"), (leases.TTL_ENV, "0"),
                                         (leases.WAIT_ENV, "-1")])
def test_bad_lease_settings_are_config_errors(name, value):
    with pytest.raises(ConfigError, match=name):
        leases.LeaseSettings.from_env({name: value})


def test_lease_settings_come_from_the_environment():
    assert leases.LeaseSettings.from_env({leases.TTL_ENV: "2", leases.WAIT_ENV: "7"}) == \
        leases.LeaseSettings(ttl_secs=2.0, wait_secs=7.0)
    assert leases.LeaseSettings.from_env({}) == leases.LeaseSettings()


# ---------------------------------------------------------------- a SIGKILLed holder

HOLDER = """
import sys, time
from model import lease
lease.acquire(sys.argv[1], run_id=sys.argv[2], settings=lease.LeaseSettings(ttl_secs=float(sys.argv[3])))
print("held", flush=True)
time.sleep(600)
"""


def start_holder(directory, run_id, ttl) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory), run_id, str(ttl)],
                            cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_sigkilled_holders_lease_expires_and_the_same_run_takes_it_over(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    proc = start_holder(tmp_path, RUN_A, ttl=1.0)
    try:
        time.sleep(1.0)  # it renews while alive
        with pytest.raises(leases.LeaseHeld):
            leases.acquire(str(tmp_path), run_id=RUN_B, settings=settings(ttl=1.0))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    t0 = time.monotonic()
    with leases.acquire(str(tmp_path), run_id=RUN_A, settings=settings(ttl=1.0, wait=10)):
        taken = time.monotonic() - t0
        assert lease_file(tmp_path)["holder"]["pid"] == os.getpid()
    assert taken < 5, taken
    match = log_lines.LEASE_TAKEN_OVER.search(messages(caplog))
    assert match and f"pid {proc.pid}" in match["holder"], caplog.text


# ---------------------------------------------------------------- gs://

@pytest.fixture
def client(gcs_endpoint):
    """google-cloud-storage in this process, through the endpoint's front (preconditions and all)."""
    return gcs_endpoint.client()


@pytest.fixture
def bucket(gcs_endpoint, client):
    name = f"lease-{uuid.uuid4().hex[:8]}"
    gcs_endpoint.create_bucket(name)
    return client.bucket(name)


def test_the_lease_on_gcs(client, bucket):
    model_dir = f"gs://{bucket.name}/runs/r1"
    lost = LostRecorder()
    holder = leases.acquire(model_dir, run_id=RUN_A, settings=settings(ttl=0.6), client=client,
                            on_lost=lost)
    blob = bucket.get_blob("runs/r1/lease.json")
    assert json.loads(blob.download_as_bytes())["run_id"] == RUN_A
    with pytest.raises(leases.LeaseHeld, match=f"run {RUN_A}"):
        leases.acquire(model_dir, run_id=RUN_B, settings=settings(ttl=0.6), client=client)
    time.sleep(1.0)
    assert bucket.get_blob("runs/r1/lease.json").generation != blob.generation, "not renewed"
    assert not lost.calls
    holder.release()
    assert bucket.get_blob("runs/r1/lease.json") is None


def test_gcs_preconditions(client, bucket):
    store = GuardedJson(f"gs://{bucket.name}/x/f.json", client)
    first = store.create({"n": 1})
    assert first is not None and store.create({"n": 2}) is None
    second = store.replace({"n": 3}, first)
    assert second is not None and store.replace({"n": 4}, first) is None
    assert store.delete(first) is False
    assert store.read() == ({"n": 3}, second)
    assert store.delete(second) is True and store.read() is None


def test_two_contenders_for_an_expired_lease_on_gcs_only_one_wins(client, bucket):
    """A holder that died long ago; two groups of the same run restart at once."""
    model_dir = f"gs://{bucket.name}/runs/r2"
    GuardedJson(f"{model_dir}/lease.json", client).create(
        {"run_id": RUN_A, "holder": {"host": "dead", "pid": 1}, "expires_unix_time": time.time() - 60})
    outcomes: list = []
    barrier = threading.Barrier(2)

    def contend():
        barrier.wait()
        try:
            outcomes.append(leases.acquire(model_dir, run_id=RUN_A, client=client,
                                           settings=settings(ttl=5, wait=1.5)))
        except leases.LeaseHeld as e:
            outcomes.append(e)

    threads = [threading.Thread(target=contend) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if isinstance(o, leases.Lease)]
    assert len(winners) == 1, outcomes
    holder = json.loads(bucket.get_blob("runs/r2/lease.json").download_as_bytes())["holder"]
    assert holder == winners[0].payload["holder"]
    winners[0].release()


# ---------------------------------------------------------------- trainers (real processes)

MLP_ARGS = ["--model", "mlp", "--save-checkpoints-steps", "500", "--log-every-steps", "500",
            "--steps-per-loop", "100"]


def final_weights(model_dir, step: int) -> str:
    """The weights fingerprint (as the done line prints it) of `model_dir`'s ckpt-<step>."""
    from model.config import preset
    from model.train import weights_fingerprint
    from model.train_state import TrainState

    state = TrainState("mlp", preset("default", "mlp"))
    state.checkpoint().restore(str(model_dir / f"ckpt-{step}")).assert_existing_objects_matched()
    return weights_fingerprint(state)


@pytest.mark.slow
@pytest.mark.serial
def test_two_trainers_on_one_directory_the_second_is_refused_and_the_first_untouched(tmp_path):
    """Issue 16 defect 5: two runs (seeds 1 and 2) started 1 s apart on one directory."""
    runs = {seed: Cluster(tmp_path, workers=1, train_args=[*MLP_ARGS, "--max-steps", "1500",
                                                           "--seed", str(seed)]) for seed in (1, 2)}
    try:
        (first,) = runs[1].start_workers(attempt=1)
        time.sleep(1)
        (second,) = runs[2].start_workers(attempt=2)
        codes = {1: first.wait(300), 2: second.wait(300)}
    finally:
        for cluster in runs.values():
            cluster.stop_all()
    # Whichever reached the directory first owns it (normally the first started).
    assert sorted(codes.values()) == [0, EXIT_CONFIG_ERROR], codes
    winner_seed = 1 if codes[1] == 0 else 2
    winner, loser = (first, second) if winner_seed == 1 else (second, first)
    error = log_lines.ERROR.search(loser.output())
    assert error, loser.output()[-2000:]
    for part in ("is held by the trainer of another run", f"pid {winner.popen.pid}", "on host ",
                 "since ", "storage.modelDirName"):
        assert part in error["message"], error["message"]
    assert not log_lines.TRAIN_START.search(loser.output()), "the refused trainer started training"

    model_dir = runs[1].model_dir
    step, weights = done_line(winner)
    assert step == 1500
    assert json.loads((model_dir / "run_config.json").read_text())["hparams"]["seed"] == winner_seed
    assert final_weights(model_dir, 1500) == weights
    events = [p.name for p in (model_dir / "train").iterdir()]
    assert events and all(f".{winner.popen.pid}." in name for name in events), events
    assert not (model_dir / leases.LEASE_FILE).exists()


@pytest.mark.slow
@pytest.mark.serial
def test_a_sigkilled_trainers_restart_takes_the_lease_over_after_it_expires(tmp_path):
    cluster = Cluster(tmp_path, workers=1, train_args=[*MLP_ARGS, "--max-steps", "1000"])
    ttl = {leases.TTL_ENV: "3"}
    try:
        (killed,) = cluster.start_workers(attempt=0, env=ttl)
        killed.wait_for(r"saved .*ckpt-500$", timeout=240)
        killed.kill()  # SIGKILL: the lease stays behind, unreleased
        assert (cluster.model_dir / leases.LEASE_FILE).exists()
        last_saved = max(int(p.name[5:-6]) for p in cluster.model_dir.glob("ckpt-*.index"))
        t0 = time.monotonic()
        (restarted,) = cluster.start_workers(attempt=1, env=ttl)
        taken = restarted.wait_for(log_lines.LEASE_TAKEN_OVER.pattern, timeout=240)
        took = time.monotonic() - t0
        assert restarted.wait(240) == 0
    finally:
        cluster.stop_all()
    assert f"pid {killed.popen.pid}" in taken["holder"]
    assert took < 60, took
    assert int(log_lines.TRAIN_RESTORED.search(restarted.output())["step"]) == last_saved
    assert done_line(restarted)[0] == 1000


def test_a_model_directory_that_is_a_file_is_a_config_error(tmp_path):
    target = tmp_path / "model"
    target.write_text("not a directory")
    with pytest.raises(ConfigError, match=f"cannot read the model directory {target}: Not a directory"):
        leases.acquire(str(target), run_id=RUN_A, settings=settings())


@pytest.mark.slow
@pytest.mark.serial
def test_the_other_workers_restore_only_once_the_chief_holds_the_lease(two_worker_dir, tmp_path):
    """While the chief waits for a live holder of the same run (the old group of
    a `helm upgrade`, still saving), its peers must not restore: the newest
    checkpoint is only final once the old holder has let go, and a group whose
    workers restored different steps would diverge. Nothing in train.py has to
    enforce this: MultiWorkerMirroredStrategy broadcasts every variable's
    initial value from the chief when it is created, so the other workers wait
    there until the chief, past the lease, creates its own. This test pins it."""
    cluster = Cluster(tmp_path, workers=2, train_args=[
        "--model", "mlp", "--save-checkpoints-steps", "100", "--steps-per-loop", "50"])
    shutil.copytree(two_worker_dir, cluster.model_dir)  # a 2-worker run, finished at step 100
    ttl = {leases.TTL_ENV: "1"}
    try:
        run_id = json.loads((cluster.model_dir / "run_config.json").read_text())["run_id"]
        holder = start_holder(cluster.model_dir, run_id, ttl=1.0)
        try:
            chief, peer = cluster.start_workers(attempt=1, extra=["--max-steps", "200"], env=ttl)
            chief.wait_for(log_lines.LEASE_WAITING.pattern, timeout=240)
            time.sleep(3)
            assert not log_lines.TRAIN_RESTORED.search(peer.output()), \
                "a worker restored while the chief was still waiting for the lease"
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
        assert [chief.wait(240), peer.wait(240)] == [0, 0]
    finally:
        cluster.stop_all()
    assert log_lines.LEASE_TAKEN_OVER.search(chief.output())
    assert [int(log_lines.TRAIN_RESTORED.search(w.output())["step"]) for w in (chief, peer)] == [100, 100]
    assert done_line(chief) == done_line(peer) and done_line(chief)[0] == 200
