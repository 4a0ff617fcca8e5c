"""`gatelab serve` answers only requests addressed to itself (DNS rebinding), closes idle
connections, bounds the request head and streams files in chunks. Every server here listens on
127.0.0.1 and is shut down by the test; every client socket has a timeout."""

from __future__ import annotations

import socket
import threading
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gatelab.report.serve import CHUNK, MAX_HEAD_BYTES, MAX_REQUEST_LINE, make_server


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    (root / "index.html").write_text("<h1>hello</h1>")
    with open(root / "big.bin", "wb") as f:  # sparse: 64 MiB of zeros, no disk used
        f.truncate(64 << 20)
    srv = make_server(root, 0, idle_seconds=1.0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _raw(srv, request: bytes, read_body: bool = True) -> bytes:
    """Send ``request`` as is; the whole answer (the server closes after one request)."""
    with socket.create_connection(srv.server_address, timeout=10) as s:
        s.sendall(request)
        chunks = []
        while True:
            data = s.recv(1 << 16)
            if not data:
                break
            chunks.append(data)
            if not read_body and b"\r\n\r\n" in b"".join(chunks):
                break
    return b"".join(chunks)


def _get(srv, path: str = "/", host: str | None = "default", extra: str = "") -> bytes:
    port = srv.server_address[1]
    host = f"127.0.0.1:{port}" if host == "default" else host
    head = f"GET {path} HTTP/1.1\r\n" + (f"Host: {host}\r\n" if host is not None else "")
    return _raw(srv, (head + extra + "Connection: close\r\n\r\n").encode("latin-1"))


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}",
                                  "[::1]:{port}"])
def test_its_own_host_is_answered(served, host):
    answer = _get(served, "/", host.format(port=served.server_address[1]))
    assert _status(answer) == 200 and answer.endswith(b"<h1>hello</h1>")


@pytest.mark.parametrize("host", [None, "", "evil.example:{port}", "evil.example",
                                  "127.0.0.1", "localhost", "127.0.0.1:{other}",
                                  "127.0.0.2:{port}", "localhost.evil.example:{port}",
                                  "0.0.0.0:{port}", "127.0.0.1:{port}.evil.example"])
def test_any_other_host_gets_421(served, host):
    port = served.server_address[1]
    host = host if host is None else host.format(port=port, other=port + 1)
    answer = _get(served, "/index.html", host)
    assert _status(answer) == 421 and b"hello" not in answer


@settings(max_examples=50, deadline=None)
@given(st.text(st.characters(codec="latin-1", exclude_characters="\r\n\x00"), max_size=40))
def test_rebinding_names_never_reach_a_file(served, name):
    """A page on the web reaching the server through DNS rebinding sends its own name as
    ``Host``: only the three loopback spellings with the server's port are answered."""
    port = served.server_address[1]
    ok = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    answer = _get(served, "/index.html", name)
    if name.strip().lower() in ok:
        assert _status(answer) == 200
    else:
        assert _status(answer) in (400, 421) and b"hello" not in answer


def test_an_idle_connection_is_closed(served):
    """A client that connects and sends nothing is dropped after the idle timeout (1 s
    here); without one, the server thread would wait for it forever."""
    with socket.create_connection(served.server_address, timeout=15) as s:
        assert s.recv(1024) == b""  # closed by the server, well before the client's 15 s


def test_a_half_sent_request_is_dropped_too(served):
    with socket.create_connection(served.server_address, timeout=15) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # no blank line: never finished
        assert s.recv(1024) == b""


def test_a_long_request_line_gets_414(served):
    answer = _get(served, "/" + "a" * (MAX_REQUEST_LINE + 10))
    assert _status(answer) == 414


@pytest.mark.parametrize("shape", ["one long header", "many headers"])
def test_a_large_header_block_gets_431(served, shape):
    if shape == "one long header":
        extra = "X-Pad: " + "b" * (MAX_HEAD_BYTES + 10) + "\r\n"
    else:
        extra = "".join(f"X-{i}: {'c' * 90}\r\n" for i in range(MAX_HEAD_BYTES // 90 + 10))
    answer = _get(served, "/index.html", extra=extra)
    assert _status(answer) == 431 and b"hello" not in answer


def test_files_are_streamed_not_read_whole(served):
    """Serving a 64 MiB file never holds more than a few chunks of it in Python memory (the
    server thread runs in this process, so tracemalloc sees its allocations)."""
    port = served.server_address[1]
    tracemalloc.start()
    try:
        with socket.create_connection(served.server_address, timeout=30) as s:
            s.sendall(f"GET /big.bin HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            received = 0
            while True:
                data = s.recv(1 << 20)
                if not data:
                    break
                received += len(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received > 64 << 20  # the headers and every byte of the file
    assert peak < 16 * CHUNK + (2 << 20), f"peak Python allocation {peak} bytes"


def test_head_sends_the_length_and_no_body(served):
    port = served.server_address[1]
    answer = _raw(served, f"HEAD /big.bin HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    assert _status(answer) == 200 and f"Content-Length: {64 << 20}".encode() in head
    assert body == b""


@pytest.mark.parametrize("order", ["mine-first", "mine-last"])
def test_a_request_with_two_hosts_gets_421(served, order):
    """Two ``Host`` headers are ambiguous (a proxy may read the other one): refused, whichever
    comes first."""
    port = served.server_address[1]
    hosts = [f"127.0.0.1:{port}", "evil.example"]
    if order == "mine-last":
        hosts.reverse()
    extra = "".join(f"Host: {h}\r\n" for h in hosts)
    answer = _raw(served, f"GET / HTTP/1.1\r\n{extra}Connection: close\r\n\r\n".encode())
    assert _status(answer) == 421 and b"hello" not in answer


def test_a_trickled_request_head_is_cut_off(served):
    """A client that sends its head a byte at a time, each byte inside the idle timeout (1 s
    here), still has to send the whole head within that time: the connection is closed,
    though no single wait ever timed out."""
    import time

    port = served.server_address[1]
    head = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Pad: {'a' * 400}\r\n\r\n".encode()
    with socket.create_connection(served.server_address, timeout=15) as s:
        s.settimeout(0.1)  # each byte is followed by at most 0.1 s of waiting for an answer
        start, closed = time.monotonic(), False
        for byte in head:
            if time.monotonic() - start > 6:  # the head would take over 80 s at this pace
                break
            try:
                s.sendall(bytes([byte]))
                closed = s.recv(1024) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
            if closed:
                break
    assert closed
