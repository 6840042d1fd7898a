"""Google Cloud Storage with `google-cloud-storage`: stage MNIST, publish exports.

Two jobs that TensorFlow's own `gs://` filesystem cannot do well (it has no
emulator endpoint, no resumable download into a verified cache and no
server-side copy):

Staging the data (`--data-dir gs://BUCKET/PREFIX`)
    The four MNIST files (`NAME.gz` preferred, else `NAME`) are downloaded into
    a local cache, `<base>/<bucket>/<prefix>/`, where `<base>` is
    `--data-cache-dir`, else `$MNIST_DATA_CACHE_DIR`, else
    `$TMPDIR/mnist-train-data` (the chart's pods have an emptyDir at /tmp).
    Each file goes to `<file>.partial` first and is renamed into place only
    once its size and CRC32C match the object and, unless `--no-verify`, its
    decompressed SHA-256 matches `model.data.KNOWN_SHA256` (checked by the
    same parsers `load_mnist` uses). A `.partial` left by an interrupted
    download is resumed from where it stopped if the object's generation is
    unchanged. A cached file that verifies is reused without any request; a
    corrupt one is fetched again. With `--no-verify` a cached file is reused
    only while the object's generation, size and CRC32C are those recorded
    beside it (`<file>.source.json`). A lock file serialises processes that
    share a cache directory.

Publishing a SavedModel (`export --export-dir gs://...`, `evaluate --export-best-to gs://...`)
    GCS has no atomic rename, so an export is published in two phases:
    1. the SavedModel is written locally and uploaded under a temporary prefix
       `<dest>.tmp-<id>/` (the slow part; `<dest>/` is untouched, so a crash
       here leaves the previous export intact);
    2. the marker `<dest>/export_complete.json` is deleted, every file is
       copied server-side to `<dest>/`, files of an earlier export that are
       not in this one are deleted, and the marker is written last, listing
       every file with its generation, size and CRC32C. The temporary prefix
       is then removed.

    A destination that holds anything is replaced only with `overwrite`, and
    then only if it is a previous export (`check_publish_target`).

    The reader contract: `<dest>/` holds a complete export if and only if
    `<dest>/export_complete.json` exists, and the export is exactly the object
    generations the marker lists. `download_export()` implements it: it reads
    the marker, then each listed file *at its listed generation*, so a
    concurrent re-publish makes it fail (object not found) rather than mix two
    exports; call it again to get the new one. Readers that load `gs://`
    directly (TensorFlow Serving, `tf.saved_model.load`) should wait for the
    marker and should not read a path that is being overwritten: publish each
    model version to a new directory (`.../<model>/<version>/`) instead of
    overwriting one.

Errors are the user's to fix and exit 2: a missing bucket or credentials or
a permission problem is a `ConfigError`, a missing or corrupt object a
`DataError`. Connection failures are left to propagate (exit 1: retryable).

`STORAGE_EMULATOR_HOST=http://127.0.0.1:PORT` points the client at an
emulator with anonymous credentials (the tests use gcp-storage-emulator).
Checkpoints and summaries on `gs://` do not come through here: TensorFlow
reads and writes them itself (see charts/mnist-train/README.md, Storage).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterator

from model.atomic_write import write_json_atomically
from model.errors import ConfigError, DataError
from model.layout import EXPORT_MARKER, not_an_export

log = logging.getLogger(__name__)

SCHEME = "gs://"
CACHE_ENV = "MNIST_DATA_CACHE_DIR"
SOURCE_SUFFIX = ".source.json"
PARTIAL_SUFFIX = ".partial"
_CHUNK = 1 << 20
# Bucket names: 3-63 characters per dot-separated part, up to 222 in all.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")

NO_CREDENTIALS_HELP = (
    "no Google Cloud credentials found. On GKE use Workload Identity (the chart's "
    "storage.gcs.workloadIdentity.gcpServiceAccount); elsewhere mount a service-account key "
    "file and set GOOGLE_APPLICATION_CREDENTIALS to its path (the chart's "
    "storage.gcs.existingSecret), or run `gcloud auth application-default login` locally")


def is_gcs_uri(path: str | None) -> bool:
    return isinstance(path, str) and path.startswith(SCHEME)


@dataclasses.dataclass(frozen=True)
class GcsUri:
    """gs://bucket/prefix, the prefix without leading or trailing slashes."""

    bucket: str
    prefix: str = ""

    def object_name(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"


def parse_uri(uri: str) -> GcsUri:
    """Split gs://bucket/prefix; ConfigError if it is not a usable bucket URI."""
    if not is_gcs_uri(uri):
        raise ConfigError(f"{uri!r} is not a gs://bucket/prefix URI")
    bucket, _, prefix = uri[len(SCHEME):].partition("/")
    prefix = prefix.strip("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ConfigError(f"{uri}: {bucket!r} is not a valid bucket name")
    parts = prefix.split("/") if prefix else []
    if any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"{uri}: the path must not contain empty, '.' or '..' segments")
    return GcsUri(bucket, prefix)


def make_client():
    """A storage client: the emulator's (anonymous) if STORAGE_EMULATOR_HOST is
    set, else Application Default Credentials (Workload Identity, a key file...)."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import storage

    try:
        return storage.Client(project=None)  # object operations need no project
    except DefaultCredentialsError as e:
        raise ConfigError(f"Cloud Storage: {NO_CREDENTIALS_HELP} ({e})") from None


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    """Turn credential and permission failures into ConfigError naming `what`."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    try:
        yield
    except auth.DefaultCredentialsError as e:
        raise ConfigError(f"{what}: {NO_CREDENTIALS_HELP} ({e})") from None
    except auth.RefreshError as e:
        raise ConfigError(f"{what}: the credentials were rejected ({e}); check the key file "
                          "or the Workload Identity binding") from None
    except (api.Forbidden, api.Unauthorized) as e:
        raise ConfigError(f"{what}: permission denied ({e.message}); grant the service account "
                          "roles/storage.objectViewer (reading) or roles/storage.objectUser "
                          "(exporting) on the bucket") from None


def _bucket_exists(client, uri: GcsUri) -> bool | None:
    """True/False, or None when we may not ask (no storage.buckets.get)."""
    from google.api_core import exceptions as api

    try:
        return client.bucket(uri.bucket).exists()
    except (api.Forbidden, api.Unauthorized):
        return None


def _require_bucket(client, uri: GcsUri) -> None:
    if _bucket_exists(client, uri) is False:
        raise ConfigError(f"{uri}: bucket gs://{uri.bucket} does not exist (or this account "
                          "cannot see it)")


def _crc32c_b64(path: str) -> str:
    import google_crc32c

    checksum = google_crc32c.Checksum()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            checksum.update(chunk)
    return base64.b64encode(checksum.digest()).decode("ascii")


def _read_json(path: str) -> dict | None:
    try:
        with open(path) as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _remove(*paths: str) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


# ---------------------------------------------------------------- staging MNIST

def cache_dir_for(uri: GcsUri, base: str | None = None) -> str:
    base = base or os.environ.get(CACHE_ENV) or os.path.join(tempfile.gettempdir(), "mnist-train-data")
    return os.path.join(base, uri.bucket, *(uri.prefix.split("/") if uri.prefix else ["_root"]))


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    with open(os.path.join(directory, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _verify_mnist_file(path: str, name: str) -> None:
    """The checks load_mnist applies (structure, then decompressed SHA-256)."""
    from model.data import KNOWN_SHA256, read_idx_images, read_idx_labels

    reader = read_idx_images if "images" in name else read_idx_labels
    reader(path, expected_sha256=KNOWN_SHA256[name])


def _object_meta(blob) -> dict:
    return {"generation": int(blob.generation), "size": int(blob.size), "crc32c": blob.crc32c}


def _locate(client, uri: GcsUri, name: str):
    """The object for MNIST file `name` (NAME.gz preferred); raises if absent."""
    bucket = client.bucket(uri.bucket)
    candidates = [uri.object_name(name + ".gz"), uri.object_name(name)]
    for object_name in candidates:
        with _errors(f"{uri}"):
            blob = bucket.get_blob(object_name)
        if blob is not None:
            return blob
    _require_bucket(client, uri)
    raise DataError(f"MNIST file not found in {uri}: looked for "
                    f"{' and '.join(f'{SCHEME}{uri.bucket}/{c}' for c in candidates)} "
                    "(upload the four files, e.g. `gsutil cp data/mnist/*.gz " f"{uri}/`)")


def _local_name(blob, name: str) -> str:
    base = blob.name.rsplit("/", 1)[-1]
    # An object stored gzip-encoded without the .gz name: keep the stored bytes
    # and name them .gz, which is how load_mnist recognises gzip.
    if (blob.content_encoding or "").lower() == "gzip" and not base.endswith(".gz"):
        base += ".gz"
    return base


def _download(blob, dest: str) -> None:
    """Download `blob` to `dest` via `dest.partial`, resuming a partial file of
    the same generation; the size and CRC32C must match before the rename."""
    from google.api_core import exceptions as api

    partial, meta_path = dest + PARTIAL_SUFFIX, dest + PARTIAL_SUFFIX + ".json"
    expected = _object_meta(blob)
    for attempt in (1, 2):
        offset = 0
        meta = _read_json(meta_path)
        if (os.path.exists(partial) and meta and meta.get("generation") == expected["generation"]
                and os.path.getsize(partial) <= expected["size"]):
            offset = os.path.getsize(partial)
        else:
            _remove(partial)
            write_json_atomically(meta_path, expected)
        if offset:
            log.info("data | resuming %s at byte %d of %d", _uri_of(blob), offset, expected["size"])
        with open(partial, "ab" if offset else "wb") as f:
            if offset < expected["size"]:
                # raw_download: the stored bytes, which the CRC32C describes.
                try:
                    with _errors(_uri_of(blob)):
                        blob.download_to_file(f, start=offset or None, raw_download=True, checksum=None,
                                              if_generation_match=expected["generation"])
                except api.NotFound:
                    raise DataError(f"{_uri_of(blob)} was deleted while being downloaded") from None
                except api.PreconditionFailed:  # replaced meanwhile: a retry sees the new one
                    raise RuntimeError(f"{_uri_of(blob)} changed while being downloaded") from None
        size = os.path.getsize(partial)
        crc = _crc32c_b64(partial)
        if size == expected["size"] and (expected["crc32c"] in (None, crc)):
            os.replace(partial, dest)
            _remove(meta_path)
            return
        _remove(partial, meta_path)
        if attempt == 1 and offset:
            log.warning("data | resumed download of %s does not match the object (size %d/%d, "
                        "crc32c %s/%s); downloading it again", _uri_of(blob), size,
                        expected["size"], crc, expected["crc32c"])
            continue
        raise DataError(f"{_uri_of(blob)}: the download does not match the object: expected "
                        f"{expected['size']} bytes with CRC32C {expected['crc32c']}, got {size} "
                        f"bytes with CRC32C {crc}")


def _uri_of(blob) -> str:
    return f"{SCHEME}{blob.bucket.name}/{blob.name}"


def _cached(local_dir: str, name: str) -> list[str]:
    return [p for p in (os.path.join(local_dir, name + ".gz"), os.path.join(local_dir, name))
            if os.path.exists(p)]


def _stage_one(get_client, uri: GcsUri, name: str, local_dir: str, verify: bool) -> tuple[str, bool]:
    """Stage one MNIST file; returns (local path, whether it was downloaded)."""
    cached = _cached(local_dir, name)
    if cached and verify:
        try:
            _verify_mnist_file(cached[0], name)
            return cached[0], False
        except DataError as e:
            log.warning("data | cached %s is corrupt (%s); fetching it again", cached[0], e)
    blob = _locate(get_client(), uri, name)
    dest = os.path.join(local_dir, _local_name(blob, name))
    source = {"uri": _uri_of(blob), **_object_meta(blob)}
    if not verify and os.path.exists(dest) and _read_json(dest + SOURCE_SUFFIX) == source:
        return dest, False
    _remove(*cached, *(p + SOURCE_SUFFIX for p in cached))
    t0 = time.monotonic()
    _download(blob, dest)
    if verify:
        try:
            _verify_mnist_file(dest, name)
        except DataError as e:
            _remove(dest)
            raise DataError(f"{source['uri']} (generation {source['generation']}) fails "
                            f"verification: {e}") from None
    write_json_atomically(dest + SOURCE_SUFFIX, source)
    log.info("data | fetched %s (%d bytes, %.1f s) -> %s", source["uri"], source["size"],
             time.monotonic() - t0, dest)
    return dest, True


def stage_mnist(data_uri: str, cache_dir: str | None = None, *, verify: bool = True,
                client=None) -> str:
    """Download the four MNIST files under `data_uri` (gs://) into a local cache
    directory and return it, for `load_mnist`. See the module docstring."""
    from model.data import KNOWN_SHA256

    uri = parse_uri(data_uri)
    local_dir = cache_dir_for(uri, cache_dir)
    try:
        os.makedirs(local_dir, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the data cache directory {local_dir}: {e}") from None
    clients = [client] if client else []

    def get_client():  # only when something must be fetched: a valid cache needs no credentials
        if not clients:
            clients.append(make_client())
        return clients[0]

    with _locked(local_dir):
        fetched = [_stage_one(get_client, uri, name, local_dir, verify)[1] for name in KNOWN_SHA256]
    log.info("data | %s staged in %s (%d fetched, %d reused from the cache)", uri, local_dir,
             sum(fetched), len(fetched) - sum(fetched))
    return local_dir


# ---------------------------------------------------------------- publishing exports

def _list_names(client, uri: GcsUri, max_results: int | None = None) -> list[str]:
    with _errors(str(uri)):
        return [b.name for b in client.list_blobs(uri.bucket, prefix=uri.object_name() + "/",
                                                  max_results=max_results)]


def _copy(client, bucket_name: str, source_name: str, dest_name: str):
    """Server-side copy (rewrite, which also handles large objects); the new blob."""
    bucket = client.bucket(bucket_name)
    dest = bucket.blob(dest_name)
    token, _, _ = dest.rewrite(bucket.blob(source_name))
    while token is not None:
        token, _, _ = dest.rewrite(bucket.blob(source_name), token=token)
    return dest


def publish_dir(local_dir: str, dest_uri: str, *, overwrite: bool = False, client=None,
                info: dict | None = None) -> str:
    """Publish the files under `local_dir` at `dest_uri` (the two phases of the
    module docstring); `info` is recorded in the marker."""
    dest = parse_uri(dest_uri)
    client = client or make_client()
    check_publish_target(dest_uri, overwrite=overwrite, client=client)
    files = sorted(os.path.relpath(os.path.join(root, f), local_dir)
                   for root, _, names in os.walk(local_dir) for f in names)
    if not files:
        raise ConfigError(f"{local_dir} is empty: nothing to publish")
    tmp = GcsUri(dest.bucket, f"{dest.prefix}.tmp-{uuid.uuid4().hex[:8]}")
    bucket = client.bucket(dest.bucket)
    marker_name = dest.object_name(EXPORT_MARKER)
    try:
        with _errors(str(dest)):
            for rel in files:  # phase 1: the slow uploads, beside the destination
                bucket.blob(tmp.object_name(rel)).upload_from_filename(
                    os.path.join(local_dir, rel), checksum="crc32c", if_generation_match=0)
            # Phase 2: readers see no complete export until the marker is back.
            marker = bucket.blob(marker_name)
            if marker.exists():
                marker.delete()
            published = {}
            for rel in files:
                blob = _copy(client, dest.bucket, tmp.object_name(rel), dest.object_name(rel))
                published[rel] = _object_meta(blob)
            keep = {dest.object_name(rel) for rel in files}
            for name in _list_names(client, dest):
                if name not in keep and name != marker_name:
                    bucket.blob(name).delete()
            payload = {"files": published, "published_unix_time": round(time.time(), 3),
                       **(info or {})}
            marker.upload_from_string(json.dumps(payload, indent=2, sort_keys=True),
                                      content_type="application/json")
    finally:
        try:
            for name in _list_names(client, tmp):
                bucket.blob(name).delete()
        except Exception as e:  # noqa: BLE001 - cleanup must not hide the real error
            log.warning("export | could not remove the temporary prefix %s: %s", tmp, e)
    log.info("export | published %d file(s) at %s (marker %s)", len(files), dest, EXPORT_MARKER)
    return str(dest)


def read_marker(uri: str, client=None) -> tuple[dict, int] | None:
    """(marker contents, marker generation) of a published export, or None."""
    dest = parse_uri(uri)
    client = client or make_client()
    with _errors(str(dest)):
        blob = client.bucket(dest.bucket).get_blob(dest.object_name(EXPORT_MARKER))
        if blob is None:
            return None
        generation = int(blob.generation)  # before the download rewrites the properties
        return json.loads(blob.download_as_bytes(if_generation_match=generation)), generation


def download_export(uri: str, local_dir: str, client=None) -> str:
    """Download the export published at `uri` into `local_dir` (the reader
    contract: exactly the generations the marker lists, CRC32C-checked)."""
    from google.api_core import exceptions as api

    dest = parse_uri(uri)
    client = client or make_client()
    found = read_marker(uri, client)
    if found is None:
        raise DataError(f"{dest} holds no complete export (no {EXPORT_MARKER})")
    marker, _ = found
    bucket = client.bucket(dest.bucket)
    for rel, meta in marker["files"].items():
        path = os.path.join(local_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        blob = bucket.blob(dest.object_name(rel), generation=meta["generation"])
        try:
            with _errors(str(dest)):
                blob.download_to_filename(path)
        except api.NotFound:
            raise DataError(f"{dest}/{rel} generation {meta['generation']} is gone: the export "
                            "was re-published while being read; read it again") from None
        if os.path.getsize(path) != meta["size"] or (meta.get("crc32c") not in (None, _crc32c_b64(path))):
            raise DataError(f"{dest}/{rel}: downloaded bytes do not match the marker")
    return local_dir


def check_publish_target(dest_uri: str, *, overwrite: bool, client=None) -> None:
    """Refuse a destination that holds anything, unless `overwrite`; and with
    `overwrite`, anything but a previous export (model.layout.not_an_export:
    a marker, or nothing but a SavedModel's files). The caller has refused
    training state (model.export.refuse_training_state)."""
    dest = parse_uri(dest_uri)
    if not dest.prefix:
        raise ConfigError(f"{dest_uri}: give a directory inside the bucket, not the bucket itself")
    client = client or make_client()
    _require_bucket(client, dest)
    # An export has a handful of files; a thousand is plenty to see what is there.
    names = _list_names(client, dest, max_results=1000)
    if not names:
        return
    if not overwrite:
        raise ConfigError(f"{dest} already exists; pass --overwrite to replace it")
    entries = {name[len(dest.object_name()) + 1:].split("/", 1)[0] for name in names}
    problem = not_an_export(entries)
    if problem:
        raise ConfigError(f"refusing to overwrite {dest}: {problem}; choose another "
                          "--export-dir or remove it yourself")


# ---------------------------------------------------------------- small reads (mnistctl)

def read_text(uri: str, client=None) -> str | None:
    """The text of one object, or None if it does not exist."""
    dest = parse_uri(uri)
    client = client or make_client()
    with _errors(str(dest)):
        blob = client.bucket(dest.bucket).get_blob(dest.prefix)
        return None if blob is None else blob.download_as_bytes().decode("utf-8", "replace")


def object_exists(uri: str, client=None) -> bool:
    dest = parse_uri(uri)
    client = client or make_client()
    with _errors(str(dest)):
        return client.bucket(dest.bucket).blob(dest.prefix).exists()
