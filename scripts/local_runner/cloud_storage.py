"""The chart's `storage.type=gcs` scenario, run against a local Cloud Storage emulator.

Opt-in twice: the chart's values give the pods `gs://` URLs (`--set storage.type=gcs
--set storage.gcs.uri=gs://BUCKET/PREFIX --set storage.gcs.workloadIdentity.enabled=true`),
and `--local-gcs` tells the runner to serve those buckets itself. Without the flag a pod
given a `gs://` URL is refused before anything starts (exit 2, `refusal()`): the runner's
pods reach no network beyond their own, so a user with real credentials could not reach the
real Cloud Storage from them, and must not be given an emulator silently instead.

What runs (scripts/gcs_endpoint.py's `CloudStorage`): fake-gcs-server on the runner's
loopback, in memory (its filesystem backend ignores ifGenerationMatch, which the lease
needs), and the TLS front with a self-signed certificate for www.googleapis.com,
storage.googleapis.com and metadata.google.internal. The buckets the pods' URLs name are
created at start (as a user creates the bucket before `helm install`) and copied to
`<run-dir>/gcs/<bucket>/` at the end, before the emulator stops, so the run's checkpoints,
summaries and goodput record can be read after it (the summary's goodput comes from there).

How the pods reach it. TensorFlow's `gs://` filesystem has no endpoint setting: it calls
https://www.googleapis.com and https://storage.googleapis.com. So each pod gets, besides
the chart's own environment, `CURL_CA_BUNDLE` (the certificate), `GOOGLE_AUTH_TOKEN_FOR_TESTING`
(TensorFlow asks no metadata server) and `STORAGE_EMULATOR_HOST=https://storage.googleapis.com`
(google-cloud-storage: the same front, anonymous), its /etc/hosts maps the three names to
127.0.0.1, and 127.0.0.1:443 in its network namespace is the front. The choice: the front
*listens inside each namespace* rather than in one namespace routed to from the others.
A listening socket is made in a namespace by a short-lived process and handed to the
runner (gcs_endpoint.bind_inside), where one front serves all of them and reaches the
emulator on the runner's own loopback. So no route, address or link is added anywhere
(the pods' bridge stays the only link between namespaces, as netns.py promises), every
pod sees Cloud Storage exactly where a GKE pod does (port 443 of the real names), and a
worker replaced after a failure finds it in its slot's namespace as before.

The workers have their namespaces already (netns.py). The pods without a network identity
(the evaluator, TensorBoard and the `helm test` hook) would share the host's, where
127.0.0.1:443 cannot be ours (rootless: a privileged port; as root: the machine's). They
get one private namespace together instead (netns.PodNetwork's shared namespace, also
used for --helm-test on a claim), loopback only, whose /etc/hosts also names the
rendering's Services (the hook reaches TensorBoard by its Service's name and port, as in
a cluster); the runner reaches their ports through relays (portrelay.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from scripts.gcs_endpoint import CloudStorage, EndpointError, hosts_lines

SCHEME = "gs://"
FLAG = "--local-gcs"
COPY_DIR = "gcs"  # <run-dir>/gcs/<bucket>/: the buckets' objects at the end of the run
_BUCKET = re.compile(r"^gs://([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(/|$)")


class CloudStorageError(Exception):
    """The local Cloud Storage endpoint cannot be started; the message says why."""


def buckets(urls: Iterable[str]) -> list[str]:
    """The buckets `gs://` URLs name (other URLs are ignored)."""
    return sorted({m.group(1) for u in urls if (m := _BUCKET.match(u))})


def refusal(urls: Sequence[str], local_gcs: bool) -> str | None:
    """Why pods given these remote-store URLs cannot run here, or None."""
    if not urls:
        return None
    others = sorted(u for u in urls if not u.startswith(SCHEME))
    if others:
        return (f"the pods are given remote storage the local runner cannot serve ({', '.join(others)}); "
                "its pods reach no network beyond their own: give them a PersistentVolumeClaim "
                "(this chart: storage.type=pvc)")
    if not local_gcs:
        return (f"the pods are given Cloud Storage URLs ({', '.join(sorted(set(urls)))}: this chart's "
                "storage.type=gcs), but the local runner's pods reach no network beyond their own, so "
                f"not the real Cloud Storage: pass {FLAG} to run them against a local Cloud Storage "
                "emulator (fake-gcs-server; its buckets are copied to <run-dir>/gcs/ at the end), or "
                "give them a PersistentVolumeClaim (storage.type=pvc)")
    return None


class LocalCloudStorage:
    """The emulator and front of one run; served into each pod namespace with serve_in()."""

    def __init__(self, workdir: Path, bucket_names: Sequence[str]) -> None:
        try:
            self.storage = CloudStorage("fake-gcs-server", workdir)
        except (EndpointError, RuntimeError, OSError) as e:
            raise CloudStorageError(f"{FLAG}: cannot start the local Cloud Storage emulator: {e}") from None
        self.buckets = list(bucket_names)
        try:
            for name in self.buckets:
                self.storage.create_bucket(name)
        except EndpointError as e:
            self.storage.close()
            raise CloudStorageError(f"{FLAG}: {e}") from None

    hosts_lines = staticmethod(hosts_lines)

    def env(self) -> dict[str, str]:
        """What each pod's environment gets (before the manifest's own entries)."""
        return self.storage.env(base={})

    def serve_in(self, prefix: Sequence[str]) -> None:
        try:
            self.storage.serve_in(prefix)
        except EndpointError as e:
            raise CloudStorageError(str(e)) from None

    def describe(self) -> list[str]:
        return [f"Cloud Storage: fake-gcs-server at {self.storage.direct_url} (STORAGE_EMULATOR_HOST "
                "for tools on this machine), served to every pod as https://storage.googleapis.com; "
                f"bucket(s) {', '.join(self.buckets)}"]

    def close(self, copy_to: Path | None) -> list[str]:
        """Copy the buckets to copy_to/<bucket>/ (if given), then stop; lines saying what was kept."""
        lines = []
        try:
            if copy_to is not None:
                for name in self.buckets:
                    count = self.storage.copy_bucket(name, copy_to / name)
                    lines.append(f"Cloud Storage: gs://{name} ({count} objects) copied to {copy_to / name}")
        except (EndpointError, OSError) as e:
            lines.append(f"warning: cannot copy the buckets to {copy_to}: {e}")
        finally:
            self.storage.close()
        return lines


def tensorboard_args(command: Sequence[str], args: list[str]) -> list[str]:
    """TensorBoard reading gs:// here must use TensorFlow's filesystem (`--load_fast=false`):
    its default fast loader (the Rust data server, TensorBoard 2.21) has a Cloud Storage client
    of its own, which wants gcloud's credentials or a metadata server's token and ignores
    GOOGLE_AUTH_TOKEN_FOR_TESTING (here it panics: "unable to initialize authentication
    manager", gcs/auth.rs). On GKE Workload Identity's metadata server gives it a token; that
    loader is the one part of the scenario not run here, and the pod's args say so."""
    if not command or Path(command[0]).name != "tensorboard":
        return args
    if any(a.startswith("--load_fast") for a in args):
        return args
    return [*args, "--load_fast=false"]


def local_copy(url: str, copy_dir: Path) -> Path | None:
    """Where a `gs://bucket/path` URL's objects were copied (copy_dir/bucket/path), if they were."""
    match = _BUCKET.match(url)
    if not match:
        return None
    path = copy_dir / match.group(1) / url[match.end():].strip("/")
    return path if path.exists() else None
