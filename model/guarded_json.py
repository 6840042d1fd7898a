"""Small JSON files in a model directory, changed only under a precondition.

Two processes that both want to own a model directory must not both believe
they won: creating a file has to fail if it already exists, and replacing or
deleting one has to fail if somebody else changed it since it was read. Those
are compare-and-swap operations; TensorFlow's gfile offers none. This module
gives them for both kinds of model directory:

- `gs://bucket/prefix`: Cloud Storage object generations through
  `google-cloud-storage` (`if_generation_match=0` creates only if absent; a
  replace or delete with `if_generation_match=<generation read>` fails if the
  object changed). Calls go to `STORAGE_EMULATOR_HOST` when set (model/gcs.py).
- a local or mounted directory (a disk, a ReadWriteMany claim): every change
  holds an exclusive `flock` on `<dir>/.lock` (NFSv4 forwards it to the
  server) and is written to a temporary file then renamed into place
  (model/atomic_write.py), so readers need no lock and never see half a
  file. The "generation" is the file's inode, modification time (ns) and
  the SHA-256 of its bytes: a content hash alone would let a replace that
  wrote the same bytes go unnoticed, and a second writer holding the old
  generation would win too (compare-and-swap's ABA problem).

`GuardedJson(path)` picks the right one. Generations are opaque: compare them,
do not interpret them. No TensorFlow here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator

from model import gcs
from model.atomic_write import write_atomically
from model.layout import LOCK_NAME
# A directory that cannot be written for these reasons will not become writable
# on a restart: the user must fix it (exit 2). Other OSErrors (EIO...) stay retryable.
_UNUSABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST}


def _encode(payload: dict) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode("utf-8")


def _decode(data: bytes, where: str) -> dict:
    from model.errors import ConfigError

    try:
        payload = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{where} is not valid JSON ({e}); move it away if it is damaged") from None
    if not isinstance(payload, dict):
        raise ConfigError(f"{where} must hold a JSON object, got {type(payload).__name__}")
    return payload


class _LocalJson:
    def __init__(self, path: str):
        self.path = path
        self.directory = os.path.dirname(path) or "."

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            os.makedirs(self.directory, exist_ok=True)
            lock = open(os.path.join(self.directory, LOCK_NAME), "a")
        except OSError as e:
            raise self._unusable(e, "write in") from None
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _unusable(self, error: OSError, what: str) -> Exception:
        """A ConfigError (exit 2) if no restart can fix `error`, else `error` itself."""
        from model.errors import ConfigError

        if error.errno not in _UNUSABLE:
            return error
        return ConfigError(f"cannot {what} the model directory {self.directory}: {error.strerror} "
                           f"({error.filename}); give a directory this process can write")

    def _read_bytes(self) -> tuple[bytes, str] | None:
        """The file's bytes and its generation, both from one open file."""
        try:
            with open(self.path, "rb") as f:
                data, stat = f.read(), os.fstat(f.fileno())
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._unusable(e, "read") from None
        return data, f"{stat.st_ino}-{stat.st_mtime_ns}-{hashlib.sha256(data).hexdigest()}"

    def read(self) -> tuple[dict, str] | None:
        found = self._read_bytes()
        if found is None:
            return None
        data, generation = found
        return _decode(data, self.path), generation

    def _write(self, data: bytes) -> str:
        write_atomically(self.path, data)
        # Under the lock: nobody else can have replaced it since.
        return self._read_bytes()[1]

    def _unchanged(self, generation: str) -> bool:
        found = self._read_bytes()
        return found is not None and found[1] == generation

    def create(self, payload: dict) -> str | None:
        with self._locked():
            if os.path.exists(self.path):
                return None
            return self._write(_encode(payload))

    def replace(self, payload: dict, generation: str) -> str | None:
        with self._locked():
            return self._write(_encode(payload)) if self._unchanged(generation) else None

    def delete(self, generation: str) -> bool:
        with self._locked():
            if not self._unchanged(generation):
                return False
            os.remove(self.path)
            return True


class _GcsJson:
    def __init__(self, path: str, client=None):
        self.path = path
        self.uri = gcs.parse_uri(path)
        self._client = client

    def _client_bucket(self):
        if self._client is None:
            self._client = gcs.make_client()
        return self._client.bucket(self.uri.bucket)

    def read(self) -> tuple[dict, int] | None:
        from google.api_core import exceptions as api

        for _ in range(5):  # a change between the metadata and the download: read again
            with gcs._errors(self.path):
                blob = self._client_bucket().get_blob(self.uri.prefix)
                if blob is None:
                    return None
                generation = int(blob.generation)
                try:
                    data = blob.download_as_bytes(if_generation_match=generation)
                except (api.NotFound, api.PreconditionFailed):
                    continue
            return _decode(data, self.path), generation
        raise RuntimeError(f"{self.path} kept changing while being read")

    def _upload(self, payload: dict, if_generation_match: int) -> int | None:
        from google.api_core import exceptions as api

        blob = self._client_bucket().blob(self.uri.prefix)
        try:
            with gcs._errors(self.path):
                blob.upload_from_string(_encode(payload), content_type="application/json",
                                        if_generation_match=if_generation_match)
        except api.PreconditionFailed:
            return None
        return int(blob.generation)

    def create(self, payload: dict) -> int | None:
        return self._upload(payload, 0)

    def replace(self, payload: dict, generation: int) -> int | None:
        return self._upload(payload, generation)

    def delete(self, generation: int) -> bool:
        from google.api_core import exceptions as api

        try:
            with gcs._errors(self.path):
                self._client_bucket().blob(self.uri.prefix).delete(if_generation_match=generation)
        except (api.PreconditionFailed, api.NotFound):
            return False
        return True


def GuardedJson(path: str, client=None):  # noqa: N802 - a factory standing for a class
    """The precondition-guarded JSON file at `path` (local or gs://).

    Methods: `read()` -> (payload, generation) or None; `create(payload)` ->
    generation, or None if the file exists; `replace(payload, generation)` and
    `delete(generation)` -> the new generation / True, or None / False if the
    file is not at `generation` any more.
    """
    return _GcsJson(path, client) if gcs.is_gcs_uri(path) else _LocalJson(path)
