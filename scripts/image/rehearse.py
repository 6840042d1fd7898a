"""The chart's pods as containers of the image: the local runner with the podman launcher.

    python -m scripts.image rehearse [--image REF] [--no-cpu-limits] [--pids-limit N] [runner options...]

Everything after the options below is the local runner's command line
(`python -m scripts.local_runner --help`: --set, -f, --fault, --run-dir,
--fresh, --timeout, ...): the chart is rendered with helm, the Jobs'
semantics and faults are the runner's, and each pod runs as a podman
container of REF (default: the image `python -m scripts.image build` makes),
set as image.repository/image.tag before your own values. See launcher.py
for how a pod maps onto `podman run`. Needs root and podman.

Example (3 workers, evaluator and TensorBoard; kill worker 2 at step 400):
  python -m scripts.image rehearse --fresh --set trainer.workers=3 --set training.model=mlp \\
      --set training.maxSteps=1000 --set training.saveCheckpointsSteps=200 \\
      --fault kill:worker=2:step=400 --restart-backoff 2
"""

from __future__ import annotations

import argparse
import sys

from scripts.image.build import DEFAULT_TAG


def split_image(ref: str) -> tuple[str, str]:
    """localhost/mnist-train:0.1.0-cpu -> (localhost/mnist-train, 0.1.0-cpu)."""
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        raise SystemExit(f"--image {ref!r}: give REPOSITORY:TAG")
    return repo, tag


def register(cpu_limits: bool = True, pids_limit: int = -1) -> None:
    """Make `--launcher podman` available to scripts.local_runner.cli."""
    from scripts.local_runner import cli

    def factory(args):
        from scripts.image.launcher import PodmanLauncher
        return PodmanLauncher(cpu_limits=cpu_limits, pids_limit=pids_limit, keep_pod_dirs=args.keep_pod_dirs)

    cli.LAUNCHERS["podman"] = factory


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.image rehearse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter, add_help=False)
    p.add_argument("--image", default=DEFAULT_TAG, help="image to run (default: %(default)s)")
    p.add_argument("--no-cpu-limits", action="store_true",
                   help="do not apply the chart's CPU limits (--cpus) to the containers")
    p.add_argument("--pids-limit", type=int, default=-1,
                   help="per-container process/thread limit, like a cluster's podPidsLimit "
                   "(default: %(default)s, none: the kubelet's default)")
    p.add_argument("-h", "--help", action="store_true")
    args, rest = p.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.help:
        p.print_help()
        return 0
    register(cpu_limits=not args.no_cpu_limits, pids_limit=args.pids_limit)
    from scripts.local_runner import cli
    repo, tag = split_image(args.image)
    return cli.main(["--set", f"image.repository={repo}", "--set", f"image.tag={tag}",
                     "--launcher", "podman", *rest])


if __name__ == "__main__":
    sys.exit(main())
