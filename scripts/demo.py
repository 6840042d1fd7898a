"""`make demo`: LeNet-5 on two local MultiWorkerMirroredStrategy workers, an
evaluator beside them and TensorBoard, all on 127.0.0.1.

The same processes the Helm chart runs as pods (worker Indexed Job, evaluator
Job, TensorBoard Deployment), run here as local processes. Ctrl-C stops
everything; no process outlives the demo.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet5", choices=["mlp", "lenet5"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=1500,
                        help="global steps (default 1500: a short schedule; the full "
                        "default preset is 8000 steps)")
    parser.add_argument("--run-dir", default=str(REPO / "runs" / "demo"))
    parser.add_argument("--no-tensorboard", action="store_true")
    args = parser.parse_args()

    run_dir = Path(args.run_dir)
    model_dir = run_dir / "model"
    if model_dir.exists():  # a demo starts from scratch; the model dir holds nothing else
        shutil.rmtree(model_dir)
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "JOB_COMPLETION_INDEX")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    python = sys.executable
    procs: dict[str, subprocess.Popen] = {}

    def start(name, argv, extra_env=None, stdout=None):
        log_file = open(logs / f"{name}.log", "wb")
        procs[name] = subprocess.Popen(argv, cwd=REPO, env={**env, **(extra_env or {})},
                                       stdout=stdout or log_file, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        return procs[name]

    def stop_all():
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    addresses = [f"127.0.0.1:{free_port()}" for _ in range(args.workers)]
    print(f"demo | {args.model} on {args.workers} workers ({', '.join(addresses)}), "
          f"{args.max_steps} global steps: a short schedule for a demo, not the full benchmark")
    print(f"demo | model dir {model_dir}; per-process logs in {logs}")
    try:
        for i in range(args.workers):
            tf_config = {"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}}
            start(f"worker-{i}", [python, "-m", "model", "train", "--model", args.model,
                                  "--model-dir", str(model_dir), "--max-steps", str(args.max_steps),
                                  "--save-checkpoints-steps", "250"],
                  {"TF_CONFIG": json.dumps(tf_config)})
        if not args.no_tensorboard:
            port = free_port()
            start("tensorboard", [str(Path(python).parent / "tensorboard"), "--logdir", str(model_dir),
                                  "--host", "127.0.0.1", "--port", str(port)])
            print(f"demo | TensorBoard: http://127.0.0.1:{port}/")
        evaluator = start("evaluator", [python, "-m", "model", "evaluate", "--model", args.model,
                                        "--model-dir", str(model_dir), "--eval-interval-secs", "10",
                                        "--timeout-secs", "300"],
                          stdout=subprocess.PIPE)
        for line in evaluator.stdout:
            text = line.decode(errors="replace").rstrip()
            (logs / "evaluator.log").open("a").write(text + "\n")
            if text.startswith(("After", "error")) or "Traceback" in text:
                print(f"evaluator | {text}", flush=True)
            for name, proc in procs.items():
                if name.startswith("worker") and proc.poll() not in (None, 0):
                    print(f"demo | {name} exited with {proc.returncode}; see {logs / (name + '.log')}")
                    return 1
        code = evaluator.wait()
        metrics = run_dir / "model" / "eval" / "final_metrics.json"
        if code == 0 and metrics.exists():
            print(f"demo | done: {json.loads(metrics.read_text())}")
        return code
    except KeyboardInterrupt:
        print("demo | interrupted; stopping every process")
        return 130
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
