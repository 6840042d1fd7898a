"""The `restart` section: how long a restarted 2-worker LeNet-5 group takes to train again.

A base run (2 workers on 127.0.0.1, the chart's training settings) trains to step 200 and
saves its checkpoint there. Each repeat copies that model directory, removes the completion
marker (as after a crash: the run is unfinished) and starts both workers again with
`--max-steps 201`: they restore step 200, run one step in the first (tracing, compiling) loop
call, save step 201 and exit. One step, so the first call's time is its set-up and not 100
steps; the tracing is the same as a 100-step call's (the step count is a tensor argument).

The phases of the chief's restart, from the launch of its process (the harness's clock):

    import      -> `imported`: Python, TensorFlow and the library imported (goodput record)
    cluster     -> `cluster_formed`: the strategy created, every worker joined
    restore     -> `restored`: MNIST loaded, the model dir claimed, the checkpoint restored
    first_step  -> the first loop call's end (its `steps` event): building the loop, tracing,
                   the first collectives, the step
    done        -> the `train | done` line: the final save, goodput.json, the marker
    exit        -> the process exited (Python and TensorFlow teardown)

Wall times are the goodput record's (time.time() in the chief) and the harness's own stamps of
the output lines and of the exit, on one clock. The chief's CPU seconds per phase are read from
/proc as the harness sees the line that ends each phase (`PHASE_LINES`) and from its rusage at
exit: on a loaded machine they move far less than the wall times. Medians over the repeats.

    python -m bench.restart [--repeats 5] [--extra-args "..."]   # alone, prints the phases
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from bench import chart_defaults
from bench.procs import BenchError, Proc, base_env, wait_all
from bench.runs import Context, train_argv
from scripts.ports import free_ports
from model import goodput, layout, log_lines

BASE_STEPS = 200
RESTART_STEPS = BASE_STEPS + 1
PHASES = ("import", "cluster", "restore", "first_step", "done", "exit")
RUN_TIMEOUT = 600

METHOD = (
    "2 LeNet-5 workers on 127.0.0.1 with the chart's training settings train to step 200; each repeat "
    "copies that model dir without its completion marker and restarts both workers with "
    "`--max-steps 201` (restore step 200, one step in the first, compiling loop call, save, exit). "
    "Phases of the chief from its launch: import (TensorFlow and the library), cluster (the strategy, "
    "peers joined), restore (data, model dir claimed, checkpoint restored), first_step (the first loop "
    "call: building, tracing, first collectives, one step), done (final save, goodput.json, marker, the "
    "done line), exit (teardown); from the goodput record and the harness's stamps of the output lines "
    "and the exit. Medians over the repeats; unpinned, so the load matters (bench/restart.py).")


def _wall_offset() -> float:
    """time.time() - time.monotonic(): the goodput record's clock onto the harness's."""
    return time.time() - time.monotonic()


def _cpu_seconds(pid: int) -> float | None:
    """The user + system CPU time process `pid` has used so far (/proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# The chief's line that ends each phase: its CPU time is read as the harness sees the line
# (CPU seconds are what a loaded machine does not inflate as it does wall time).
PHASE_LINES = (("import", log_lines.CONFIG), ("cluster", log_lines.CLUSTER_FORMED),
               ("restore", log_lines.TRAIN_RESTORED), ("first_step", log_lines.TRAIN_COMPILED),
               ("done", log_lines.TRAIN_DONE))


def _start_pair(ctx: Context, label: str, model_dir: Path, max_steps: int, extra: list[str]):
    """Both workers of a 2-worker group on 127.0.0.1, training into `model_dir`, and the chief's
    CPU seconds at the end of each phase (filled in as its lines arrive)."""
    name = ctx.name(label)
    addresses = [f"127.0.0.1:{p}" for p in free_ports(2)]
    procs: list[Proc] = []
    cpu: dict[str, float] = {}

    def on_chief_line(_t: float, line: str) -> None:
        for phase, pattern in PHASE_LINES:
            if phase not in cpu and pattern.match(line):
                used = _cpu_seconds(procs[0].pid)
                if used is not None:
                    cpu[phase] = used

    for i in range(2):
        env = base_env(TF_CONFIG=json.dumps({"cluster": {"worker": addresses},
                                             "task": {"type": "worker", "index": i}}))
        procs.append(Proc(f"{name}-w{i}", train_argv("lenet5", model_dir, max_steps,
                                                       extra=[*chart_defaults.trainer_args(), *extra]),
                          log_path=ctx.logs / f"{name}-w{i}.log", env=env,
                          on_line=on_chief_line if i == 0 else None))
    return procs, cpu


def base_run(ctx: Context, extra: list[str]) -> Path:
    """The model dir of a finished 200-step run."""
    model_dir = ctx.work / ctx.name("restart-base")
    wait_all(_start_pair(ctx, "restart-base", model_dir, BASE_STEPS, extra)[0], RUN_TIMEOUT,
             what="restart base run")
    return model_dir


def one_restart(ctx: Context, base: Path, extra: list[str]) -> dict:
    """Restart both workers from `base`'s checkpoint; the chief's phase times in seconds."""
    model_dir = ctx.work / ctx.name("restart-dir")
    shutil.copytree(base, model_dir)
    for name in (layout.COMPLETE_MARKER, layout.GOODPUT_SUMMARY):
        (model_dir / name).unlink(missing_ok=True)
    shutil.rmtree(model_dir / layout.GOODPUT_DIR, ignore_errors=True)
    offset = _wall_offset()
    procs, cpu = _start_pair(ctx, "restart", model_dir, RESTART_STEPS, extra)
    wait_all(procs, RUN_TIMEOUT, what="restart")
    chief = procs[0]
    launch = chief.start
    at = {}
    for e in goodput.read_events(str(model_dir / layout.GOODPUT_DIR)):
        if e["event"] in ("imported", "cluster_formed", "restored"):
            at.setdefault(e["event"], e["time"] - offset - launch)
        if e["event"] == "steps" and e.get("compile"):
            at.setdefault("first_step", e["time"] - offset - launch)
    done = next((t for t, line in chief.lines if log_lines.TRAIN_DONE.match(line)), None)
    marks = [at.get("imported"), at.get("cluster_formed"), at.get("restored"), at.get("first_step"), done,
             chief.end - launch]
    if any(m is None for m in marks):
        raise BenchError(f"restart: missing marks {dict(zip(PHASES, marks))} (log {chief.log_path})")
    phases = dict(zip(PHASES, [b - a for a, b in zip([0.0] + marks[:-1], marks)]))
    cpu["exit"] = chief.cpu_seconds
    cpu_marks = [cpu.get(k) for k in PHASES]
    cpu_phases = ({k: round(b - a, 3) for k, a, b in zip(PHASES, [0.0] + cpu_marks[:-1], cpu_marks)}
                  if None not in cpu_marks else {})
    shutil.rmtree(model_dir, ignore_errors=True)
    return {"phases": {k: round(v, 3) for k, v in phases.items()}, "total": round(marks[-1], 3),
            "first_step_at": round(marks[3], 3), "cpu_phases": cpu_phases,
            "load_average": list(os.getloadavg())}


def measure(ctx: Context, repeats: int, extra: list[str] | None = None) -> dict:
    """`repeats` restarts from one base run: each one's phases and their medians."""
    extra = list(extra or [])
    base = base_run(ctx, extra)
    samples = []
    for n in range(repeats):
        samples.append(one_restart(ctx, base, extra))
        ctx.say(f"   restart {n + 1}/{repeats}: " + _describe(samples[-1]))
    med = {k: round(statistics.median(s["phases"][k] for s in samples), 3) for k in PHASES}
    with_cpu = [s for s in samples if s["cpu_phases"]]
    med_cpu = ({k: round(statistics.median(s["cpu_phases"][k] for s in with_cpu), 3) for k in PHASES}
               if with_cpu else {})
    return {"samples": samples, "median_phases": med, "median_cpu_phases": med_cpu,
            "median_first_step_at": round(statistics.median(s["first_step_at"] for s in samples), 3),
            "median_total": round(statistics.median(s["total"] for s in samples), 3), "extra_args": extra}


def _describe(sample: dict) -> str:
    phases = " | ".join(f"{k} {v:.2f}" for k, v in sample["phases"].items())
    cpu = " | ".join(f"{k} {v:.2f}" for k, v in (sample.get("cpu_phases") or {}).items())
    return (f"first step at {sample['first_step_at']:.2f} s, exit at {sample['total']:.2f} s ({phases}); "
            f"chief CPU s: {cpu or 'n/a'}; load {sample['load_average'][0]:.1f}")


def restart(ctx: Context, quick: bool) -> dict:
    """The section: one row, the median time from launch to the first step, with its phases."""
    d = measure(ctx, 2 if quick else 5)
    med = d["median_phases"]
    cpu = d["median_cpu_phases"]
    parts = ", ".join(f"{k} {v:.1f} s" + (f" ({cpu[k]:.2f} CPU s)" if k in cpu else "")
                      for k, v in med.items())
    row = {"id": "restart.lenet5",
           "figure": "LeNet-5 2-worker restart from a checkpoint: launch -> first step",
           "value": f"{d['median_first_step_at']:.1f} s", "baseline": "", "ratio": "",
           "target": "none set (reported)", "status": "n/a",
           "notes": (f"median of {len(d['samples'])}; exit at {d['median_total']:.1f} s; phases: {parts}; "
                     f"load {d['samples'][-1]['load_average'][0]:.1f}"
                     + ("; QUICK (2 repeats)" if quick else "")),
           "numbers": {"first_step_at": d["median_first_step_at"], "total": d["median_total"], **med,
                       "cpu": d["median_cpu_phases"]}}
    return {"rows": [row], "details": d}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.restart", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--extra-args", default="", help="more `python -m model train` flags, space-separated")
    p.add_argument("--json", help="also write the measurement here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as tmp:
        ctx = Context(logs=Path(tmp) / "logs", work=Path(tmp) / "work", quick=False, quiet_wait=0)
        ctx.work.mkdir(parents=True)
        d = measure(ctx, args.repeats, args.extra_args.split())
    print("median: " + _describe({"phases": d["median_phases"], "first_step_at": d["median_first_step_at"],
                                  "total": d["median_total"], "cpu_phases": d["median_cpu_phases"],
                                  "load_average": list(os.getloadavg())}))
    if args.json:
        Path(args.json).write_text(json.dumps(d, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
