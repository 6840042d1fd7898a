"""Load MNIST from the four IDX files, strictly validated.

The files may be gzipped (`NAME.gz`, preferred) or plain (`NAME`) and may live
on any filesystem TensorFlow knows (local, gs://, ram://, ...), so all I/O goes
through `tf.io.gfile`. Every malformed input raises `DataError` naming the file
and the expected vs found value; nothing is ever returned half-loaded.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import posixpath
import struct
import zlib

import numpy as np

from model.errors import ConfigError, DataError

# SHA-256 of the *decompressed* IDX payloads, so .gz files recompressed with a
# different gzip level (or stored plain) still verify.
KNOWN_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

TRAIN_SIZE = 55_000
VALIDATION_SIZE = 5_000
TEST_SIZE = 10_000
IMAGE_SIZE = 28
NUM_CLASSES = 10

IMAGES_MAGIC = 0x00000803  # 2051: unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # 2049: unsigned bytes, 1 dimension
_IMAGES_HEADER = struct.Struct(">IIII")  # magic, count, rows, cols
_LABELS_HEADER = struct.Struct(">II")  # magic, count
_MAGIC_NAMES = {IMAGES_MAGIC: "images", LABELS_MAGIC: "labels"}


@dataclasses.dataclass(frozen=True)
class Split:
    """One split: uint8 images [N, 28, 28] and uint8 labels [N], both read-only."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclasses.dataclass(frozen=True)
class MnistSplits:
    train: Split  # the first len(train_file) - validation_size training images
    validation: Split  # the last validation_size training images (as read_data_sets)
    test: Split  # the t10k file


def _describe_magic(magic: int) -> str:
    if magic in _MAGIC_NAMES:
        return f"{magic} ({_MAGIC_NAMES[magic]})"
    if magic >> 16 == 0x1F8B:
        return f"{magic:#010x} (gzip data: name the file *.gz)"
    return f"{magic:#010x} (not an IDX file)"


def _read_payload(path: str) -> bytes:
    """Return the bytes of `path`, gunzipped in memory if it ends in .gz."""
    import tensorflow as tf  # lazy: importing model.data must stay cheap

    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            raw = f.read()
    except tf.errors.OpError as e:
        raise DataError(f"{path}: cannot read: {e.message}") from e
    if not path.endswith(".gz"):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(
            f"{path}: truncated or corrupt gzip stream ({len(raw)} bytes on disk): {e}"
        ) from e


def _verify(path: str, data: bytes, expected_sha256: str | None) -> None:
    # Runs after the structural checks, whose messages say more than a digest.
    if expected_sha256 is None:
        return
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256.lower():
        raise DataError(
            f"{path}: SHA-256 mismatch of the decompressed data: expected "
            f"{expected_sha256.lower()}, found {actual}. The file is corrupt or is "
            "not the standard MNIST; for custom data pass --no-verify."
        )


def _check_magic(path: str, data: bytes, header: struct.Struct, expected: int) -> tuple[int, ...]:
    # The magic is checked before the header length so a swapped pair (a labels
    # file where images were expected) is reported as such, not as "too short".
    if len(data) >= 4:
        (magic,) = struct.unpack_from(">I", data)
        if magic != expected:
            raise DataError(
                f"{path}: expected magic {_describe_magic(expected)}, "
                f"found {_describe_magic(magic)}"
            )
    if len(data) < header.size:
        raise DataError(
            f"{path}: header too short: expected {header.size} bytes, found {len(data)}"
        )
    return header.unpack_from(data)


def _check_body(path: str, data: bytes, offset: int, expected_len: int, what: str) -> None:
    found = len(data) - offset
    if found < expected_len:
        raise DataError(
            f"{path}: truncated body: expected {expected_len} bytes of {what}, found {found}"
        )
    if found > expected_len:
        raise DataError(
            f"{path}: {found - expected_len} trailing bytes after the body: expected "
            f"{expected_len} bytes of {what}, found {found}"
        )


def read_idx_images(path: str, *, expected_sha256: str | None = None) -> np.ndarray:
    """Read an IDX3 image file (gzipped if `path` ends in .gz) as read-only uint8 [N, 28, 28]."""
    data = _read_payload(path)
    _, count, rows, cols = _check_magic(path, data, _IMAGES_HEADER, IMAGES_MAGIC)
    if (rows, cols) != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(
            f"{path}: expected {IMAGE_SIZE}x{IMAGE_SIZE} images, found {rows}x{cols}"
        )
    _check_body(
        path, data, _IMAGES_HEADER.size, count * rows * cols,
        f"pixels ({count}*{rows}*{cols})",
    )
    _verify(path, data, expected_sha256)
    # frombuffer over immutable bytes: zero-copy and read-only.
    images = np.frombuffer(data, dtype=np.uint8, offset=_IMAGES_HEADER.size)
    images = images.reshape(count, rows, cols)
    images.flags.writeable = False
    return images


def read_idx_labels(path: str, *, expected_sha256: str | None = None) -> np.ndarray:
    """Read an IDX1 label file (gzipped if `path` ends in .gz) as read-only uint8 [N] in 0..9."""
    data = _read_payload(path)
    _, count = _check_magic(path, data, _LABELS_HEADER, LABELS_MAGIC)
    _check_body(path, data, _LABELS_HEADER.size, count, f"labels ({count})")
    labels = np.frombuffer(data, dtype=np.uint8, offset=_LABELS_HEADER.size)
    bad = np.flatnonzero(labels >= NUM_CLASSES)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{path}: expected labels 0..{NUM_CLASSES - 1}, found {int(labels[i])} at "
            f"index {i} ({bad.size} out-of-range labels in total)"
        )
    _verify(path, data, expected_sha256)
    labels.flags.writeable = False
    return labels


def _locate(data_dir: str, name: str) -> str:
    import tensorflow as tf

    candidates = [posixpath.join(data_dir, name + ".gz"), posixpath.join(data_dir, name)]
    try:
        for path in candidates:
            if tf.io.gfile.exists(path):
                return path
        dir_exists = tf.io.gfile.isdir(data_dir)
    except tf.errors.OpError as e:
        raise DataError(f"{data_dir}: cannot access data directory: {e.message}") from e
    where = f"in {data_dir}" if dir_exists else f"in {data_dir} (the directory does not exist)"
    raise DataError(
        f"MNIST file not found {where}: looked for {name}.gz and {name} "
        "(scripts/fetch_mnist.py downloads them)"
    )


def _read_pair(paths: dict[str, str], images_name: str, labels_name: str, verify: bool) -> Split:
    def digest(name: str) -> str | None:
        return KNOWN_SHA256[name] if verify else None

    # Labels first: they are small, so most errors surface before the big read.
    labels = read_idx_labels(paths[labels_name], expected_sha256=digest(labels_name))
    images = read_idx_images(paths[images_name], expected_sha256=digest(images_name))
    if len(images) != len(labels):
        raise DataError(
            f"{paths[images_name]} has {len(images)} images but {paths[labels_name]} has "
            f"{len(labels)} labels: expected equal counts"
        )
    return Split(images=images, labels=labels)


def load_mnist(
    data_dir: str, *, verify: bool = True, validation_size: int = VALIDATION_SIZE
) -> MnistSplits:
    """Load and validate MNIST from `data_dir` (a local path or any tf.io.gfile URL).

    `verify` checks each decompressed file against KNOWN_SHA256; turn it off for
    custom data (all structural checks still apply). The validation split is the
    last `validation_size` training images, as in the TF tutorial's read_data_sets.
    """
    if type(validation_size) is not int or validation_size < 0:  # bool is an int subclass
        raise ConfigError(f"validation_size must be an integer >= 0, got {validation_size!r}")
    # Locate all four files before reading any, so a missing one fails at once.
    paths = {name: _locate(data_dir, name) for name in KNOWN_SHA256}
    full_train = _read_pair(paths, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", verify)
    test = _read_pair(paths, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", verify)
    n = len(full_train)
    if validation_size >= n:
        raise DataError(
            f"{data_dir}: validation_size={validation_size} leaves no training data: "
            f"expected 0 <= validation_size < {n} (the training file has {n} images)"
        )
    cut = n - validation_size
    return MnistSplits(
        train=Split(full_train.images[:cut], full_train.labels[:cut]),
        validation=Split(full_train.images[cut:], full_train.labels[cut:]),
        test=test,
    )
