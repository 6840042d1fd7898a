"""Launching and reading the measured programs: our CLI, the Keras baseline, the scorer."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import statistics
from pathlib import Path

from bench.procs import PYTHON, BenchError, Proc, base_env, wait_all
from scripts.ports import free_ports
from model import log_lines

RESULT_PREFIX = "BENCH_RESULT "


@dataclasses.dataclass
class Context:
    """Where a benchmark run writes, and how it reports progress."""

    logs: Path  # per-process logs
    work: Path  # model directories (deleted at the end)
    quick: bool
    quiet_wait: float  # max seconds to wait for an idle machine before each measurement
    retries: int = 2  # extra attempts when other processes used the CPUs during a measurement
    counter: int = 0

    def name(self, label: str) -> str:
        self.counter += 1
        return f"{self.counter:02d}-{label}"

    def say(self, text: str) -> None:
        print(text, flush=True)


@dataclasses.dataclass
class TrainRun:
    """One worker's view of a CLI training run."""

    proc: Proc
    model_dir: Path

    @property
    def steps(self) -> list[tuple[float, int, float]]:
        """(seconds since start, step, img/s of the window ending there) per progress line."""
        out = []
        for t, line in self.proc.lines:
            m = log_lines.TRAIN_PROGRESS.match(line)
            if m and m["images_per_sec"]:
                out.append((t, int(m["step"]), float(m["images_per_sec"])))
        return out

    @property
    def global_batch(self) -> int:
        for _, line in self.proc.lines:
            m = log_lines.TRAIN_START.match(line)
            if m and m["global_batch"]:
                return int(m["global_batch"])
        raise BenchError(f"{self.proc.name}: no 'train | start' line in {self.proc.log_path}")

    @property
    def exchange_plan(self) -> str | None:
        """The trainer's account of how its workers combine gradients."""
        for _, line in self.proc.lines:
            m = log_lines.TRAIN_EXCHANGE.match(line)
            if m:
                return m["plan"]
        return None

    @property
    def done(self) -> dict:
        for _, line in self.proc.lines:
            m = log_lines.TRAIN_DONE.match(line)
            if m:
                return {"step": int(m["step"]), "images_per_sec": float(m["images_per_sec"]),
                        "weights_sha256": m["sha256"]}
        raise BenchError(f"{self.proc.name}: no 'train | done' line in {self.proc.log_path}")

    @property
    def compile_seconds(self) -> float | None:
        for _, line in self.proc.lines:
            m = log_lines.TRAIN_COMPILED.match(line)
            if m:
                return float(m["seconds"])
        return None

    def saved_at(self) -> dict[int, float]:
        """step -> seconds since start when the chief logged saving that checkpoint."""
        out = {}
        for t, line in self.proc.lines:
            m = log_lines.TRAIN_SAVED.match(line)
            if m:
                out[int(m["step"])] = t
        return out

    def steady_rate(self, warmup_steps: int) -> dict:
        """Images/s over the progress windows that end after `warmup_steps`.

        Each progress line gives its window's rate (wall clock between
        progress lines, so it includes the loop's own per-call overhead:
        summaries, logging); a window's time is its images / rate, and the
        steady rate is all the images over all the time.
        """
        lines = self.steps
        gb = self.global_batch
        images = seconds = 0.0
        prev_step = None
        for _, step, rate in lines:
            if prev_step is not None and step > warmup_steps and prev_step >= warmup_steps:
                n = (step - prev_step) * gb
                images += n
                seconds += n / rate
            prev_step = step
        if not seconds:
            raise BenchError(f"{self.proc.name}: no progress windows after step {warmup_steps} "
                             f"(log {self.proc.log_path})")
        # Cross-check with the harness's own timestamps of the same lines.
        stamped = {step: t for t, step, _ in lines}
        last = max(stamped)
        wall_rate = ((last - warmup_steps) * gb / (stamped[last] - stamped[warmup_steps])
                     if warmup_steps in stamped and stamped[last] > stamped[warmup_steps] else None)
        return {"images_per_sec": images / seconds, "measured_steps": int(images // gb),
                "measured_seconds": seconds, "timestamped_images_per_sec": wall_rate}


def train_argv(model: str, model_dir: Path, max_steps: int, *, batch_size: int = 100,
               extra: list[str] | None = None) -> list[str]:
    return [PYTHON, "-m", "model", "train", "--model", model, "--model-dir", str(model_dir),
            "--max-steps", str(max_steps), "--batch-size", str(batch_size),
            "--log-every-steps", "100", "--save-summaries-steps", "100",
            *(extra or [])]


def start_training(ctx: Context, label: str, model: str, max_steps: int, *, workers: int = 1,
                   cpus: list[str | None] | None = None, env_extra: dict[str, str] | None = None,
                   extra: list[str] | None = None, batch_size: int = 100) -> list[TrainRun]:
    """Start `workers` CLI trainers (a local cluster on 127.0.0.1 if more than one)."""
    name = ctx.name(label)
    model_dir = ctx.work / name
    cpus = cpus or [None] * workers
    addresses = [f"127.0.0.1:{p}" for p in free_ports(workers)] if workers > 1 else []
    runs = []
    try:
        for i in range(workers):
            env = base_env(**(env_extra or {}))
            if workers > 1:
                env["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses},
                                               "task": {"type": "worker", "index": i}})
            proc = Proc(f"{name}-w{i}", train_argv(model, model_dir, max_steps, batch_size=batch_size,
                                                   extra=extra),
                        log_path=ctx.logs / f"{name}-w{i}.log", env=env, cpus=cpus[i])
            runs.append(TrainRun(proc, model_dir))
    except Exception:
        for r in runs:
            r.proc.kill()
        raise
    return runs


def run_training(ctx: Context, label: str, model: str, max_steps: int, *, timeout: float,
                 **kw) -> list[TrainRun]:
    runs = start_training(ctx, label, model, max_steps, **kw)
    wait_all([r.proc for r in runs], timeout, what=f"training {label}")
    return runs


def run_result_script(ctx: Context, label: str, module: str, args: list[str], *, timeout: float,
                      cpus: str | None = None, env_extra: dict[str, str] | None = None) -> tuple[dict, Proc]:
    """Run `python -m module args` and return its BENCH_RESULT JSON."""
    name = ctx.name(label)
    proc = Proc(name, [PYTHON, "-m", module, *args], log_path=ctx.logs / f"{name}.log",
                env=base_env(**(env_extra or {})), cpus=cpus)
    wait_all([proc], timeout, what=label)
    for _, line in reversed(proc.lines):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):]), proc
    raise BenchError(f"{label}: no {RESULT_PREFIX.strip()} line (log {proc.log_path})")


def eval_events(proc: Proc) -> list[tuple[float, dict]]:
    """(seconds since the evaluator started, event) for each JSON line the evaluator printed."""
    out = []
    for t, line in proc.lines:
        with contextlib.suppress(json.JSONDecodeError):
            event = log_lines.parse_eval_event(line)
            if event is not None:
                out.append((t, event))
    return out


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
