"""Start scripts/gcs_endpoint.py's Cloud Storage endpoint for a test, or say why it cannot run here."""

from __future__ import annotations

from scripts.gcs_endpoint import Endpoint, EndpointError, fake_gcs_server_binary
from scripts.local_runner import userns
from tests.requirements import unavailable


def start_endpoint() -> Endpoint:
    """The endpoint (fake-gcs-server behind the TLS front, in a private namespace); skips (fails
    in CI) when user namespaces or the emulator are missing."""
    reason = userns.unavailable_reason()
    if reason:
        unavailable(f"the Cloud Storage endpoint needs a private namespace: {reason}")
    try:
        fake_gcs_server_binary()
    except (EndpointError, RuntimeError) as e:
        unavailable(str(e))
    return Endpoint("fake-gcs-server")
