#!/usr/bin/env python3
"""Download the four MNIST .gz files into a directory and verify them.

    python scripts/fetch_mnist.py --dest data/mnist [--mirror URL ...]
    python scripts/fetch_mnist.py --dest data/mnist --verify-only

Standard library only (no TensorFlow, nothing from `model`), so it runs
anywhere. Mirrors are tried in order; each download goes to a temporary file in
the destination directory and is renamed into place (os.replace, atomic) only
once the SHA-256 of its decompressed payload matches. A file already present
and valid is not downloaded again. Exit code 0 when all four files are valid,
1 otherwise; no partial file is ever left under a final name.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

DEFAULT_MIRRORS = [
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]

# The repo's copy of the digests of the decompressed IDX payloads; used when
# this script runs without the repo beside it. Keep in sync with
# data/mnist/SHA256SUMS.uncompressed and model/data.py:KNOWN_SHA256.
EMBEDDED_SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
REPO_SUMS = Path(__file__).resolve().parent.parent / "data" / "mnist" / "SHA256SUMS.uncompressed"

# Bounds against a misbehaving mirror: the largest file is ~10 MB compressed
# and 47 MB decompressed.
MAX_DOWNLOAD_BYTES = 64 << 20
MAX_DECOMPRESSED_BYTES = 128 << 20
CHUNK = 1 << 16


class FetchError(Exception):
    pass


def load_digests(sums_path: Path = REPO_SUMS) -> dict[str, str]:
    """Digests from the repo's SHA256SUMS.uncompressed if present, else the embedded copy."""
    if not sums_path.is_file():
        return dict(EMBEDDED_SHA256)
    digests = {}
    for lineno, line in enumerate(sums_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        m = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](\S+)", line.strip())
        if not m:
            raise FetchError(f"{sums_path}:{lineno}: expected '<sha256>  <name>', found {line!r}")
        digests[m.group(2)] = m.group(1).lower()
    missing = sorted(set(EMBEDDED_SHA256) - set(digests))
    if missing:
        raise FetchError(f"{sums_path}: no digest for {', '.join(missing)}")
    return {name: digests[name] for name in EMBEDDED_SHA256}


def payload_sha256(path: Path, gzipped: bool) -> str:
    """SHA-256 of the (decompressed) content; raises FetchError if unreadable."""
    h = hashlib.sha256()
    total = 0
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
            while chunk := f.read(CHUNK):
                total += len(chunk)
                if total > MAX_DECOMPRESSED_BYTES:
                    raise FetchError(f"more than {MAX_DECOMPRESSED_BYTES} bytes decompressed")
                h.update(chunk)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise FetchError(f"truncated or corrupt gzip stream: {e}") from e
    return h.hexdigest()


def check_file(path: Path, expected: str, gzipped: bool | None = None) -> str | None:
    """None if `path` holds the expected payload, else why not."""
    if gzipped is None:
        gzipped = path.name.endswith(".gz")
    try:
        actual = payload_sha256(path, gzipped)
    except FetchError as e:
        return str(e)
    if actual != expected:
        return f"SHA-256 of the decompressed data: expected {expected}, found {actual}"
    return None


def existing_file(dest: Path, name: str) -> Path | None:
    # Same preference as model/data.py: NAME.gz first, else plain NAME.
    for path in (dest / f"{name}.gz", dest / name):
        if path.exists():
            return path
    return None


def download(url: str, dest: Path, name: str, expected: str, timeout: float) -> None:
    """Fetch `url` and atomically install it as dest/NAME.gz, or raise FetchError."""
    fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=f".{name}.gz.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    total = 0
                    while chunk := resp.read(CHUNK):
                        total += len(chunk)
                        if total > MAX_DOWNLOAD_BYTES:
                            raise FetchError(f"more than {MAX_DOWNLOAD_BYTES} bytes")
                        out.write(chunk)
            except (OSError, http.client.HTTPException, ValueError) as e:
                # URLError/HTTPError/timeouts are OSErrors; IncompleteRead is not.
                raise FetchError(str(e) or type(e).__name__) from e
        problem = check_file(tmp, expected, gzipped=True)  # tmp is named *.part
        if problem:
            raise FetchError(problem)
        os.replace(tmp, dest / f"{name}.gz")
    finally:
        tmp.unlink(missing_ok=True)  # no-op after a successful os.replace


def fetch(dest: Path, mirrors: list[str], digests: dict[str, str], timeout: float) -> bool:
    dest.mkdir(parents=True, exist_ok=True)
    ok = True
    for name, expected in digests.items():
        path = existing_file(dest, name)
        if path is not None:
            problem = check_file(path, expected)
            if problem is None:
                print(f"{path}: present and valid, skipped")
                continue
            print(f"{path}: invalid ({problem}), downloading again")
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + f"/{name}.gz"
            try:
                download(url, dest, name, expected, timeout)
            except FetchError as e:
                errors.append(f"  {url}: {e}")
                print(f"{url}: rejected: {e}", file=sys.stderr)
                continue
            print(f"{dest / (name + '.gz')}: downloaded from {url} and verified")
            break
        else:
            ok = False
            print(f"error: could not fetch {name}.gz from any mirror:\n" + "\n".join(errors),
                  file=sys.stderr)
    return ok


def verify_only(dest: Path, digests: dict[str, str]) -> bool:
    ok = True
    for name, expected in digests.items():
        path = existing_file(dest, name)
        if path is None:
            print(f"{dest}: MISSING {name}.gz (or {name})", file=sys.stderr)
            ok = False
            continue
        problem = check_file(path, expected)
        if problem:
            print(f"{path}: BAD: {problem}", file=sys.stderr)
            ok = False
        else:
            print(f"{path}: OK")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=Path("data/mnist"),
                        help="directory to fill (default: %(default)s)")
    parser.add_argument("--mirror", action="append", metavar="URL",
                        help="base URL holding the four .gz files; repeat to try several in "
                             "order (default: " + ", ".join(DEFAULT_MIRRORS) + ")")
    parser.add_argument("--verify-only", action="store_true",
                        help="only check the files already in --dest; download nothing")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds without progress before a mirror is abandoned")
    args = parser.parse_args(argv)
    try:
        digests = load_digests()
        if args.verify_only:
            ok = verify_only(args.dest, digests)
        else:
            ok = fetch(args.dest, args.mirror or DEFAULT_MIRRORS, digests, args.timeout)
    except (FetchError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not ok:
        print("error: MNIST in " + str(args.dest) + " is incomplete", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
