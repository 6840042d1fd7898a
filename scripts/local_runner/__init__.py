"""Run the Helm chart on one machine: its pods as local processes, its Jobs' semantics.

    python -m scripts.local_runner --help

Modules (each has its own docstring). The engine knows Kubernetes, not this chart:
  runner.py           the engine's loop: workloads, pods, faults, readiness, consumers of a
                      failed Job, shutdown; calls a Report for what the run means
  controllers/        one module per kind: job.py (Indexed or not; podFailurePolicy),
                      jobset.py (v0.12.0), tfjob.py (training-operator v1.9.0), deployment.py;
                      base.py the typed PodRecord, the Workload base class, DNS names
  manifest.py         a pod template + what its controller adds -> `Pod` (env, fieldRefs,
                      $(VAR) expansion, volumes backed by run-dir directories); what a template
                      reads and writes
  launcher.py         the `Launcher`/`PodHandle` interface a pod runtime implements
  process_launcher.py the local-process launcher (network/mount/UTS namespaces, setpriv)
  podshim.py          runs inside a pod's mount namespace before the container's command
  netns.py            per-run network namespaces and their clean-up
  userns.py           as a normal user: the user + mount namespace holding them (rootless
                      mode), or which sysctl forbids unprivileged user namespaces
  upgrade.py          --upgrade: the plan from the previous rendering to this one, as Helm applies it
  logs.py             per-pod log files followed as they grow, the merged terminal stream
What this project's run means (knows the library's log lines and the chart's components):
  reporting.py        facts from the pods' lines (model/log_lines.py), progress, summary(.json)
  faults.py           --fault kill|stop|term|evict:worker=I|evaluator:step=N|after=T
Front end:
  cli.py              the command line
  render.py           `helm template` with the user's values over a local overlay

A container launcher plugs in by implementing launcher.Launcher and adding a
factory to cli.LAUNCHERS; rendering, controllers, faults, logs and the report
stay as they are.
"""
