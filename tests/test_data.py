"""Tests of model/data.py (the MNIST loader) and scripts/fetch_mnist.py."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import importlib.util
import os
import shutil
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from model import data
from model.data import load_mnist, read_idx_images, read_idx_labels
from model.errors import ConfigError, DataError
from scripts.paths import MNIST_DIR, REPO_ROOT
from scripts.ports import free_port

FETCH = REPO_ROOT / "scripts" / "fetch_mnist.py"
NAMES = list(data.KNOWN_SHA256)
TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(scope="session", autouse=True)
def _tensorflow_imported():
    # The loader imports TensorFlow lazily; import it once up front so the
    # "fails in under a second" timings measure the loader, not TF's import.
    import tensorflow as tf

    tf.io.gfile.exists(str(MNIST_DIR))
    return tf


# --------------------------------------------------------------------------
# Synthetic IDX files


def images_idx(images: np.ndarray, *, magic: int = 2051, count: int | None = None) -> bytes:
    n, rows, cols = images.shape
    header = struct.pack(">IIII", magic, n if count is None else count, rows, cols)
    return header + images.astype(np.uint8).tobytes()


def labels_idx(labels: np.ndarray, *, magic: int = 2049, count: int | None = None) -> bytes:
    header = struct.pack(">II", magic, len(labels) if count is None else count)
    return header + labels.astype(np.uint8).tobytes()


def write(path: Path, payload: bytes, *, gz: bool = True) -> Path:
    """Write `payload` to PATH.gz (gzipped) or PATH (plain); return the file written."""
    target = path.with_name(path.name + ".gz") if gz else path
    target.write_bytes(gzip.compress(payload) if gz else payload)
    return target


def make_mnist_dir(d: Path, *, n_train: int = 12, n_test: int = 5, gz: bool = True) -> dict:
    """Write a tiny valid MNIST-shaped dataset into d; return its arrays by file name."""
    rng = np.random.default_rng(0)
    arrays = {
        TRAIN_IMAGES: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        TRAIN_LABELS: np.arange(n_train, dtype=np.uint8) % 10,
        TEST_IMAGES: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        TEST_LABELS: (np.arange(n_test, dtype=np.uint8) * 3) % 10,
    }
    d.mkdir(parents=True, exist_ok=True)
    for name, arr in arrays.items():
        payload = images_idx(arr) if arr.ndim == 3 else labels_idx(arr)
        write(d / name, payload, gz=gz)
    return arrays


def assert_data_error(fn, *fragments: str, exc_type: type[Exception] = DataError) -> str:
    """Call fn; assert it raises exc_type within a second with all fragments in the message."""
    start = time.perf_counter()
    with pytest.raises(exc_type) as info:
        fn()
    elapsed = time.perf_counter() - start
    message = str(info.value)
    assert elapsed < 1.0, f"took {elapsed:.2f}s: {message}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, dict]:
    d = tmp_path / "mnist"
    return d, make_mnist_dir(d)


# --------------------------------------------------------------------------
# The real data shipped in the repo


# `mnist` (conftest.py): the bundled copy, loaded once per session.


def test_real_shapes_dtypes_and_split_sizes(mnist: data.MnistSplits) -> None:
    expected = {
        "train": data.TRAIN_SIZE, "validation": data.VALIDATION_SIZE, "test": data.TEST_SIZE
    }
    assert (data.TRAIN_SIZE, data.VALIDATION_SIZE, data.TEST_SIZE) == (55_000, 5_000, 10_000)
    for split_name, n in expected.items():
        split = getattr(mnist, split_name)
        assert len(split) == n
        assert split.images.shape == (n, 28, 28)
        assert split.labels.shape == (n,)
        assert split.images.dtype == np.uint8 and split.labels.dtype == np.uint8
        assert int(split.labels.max()) == 9 and int(split.labels.min()) == 0
    # Real digits, not zeros: MNIST's mean pixel is ~33.
    assert 30 < mnist.train.images.mean() < 36


def test_real_validation_is_last_5000_of_training_file(mnist: data.MnistSplits) -> None:
    images = read_idx_images(str(MNIST_DIR / (TRAIN_IMAGES + ".gz")))
    labels = read_idx_labels(str(MNIST_DIR / (TRAIN_LABELS + ".gz")))
    assert images.shape == (60_000, 28, 28) and labels.shape == (60_000,)
    np.testing.assert_array_equal(mnist.validation.images, images[-5000:])
    np.testing.assert_array_equal(mnist.validation.labels, labels[-5000:])
    np.testing.assert_array_equal(mnist.train.images, images[:55_000])
    np.testing.assert_array_equal(mnist.train.labels, labels[:55_000])


def test_real_training_class_counts(mnist: data.MnistSplits) -> None:
    all_labels = np.concatenate([mnist.train.labels, mnist.validation.labels])
    assert np.bincount(all_labels, minlength=10).tolist() == TRAIN_CLASS_COUNTS


def test_arrays_are_read_only(mnist: data.MnistSplits) -> None:
    for split in (mnist.train, mnist.validation, mnist.test):
        for arr in (split.images, split.labels):
            assert not arr.flags.writeable
            with pytest.raises(ValueError):
                arr[0] = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        mnist.train.images = np.zeros(1)  # type: ignore[misc]


def test_real_uncompressed_files_load_and_verify(tmp_path: Path, mnist: data.MnistSplits) -> None:
    for name in NAMES:
        with gzip.open(MNIST_DIR / f"{name}.gz", "rb") as src:
            (tmp_path / name).write_bytes(src.read())
    plain = load_mnist(str(tmp_path))  # verify=True: the digests are of the payloads
    for split_name in ("train", "validation", "test"):
        got, want = getattr(plain, split_name), getattr(mnist, split_name)
        np.testing.assert_array_equal(got.images, want.images)
        np.testing.assert_array_equal(got.labels, want.labels)


def test_real_data_through_tf_gfile_ram_filesystem(mnist: data.MnistSplits) -> None:
    # TensorFlow's in-memory ram:// filesystem is a tf.io.gfile path that is not
    # an OS path, standing in for gs://.
    import tensorflow as tf

    root = f"ram://mnist-{uuid.uuid4().hex}"
    try:
        tf.io.gfile.makedirs(root)
    except tf.errors.UnimplementedError:
        pytest.skip("this TensorFlow build has no ram:// filesystem")
    try:
        for name in NAMES:
            with tf.io.gfile.GFile(f"{root}/{name}.gz", "wb") as f:
                f.write((MNIST_DIR / f"{name}.gz").read_bytes())
        assert not os.path.exists(root)
        loaded = load_mnist(root)
        np.testing.assert_array_equal(loaded.train.images, mnist.train.images)
        np.testing.assert_array_equal(loaded.test.labels, mnist.test.labels)
        # Errors name the gfile path too.
        tf.io.gfile.remove(f"{root}/{TEST_LABELS}.gz")
        assert_data_error(lambda: load_mnist(root), f"{root}", f"{TEST_LABELS}.gz")
    finally:
        for name in tf.io.gfile.listdir(root):
            tf.io.gfile.remove(f"{root}/{name}")


# --------------------------------------------------------------------------
# Custom data and every kind of bad input


def test_custom_data_loads_with_verify_false(tiny) -> None:
    d, arrays = tiny
    splits = load_mnist(str(d), verify=False, validation_size=3)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (9, 3, 5)
    np.testing.assert_array_equal(splits.train.images, arrays[TRAIN_IMAGES][:9])
    np.testing.assert_array_equal(splits.validation.images, arrays[TRAIN_IMAGES][9:])
    np.testing.assert_array_equal(splits.validation.labels, arrays[TRAIN_LABELS][9:])
    np.testing.assert_array_equal(splits.test.images, arrays[TEST_IMAGES])
    np.testing.assert_array_equal(splits.test.labels, arrays[TEST_LABELS])
    assert not splits.train.images.flags.writeable


def test_custom_uncompressed_data_loads(tmp_path: Path) -> None:
    arrays = make_mnist_dir(tmp_path, gz=False)
    splits = load_mnist(str(tmp_path), verify=False, validation_size=0)
    assert len(splits.validation) == 0 and splits.validation.images.shape == (0, 28, 28)
    np.testing.assert_array_equal(splits.train.labels, arrays[TRAIN_LABELS])


def test_gz_is_preferred_over_plain(tiny) -> None:
    d, arrays = tiny
    (d / TRAIN_LABELS).write_bytes(b"garbage that is never read")
    splits = load_mnist(str(d), verify=False, validation_size=2)
    np.testing.assert_array_equal(splits.validation.labels, arrays[TRAIN_LABELS][-2:])
    # ... and a bad .gz is reported even when a good plain file sits beside it.
    (d / TRAIN_LABELS).write_bytes(labels_idx(arrays[TRAIN_LABELS]))
    (d / f"{TRAIN_LABELS}.gz").write_bytes(b"not gzip")
    assert_data_error(lambda: load_mnist(str(d), verify=False, validation_size=2),
                      str(d / f"{TRAIN_LABELS}.gz"), "gzip")


def test_checksum_mismatch(tiny) -> None:
    d, arrays = tiny
    actual = hashlib.sha256(labels_idx(arrays[TRAIN_LABELS])).hexdigest()
    assert_data_error(lambda: load_mnist(str(d), validation_size=2),
                      str(d / f"{TRAIN_LABELS}.gz"), data.KNOWN_SHA256[TRAIN_LABELS], actual,
                      "--no-verify")


def test_read_functions_check_an_explicit_digest(tiny) -> None:
    d, arrays = tiny
    path = str(d / f"{TEST_IMAGES}.gz")
    good = hashlib.sha256(images_idx(arrays[TEST_IMAGES])).hexdigest()
    images = read_idx_images(path, expected_sha256=good.upper())
    np.testing.assert_array_equal(images, arrays[TEST_IMAGES])
    assert_data_error(lambda: read_idx_images(path, expected_sha256="0" * 64), path, "0" * 64, good)


def test_missing_file(tiny) -> None:
    d, _ = tiny
    (d / f"{TRAIN_LABELS}.gz").unlink()
    assert_data_error(lambda: load_mnist(str(d), verify=False, validation_size=2),
                      str(d), f"{TRAIN_LABELS}.gz and {TRAIN_LABELS}")


def test_missing_directory(tmp_path: Path) -> None:
    d = tmp_path / "nope"
    assert_data_error(lambda: load_mnist(str(d)), str(d), "does not exist", f"{TRAIN_IMAGES}.gz")


@pytest.mark.parametrize(
    "target, expected",
    [
        (TRAIN_IMAGES, "expected magic 2051 (images), found 2049 (labels)"),
        (TRAIN_LABELS, "expected magic 2049 (labels), found 2051 (images)"),
    ],
)
def test_images_and_labels_swapped(tiny, target: str, expected: str) -> None:
    d, arrays = tiny
    # Swap the two training files' contents, keeping their names.
    images_gz, labels_gz = d / f"{TRAIN_IMAGES}.gz", d / f"{TRAIN_LABELS}.gz"
    a, b = images_gz.read_bytes(), labels_gz.read_bytes()
    images_gz.write_bytes(b)
    labels_gz.write_bytes(a)
    # Each reader reports the swap on its own file.
    reader = read_idx_images if target == TRAIN_IMAGES else read_idx_labels
    path = str(d / f"{target}.gz")
    assert_data_error(lambda: reader(path), path, expected)
    # load_mnist reports it too (labels are read first).
    assert_data_error(lambda: load_mnist(str(d), verify=False, validation_size=2),
                      str(labels_gz), "expected magic 2049 (labels), found 2051 (images)")


def test_wrong_magic_not_idx(tmp_path: Path) -> None:
    # An uncompressed name holding gzip data gets a hint; other junk is "not an IDX file".
    images = np.zeros((2, 28, 28), np.uint8)
    p = tmp_path / TRAIN_IMAGES
    p.write_bytes(gzip.compress(images_idx(images)))
    assert_data_error(lambda: read_idx_images(str(p)), str(p), "expected magic 2051 (images)",
                      "0x1f8b08", "gzip")
    p.write_bytes(b"P5\n28 28\n255\n" + bytes(784))
    assert_data_error(lambda: read_idx_images(str(p)), str(p), "expected magic 2051 (images)",
                      "found 0x50350a32 (not an IDX file)")


@pytest.mark.parametrize("kind, size, header_size", [("images", 10, 16), ("labels", 6, 8)])
def test_header_too_short(tmp_path: Path, kind: str, size: int, header_size: int) -> None:
    if kind == "images":
        payload, reader = images_idx(np.zeros((1, 28, 28), np.uint8)), read_idx_images
    else:
        payload, reader = labels_idx(np.zeros(1, np.uint8)), read_idx_labels
    path = str(write(tmp_path / kind, payload[:size]))
    assert_data_error(lambda: reader(path), path, "header too short",
                      f"expected {header_size} bytes, found {size}")


def test_truncated_image_body(tiny) -> None:
    d, arrays = tiny
    n = len(arrays[TRAIN_IMAGES])
    path = write(d / TRAIN_IMAGES, images_idx(arrays[TRAIN_IMAGES])[:-100])
    assert_data_error(lambda: load_mnist(str(d), verify=False, validation_size=2), str(path),
                      "truncated", f"expected {n * 784} bytes", f"found {n * 784 - 100}")


def test_truncated_label_body(tiny) -> None:
    d, arrays = tiny
    n = len(arrays[TEST_LABELS])
    path = write(d / TEST_LABELS, labels_idx(arrays[TEST_LABELS])[:-1])
    assert_data_error(lambda: load_mnist(str(d), verify=False, validation_size=2), str(path),
                      "truncated", f"expected {n} bytes", f"found {n - 1}")


def _truncate_half(gz: bytes) -> bytes:
    return gz[: len(gz) // 2]


def _flip_crc(gz: bytes) -> bytes:
    # The gzip trailer is CRC32 then ISIZE; a wrong CRC means corrupt content.
    return gz[:-8] + bytes(b ^ 0xFF for b in gz[-8:-4]) + gz[-4:]


def _flip_deflate(gz: bytes) -> bytes:
    mid = bytearray(gz)
    for i in range(20, 40):
        mid[i] ^= 0xA5
    return bytes(mid)


def _not_gzip(gz: bytes) -> bytes:
    return b"PK\x03\x04 a zip file"


@pytest.mark.parametrize("corrupt", [_truncate_half, _flip_crc, _flip_deflate, _not_gzip])
def test_corrupt_gzip_stream(tiny, corrupt) -> None:
    d, _ = tiny
    path = d / f"{TRAIN_IMAGES}.gz"
    raw = corrupt(path.read_bytes())
    path.write_bytes(raw)
    assert_data_error(lambda: load_mnist(str(d), verify=False, validation_size=2), str(path),
                      "corrupt gzip stream", f"({len(raw)} bytes on disk)")


def test_image_size_not_28x28(tiny) -> None:
    d, arrays = tiny
    small = np.zeros((len(arrays[TRAIN_IMAGES]), 27, 28), np.uint8)
    path = write(d / TRAIN_IMAGES, images_idx(small))
    assert_data_error(lambda: load_mnist(str(d), verify=False, validation_size=2), str(path),
                      "expected 28x28 images, found 27x28")


def test_image_label_count_mismatch(tiny) -> None:
    d, arrays = tiny
    labels_path = write(d / TRAIN_LABELS, labels_idx(arrays[TRAIN_LABELS][:-1]))
    n = len(arrays[TRAIN_IMAGES])
    assert_data_error(lambda: load_mnist(str(d), verify=False, validation_size=2),
                      str(d / f"{TRAIN_IMAGES}.gz"), str(labels_path),
                      f"has {n} images", f"has {n - 1} labels")


def test_label_out_of_range(tiny) -> None:
    d, arrays = tiny
    labels = arrays[TEST_LABELS].copy()
    labels[3] = 10
    path = write(d / TEST_LABELS, labels_idx(labels))
    assert_data_error(lambda: load_mnist(str(d), verify=False, validation_size=2), str(path),
                      "expected labels 0..9, found 10 at index 3")


@pytest.mark.parametrize("name", [TRAIN_IMAGES, TEST_LABELS])
def test_trailing_bytes(tiny, name: str) -> None:
    d, arrays = tiny
    arr = arrays[name]
    payload = images_idx(arr) if arr.ndim == 3 else labels_idx(arr)
    body = arr.size
    path = write(d / name, payload + b"extra")
    assert_data_error(lambda: load_mnist(str(d), verify=False, validation_size=2), str(path),
                      "5 trailing bytes", f"expected {body} bytes", f"found {body + 5}")


def test_header_count_larger_than_body(tiny) -> None:
    # A header claiming more images than the body holds is a truncated body.
    d, arrays = tiny
    n = len(arrays[TEST_IMAGES])
    path = write(d / TEST_IMAGES, images_idx(arrays[TEST_IMAGES], count=n + 1))
    assert_data_error(lambda: read_idx_images(str(path)), str(path),
                      f"expected {(n + 1) * 784} bytes", f"found {n * 784}")


def test_validation_size_out_of_range(tiny) -> None:
    d, _ = tiny
    assert_data_error(lambda: load_mnist(str(d), verify=False, validation_size=-1),
                      "validation_size", "-1", exc_type=ConfigError)
    assert_data_error(lambda: load_mnist(str(d), verify=False, validation_size=12),
                      str(d), "validation_size=12", "0 <= validation_size < 12")
    # The default (5,000) on tiny data is refused, not silently clipped.
    assert_data_error(lambda: load_mnist(str(d), verify=False), "validation_size=5000")


# --------------------------------------------------------------------------
# scripts/fetch_mnist.py against local HTTP mirrors


class _Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self) -> None:
        self.server.requests.append(self.path)  # type: ignore[attr-defined]
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def serve():
    """serve(directory) -> (base URL, list of request paths); servers stop at teardown."""
    running = []

    def start(directory: Path) -> tuple[str, list[str]]:
        server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_Handler, directory=str(directory))
        )
        server.requests = []  # type: ignore[attr-defined]
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        running.append((server, thread))
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        return url, server.requests  # type: ignore[attr-defined]

    yield start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive()


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/"  # nothing listens there any more


def run_fetch(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return subprocess.run([sys.executable, str(FETCH), *args], capture_output=True, text=True,
                          timeout=120, env=env)


def payload_digest(path: Path) -> str:
    raw = path.read_bytes()
    return hashlib.sha256(gzip.decompress(raw) if path.suffix == ".gz" else raw).hexdigest()


@pytest.fixture
def bad_mirror(tmp_path: Path) -> Path:
    """A mirror whose four files are each wrong in a different way."""
    d = tmp_path / "bad-mirror"
    d.mkdir()
    labels = bytearray(gzip.decompress((MNIST_DIR / f"{TRAIN_LABELS}.gz").read_bytes()))
    labels[8 + 100] = (labels[8 + 100] + 1) % 10  # valid IDX, wrong checksum
    (d / f"{TRAIN_LABELS}.gz").write_bytes(gzip.compress(bytes(labels)))
    (d / f"{TEST_LABELS}.gz").write_bytes((MNIST_DIR / f"{TEST_LABELS}.gz").read_bytes()[:2000])
    (d / f"{TEST_IMAGES}.gz").write_bytes(b"<html>not found</html>")
    # TRAIN_IMAGES is absent: 404.
    return d


def assert_valid_dest(dest: Path) -> None:
    assert sorted(p.name for p in dest.iterdir()) == sorted(f"{n}.gz" for n in NAMES)
    for name in NAMES:
        assert payload_digest(dest / f"{name}.gz") == data.KNOWN_SHA256[name]


def test_fetch_script_digests_match_the_loader() -> None:
    spec = importlib.util.spec_from_file_location("fetch_mnist", FETCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.EMBEDDED_SHA256 == data.KNOWN_SHA256
    assert module.load_digests() == data.KNOWN_SHA256  # from data/mnist/SHA256SUMS.uncompressed
    assert module.load_digests(Path("/nonexistent/SHA256SUMS")) == data.KNOWN_SHA256


def test_fetch_script_imports_no_tensorflow() -> None:
    code = (f"import runpy, sys; sys.argv = ['fetch_mnist.py', '--help']\n"
            f"try:\n    runpy.run_path({str(FETCH)!r}, run_name='__main__')\n"
            f"except SystemExit:\n    pass\n"
            f"bad = [m for m in ('tensorflow', 'numpy', 'model') if m in sys.modules]\n"
            f"assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


def test_fetch_downloads_and_verifies(tmp_path: Path, serve) -> None:
    url, requests = serve(MNIST_DIR)
    dest = tmp_path / "dest"
    result = run_fetch("--dest", str(dest), "--mirror", url)
    assert result.returncode == 0, result.stderr
    assert_valid_dest(dest)
    assert sorted(requests) == sorted(f"/{n}.gz" for n in NAMES)
    # The result loads with the checksum on.
    assert len(load_mnist(str(dest)).train) == 55_000
    # A second run downloads nothing.
    requests.clear()
    again = run_fetch("--dest", str(dest), "--mirror", url)
    assert again.returncode == 0 and requests == []
    assert again.stdout.count("present and valid") == 4


def test_fetch_falls_through_a_corrupt_mirror(tmp_path: Path, serve, bad_mirror: Path) -> None:
    bad_url, bad_requests = serve(bad_mirror)
    good_url, good_requests = serve(MNIST_DIR)
    dest = tmp_path / "dest"
    result = run_fetch("--dest", str(dest), "--mirror", bad_url, "--mirror", dead_url(),
                       "--mirror", good_url)
    assert result.returncode == 0, result.stderr
    assert_valid_dest(dest)
    # Every file was tried on the bad mirror first, then fetched from the good one.
    assert sorted(bad_requests) == sorted(good_requests) == sorted(f"/{n}.gz" for n in NAMES)
    assert result.stderr.count("rejected") == 8  # 4 files x (bad mirror + dead mirror)
    assert f"{TRAIN_LABELS}.gz: rejected: SHA-256" in result.stderr
    assert data.KNOWN_SHA256[TRAIN_LABELS] in result.stderr
    assert "404" in result.stderr


def test_fetch_all_mirrors_fail(tmp_path: Path, serve, bad_mirror: Path) -> None:
    bad_url, _ = serve(bad_mirror)
    dest = tmp_path / "dest"
    start = time.perf_counter()
    result = run_fetch("--dest", str(dest), "--mirror", bad_url, "--mirror", dead_url(),
                       "--timeout", "10")
    assert time.perf_counter() - start < 30
    assert result.returncode == 1
    for name in NAMES:
        assert f"could not fetch {name}.gz from any mirror" in result.stderr
    assert "incomplete" in result.stderr
    assert list(dest.iterdir()) == []  # no partial or temporary file left behind


def test_fetch_replaces_an_invalid_file_and_keeps_valid_ones(tmp_path: Path, serve) -> None:
    url, requests = serve(MNIST_DIR)
    dest = tmp_path / "dest"
    dest.mkdir()
    for name in NAMES:
        shutil.copy(MNIST_DIR / f"{name}.gz", dest)
    (dest / f"{TEST_LABELS}.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01junk"))
    before = (dest / f"{TRAIN_IMAGES}.gz").stat().st_mtime_ns
    result = run_fetch("--dest", str(dest), "--mirror", url)
    assert result.returncode == 0, result.stderr
    assert requests == [f"/{TEST_LABELS}.gz"]
    assert (dest / f"{TRAIN_IMAGES}.gz").stat().st_mtime_ns == before
    assert_valid_dest(dest)


def test_fetch_verify_only(tmp_path: Path) -> None:
    ok = run_fetch("--dest", str(MNIST_DIR), "--verify-only")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count(": OK") == 4

    for name in NAMES[1:]:
        shutil.copy(MNIST_DIR / f"{name}.gz", tmp_path)
    labels = bytearray(gzip.decompress((tmp_path / f"{TRAIN_LABELS}.gz").read_bytes()))
    labels[-1] = (labels[-1] + 1) % 10
    (tmp_path / f"{TRAIN_LABELS}.gz").write_bytes(gzip.compress(bytes(labels)))
    bad = run_fetch("--dest", str(tmp_path), "--verify-only", "--mirror", dead_url())
    assert bad.returncode == 1
    assert f"MISSING {NAMES[0]}.gz" in bad.stderr
    assert f"{TRAIN_LABELS}.gz: BAD" in bad.stderr
    assert data.KNOWN_SHA256[TRAIN_LABELS] in bad.stderr
    assert hashlib.sha256(bytes(labels)).hexdigest() in bad.stderr
    assert not (tmp_path / f"{NAMES[0]}.gz").exists()  # verify-only downloads nothing
