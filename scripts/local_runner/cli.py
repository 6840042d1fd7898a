"""Command line of the local runner (`python -m scripts.local_runner --help`)."""

from __future__ import annotations

import argparse
import importlib
import re
import shutil
import sys
from pathlib import Path

from scripts.local_runner import faults as faults_mod
from scripts.local_runner import netns
from scripts.local_runner import upgrade as upgrade_mod
from scripts.local_runner.launcher import LauncherError
from scripts.local_runner.logs import Terminal
from scripts.local_runner.reporting import ProjectReport
from scripts.local_runner.render import (CHART_DIR, DEFAULT_NAMESPACE, DEFAULT_RELEASE, REPO_ROOT,
                                         RenderError, load_manifest, render)
from scripts.local_runner.runner import EXIT_SETUP, RunError, Runner, RunOptions, lock_run_dir


def _process_launcher(args):
    from scripts.local_runner.process_launcher import ProcessLauncher
    return ProcessLauncher(keep_pod_dirs=args.keep_pod_dirs, local_gcs=args.local_gcs,
                           helm_test=args.helm_test)


# name -> factory(args) returning a launcher.Launcher. Any other launcher is named by
# "package.module:factory" (e.g. a podman one); the factory gets the parsed arguments.
LAUNCHERS = {"process": _process_launcher}


def make_launcher(spec: str, args):
    if spec in LAUNCHERS:
        return LAUNCHERS[spec](args)
    module_name, sep, attr = spec.partition(":")
    if not sep:
        raise LauncherError(f"--launcher {spec!r}: not one of {sorted(LAUNCHERS)} nor 'module:factory'")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise LauncherError(f"--launcher {spec!r}: {e}") from e
    return factory(args)

DESCRIPTION = """\
Run the mnist-train Helm chart on this machine, without a cluster.

The chart is rendered with `helm template` (your -f/--set values over a small
local overlay) and every pod it defines runs as local processes: the trainer's
workers (Indexed Job; JobSet and TFJob renderings too), the evaluator Job and
the TensorBoard Deployment, each with the container's command, args and env
from the rendered manifest (fieldRef/valueFrom resolved as Kubernetes would),
the PVC as a directory of the run dir, /tmp as a private per-pod directory.
Every worker gets its own network namespace where the headless Service's DNS
names resolve to private addresses that exist only in this run's namespaces;
TensorBoard listens on 127.0.0.1 only. The Jobs' failure semantics are the
rendered ones: backoffLimitPerIndex, podFailurePolicy (exit 42 ignored, exit 2
fails the Job at once), activeDeadlineSeconds, the evaluator's completion.
Needs root (network and mount namespaces), iproute2 and util-linux.
"""

EPILOG = f"""\
fault injection (--fault, repeatable):
{faults_mod.__doc__.split(chr(10), 2)[2].rstrip()}

run directory (--run-dir, default runs/<release>):
  rendered.yaml       the manifest that ran
  logs/<pod>.log      each pod's output, as `kubectl logs <pod>` shows it
                      (a replacement pod is a new pod: <job>-<index>-<n>)
  volumes/<claim>/    the PersistentVolumeClaim (model dir: volumes/<claim>/<release>)
  summary.json        jobs, pods, exit codes, restarts, faults, accuracies, the upgrade plan
  rendered.previous.yaml  after --upgrade: the rendering it replaced (a rollback target)
  (a run dir holding a previous run's volumes needs --fresh, --resume or --upgrade)

upgrades (--upgrade; `helm upgrade` of the release the run dir holds):
  The new rendering is applied to what the previous run left, object by object,
  as Helm and the API server would: an object only in the old rendering is
  deleted (helm.sh/resource-policy: keep objects stay); an object in both is
  updated in place (a Job, JobSet or TFJob that had finished stays finished and
  runs nothing; one stopped by Ctrl-C or --timeout runs on, with the new spec);
  an object only in the new rendering, or in both but gone (a finished Job past
  its ttlSecondsAfterFinished), is created and runs. An update that changes an
  immutable field (a Job's spec.template, podFailurePolicy, backoffLimitPerIndex,
  completions...; a JobSet's replicatedJobs, failurePolicy, successPolicy) is
  refused as the API server refuses it: exit 2 and nothing changes (Helm would
  have created the new objects before failing the release). The volumes
  (the PVC) are kept. The plan is printed (`upgrade | create Job/...`) and kept in
  summary.json. The previous runner must have ended: its pods got SIGTERM then,
  as a deleted Job's pods do. `--upgrade --manifest <run-dir>/rendered.previous.yaml`
  rolls back. --resume without --upgrade is a reinstall instead: every Job of the
  rendering runs, over the kept volumes.

what is reproduced, and what is not:
  containers  command/args/env of the rendered container ($(VAR) expanded; fieldRef,
              resourceFieldRef, and Secret/ConfigMap refs of rendered objects resolved;
              an unresolvable reference is an error); the repository's virtualenv stands
              in for the image (its ENV as the Dockerfile sets it, working dir = repo root)
  network     workers: one network namespace each, reachable from each other under the
              headless Service's names (<host>.<subdomain>[.<ns>.svc.cluster.local]) at
              private addresses that exist only in this run's namespaces; evaluator and
              TensorBoard: the host's network, TensorBoard on 127.0.0.1:<free port>
  volumes     PVC -> <run-dir>/volumes/<claim>/<subPath>, readOnly enforced (read-only
              bind mounts); emptyDir -> a per-pod directory (mounted over /tmp when the
              run dir is outside /tmp, else passed as TMPDIR); container paths in args
              and env are translated to those host paths
  security    readOnlyRootFilesystem, no capabilities, no new privileges, own host
              name; runAsUser is not applied (the processes keep your uid)
  Jobs        backoffLimitPerIndex / backoffLimit, maxFailedIndexes, podFailurePolicy
              rules in order, activeDeadlineSeconds, podReplacementPolicy Failed,
              back-off before a counted retry (10 s doubling; --restart-backoff);
              JobSet (v0.12.0): failurePolicy rules (FailJobSet, RestartJobSet[AndIgnore-
              MaxRestarts]) and maxRestarts (the whole set recreated), successPolicy;
              TFJob (training-operator v1.9.0, Chief/Worker): the operator's TF_CONFIG,
              restartPolicy, backoffLimit, activeDeadlineSeconds, successPolicy
  a failed worker   the group cannot go on without it: under the Indexed Job each
              index fails and is replaced on its own (the survivors' collectives fail
              and they exit 1, counted), and the new group resumes from the last
              checkpoint; a preemption (every worker exits 42) is replaced uncounted. A
              worker frozen for good blocks the new group at start-up, as it would in a
              cluster (no liveness probe), until activeDeadlineSeconds or Ctrl-C.
  the run     ends when every Job is done; a failed Job stops the Jobs that read
              (mount read-only) a volume directory it writes: the evaluator would wait
              forever for a failed trainer; TensorBoard stops at the end (--keep-tensorboard)
  not done    liveness/startup probes (readiness gives TensorBoard's URL), NetworkPolicy,
              resource limits, scheduling, remote storage other than gs:// (s3:// ...), and
              gs:// without --local-gcs (the pods cannot reach the real Cloud Storage)

Cloud Storage (--local-gcs, with --set storage.type=gcs --set storage.gcs.uri=gs://BUCKET/PREFIX
--set storage.gcs.workloadIdentity.enabled=true):
  fake-gcs-server runs on 127.0.0.1 (in memory) behind a TLS front that every pod reaches at
  https://www.googleapis.com and https://storage.googleapis.com (127.0.0.1:443 of its own network
  namespace, its /etc/hosts, CURL_CA_BUNDLE, GOOGLE_AUTH_TOKEN_FOR_TESTING, STORAGE_EMULATOR_HOST):
  TensorFlow's own gs:// filesystem and google-cloud-storage, unmodified. The evaluator, TensorBoard
  and the helm test hook share one private namespace (TensorBoard still on 127.0.0.1:<free port>).
  The buckets the URLs name are created at the start and copied to <run-dir>/gcs/<bucket>/ at the end.

helm test (--helm-test): the chart's test hook Job runs once every other Job has completed, as
`helm install --wait --wait-for-jobs && helm test` would; it reaches TensorBoard by its Service's
name. A failed hook fails the run (exit 1).

exit codes: 0 every Job complete; 1 a Job failed (the summary says which and
why); 2 the chart or machine cannot be run; 124 --timeout; 130 Ctrl-C.

examples:
  python -m scripts.local_runner --fresh --set training.model=mlp --set training.maxSteps=2000
  python -m scripts.local_runner --fresh --set training.maxSteps=1500 --show evaluator
  python -m scripts.local_runner --fresh --set training.model=mlp --fault kill:worker=1:step=400 \\
      --restart-backoff 2
  python -m scripts.local_runner --fresh --set trainer.launcher=jobset
  python -m scripts.local_runner --fresh --set training.model=mlp --set training.maxSteps=1000
  python -m scripts.local_runner --upgrade --set training.model=mlp --set training.maxSteps=2000
  python -m scripts.local_runner --fresh --local-gcs --helm-test --set training.model=mlp \\
      --set storage.type=gcs --set storage.gcs.uri=gs://my-bucket/mnist \\
      --set storage.gcs.workloadIdentity.enabled=true
  python -m scripts.local_runner cleanup       # network namespaces left by a killed runner
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.local_runner", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    chart = p.add_argument_group("what to run")
    chart.add_argument("-f", "--values", action="append", default=[], metavar="FILE",
                       help="a values file for helm template (repeatable)")
    chart.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="a value for helm template, e.g. training.maxSteps=1500 (repeatable)")
    chart.add_argument("--set-string", action="append", default=[], metavar="KEY=VALUE",
                       help="a string value for helm template (repeatable)")
    chart.add_argument("--release", default=DEFAULT_RELEASE, help="release name (default: %(default)s)")
    chart.add_argument("--namespace", default=DEFAULT_NAMESPACE,
                       help="namespace rendered into the manifests and DNS names (default: %(default)s)")
    chart.add_argument("--chart", default=str(CHART_DIR), help="chart directory (default: the repository's)")
    chart.add_argument("--manifest", metavar="PATH",
                       help="run this already-rendered manifest (a YAML file or a directory of them, "
                       "e.g. k8s/) instead of rendering the chart")
    chart.add_argument("--helm", help="helm binary (default: env HELM, .tools/bin/helm, PATH)")

    run = p.add_argument_group("the run")
    run.add_argument("--run-dir", help="where volumes, logs and the summary go (default: runs/<release>)")
    fresh = run.add_mutually_exclusive_group()
    fresh.add_argument("--fresh", action="store_true",
                       help="delete a previous run's directory first (its checkpoints too)")
    fresh.add_argument("--resume", action="store_true",
                       help="keep a previous run's volumes, like a retained PVC: training resumes from "
                       "its last checkpoint")
    run.add_argument("--upgrade", action="store_true",
                     help="apply this rendering to the previous run in the run dir as `helm upgrade` "
                     "would (see 'upgrades' below); keeps the volumes")
    run.add_argument("--launcher", default="process", metavar="NAME|MODULE:FACTORY",
                     help="how pods run: 'process' (default: local processes in namespaces) or "
                     "a launcher.Launcher factory such as a container launcher, 'package.module:factory', "
                     "called with the parsed arguments")
    run.add_argument("--fault", action="append", default=[], metavar="SPEC",
                     help="inject a fault, e.g. kill:worker=1:step=300 (see below; repeatable)")
    run.add_argument("--restart-backoff", type=float, default=10.0, metavar="SECS",
                     help="delay before replacing a pod after its first counted failure, doubling "
                     "with each further one (Kubernetes: 10; default: %(default)s)")
    run.add_argument("--shutdown-grace", type=float, default=30.0, metavar="SECS",
                     help="when the run ends or on Ctrl-C, wait at most this long (or the pod's "
                     "terminationGracePeriodSeconds, if shorter) after SIGTERM before SIGKILL "
                     "(default: %(default)s)")
    run.add_argument("--timeout", type=float, metavar="SECS",
                     help="stop everything after this long (exit 124); default: no limit")
    run.add_argument("--keep-tensorboard", "--keep-serving", dest="keep_tensorboard", action="store_true",
                     help="when every Job is done, keep the Deployments (TensorBoard) serving until Ctrl-C")
    run.add_argument("--local-gcs", action="store_true",
                     help="serve the pods' gs:// buckets (storage.type=gcs) from a local Cloud Storage "
                     "emulator, fake-gcs-server (see 'Cloud Storage' below); without it such pods are "
                     "refused")
    run.add_argument("--helm-test", action="store_true",
                     help="also run the chart's `helm test` hook Job once the release's Jobs are done "
                     "(its result is part of the run's exit code)")
    run.add_argument("--keep-pod-dirs", action="store_true",
                     help="keep each finished pod's emptyDir directories (default: deleted, as the "
                     "kubelet does)")

    out = p.add_argument_group("output")
    out.add_argument("--show", default="all", metavar="COMPONENTS",
                     help="whose output to echo on the terminal: all, none, or a comma list of "
                     "trainer,evaluator,tensorboard (the log files always get everything; default: all)")
    out.add_argument("--match", metavar="REGEX",
                     help="echo only the pod lines matching REGEX (e.g. '^After ' for the evaluator's "
                     "accuracy lines)")
    out.add_argument("--quiet-tf", action="store_true",
                     help="hide TensorFlow's C++ start-up chatter on the terminal")
    out.add_argument("--progress-every", type=float, default=15.0, metavar="SECS",
                     help="print a progress line this often (0: never; default: %(default)s)")
    return p


def build_cleanup_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m scripts.local_runner cleanup",
        description="Delete the network namespaces (mlr-<pid>-...) of local runners that no longer run, "
        "e.g. after a SIGKILL. A running runner's namespaces are left alone unless named with --run-id.")
    p.add_argument("--run-id", help="delete this run's namespaces even if its runner is alive")
    return p


def _run_dir(args) -> Path:
    run_dir = Path(args.run_dir) if args.run_dir else REPO_ROOT / "runs" / args.release
    run_dir = run_dir.resolve()
    has_volumes = (run_dir / "volumes").is_dir() and any((run_dir / "volumes").iterdir())
    if args.fresh and run_dir.exists():
        looks_like_run = any((run_dir / n).exists() for n in ("rendered.yaml", "summary.json", ".lock"))
        if any(run_dir.iterdir()) and not looks_like_run:
            raise RunError(f"--fresh: {run_dir} is not a local runner's run directory; not deleting it")
        shutil.rmtree(run_dir)
    elif has_volumes and not (args.resume or args.upgrade):
        raise RunError(f"{run_dir} holds a previous run's volumes (checkpoints): pass --fresh to delete "
                       "them or --resume to continue from them (like a retained PVC)")
    return run_dir


def _upgrade_plan(run_dir: Path, rendering) -> upgrade_mod.UpgradePlan:
    """The plan from the run dir's previous rendering to this one; RunError if it cannot be applied."""
    old_path = run_dir / "rendered.yaml"
    if not old_path.is_file():
        raise RunError(f"--upgrade: {run_dir} holds no previous run (no rendered.yaml); run without "
                       "--upgrade first (an install)")
    lock_run_dir(run_dir).close()  # the previous runner must have ended
    try:
        old = load_manifest(old_path, rendering.release, rendering.namespace)
    except RenderError as e:
        raise RunError(f"--upgrade: the previous rendering {old_path} is unreadable: {e}") from e
    if old.namespace != rendering.namespace:
        raise RunError(f"--upgrade: the previous run is in namespace {old.namespace!r}, this rendering in "
                       f"{rendering.namespace!r}: that is another release (pass --namespace {old.namespace})")
    live, gone = upgrade_mod.existing_objects(old.docs, upgrade_mod.read_previous_summary(run_dir))
    plan = upgrade_mod.plan_upgrade(old.docs, rendering.docs, live, gone)
    if plan.refusals:
        raise RunError("--upgrade refused, nothing was changed: " + "; ".join(plan.refusals)
                       + ". An object whose immutable fields change must be deleted and re-created "
                       "(e.g. under a new name)")
    return plan


def _show(text: str) -> set[str] | None:
    if text == "all":
        return None
    if text == "none":
        return set()
    return {t.strip() for t in text.split(",") if t.strip()}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["cleanup"]:
        args = build_cleanup_parser().parse_args(argv[1:])
        deleted = netns.delete_run(args.run_id) if args.run_id else netns.cleanup_stale()
        print(f"deleted {len(deleted)} namespace(s){': ' + ' '.join(deleted) if deleted else ''}")
        return 0
    if argv[:1] == ["run"]:
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    try:
        terminal = Terminal(_show(args.show), args.quiet_tf, match=args.match)
    except re.error as e:
        print(f"error: --match {args.match!r}: {e}", file=sys.stderr)
        return EXIT_SETUP
    try:
        faults = [faults_mod.parse_fault(spec) for spec in args.fault]
        launcher = make_launcher(args.launcher, args)
        if hasattr(launcher, "check"):
            launcher.check()
        stale = netns.cleanup_stale() if args.launcher == "process" else []
        if stale:
            terminal.runner_line(f"deleted {len(stale)} network namespace(s) left by a dead runner")
        if args.upgrade and args.fresh:
            raise RunError("--upgrade applies a rendering to the previous run; --fresh deletes it: pick one")
        if args.manifest and (args.values or args.set or args.set_string):
            raise RunError("-f/--set/--set-string configure `helm template`; a --manifest is already "
                           "rendered: edit it, or render the chart instead")
        run_dir = _run_dir(args)
        if args.manifest:
            rendering = load_manifest(Path(args.manifest), args.release, args.namespace)
        else:
            rendering = render(chart=Path(args.chart), release=args.release, namespace=args.namespace,
                               values_files=args.values, set_values=args.set,
                               set_string_values=args.set_string, overlay_path=run_dir / "values-local.yaml",
                               helm=args.helm, skip_tests=not args.helm_test)
        plan = _upgrade_plan(run_dir, rendering) if args.upgrade else None
    except (faults_mod.FaultSpecError, LauncherError, RenderError, RunError) as e:
        terminal.runner_line(f"error: {e}")
        return EXIT_SETUP
    options = RunOptions(run_dir=run_dir, restart_backoff=args.restart_backoff,
                         shutdown_grace=args.shutdown_grace, keep_serving=args.keep_tensorboard,
                         progress_every=args.progress_every, timeout=args.timeout, faults=faults,
                         helm_test=args.helm_test)
    return Runner(rendering, launcher, options, terminal, ProjectReport(), upgrade=plan).run()
