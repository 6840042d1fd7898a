"""A port of a pod in a private network namespace, reachable on the runner's 127.0.0.1.

The pods of the shared namespace (cloud_storage.py: the evaluator, TensorBoard, the `helm
test` hook) listen on their chart ports there, where the runner cannot connect. A relay is
a small process *inside* that namespace given a socket listening on the runner's
127.0.0.1:<free port> (a socket keeps the namespace it was made in): it accepts there and
connects, for each connection, to 127.0.0.1:<port> of its own namespace. Nothing is added
to either namespace's network. It exits when its stdin (a pipe from the runner) closes,
i.e. when the runner stops it or dies.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Sequence

from scripts.local_runner import userns

# argv: the listening socket's fd, the port to connect to in this namespace.
RELAY_SCRIPT = r"""
import os, socket, sys, threading
listening = socket.socket(fileno=int(sys.argv[1]))
port = int(sys.argv[2])

def pump(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

def serve(client):
    try:
        upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        upstream.settimeout(None)
    except OSError:
        client.close()
        return
    threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
    pump(client, upstream)

def accept():
    while True:
        client, _ = listening.accept()
        threading.Thread(target=serve, args=(client,), daemon=True).start()

threading.Thread(target=accept, daemon=True).start()
sys.stdin.read()  # until the runner closes the pipe
os._exit(0)
"""


class Relay:
    """127.0.0.1:<host_port> on the runner's side -> 127.0.0.1:<port> in the namespace `prefix` enters."""

    def __init__(self, prefix: Sequence[str], port: int) -> None:
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listening.bind(("127.0.0.1", 0))
        listening.listen(64)
        self.port = port
        self.host_port = listening.getsockname()[1]
        with listening:
            self.popen = subprocess.Popen(
                [*prefix, sys.executable, "-I", "-c", RELAY_SCRIPT, str(listening.fileno()), str(port)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=(listening.fileno(),),
                start_new_session=True)  # a Ctrl-C on the terminal is the runner's to handle

    def stop(self) -> None:
        userns.stop_holder(self.popen, timeout=5)  # it lives until its stdin closes, as a holder
