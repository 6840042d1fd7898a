"""What each subcommand does: status, logs, wait (on the API) and check (the helm test hook).

Each takes the parsed arguments and, for testing, where to print and how to
sleep and tell the time; each returns the exit code (mnistctl/cli.py).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING

from mnistctl.exit_codes import EXIT_TIMEOUT, OpsError
from mnistctl.model_dir import ModelDirState, read_model_dir
from mnistctl.objects import iso, pod_info
from mnistctl.release import selector
from mnistctl.status import collect, render, verdict
from model.errors import EXIT_CONFIG_ERROR, EXIT_FAILURE, EXIT_OK

if TYPE_CHECKING:
    from mnistctl.kube import KubeApi


def cmd_status(api: KubeApi, args, out: Callable[[str], None] = print) -> int:
    status = collect(api, args.namespace, args.release, chart=args.chart_name,
                     model_dir=args.model_dir)
    if args.output == "json":
        payload = dataclasses.asdict(status)
        payload["verdict"] = dataclasses.asdict(verdict(status))
        out(json.dumps(payload, indent=2, sort_keys=True))
    else:
        out(render(status))
    return EXIT_OK if verdict(status).found else EXIT_CONFIG_ERROR


def _pick_pod(pods: list, component: str, index: int | None):
    """The newest pod of a component (and worker index), preferring one that runs."""
    candidates = [p for p in pods if pod_info(p).component == component
                  and (index is None or pod_info(p).index == index)]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (pod_info(p).state != "pending",
                                          iso(p.metadata.creation_timestamp) or ""))


def cmd_logs(api: KubeApi, args, out: Callable[[str], None] = print, max_pods: int = 100) -> int:
    component = "trainer" if args.worker is not None else args.component
    base = selector(args.release, args.chart_name, component)
    seen: set[str] = set()
    for _ in range(max_pods):
        pod = _pick_pod(api.pods(args.namespace, base), component, args.worker)
        if pod is None:
            if seen:
                return EXIT_OK
            what = f"worker {args.worker}" if args.worker is not None else component
            raise OpsError(f"no {what} pod of release {args.release!r} in namespace {args.namespace!r}")
        name = pod.metadata.name
        if name in seen:
            return EXIT_OK  # no newer pod took over
        if seen:
            out(f"--- following the replacement pod {name}")
        seen.add(name)
        if pod_info(pod).state == "pending" and args.follow:
            out(f"--- {name} has not started yet; waiting")
            while pod_info(pod).state == "pending":
                time.sleep(2)
                pod = next((p for p in api.pods(args.namespace, base) if p.metadata.name == name), None)
                if pod is None:
                    break
            if pod is None:
                continue
        for line in api.stream_log(args.namespace, name, api.pod_container(args.namespace, pod),
                                   follow=args.follow, tail_lines=args.tail):
            out(line)
        if not args.follow:
            return EXIT_OK
        time.sleep(1)  # a failed pod's replacement appears within seconds
    return EXIT_OK


def cmd_wait(api: KubeApi, args, out: Callable[[str], None] = print,
             err: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
             sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> int:
    start = clock()
    last = None
    while True:
        status = collect(api, args.namespace, args.release, chart=args.chart_name, read_logs=False)
        v = verdict(status)
        if v.failed or v.done:  # read the logs once, for the accuracy or the error line
            status = collect(api, args.namespace, args.release, chart=args.chart_name)
            v = verdict(status)
        line = v.reason + "".join(f" | {p.name}: {p.summary()}" for p in status.trainer_pods
                                  if p.state != "running")
        if line != last:
            out(f"wait | {line}")
            last = line
        if v.failed:
            err(f"error: {v.reason}")
            return EXIT_FAILURE
        if v.done:
            return EXIT_OK
        if not v.found and clock() - start >= args.not_found_grace_secs:
            err(f"error: {v.reason}")
            return EXIT_CONFIG_ERROR
        if args.timeout_secs is not None and clock() - start >= args.timeout_secs:
            err(f"error: timed out after {args.timeout_secs:g} s: {v.reason}")
            return EXIT_TIMEOUT
        sleep(args.interval_secs)


def _tensorboard_answers(url: str, timeout: float = 5.0) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our service
            body = response.read(1 << 16)
            return response.status == 200, f"HTTP {response.status}, {len(body)} bytes"
    except urllib.error.HTTPError as e:
        return False, f"HTTP {e.code}"
    except (urllib.error.URLError, OSError) as e:
        return False, str(getattr(e, "reason", e))


def cmd_check(args, out: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep,
              clock: Callable[[], float] = time.monotonic) -> int:
    """The `helm test` hook (see the module docstring)."""
    deadline = clock() + args.timeout_secs
    tb_ok = args.tensorboard_url is None
    tb_detail = "not checked"
    state = ModelDirState(False, [], None)
    while True:
        if not tb_ok:
            tb_ok, tb_detail = _tensorboard_answers(args.tensorboard_url)
        state = read_model_dir(args.model_dir)
        if (tb_ok and state.checkpoints) or clock() >= deadline:
            break
        if tb_ok and not state.started and args.skip_if_not_started:
            break
        sleep(args.interval_secs)
    failed = False
    if args.tensorboard_url is None:
        out("skip | TensorBoard: not checked")
    elif tb_ok:
        out(f"ok   | TensorBoard answers at {args.tensorboard_url} ({tb_detail})")
    else:
        out(f"FAIL | TensorBoard at {args.tensorboard_url} did not answer within "
            f"{args.timeout_secs:g} s (last: {tb_detail})")
        failed = True
    if state.checkpoints:
        newest = state.checkpoints[-1]
        out(f"ok   | {args.model_dir} has {len(state.checkpoints)} checkpoint(s), newest at step {newest}"
            + (f"; training complete at step {state.final_step}" if state.final_step is not None else ""))
    elif not state.started:
        out(f"skip | training has not started ({args.model_dir} has no run_config.json): "
            "no checkpoint expected yet")
    else:
        out(f"FAIL | training has started but {args.model_dir} has no checkpoint after "
            f"{args.timeout_secs:g} s (the first is saved at the first --save-checkpoints-steps "
            "boundary; run `helm test` again later, or with a longer tests.timeoutSecs)")
        failed = True
    return EXIT_FAILURE if failed else EXIT_OK
