"""`python -m mnistctl status|logs|wait|check|scaling`: a training run on Kubernetes, and its sizing.

    status   the release's trainer (Job, JobSet or TFJob) and its pods: phase,
             restarts, exit codes with their meaning (42 preempted, 2
             configuration error...); the newest checkpoint step (from the
             chief's log, the evaluator's, or the model dir with --model-dir);
             the evaluator's latest accuracy (from its log); the TensorBoard
             Service; the run's goodput (the model dir's goodput.json or, while
             training, its goodput record; else the chief's goodput line).
             `-o json` for scripts.
    logs     print (-f: follow) the evaluator's log, or worker N's (--worker N),
             or TensorBoard's; follows a replacement pod when one appears.
    wait     block until the trainer succeeded and the evaluator finished;
             exit 1 with the reason when either failed, 124 on --timeout.
    check    the chart's `helm test` hook: TensorBoard answers over HTTP and,
             once training has started, the model dir holds a checkpoint. It
             reads the model dir (a read-only mount, or gs:// through
             model/gcs.py) and never calls the Kubernetes API.
    scaling  the step time and scaling efficiency to expect for a number of
             GPU workers, per-GPU batch and network (mnistctl/scaling.py's
             model), and the per-GPU batch that reaches 0.8 when it is lower.
             Needs no cluster.

The first three talk to the Kubernetes API (mnistctl/kube.py says how they
authenticate and what they need) and find the release's objects by the
chart's labels (mnistctl/release.py).

Exit codes: 0 done (status: the query worked), 1 the run failed, 2 bad usage
or the API/cluster cannot be reached or nothing of the release was found,
124 `wait --timeout` expired.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from mnistctl.commands import cmd_check, cmd_logs, cmd_status, cmd_wait
from mnistctl.release import DEFAULT_CHART_NAME
from mnistctl.scaling import add_parser as add_scaling_parser, cmd_scaling
from model.errors import EXIT_CONFIG_ERROR, EXIT_INTERRUPTED, MnistTrainError

if TYPE_CHECKING:
    from mnistctl.kube import KubeApi


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mnistctl", description=__doc__.split("\n\n")[0],
                                     epilog="exit codes: 0 done, 1 the run (or a check) failed, "
                                     "2 bad usage / API unreachable / release not found, "
                                     "124 wait timed out",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="{status,logs,wait,check,scaling}")

    def cluster_flags(p):
        p.add_argument("-n", "--namespace", help="default: the kubeconfig context's, or the pod's")
        p.add_argument("--release", default=os.environ.get("MNIST_RELEASE", "mnist-train"),
                       help="Helm release name (env MNIST_RELEASE; default: %(default)s)")
        p.add_argument("--chart-name", default=DEFAULT_CHART_NAME,
                       help="the chart's app.kubernetes.io/name (its nameOverride; default: %(default)s)")
        p.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
        p.add_argument("--context", help="kubeconfig context (default: the current one)")
        p.add_argument("--in-cluster", action="store_true", default=None,
                       help="use the pod's service account (default: when running in a pod)")

    s = sub.add_parser("status", help="trainer pods, checkpoint, accuracy, TensorBoard")
    cluster_flags(s)
    s.add_argument("--model-dir", help="also read the newest checkpoint and the goodput from this model dir "
                   "(a local path, e.g. a mounted claim, or gs://)")
    s.add_argument("-o", "--output", choices=["text", "json"], default="text")

    lg = sub.add_parser("logs", help="the evaluator's log (default), a worker's or TensorBoard's")
    cluster_flags(lg)
    who = lg.add_mutually_exclusive_group()
    who.add_argument("--worker", type=int, metavar="N", help="worker N (0 is the chief)")
    who.add_argument("--evaluator", dest="component", action="store_const", const="evaluator")
    who.add_argument("--tensorboard", dest="component", action="store_const", const="tensorboard")
    lg.set_defaults(component="evaluator")
    lg.add_argument("-f", "--follow", action="store_true", help="keep streaming; moves on to a "
                    "replacement pod (e.g. after a preemption)")
    lg.add_argument("--tail", type=int, default=None, metavar="LINES", help="only the last LINES lines")

    w = sub.add_parser("wait", help="until the trainer succeeded and the evaluator finished")
    cluster_flags(w)
    w.add_argument("--timeout-secs", type=float, help="give up (exit 124) after this long")
    w.add_argument("--interval-secs", type=float, default=10.0, help="poll interval (default: %(default)s)")
    w.add_argument("--not-found-grace-secs", type=float, default=60.0,
                   help="how long the release may be missing before exit 2 (default: %(default)s)")

    c = sub.add_parser("check", help="the helm test hook: TensorBoard answers, a checkpoint exists")
    c.add_argument("--model-dir", required=True, help="the release's model dir (local mount or gs://)")
    c.add_argument("--tensorboard-url", help="GET this and expect HTTP 200 (omit to skip)")
    c.add_argument("--timeout-secs", type=float, default=240.0,
                   help="how long to wait for TensorBoard and a first checkpoint (default: %(default)s)")
    c.add_argument("--interval-secs", type=float, default=5.0)
    c.add_argument("--skip-if-not-started", action="store_true",
                   help="do not wait for a checkpoint when training has not started yet")
    add_scaling_parser(sub)
    return parser


def main(argv: list[str] | None = None, api: KubeApi | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check":  # reads the model dir only: no Kubernetes client needed
            return cmd_check(args)
        if args.command == "scaling":  # arithmetic only
            return cmd_scaling(args)
        from mnistctl import kube

        if api is None:
            api, default_namespace = kube.load_api(args.kubeconfig, args.context, args.in_cluster)
        else:
            default_namespace = "default"
        args.namespace = args.namespace or default_namespace
        command = {"status": cmd_status, "logs": cmd_logs, "wait": cmd_wait}[args.command]
        return command(api, args)
    except MnistTrainError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return EXIT_CONFIG_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as e:  # noqa: BLE001 - API unreachable, refused...
        from mnistctl import kube

        message = kube.describe_api_error(e)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        return EXIT_CONFIG_ERROR
