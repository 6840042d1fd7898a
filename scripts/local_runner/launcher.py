"""The launcher interface: how a resolved pod becomes something running.

The runner (rendering, Job semantics, faults, logs, summary) never starts a
process itself; it asks a `Launcher`. `ProcessLauncher`
(process_launcher.py) runs each pod as local processes in Linux namespaces;
a container launcher (podman) implements the same three calls:

    launcher.setup(slots)            # once: networks for the pods that need one
    handle = launcher.start(pod, log_path)
    launcher.teardown()              # once, idempotent, also after a crash

and returns `PodHandle`s the runner polls and signals. A launcher receives
the pod exactly as the manifest says (`manifest.Pod`: command, args, env
with `fieldRef`s resolved, volume mounts with their local backing
directories, security context, ports); adapting it to the execution
environment (path translation, listening address, ...) is the launcher's
business and nothing else needs to know about it.

Contract, as the runner relies on it:
- setup() gets every network slot up front (a worker's host name and the
  DNS names that must resolve to it from every cluster-network pod) and
  returns them with `address` filled in where known (it becomes the pod's
  status.podIP; "" means unknown). A slot hosts one pod at a time: the
  runner starts a replacement only after the previous pod has exited.
- start() must not block for long; output goes to `log_path`, appended,
  stdout and stderr merged (a replacement pod gets a new file).
- PodHandle.poll() reports the container's exit code, 128+N for a signal.
  send_signal() must reach the container's main process: SIGTERM and SIGKILL
  for deletion, SIGSTOP/SIGCONT/SIGTERM/SIGKILL for faults.
- endpoints() maps containerPorts the runner can reach (TensorBoard's URL
  and readiness probe); return {} for ports it cannot reach.
- teardown() is called exactly once per run from a finally block, after
  every pod has exited (or been killed); it must also cope with a failed or
  partial setup(). A launcher that can leave state behind after a SIGKILL
  of the runner must let a later run find and remove it (netns.cleanup_stale
  does so for the process launcher).

Plug in either programmatically:

    rendering = render.render(set_values=[...], overlay_path=run_dir / "values-local.yaml")
    code = runner.Runner(rendering, MyLauncher(), runner.RunOptions(run_dir=run_dir, faults=[...]),
                         logs.Terminal(show=None, quiet_tf=True), reporting.ProjectReport()).run()

or from the command line: `python -m scripts.local_runner --launcher package.module:factory`,
where factory(parsed_args) returns the Launcher (an optional `check()` method
is called first and may raise LauncherError with what is missing).
"""

from __future__ import annotations

import abc
import dataclasses
import signal
from pathlib import Path

from scripts.local_runner.manifest import NetworkSlot, Pod


class LauncherError(Exception):
    """The launcher cannot run pods here (missing privilege or tool); the message says why."""


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where a pod's container port can be reached from the runner's host."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"


class PodHandle(abc.ABC):
    """One running container of one pod."""

    pod: Pod
    log_path: Path

    @abc.abstractmethod
    def poll(self) -> int | None:
        """None while running, else the container's exit code (128+N when killed by signal N)."""

    @abc.abstractmethod
    def send_signal(self, sig: int) -> None:
        """Deliver `sig` to the container's processes (no-op once it has exited)."""

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    @abc.abstractmethod
    def endpoints(self) -> dict[int, Endpoint]:
        """containerPort -> where the runner reaches it (for probes and URLs)."""

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Host process ids belonging to this pod (for orphan checks); [] if not applicable."""

    def release(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Free per-container resources after exit (called once, after poll() returned a code)."""


class Launcher(abc.ABC):
    """Runs pods. Implementations: ProcessLauncher; issue 5 adds a podman one."""

    name = "abstract"

    @abc.abstractmethod
    def setup(self, run_id: str, run_dir: Path, slots: list[NetworkSlot], namespace: str
              ) -> list[NetworkSlot]:
        """Prepare the pod network and return the slots with their addresses:
        every slot's DNS names must resolve to it from every cluster-network pod.
        `run_id` names what is created (so teardown and stale clean-up find it)."""

    @abc.abstractmethod
    def start(self, pod: Pod, log_path: Path) -> PodHandle:
        """Start the pod's container; stdout and stderr go to `log_path` (appended)."""

    @abc.abstractmethod
    def teardown(self) -> None:
        """Remove everything setup() made. Idempotent; safe after partial setup."""

    def describe_network(self) -> list[str]:
        """Human-readable lines about the network, printed at start-up."""
        return []

    def accept_rendering(self, remote_urls: list[str], services: list[str]) -> None:
        """Called once before setup() with the remote-store URLs (gs://, s3://, ...) the pods are
        given and the rendering's Service names. Raise LauncherError if the pods could not reach
        those stores. This default refuses any: its pods reach no network beyond their own."""
        if remote_urls:
            raise LauncherError(f"the pods are given remote storage ({', '.join(sorted(set(remote_urls)))}), "
                                f"but the {self.name} launcher's pods reach no network beyond their own; "
                                "give them a PersistentVolumeClaim instead (this chart: storage.type=pvc)")

    def end_lines(self) -> list[str]:
        """Lines about what teardown() kept (printed after it)."""
        return []

    def local_copy(self, url: str) -> Path | None:
        """Where the objects under a remote URL were copied at teardown, or None."""
        return None


def optional(launcher, method: str):
    """A launcher's optional method, or Launcher's default when a duck-typed launcher lacks it."""
    found = getattr(launcher, method, None)
    return found if found is not None else getattr(Launcher, method).__get__(launcher)
