"""`make demo`: the Helm chart run on this machine by the local runner.

LeNet-5 on two MultiWorkerMirroredStrategy workers, the evaluator Job and
TensorBoard, exactly as `helm install` would run them (the chart rendered,
each pod a local process in its own namespaces), on the full MNIST. A
shorter schedule than the full benchmark so that it finishes in a few
minutes on two cores. Ctrl-C stops everything; the trainers save a
checkpoint first and `--resume` continues from it.

Run in a terminal (stdin and stdout a tty), TensorBoard keeps serving after
training until Ctrl-C, so the dashboard the demo advertises is there when you
look; in CI (CI set, e.g. CI=true), without a terminal, or with --exit
(alias --no-keep-serving) the demo ends with the run, as the runner does.

Runs as a normal user on Linux with unprivileged user namespaces (or as
root); where they are not available it says which setting forbids them.

Usage: python scripts/demo.py [--exit] [extra local runner flags]
       (python -m scripts.local_runner --help lists them; a later --set wins,
       e.g. --set training.maxSteps=200 for a short schedule: `make demo DEMO_ARGS=...`)
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

# Run as a file (`python scripts/demo.py`): make the checkout importable first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.local_runner import cli  # noqa: E402
from scripts.local_runner.launcher import LauncherError  # noqa: E402
from scripts.local_runner.process_launcher import ProcessLauncher  # noqa: E402
from scripts.local_runner.render import find_helm  # noqa: E402
from scripts.paths import REPO_ROOT, RUNS_DIR  # noqa: E402

MAX_STEPS = 1200  # reaches ~99.0% validation accuracy (the default preset trains 8000)
CHECKPOINT_STEPS = 200
EXIT_FLAGS = ("--exit", "--no-keep-serving")  # the demo's own: end with the run
KEEP_FLAGS = ("--keep-serving", "--keep-tensorboard")  # the runner's


def keep_serving(args: list[str], environ=os.environ, stdin=sys.stdin, stdout=sys.stdout) -> bool:
    """Whether TensorBoard stays up after training: yes in a terminal, no in CI, without a tty or
    when asked to exit (an explicit runner --keep-serving always keeps it)."""
    if any(a in KEEP_FLAGS for a in args):
        return True
    if any(a in EXIT_FLAGS for a in args):
        return False
    if environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    return all(stream is not None and stream.isatty() for stream in (stdin, stdout))


def main() -> int:
    extra = sys.argv[1:]
    keep = keep_serving(extra)
    extra = [a for a in extra if a not in EXIT_FLAGS + KEEP_FLAGS]
    try:
        ProcessLauncher.check()
    except LauncherError as e:
        print("demo | the local runner cannot run here: it gives each worker pod its own network "
              "namespace and each pod a private mount namespace.", file=sys.stderr)
        for line in str(e).splitlines():
            print(f"demo | {line}", file=sys.stderr)
        print("demo | (no Linux at hand, e.g. macOS: run it in a Linux VM, or see `make image-test` "
              "for the chart's pods as containers)", file=sys.stderr)
        return 2
    if not find_helm():
        print("demo | installing the pinned helm into .tools/bin (scripts/install_k8s_tools.sh)", flush=True)
        subprocess.run(["bash", str(REPO_ROOT / "scripts" / "install_k8s_tools.sh")], check=True,
                       cwd=REPO_ROOT)
    print(f"demo | LeNet-5 on 2 workers + evaluator + TensorBoard, the Helm chart run locally: "
          f"{MAX_STEPS} global steps of batch 200, a shorter schedule than the full benchmark "
          "(the default preset trains 8000 steps)", flush=True)
    print("demo | the evaluator's lines follow as checkpoints appear; every pod's full output is in "
          "runs/demo/logs/", flush=True)
    if keep:
        print("demo | when training ends, TensorBoard keeps serving (its URL is printed) until you press "
              "Ctrl-C (`make demo DEMO_ARGS=--exit` ends with the run instead)", flush=True)
    else:
        print("demo | TensorBoard stops when training ends (not a terminal, CI, or --exit; "
              "`python -m scripts.local_runner --keep-serving ...` keeps it)", flush=True)
    args = ["--fresh", "--run-dir", str(RUNS_DIR / "demo"),
            "--set", "training.model=lenet5", "--set", f"training.maxSteps={MAX_STEPS}",
            "--set", f"training.saveCheckpointsSteps={CHECKPOINT_STEPS}",
            "--set", "evaluator.evalIntervalSecs=5", "--set", "tensorboard.reloadInterval=5",
            "--show", "evaluator", "--match", r"^(After |error: |Traceback)", "--quiet-tf",
            "--progress-every", "30", *(["--keep-serving"] if keep else []), *extra]
    print(f"demo | python -m scripts.local_runner {shlex.join(args)}", flush=True)
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
