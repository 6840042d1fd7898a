"""The chart's default training flags, read from its rendering (`helm template` with the local
runner's overlay), so that a bench that starts trainers by hand trains what the chart would."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

# Flags a harness sets itself (what to train and where, and for how long).
HARNESS_FLAGS = ("--model", "--model-dir", "--max-steps")


@functools.cache
def trainer_args() -> tuple[str, ...]:
    """The trainer container's args in the chart's default rendering, after `train`, without
    HARNESS_FLAGS and their values."""
    from scripts.local_runner.render import render

    with tempfile.TemporaryDirectory() as tmp:
        rendering = render(overlay_path=Path(tmp) / "values-local.yaml")
    trainers = [d for d in rendering.of_kind("Job") if "trainer" in d["metadata"]["name"]]
    if len(trainers) != 1:
        raise RuntimeError(f"the chart's default rendering has {len(trainers)} trainer Jobs, expected 1")
    args = trainers[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    if args[:1] != ["train"]:
        raise RuntimeError(f"the trainer's args do not start with 'train': {args}")
    kept, rest = [], list(args[1:])
    while rest:
        flag = rest.pop(0)
        value = rest.pop(0) if rest and not rest[0].startswith("--") else None
        if flag not in HARNESS_FLAGS:
            kept += [flag] + ([value] if value is not None else [])
    return tuple(kept)


def flag_value(flag: str) -> str:
    """The value of `flag` in trainer_args()."""
    args = trainer_args()
    if flag not in args:
        raise KeyError(f"{flag} is not in the chart's default trainer args: {args}")
    return args[args.index(flag) + 1]
