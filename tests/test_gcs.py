"""model/gcs.py against a real Cloud Storage emulator (gcp-storage-emulator).

The emulator is started by these tests in this process, on 127.0.0.1 and a
free port, and stopped at the end of the module; the client finds it through
STORAGE_EMULATOR_HOST and uses anonymous credentials. Cache reuse is judged by
the emulator's own request log (every HTTP request it serves), never by
mocking the client.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from model import cli, gcs
from model.data import KNOWN_SHA256, load_mnist
from model.atomic_write import write_json_atomically
from model.errors import ConfigError, DataError
from scripts.paths import MNIST_DIR, REPO_ROOT
from scripts.ports import free_port

REPO = REPO_ROOT  # tests/test_lease.py imports it from here
NAMES = list(KNOWN_SHA256)


# ---------------------------------------------------------------- the emulator

class RequestLog(logging.Handler):
    """The emulator's access log: one record per HTTP request it served."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        message = record.getMessage()
        if message.startswith('"') and "HTTP/" in message:
            self.lines.append(message)

    def clear(self):
        self.lines.clear()

    def downloads(self) -> list[str]:
        return [line for line in self.lines if line.startswith('"GET /download/')]


@pytest.fixture(scope="module")
def emulator():
    """(base URL, request log) of an in-memory emulator on 127.0.0.1."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True)
    requests = RequestLog()
    logger = logging.getLogger("gcp_storage_emulator")
    old_level, old_propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False  # its per-request lines would drown the test output
    logger.addHandler(requests)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}", requests
    finally:
        server.stop()
        logger.removeHandler(requests)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


@pytest.fixture
def client(emulator, monkeypatch):
    url, _ = emulator
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
    return gcs.make_client()


@pytest.fixture
def requests(emulator):
    log = emulator[1]
    log.clear()
    return log


@pytest.fixture
def bucket(client):
    return client.create_bucket(f"b-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def mnist_uri(bucket) -> str:
    """The bundled MNIST (.gz) uploaded under gs://<bucket>/mnist."""
    for name in NAMES:
        bucket.blob(f"mnist/{name}.gz").upload_from_filename(str(MNIST_DIR / f"{name}.gz"))
    return f"gs://{bucket.name}/mnist"


@pytest.fixture
def cache(tmp_path) -> Path:
    return tmp_path / "cache"


def staged_files(local_dir: str) -> list[str]:
    return sorted(p for p in os.listdir(local_dir) if not p.startswith("."))


# ---------------------------------------------------------------- URIs

@pytest.mark.parametrize("uri,bucket,prefix", [
    ("gs://my-bucket", "my-bucket", ""),
    ("gs://my-bucket/", "my-bucket", ""),
    ("gs://my.bucket_1/a/b/", "my.bucket_1", "a/b"),
])
def test_parse_uri(uri, bucket, prefix):
    parsed = gcs.parse_uri(uri)
    assert (parsed.bucket, parsed.prefix) == (bucket, prefix)
    assert str(parsed) == f"gs://{bucket}" + (f"/{prefix}" if prefix else "")


@pytest.mark.parametrize("uri", ["s3://b/x", "gs://", "gs://UPPER/x", "gs://b/../x", "gs://ok-bucket/a//b"])
def test_parse_uri_rejects(uri):
    with pytest.raises(ConfigError):
        gcs.parse_uri(uri)


# ---------------------------------------------------------------- staging

def test_stage_downloads_verifies_and_loads(client, mnist_uri, cache, requests):
    local = gcs.stage_mnist(mnist_uri, str(cache), client=client)
    assert Path(local) == cache / mnist_uri[5:]  # <base>/<bucket>/<prefix>
    assert staged_files(local) == sorted([f"{n}.gz" for n in NAMES] +
                                         [f"{n}.gz{gcs.SOURCE_SUFFIX}" for n in NAMES])
    assert len(requests.downloads()) == 4
    for name in NAMES:
        assert (Path(local) / f"{name}.gz").read_bytes() == (MNIST_DIR / f"{name}.gz").read_bytes()
        source = json.loads((Path(local) / f"{name}.gz{gcs.SOURCE_SUFFIX}").read_text())
        assert source["uri"] == f"{mnist_uri}/{name}.gz" and source["generation"] > 0
    splits = load_mnist(local)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (55_000, 5_000, 10_000)


def test_cache_is_reused_without_a_request(client, mnist_uri, cache, requests):
    first = gcs.stage_mnist(mnist_uri, str(cache), client=client)
    generations = {b.name: b.generation for b in client.list_blobs(mnist_uri[5:].split("/")[0])}
    mtimes = {p: os.stat(os.path.join(first, p)).st_mtime_ns for p in staged_files(first)}
    requests.clear()
    second = gcs.stage_mnist(mnist_uri, str(cache), client=client)
    assert second == first
    assert requests.lines == [], "a verified cache must not touch the bucket"
    assert {p: os.stat(os.path.join(first, p)).st_mtime_ns for p in staged_files(first)} == mtimes
    assert {b.name: b.generation for b in client.list_blobs(mnist_uri[5:].split("/")[0])} == generations


def test_valid_cache_needs_no_credentials(client, mnist_uri, cache, monkeypatch):
    local = gcs.stage_mnist(mnist_uri, str(cache), client=client)

    def no_client():
        raise AssertionError("a verified cache must not create a storage client")

    monkeypatch.setattr(gcs, "make_client", no_client)
    assert gcs.stage_mnist(mnist_uri, str(cache)) == local


def test_unverified_cache_is_reused_while_the_generation_holds(client, bucket, mnist_uri, cache,
                                                               requests):
    """--no-verify: no checksum to trust, so the object's generation decides."""
    local = gcs.stage_mnist(mnist_uri, str(cache), verify=False, client=client)
    requests.clear()
    gcs.stage_mnist(mnist_uri, str(cache), verify=False, client=client)
    assert requests.lines and not requests.downloads(), requests.lines  # metadata only
    # A new generation of one object is fetched again; the others are not.
    bucket.blob("mnist/t10k-labels-idx1-ubyte.gz").upload_from_filename(
        str(MNIST_DIR / "t10k-labels-idx1-ubyte.gz"))
    requests.clear()
    gcs.stage_mnist(mnist_uri, str(cache), verify=False, client=client)
    assert len(requests.downloads()) == 1 and "t10k-labels" in requests.downloads()[0]
    assert load_mnist(local, verify=True)  # still the real MNIST


def test_corrupt_cached_file_is_fetched_again(client, mnist_uri, cache, requests):
    local = Path(gcs.stage_mnist(mnist_uri, str(cache), client=client))
    victim = local / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(victim.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # still a valid label: only the digest can tell
    victim.write_bytes(gzip.compress(bytes(raw)))
    requests.clear()
    gcs.stage_mnist(mnist_uri, str(cache), client=client)
    assert len(requests.downloads()) == 1 and "train-labels" in requests.downloads()[0]
    assert victim.read_bytes() == (MNIST_DIR / victim.name).read_bytes()


def test_interrupted_download_is_resumed(client, bucket, mnist_uri, cache, requests):
    """A .partial of the same generation is continued (one ranged request,
    answered 206); one whose bytes turn out wrong is thrown away and the file
    fetched whole (a ranged request, then a full one)."""
    uri = gcs.parse_uri(mnist_uri)
    local = Path(gcs.cache_dir_for(uri, str(cache)))
    local.mkdir(parents=True)
    name = "t10k-images-idx3-ubyte.gz"
    blob = bucket.get_blob(f"mnist/{name}")
    data = (MNIST_DIR / name).read_bytes()
    meta = {"generation": int(blob.generation), "size": blob.size, "crc32c": blob.crc32c}

    partial = local / (name + gcs.PARTIAL_SUFFIX)
    partial.write_bytes(data[: len(data) // 2])
    (local / (name + gcs.PARTIAL_SUFFIX + ".json")).write_text(json.dumps(meta))
    requests.clear()
    gcs.stage_mnist(mnist_uri, str(cache), client=client)
    fetched = [d for d in requests.downloads() if name in d]
    assert len(fetched) == 1 and fetched[0].endswith('" 206 -'), fetched  # Partial Content
    assert (local / name).read_bytes() == data and not partial.exists()

    (local / name).unlink()
    partial.write_bytes(b"\0" * 1000)  # not the object's first bytes
    (local / (name + gcs.PARTIAL_SUFFIX + ".json")).write_text(json.dumps(meta))
    requests.clear()
    gcs.stage_mnist(mnist_uri, str(cache), client=client)
    fetched = [d for d in requests.downloads() if name in d]
    assert [f.rsplit(" ", 2)[1] for f in fetched] == ["206", "200"], fetched
    assert (local / name).read_bytes() == data and not partial.exists()


def test_partial_of_another_generation_is_discarded(client, bucket, mnist_uri, cache, requests):
    uri = gcs.parse_uri(mnist_uri)
    local = Path(gcs.cache_dir_for(uri, str(cache)))
    local.mkdir(parents=True)
    name = "train-labels-idx1-ubyte.gz"
    (local / (name + gcs.PARTIAL_SUFFIX)).write_bytes(b"stale bytes")
    (local / (name + gcs.PARTIAL_SUFFIX + ".json")).write_text(json.dumps({"generation": 1}))
    requests.clear()
    gcs.stage_mnist(mnist_uri, str(cache), client=client)
    assert len([d for d in requests.downloads() if name in d]) == 1
    assert (local / name).read_bytes() == (MNIST_DIR / name).read_bytes()


def test_corrupt_object_fails_verification(client, bucket, mnist_uri, cache):
    raw = bytearray(gzip.decompress((MNIST_DIR / "train-labels-idx1-ubyte.gz").read_bytes()))
    raw[5000] = (raw[5000] + 3) % 10
    bucket.blob("mnist/train-labels-idx1-ubyte.gz").upload_from_string(gzip.compress(bytes(raw)))
    with pytest.raises(DataError) as e:
        gcs.stage_mnist(mnist_uri, str(cache), client=client)
    message = str(e.value)
    assert f"{mnist_uri}/train-labels-idx1-ubyte.gz" in message and "SHA-256 mismatch" in message
    assert KNOWN_SHA256["train-labels-idx1-ubyte"] in message
    local = Path(gcs.cache_dir_for(gcs.parse_uri(mnist_uri), str(cache)))
    assert not (local / "train-labels-idx1-ubyte.gz").exists()
    assert not list(local.glob("*.partial*"))
    # Custom data: --no-verify stages it as it is.
    gcs.stage_mnist(mnist_uri, str(cache), verify=False, client=client)
    assert gzip.decompress((local / "train-labels-idx1-ubyte.gz").read_bytes()) == bytes(raw)


def test_plain_files_are_staged_too(client, bucket, cache):
    for name in NAMES:
        raw = gzip.decompress((MNIST_DIR / f"{name}.gz").read_bytes())
        bucket.blob(f"raw/{name}").upload_from_string(raw)
    local = gcs.stage_mnist(f"gs://{bucket.name}/raw", str(cache), client=client)
    assert [p for p in staged_files(local) if not p.endswith(gcs.SOURCE_SUFFIX)] == sorted(NAMES)
    assert len(load_mnist(local).test) == 10_000


def test_missing_object(client, bucket, mnist_uri, cache):
    bucket.blob("mnist/t10k-labels-idx1-ubyte.gz").delete()
    with pytest.raises(DataError) as e:
        gcs.stage_mnist(mnist_uri, str(cache), client=client)
    assert (f"MNIST file not found in {mnist_uri}: looked for {mnist_uri}/t10k-labels-idx1-ubyte.gz "
            f"and {mnist_uri}/t10k-labels-idx1-ubyte") in str(e.value)


def test_missing_bucket(client, cache):
    with pytest.raises(ConfigError, match=r"bucket gs://no-such-bucket-here does not exist"):
        gcs.stage_mnist("gs://no-such-bucket-here/mnist", str(cache), client=client)


def test_default_cache_dir_is_under_tmpdir(client, mnist_uri, tmp_path, monkeypatch):
    monkeypatch.delenv(gcs.CACHE_ENV, raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmpdir"))
    (tmp_path / "tmpdir").mkdir()
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    local = gcs.stage_mnist(mnist_uri, client=client)
    assert local == str(tmp_path / "tmpdir" / "mnist-train-data" / mnist_uri[5:])


# ---------------------------------------------------------------- the CLI routes gs:// data

def test_cli_reports_missing_bucket_and_object(client, bucket, mnist_uri, tmp_path, capsys):
    bucket.blob("mnist/train-images-idx3-ubyte.gz").delete()
    base = ["--model-dir", str(tmp_path / "model"), "--data-cache-dir", str(tmp_path / "c")]
    assert cli.main(["evaluate", *base, "--data-dir", "gs://no-such-bucket-here/mnist"]) == 2
    assert "error: gs://no-such-bucket-here/mnist: bucket gs://no-such-bucket-here does not exist" \
        in capsys.readouterr().err
    assert cli.main(["train", "--model", "mlp", *base, "--data-dir", mnist_uri]) == 2
    assert f"error: MNIST file not found in {mnist_uri}" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_trains_from_a_bucket(emulator, mnist_uri, tmp_path):
    """`python -m model train --data-dir gs://...` in a subprocess, against this
    process's emulator: staged, verified, trained on."""
    env = {**os.environ, "STORAGE_EMULATOR_HOST": emulator[0], "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(REPO_ROOT)}
    for key in ("TF_CONFIG", "MNIST_DATA_DIR", "TF_LOGDIR", "TF_MAX_STEPS"):
        env.pop(key, None)
    cache = tmp_path / "cache"
    result = subprocess.run(
        [sys.executable, "-m", "model", "train", "--model", "mlp", "--max-steps", "5",
         "--steps-per-loop", "5", "--model-dir", str(tmp_path / "model"), "--data-dir", mnist_uri,
         "--data-cache-dir", str(cache)],
        env=env, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{mnist_uri} staged in {cache}" in result.stdout
    assert (tmp_path / "model" / "ckpt-5.index").exists()


def no_credentials_env(tmp_path) -> dict:
    """No emulator and no credentials anywhere; google-auth must not probe the
    GCE metadata server (NO_GCE_CHECK, and its address points at loopback)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS", "TF_CONFIG")}
    env.update(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"), NO_GCE_CHECK="true",
               GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9",
               PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    return env


@pytest.mark.parametrize("key_file", [None, "missing-key.json"])
def test_no_credentials_is_a_config_error(tmp_path, key_file):
    env = no_credentials_env(tmp_path)
    if key_file:
        env["GOOGLE_APPLICATION_CREDENTIALS"] = str(tmp_path / key_file)
    result = subprocess.run(
        [sys.executable, "-m", "model", "train", "--model", "mlp", "--model-dir", str(tmp_path / "m"),
         "--data-dir", "gs://some-bucket/mnist", "--data-cache-dir", str(tmp_path / "c")],
        env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: Cloud Storage: no Google Cloud credentials found" in result.stderr
    assert "GOOGLE_APPLICATION_CREDENTIALS" in result.stderr and "Traceback" not in result.stderr
    if key_file:
        assert key_file in result.stderr


# ---------------------------------------------------------------- exports

@pytest.fixture(scope="module")
def scored_model_dir(tmp_path_factory) -> Path:
    """Two MLP checkpoints (steps 10 and 20) with different weights, in the
    trainer's own checkpoint format, plus the files the evaluator leaves:
    validation accuracy is better at step 10."""
    import tensorflow as tf

    from model import checkpointing, layout
    from model import config as presets
    from model.train_state import TrainState

    directory = tmp_path_factory.mktemp("gcs-export") / "model"
    state = TrainState("mlp", presets.preset("default", "mlp"))
    manager = tf.train.CheckpointManager(state.checkpoint(), str(directory), max_to_keep=5,
                                         checkpoint_name=layout.CHECKPOINT_PREFIX)
    rng = np.random.default_rng(0)
    for step in (10, 20):
        state.step.assign(step)
        for shadow in state.averages.shadows:
            shadow.assign(rng.normal(0, 0.05, shadow.shape).astype(np.float32))
        manager.save(checkpoint_number=step)
    write_json_atomically(directory / layout.RUN_CONFIG, {"model": "mlp", "hparams": {}})
    checkpointing.write_complete_marker(str(directory), 20, str(directory / "ckpt-20"))
    eval_dir = directory / "eval"
    eval_dir.mkdir()
    results = {str(s): {"validation_accuracy": acc, "raw_validation_accuracy": acc,
                        "checkpoint": str(directory / f"ckpt-{s}"), "eval_seconds": 0.1}
               for s, acc in ((10, 0.97), (20, 0.95))}
    (eval_dir / "eval_state.json").write_text(json.dumps({"results": results, "failures": {}}))
    (eval_dir / "final_metrics.json").write_text(json.dumps(
        {"final_step": 20, "final_validation_accuracy": 0.95, "best_step": 10,
         "best_validation_accuracy": 0.97, "test_accuracy": 0.95, "raw_test_accuracy": 0.95,
         "checkpoints_evaluated": 2}))
    return directory


def load_and_predict(export_dir: str, mnist) -> np.ndarray:
    """A SavedModel's probabilities on 20 test images."""
    import tensorflow as tf

    images = mnist.test.images[:20]
    loaded = tf.saved_model.load(export_dir)
    return loaded.signatures["predict_pixels"](pixels=tf.constant(images))["probabilities"].numpy()


@pytest.fixture(scope="module")
def reference(scored_model_dir, mnist, tmp_path_factory) -> dict[int, np.ndarray]:
    """Predictions of local exports of each checkpoint, by step."""
    from model.export import export

    out = tmp_path_factory.mktemp("reference")
    return {step: load_and_predict(export(str(scored_model_dir), str(out / str(step)),
                                          checkpoint_path=str(scored_model_dir / f"ckpt-{step}")), mnist)
            for step in (10, 20)}


def object_names(client, bucket) -> list[str]:
    return sorted(b.name for b in client.list_blobs(bucket.name))


def test_export_to_gcs_and_read_back(client, bucket, scored_model_dir, reference, mnist, tmp_path):
    from model.export import export

    dest = f"gs://{bucket.name}/models/mnist/1"
    assert export(str(scored_model_dir), dest) == dest
    names = object_names(client, bucket)
    assert f"models/mnist/1/{gcs.EXPORT_MARKER}" in names
    assert "models/mnist/1/saved_model.pb" in names
    assert not [n for n in names if ".tmp-" in n], "the temporary prefix must be gone"
    marker, _ = gcs.read_marker(dest, client)
    assert sorted(marker["files"]) == sorted(n[len("models/mnist/1/"):] for n in names
                                             if not n.endswith(gcs.EXPORT_MARKER))
    assert marker["model_dir"] == str(scored_model_dir)

    copy = gcs.download_export(dest, str(tmp_path / "copy"), client)
    probabilities = load_and_predict(copy, mnist)
    np.testing.assert_array_equal(probabilities, reference[20])  # the newest checkpoint, exactly
    assert not np.array_equal(reference[10], reference[20])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_export_refuses_to_overwrite_unless_asked(client, bucket, scored_model_dir):
    from model.export import export

    dest = f"gs://{bucket.name}/serving"
    export(str(scored_model_dir), dest, checkpoint_path=str(scored_model_dir / "ckpt-10"))
    bucket.blob("serving/stale-file-from-an-older-export").upload_from_string(b"x")
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        export(str(scored_model_dir), dest)
    first, first_generation = gcs.read_marker(dest, client)
    export(str(scored_model_dir), dest, overwrite=True)
    second, second_generation = gcs.read_marker(dest, client)
    assert second_generation != first_generation and second["checkpoint"] == "newest"
    assert first["checkpoint"].endswith("ckpt-10")
    names = object_names(client, bucket)
    assert "serving/stale-file-from-an-older-export" not in names
    assert sorted(second["files"]) == sorted(n[len("serving/"):] for n in names
                                             if not n.endswith(gcs.EXPORT_MARKER))


def test_overwrite_refuses_a_prefix_that_is_not_an_export(client, bucket, scored_model_dir):
    """`--overwrite` replaces a previous export only: a prefix holding something
    else (here a model directory's files) is refused, naming them, untouched."""
    from model.export import export

    for name in ("checkpoint", "ckpt-10.index", "run_config.json"):
        bucket.blob(f"not-an-export/{name}").upload_from_string(b"x")
    before = object_names(client, bucket)
    with pytest.raises(ConfigError, match="not a previous export") as excinfo:
        export(str(scored_model_dir), f"gs://{bucket.name}/not-an-export", overwrite=True)
    assert "checkpoint, ckpt-10.index, run_config.json" in str(excinfo.value)
    assert object_names(client, bucket) == before


def test_gcs_export_records_the_model_and_its_step(client, bucket, scored_model_dir, tmp_path):
    import tensorflow as tf

    from model.export import EXPORT_INFO, export

    dest = f"gs://{bucket.name}/with-metadata"
    export(str(scored_model_dir), dest, checkpoint_path=str(scored_model_dir / "ckpt-10"))
    marker, _ = gcs.read_marker(dest, client)
    assert marker["model"] == "mlp" and marker["trained_steps"] == 10
    copy = Path(gcs.download_export(dest, str(tmp_path / "copy"), client))
    assert json.loads((copy / EXPORT_INFO).read_text())["trained_steps"] == 10
    loaded = tf.saved_model.load(str(copy))
    assert loaded.trained_steps.numpy() == 10 and loaded.model_name.numpy() == b"mlp"


def test_failed_upload_leaves_the_previous_export(client, bucket, tmp_path):
    """Phase 1 fails half-way (an unreadable file): the destination still holds
    the previous complete export and no temporary objects remain."""
    dest = f"gs://{bucket.name}/atomic"
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.txt").write_text("first")
    gcs.publish_dir(str(good), dest, client=client)
    before, generation = gcs.read_marker(dest, client)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.txt").write_text("second")
    os.symlink(tmp_path / "does-not-exist", bad / "zz-broken")
    with pytest.raises(FileNotFoundError):
        gcs.publish_dir(str(bad), dest, overwrite=True, client=client)
    assert gcs.read_marker(dest, client) == (before, generation)
    assert object_names(client, bucket) == ["atomic/a.txt", f"atomic/{gcs.EXPORT_MARKER}"]
    copy = gcs.download_export(dest, str(tmp_path / "copy"), client)
    assert (Path(copy) / "a.txt").read_text() == "first"


def test_reader_refuses_an_unpublished_prefix(client, bucket, tmp_path):
    bucket.blob("half/saved_model.pb").upload_from_string(b"half an export")
    with pytest.raises(DataError, match="holds no complete export"):
        gcs.download_export(f"gs://{bucket.name}/half", str(tmp_path / "x"), client)


def test_export_to_a_missing_bucket(client, scored_model_dir):
    from model.export import export

    with pytest.raises(ConfigError, match="does not exist"):
        export(str(scored_model_dir), "gs://no-such-bucket-here/x")


def test_evaluator_exports_its_best_checkpoint(client, bucket, scored_model_dir, reference, mnist, tmp_path,
                                               capsys):
    """`evaluate --export-best-to gs://...` after training ended: the best
    validation accuracy (step 10) is published; once that checkpoint is gone
    the next best (step 20) replaces it."""
    work = tmp_path / "model"
    shutil.copytree(scored_model_dir, work)
    for path in (work / "eval" / "eval_state.json",):  # checkpoints recorded at their new place
        path.write_text(path.read_text().replace(str(scored_model_dir), str(work)))
    dest = f"gs://{bucket.name}/best"
    args = ["evaluate", "--model-dir", str(work), "--model", "mlp", "--export-best-to", dest]
    assert cli.main(args) == 0, capsys.readouterr()
    first = load_and_predict(gcs.download_export(dest, str(tmp_path / "first"), client), mnist)
    np.testing.assert_array_equal(first, reference[10])
    for f in work.glob("ckpt-10.*"):
        f.unlink()
    assert cli.main(args) == 0, capsys.readouterr()
    second = load_and_predict(gcs.download_export(dest, str(tmp_path / "second"), client), mnist)
    np.testing.assert_array_equal(second, reference[20])


def test_export_best_to_checks_the_uri_first(tmp_path, capsys):
    assert cli.main(["evaluate", "--model-dir", str(tmp_path), "--export-best-to", "gs://Bad_Bucket/x"]) == 2
    assert "not a valid bucket name" in capsys.readouterr().err


# ---------------------------------------------------------------- the helm test hook on gs://

def test_mnistctl_check_reads_a_gcs_model_dir(client, bucket, capsys):
    """`python -m mnistctl check --model-dir gs://...` (the hook on gcs storage)."""
    from mnistctl import cli as mnistctl_cli
    from mnistctl import model_dir

    uri = f"gs://{bucket.name}/mnist/mnist-train"
    assert mnistctl_cli.main(["check", "--model-dir", uri, "--timeout-secs", "0"]) == 0
    assert "skip | training has not started" in capsys.readouterr().out
    bucket.blob("mnist/mnist-train/run_config.json").upload_from_string('{"model": "mlp"}')
    assert mnistctl_cli.main(["check", "--model-dir", uri, "--timeout-secs", "0"]) == 1
    assert "FAIL | training has started" in capsys.readouterr().out
    bucket.blob("mnist/mnist-train/checkpoint").upload_from_string(
        f'model_checkpoint_path: "{uri}/ckpt-2000"\n'
        f'all_model_checkpoint_paths: "{uri}/ckpt-1000"\n'
        f'all_model_checkpoint_paths: "{uri}/ckpt-2000"\n')
    bucket.blob("mnist/mnist-train/ckpt-2000.index").upload_from_string(b"\0")
    assert model_dir.read_model_dir(uri).checkpoints == [2000]  # ckpt-1000 has no .index
    assert mnistctl_cli.main(["check", "--model-dir", uri, "--timeout-secs", "0"]) == 0
    assert f"ok   | {uri} has 1 checkpoint(s), newest at step 2000" in capsys.readouterr().out
