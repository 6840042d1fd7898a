"""What a gs:// model directory costs: checkpoint save and restore, and the evaluator's poll.

The same measurement (`python -m bench.gcs_costs measure --dir DIR`) runs against a local
directory (what a ReadWriteMany claim looks like to the trainer) and against a bucket of the
local Cloud Storage endpoint (scripts/gcs_endpoint.py: fake-gcs-server behind a TLS front, in
a private namespace), in TensorFlow's own gs:// filesystem. For gs:// it is repeated with the
TensorFlow settings that matter (names and defaults from tsl's
platform/cloud/gcs_file_system.cc, as built into TensorFlow 2.21):

- GCS_READ_CACHE_MAX_SIZE_MB (default 0: the block cache is off) with
  GCS_READ_CACHE_BLOCK_SIZE_MB (default 64): reads are whole-block requests;
- GCS_STAT_CACHE_MAX_AGE (default 5 s): how long a file's size and existence are cached;
- GCS_MATCHING_PATHS_CACHE_MAX_AGE (default 0): caching of glob results, which the
  evaluator's poll uses to find new checkpoints.

The state saved is the MLP's training state in shape (weights, the optimiser's momentum and
the moving averages: ~1.2 M float32, ~4.8 MB), through tf.train.CheckpointManager, which is
what model/checkpointing.py uses underneath. The evaluator's storage lag is one poll (read
the `checkpoint` state file, glob ckpt-*.index) plus one restore; its interval
(--eval-interval-secs) and scoring come on top.

An emulator on loopback is NOT Cloud Storage latency: here a request costs a few ms of
Python TLS front and an in-memory emulator. What carries over is the request count (the front
counts them): measured on this box, one save + poll + restore of this state is ~70 requests
with the defaults and ~56 with the block cache on (GCS_READ_CACHE_MAX_SIZE_MB=128: the restore
reads each file in one request instead of one per tensor). TensorFlow's curl opens a
connection per request, so on real Cloud Storage from a GKE node in the bucket's region each
costs ~20-50 ms: expect a save of this state in ~1-2 s, a restore in ~0.3-1 s, and more
across regions; the step time is unaffected between saves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid

RESULT_PREFIX = "BENCH_RESULT "  # bench/runs.py reads it

# (label, extra environment) of each gs:// run; "default" is what a user gets.
GCS_SETTINGS = (
    ("default", {}),
    ("block cache 128 MB", {"GCS_READ_CACHE_MAX_SIZE_MB": "128"}),
    ("stat cache off", {"GCS_STAT_CACHE_MAX_AGE": "0"}),
    ("glob cache 5 s", {"GCS_MATCHING_PATHS_CACHE_MAX_AGE": "5"}),
)


def measure(directory: str, repeats: int) -> dict:
    """Save, poll and restore `repeats` times in `directory`; median seconds of each."""
    import tensorflow as tf

    shapes = [(784, 500), (500,), (500, 10), (10,)]
    variables = {f"v{i}_{kind}": tf.Variable(tf.random.normal(shape), name=f"v{i}_{kind}")
                 for kind in ("weights", "momentum", "average") for i, shape in enumerate(shapes)}
    checkpoint = tf.train.Checkpoint(**variables)
    manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=3)
    saves, polls, restores = [], [], []
    for step in range(1, repeats + 1):
        t0 = time.perf_counter()
        manager.save(checkpoint_number=step)
        saves.append(time.perf_counter() - t0)
        t0 = time.perf_counter()  # the evaluator's poll: the state file, then the files themselves
        state = tf.train.get_checkpoint_state(directory)
        found = tf.io.gfile.glob(f"{directory}/ckpt-*.index")
        polls.append(time.perf_counter() - t0)
        assert state is not None and found, (state, found)
        reader = tf.train.Checkpoint(**{k: tf.Variable(tf.zeros_like(v)) for k, v in variables.items()})
        t0 = time.perf_counter()
        reader.restore(state.model_checkpoint_path).assert_consumed()
        restores.append(time.perf_counter() - t0)
    # The first of each pays for connections and tracing: reported apart.
    return {"save_first": saves[0], "save": statistics.median(saves[1:]),
            "poll_first": polls[0], "poll": statistics.median(polls[1:]),
            "restore_first": restores[0], "restore": statistics.median(restores[1:]),
            "repeats": repeats}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def section(ctx, repeats: int) -> dict:
    """The bench section: local directory vs gs:// with each setting. Rows have no target."""
    from bench.procs import PYTHON, Proc, base_env, wait_all
    from scripts.gcs_endpoint import Endpoint

    def run(label: str, argv_prefix: list[str], env: dict[str, str], directory: str) -> dict:
        name = ctx.name(f"gcs-costs-{label.replace(' ', '-')}")
        proc = Proc(name, [*argv_prefix, PYTHON, "-m", "bench.gcs_costs", "measure", "--dir", directory,
                           "--repeats", str(repeats)], log_path=ctx.logs / f"{name}.log", env=env)
        wait_all([proc], 600, what=f"gcs costs {label}")
        for _, line in reversed(proc.lines):
            if line.startswith(RESULT_PREFIX):
                return json.loads(line[len(RESULT_PREFIX):])
        raise RuntimeError(f"gcs costs {label}: no result line (log {proc.log_path})")

    details = {"local": run("local", [], base_env(), str(ctx.work / "gcs-costs-local"))}
    with Endpoint("fake-gcs-server", workdir=ctx.work / "gcs-endpoint") as endpoint:
        for label, extra in GCS_SETTINGS:
            bucket = f"bench-{uuid.uuid4().hex[:8]}"
            endpoint.create_bucket(bucket)
            before = len(endpoint.front.requests)
            result = run(label, endpoint.prefix, endpoint.env(base_env(**extra)), f"gs://{bucket}/model")
            # Every request is a new TLS connection from TensorFlow's curl: on real GCS each costs
            # a round trip or three, so the count says more than the emulator's milliseconds.
            result["requests_per_repeat"] = round((len(endpoint.front.requests) - before) / repeats, 1)
            details[f"gs {label}"] = result
    local = details["local"]
    rows = []
    for key, r in details.items():
        is_local = key == "local"
        ratio = (r["save"] + r["restore"]) / (local["save"] + local["restore"])
        rows.append({
            "id": f"gcs_costs.{key.replace(' ', '_')}",
            "figure": f"Checkpoint I/O, {key} (MLP state, ~4.8 MB)",
            "value": f"save {_ms(r['save'])}, restore {_ms(r['restore'])}",
            "baseline": "" if is_local else (f"local: save {_ms(local['save'])}, "
                                             f"restore {_ms(local['restore'])}"),
            "ratio": "" if is_local else f"{ratio:.1f}x",
            "target": "", "status": "n/a",
            "notes": (f"evaluator storage lag (poll {_ms(r['poll'])} + restore) "
                      f"{_ms(r['poll'] + r['restore'])}; "
                      f"medians of {r['repeats'] - 1} after the first (first save {_ms(r['save_first'])})"
                      + ("" if is_local else
                         f"; {r['requests_per_repeat']:g} requests per save+poll+restore; "
                         "emulator on loopback, not Cloud Storage latency")),
            "numbers": r})
    return {"rows": rows, "details": details}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gcs_costs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="time save/poll/restore in one directory (local or gs://)")
    m.add_argument("--dir", required=True)
    m.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    if args.repeats < 2:
        p.error("--repeats must be at least 2 (the first is reported apart)")
    print(RESULT_PREFIX + json.dumps(measure(args.dir, args.repeats)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
