"""model/atomic_write.py: a file is replaced whole or not at all, and nothing is left behind."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid

import pytest

from model.atomic_write import write_atomically, write_json_atomically
from scripts.paths import REPO_ROOT


def test_bytes_text_and_json_replace_the_file(tmp_path):
    path = tmp_path / "f"
    write_atomically(path, b"\x00bytes")
    assert path.read_bytes() == b"\x00bytes"
    write_atomically(str(path), "text é")
    assert path.read_text(encoding="utf-8") == "text é"
    write_json_atomically(path, {"b": 1, "a": [2]})
    assert path.read_text() == '{\n  "a": [\n    2\n  ],\n  "b": 1\n}\n'
    write_json_atomically(path, {"b": 1, "a": 2}, indent=1, sort_keys=False)
    assert list(json.loads(path.read_text())) == ["b", "a"]
    assert os.listdir(tmp_path) == ["f"]


def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path):
    """Not mkstemp's 0600: other processes (evaluator, TensorBoard, the runner's readers) read these."""
    old = os.umask(0o022)
    try:
        write_atomically(tmp_path / "f", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644


def test_a_payload_that_is_not_json_leaves_the_old_file(tmp_path):
    path = tmp_path / "f.json"
    write_json_atomically(path, {"old": True})
    with pytest.raises(TypeError):
        write_json_atomically(path, {"new": object()})
    assert json.loads(path.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == ["f.json"]


# A real failure in the middle of the write: the file size limit (RLIMIT_FSIZE) makes write()
# fail with EFBIG once the temporary file reaches 1000 bytes.
FULL_WRITE = """
import resource, signal, sys
from model.atomic_write import write_atomically
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
try:
    write_atomically(sys.argv[1], b"n" * 5000)
except OSError as e:
    print(f"OSError {e.errno}")
else:
    print("written")
assert "tensorflow" not in sys.modules, "a local write must not import TensorFlow"
"""


def test_a_write_that_fails_half_way_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old")
    out = subprocess.run([sys.executable, "-c", FULL_WRITE, str(path)], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "OSError 27"  # EFBIG
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_a_url_goes_through_tf_io_gfile():
    """ram:// stands in for gs:// (both are tf.io.gfile file systems; no Cloud Storage here)."""
    tf = pytest.importorskip("tensorflow")
    root = f"ram://atomic-{uuid.uuid4().hex}"
    try:
        tf.io.gfile.makedirs(root)
    except tf.errors.OpError:
        pytest.skip("this TensorFlow build has no ram:// filesystem")
    write_json_atomically(f"{root}/f.json", {"old": True})
    write_json_atomically(f"{root}/f.json", {"new": True})
    with tf.io.gfile.GFile(f"{root}/f.json") as f:
        assert json.loads(f.read()) == {"new": True}
    assert tf.io.gfile.listdir(root) == ["f.json"]
