"""`--compute-dtype auto`: bfloat16 mixed precision where this machine runs it fast.

Measured (bench, LeNet-5, 1 worker, batch 100, on a CPU with AVX512_BF16 and
AMX): bfloat16 trains at 4,130 img/s against float32's 2,555 (1.62x) and ends
at the same test accuracy (99.35% against 99.34%, the default 8,000 steps);
the variables, gradients and checkpoints stay float32 (model/networks.py).
A CPU without those instructions emulates bfloat16 and is slower than in
float32, so `auto` is float32 there. Only the networks measured to gain
(BF16_NETWORKS) switch: the MLP's bfloat16 run was never measured, so it
stays float32. Where a GPU is visible the CPU's flags
say nothing about the compute: `auto` is float32 and bfloat16 is asked for
explicitly (it pays on Ampere or newer). TensorFlow-free: the CLI resolves
`auto` before importing it, so the run's identity records the real dtype.
"""

from __future__ import annotations

import glob

from model.config import COMPUTE_DTYPE_AUTO

# /proc/cpuinfo flags of the instructions that make bfloat16 matmuls and convolutions fast.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
# The networks whose bfloat16 speed and accuracy were measured (see the module docstring).
BF16_NETWORKS = frozenset({"lenet5"})


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The first processor's flags; empty where there is no /proc/cpuinfo (macOS)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def gpu_visible() -> bool:
    return bool(glob.glob("/dev/nvidia[0-9]*"))


def auto_compute_dtype(model: str, flags: frozenset[str] | None = None,
                       gpu: bool | None = None) -> str:
    """What `--compute-dtype auto` means for `model` on this machine (see the module docstring)."""
    if model not in BF16_NETWORKS:
        return "float32"
    flags = cpu_flags() if flags is None else flags
    gpu = gpu_visible() if gpu is None else gpu
    return "bfloat16" if not gpu and flags & BF16_CPU_FLAGS else "float32"


def resolve_compute_dtype(requested: str, model: str) -> str:
    return auto_compute_dtype(model) if requested == COMPUTE_DTYPE_AUTO else requested
