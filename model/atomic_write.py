"""Write a file so that a reader sees the old content or the new, never a part of it.

The one helper for every small file the project replaces in place: the model directory's
JSON (completion marker, evaluator state, final metrics, export info), the GCS staging
cache's metadata, guarded_json's files, bench results and the local runner's summary.json.

- A local path: the data goes to `<path>.tmp-<random>` in the same directory (so the rename
  cannot cross file systems), is fsync'ed, then `os.replace`d over `path`. On any failure the
  temporary file is removed and `path` is left as it was. No TensorFlow is imported.
- A URL (`gs://...`, `ram://...`, any file system tf.io.gfile knows): the same steps through
  tf.io.gfile (temporary object, then rename with overwrite), imported only then.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid


def _temporary_name(path: str) -> str:
    # The `.tmp-` spelling is the project's mark of an unfinished write (see model/export.py).
    return f"{path}.tmp-{uuid.uuid4().hex[:8]}"


def _write_local(path: str, data: bytes) -> None:
    tmp = _temporary_name(path)
    # Created like open(path, "w") would (mode 0o666 less the umask), unlike mkstemp's 0o600:
    # the files are read by other processes, e.g. the evaluator or TensorBoard.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _write_with_gfile(path: str, data: bytes) -> None:
    import tensorflow as tf

    tmp = _temporary_name(path)
    try:
        with tf.io.gfile.GFile(tmp, "wb") as f:
            f.write(data)
        tf.io.gfile.rename(tmp, path, overwrite=True)
    except BaseException:
        with contextlib.suppress(tf.errors.OpError):
            tf.io.gfile.remove(tmp)
        raise


def write_atomically(path: str | os.PathLike, data: bytes | str) -> None:
    """Replace the file at `path` with `data` (str is written as UTF-8) in one step."""
    path = os.fspath(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if "://" in path:
        _write_with_gfile(path, payload)
    else:
        _write_local(path, payload)


def write_json_atomically(path: str | os.PathLike, payload, *, indent: int = 2, sort_keys: bool = True,
                          default=None) -> None:
    """`payload` as JSON (and a final newline) at `path`, replaced in one step.

    The JSON is encoded before anything is written, so a payload that cannot be encoded
    leaves `path` untouched.
    """
    text = json.dumps(payload, indent=indent, sort_keys=sort_keys, default=default) + "\n"
    write_atomically(path, text)
