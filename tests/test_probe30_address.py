"""`gatelab study --address HOST:PORT` where something listens that is not Ray: refused at once
with one line. Ray itself would dial this machine's external address and wait for minutes (a
plain TCP connect used to be all the probe checked). Every listener here is on 127.0.0.1 and
closed by the test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from gatelab.study.ray_setup import probe_address
from gatelab.study.space import StudyError

# What a listener does with a connection: say nothing, answer HTTP/1, close, send garbage,
# or open HTTP/2 with a SETTINGS frame (as gRPC servers such as Ray's GCS do).
ANSWERS = {
    "silent": None,
    "http1": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
    "closes": b"",
    "ssh-banner": b"SSH-2.0-OpenSSH_9.6\r\n",
    "short": b"\x00\x00",
    "data-frame": b"\x00\x00\x00\x00\x00\x00\x00\x00\x01",
    "http2": b"\x00\x00\x00\x04\x00\x00\x00\x00\x00",
}


@contextmanager
def _listener(answer: bytes | None) -> Iterator[int]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.2)
    stop = threading.Event()
    held = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            held.append(conn)
            if answer is not None:
                conn.sendall(answer)
                if answer != ANSWERS["http2"]:
                    conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        srv.close()


@pytest.mark.parametrize("kind", [k for k in ANSWERS if k != "http2"])
@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_a_listener_that_is_not_ray_is_refused_at_once(kind, scheme):
    with _listener(ANSWERS[kind]) as port:
        t0 = time.monotonic()
        with pytest.raises(StudyError) as e:
            probe_address(f"{scheme}127.0.0.1:{port}", timeout=1)
        assert time.monotonic() - t0 < 10  # the probe's own timeout, not Ray's retries
    msg = str(e.value)
    assert "\n" not in msg and ("not a Ray cluster" in msg or "no Ray cluster answers" in msg)


def test_a_grpc_server_passes_the_probe():
    """The probe must not refuse what Ray's GCS is: an HTTP/2 server opening with SETTINGS."""
    with _listener(ANSWERS["http2"]) as port:
        probe_address(f"127.0.0.1:{port}", timeout=3)


def test_a_real_grpc_server_passes_the_probe():
    """grpcio's server (the gRPC core Ray's GCS is built on) answers the probe's preface."""
    grpc = pytest.importorskip("grpc")
    from concurrent import futures

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        probe_address(f"127.0.0.1:{port}", timeout=5)
        probe_address(f"ray://127.0.0.1:{port}", timeout=5)
    finally:
        server.stop(0)
