"""model/allocator.py: glibc keeps freed blocks instead of unmapping them.

Each case runs in a fresh interpreter, because malloc settings are per
process and cannot be undone. A block's header tells whether glibc mmapped it
(the IS_MMAPPED bit, 0x2, of the size word just before the pointer), so the
effect is read from the allocator itself, not from our own bookkeeping.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from scripts.paths import REPO_ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc is Linux-only")

PROBE = r"""
import ctypes, json, resource, sys
from model.allocator import keep_freed_memory
outcome = keep_freed_memory() if sys.argv[1] == "tune" else "not called"
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
size = 8 * 2 ** 20  # 8 MiB: above glibc's default 128 KiB mmap threshold, below our 32 MiB
pointer = libc.malloc(size)
mmapped = bool(ctypes.c_size_t.from_address(pointer - ctypes.sizeof(ctypes.c_size_t)).value & 2)
libc.memset(pointer, 1, size)  # first touch: these faults are expected either way
libc.free(pointer)
# The steady state of a training step: the same big block allocated, written, freed.
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    pointer = libc.malloc(size)
    libc.memset(pointer, 1, size)
    libc.free(pointer)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"outcome": outcome, "mmapped": mmapped, "faults": faults}))
"""


def probe(mode: str, **env_extra) -> dict:
    env = {"PATH": "/usr/bin:/bin", **env_extra}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_without_the_settings_glibc_mmaps_a_big_block():
    # Control: proves the probe can see an mmapped block.
    assert probe("none")["mmapped"] is True


def test_with_the_settings_big_blocks_come_from_the_heap_and_stop_faulting():
    result = probe("tune")
    assert result["outcome"].startswith("glibc ") and "mmap_threshold 32 MiB" in result["outcome"]
    assert result["mmapped"] is False
    # 20 rounds of an 8 MiB block fault in 2,048 pages each when glibc unmaps it.
    assert result["faults"] < 500, result


def test_an_operators_malloc_variables_win():
    result = probe("tune", MALLOC_ARENA_MAX="2")
    assert result["outcome"] == "left as configured by MALLOC_ARENA_MAX"
    assert result["mmapped"] is True


def test_the_cli_logs_what_it_did(tmp_path):
    out = subprocess.run([sys.executable, "-m", "model", "train", "--model", "mlp", "--model-dir",
                          str(tmp_path / "m"), "--max-steps", "0"], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "malloc | glibc " in out.stdout
