"""Run the Helm chart on one machine: its pods as local processes, its Jobs' semantics.

    python -m scripts.local_runner --help

Modules (each has its own docstring):
  cli.py              the command line
  render.py           `helm template` with the user's values over a local overlay
  manifest.py         a pod template + what its controller adds -> `Pod` (env, fieldRefs,
                      $(VAR) expansion, volumes backed by run-dir directories)
  controllers.py      Job (Indexed), JobSet, TFJob and Deployment semantics; podFailurePolicy
  launcher.py         the `Launcher`/`PodHandle` interface a pod runtime implements
  process_launcher.py the local-process launcher (network/mount/UTS namespaces, setpriv)
  podshim.py          runs inside a pod's mount namespace before the container's command
  netns.py            per-run network namespaces and their clean-up
  faults.py           --fault kill|stop|term|evict:worker=I|evaluator:step=N|after=T
  logs.py             per-pod log files, the merged terminal stream, facts from the library's lines
  runner.py           the loop tying them together; summary.json
  upgrade.py          --upgrade: the plan from the previous rendering to this one, as Helm applies it

A container launcher plugs in by implementing launcher.Launcher and adding a
factory to cli.LAUNCHERS; rendering, controllers, faults, logs and the summary
stay as they are.
"""
