"""A read-only static server for the report: binds 127.0.0.1 and never leaves its folder.

It answers only requests addressed to itself (a ``Host`` of ``127.0.0.1:PORT``,
``localhost:PORT`` or ``[::1]:PORT``; anything else gets 421), so a web page cannot reach it
through DNS rebinding (a request with more than one ``Host`` is refused the same way); it closes
a connection idle for :data:`IDLE_SECONDS`, and one whose request line and headers are not all
in within :data:`IDLE_SECONDS` even if it trickles a byte at a time; it refuses a request
line or header block longer than :data:`MAX_REQUEST_LINE` / :data:`MAX_HEAD_BYTES`, and sends
files in chunks of :data:`CHUNK` bytes, never reading a whole file into memory.
"""

from __future__ import annotations

import errno
import mimetypes
import os
import socket
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import GatelabError

MAX_URL = 2048  # longer request paths get 414; file names are far shorter
MAX_REQUEST_LINE = 4096  # "GET <path> HTTP/1.1": longer gets 414
MAX_HEAD_BYTES = 16384  # the request line and every header together: more gets 431
IDLE_SECONDS = 10.0  # a connection that sends nothing for this long is closed
CHUNK = 1 << 16  # bytes read from a file and sent at a time


class _HeadReader:
    """The connection's reader, allowing at most ``budget`` bytes of request line and headers
    (``exceeded`` says when a request wanted more). Bodies are not read: GET and HEAD only."""

    def __init__(self, raw, budget: int) -> None:  # noqa: ANN001 - a socket file
        self.raw, self.left, self.exceeded = raw, budget, False

    def readline(self, size: int = -1) -> bytes:
        if self.left <= 0:
            self.exceeded = True
            return b""
        line = self.raw.readline(self.left if size < 0 else min(size, self.left))
        self.left -= len(line)
        if self.left <= 0 and not line.endswith(b"\n"):
            self.exceeded = True
        return line

    def __getattr__(self, name: str):  # noqa: ANN204 - read, close, ... of the socket file
        return getattr(self.raw, name)


def resolve(root: Path, url_path: str) -> Path | None:
    """The file a URL path names under ``root``, or None when it does not exist or would leave
    ``root`` (``..``, absolute paths, links pointing out)."""
    rel = unquote(urlsplit(url_path).path).lstrip("/")
    if "\x00" in rel:
        return None
    try:  # a name too long for the system or a loop of links is simply not found
        root = root.resolve()
        target = (root / rel).resolve()
        if target.is_dir():  # resolved again below: the index.html may itself be a link
            target = (target / "index.html").resolve()
        if target != root and root not in target.parents:
            return None
        return target if target.is_file() else None
    except (OSError, RuntimeError, ValueError):
        return None


def _open_regular(path: Path) -> tuple[int, int] | None:
    """``(fd, size)`` of the regular file ``path``, or None (gone, unreadable, or swapped for a
    FIFO or device since it was resolved: O_NONBLOCK keeps a FIFO from blocking the open)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        return None
    return fd, st.st_size


# C901: the request handler class and its routes are defined in one closure over root
def make_handler(root: Path, idle_seconds: float = IDLE_SECONDS  # noqa: C901
                 ) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = idle_seconds  # socketserver puts it on the connection: idle ones are closed

        def setup(self) -> None:
            super().setup()
            self._raw_rfile = self.rfile

        def handle_one_request(self) -> None:
            """http.server's, with the request line and headers bounded and the ``Host``
            checked before any method runs."""
            head = self.rfile = _HeadReader(self._raw_rfile, MAX_HEAD_BYTES)
            # The socket timeout bounds each wait, not the whole head: a client sending a byte
            # every few seconds would hold its thread forever. The watchdog ends it instead.
            self._late = False
            watchdog = threading.Timer(idle_seconds, self._drop)
            watchdog.daemon = True
            watchdog.start()
            try:
                self.raw_requestline = head.readline(MAX_REQUEST_LINE + 1)
                if len(self.raw_requestline) > MAX_REQUEST_LINE or head.exceeded:
                    self.requestline = self.request_version = self.command = ""
                    self.close_connection = True
                    self.send_error(414, "request line too long")
                    return
                if not self.raw_requestline:
                    self.close_connection = True
                    return
                parsed = self.parse_request()
                watchdog.cancel()  # the head is in (or refused): sending is bounded per write
                if self._late:  # the watchdog ended it: what was read is not a whole request
                    self.close_connection = True
                    return
                if not parsed:
                    return  # an error has been sent
                if head.exceeded:
                    self.close_connection = True
                    self.send_error(431, "request headers too large")
                    return
                if not self._host_is_mine():
                    self.close_connection = True
                    self.send_error(421, "this server answers only to 127.0.0.1, localhost "
                                         "and [::1] on its own port")
                    return
                method = getattr(self, "do_" + self.command, None)
                if method is None:
                    self.send_error(501, f"unsupported method ({self.command!r})")
                    return
                method()
                self.wfile.flush()
            except TimeoutError:
                self.close_connection = True  # idle (or too slow): dropped without a word
            finally:
                watchdog.cancel()

        def _drop(self) -> None:
            """End a connection whose request head took longer than ``idle_seconds``."""
            self._late = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

        def _host_is_mine(self) -> bool:
            port = self.server.server_address[1]
            hosts = self.headers.get_all("Host") or []
            if len(hosts) != 1:  # two Hosts: proxies and this server might read different ones
                return False
            host = hosts[0].strip().lower()
            return host in {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self._send(body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._send(body=False)

        def _send(self, body: bool) -> None:
            if len(self.path) > MAX_URL:
                self.send_error(414, "URI too long")
                return
            target = resolve(root, self.path)
            opened = _open_regular(target) if target is not None else None
            if opened is None:
                self.send_error(404, "not found")
                return
            fd, size = opened
            with os.fdopen(fd, "rb") as f:
                ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(size))
                self.send_header("X-Content-Type-Options", "nosniff")
                self.end_headers()
                left = size if body else 0
                while left > 0:
                    chunk = f.read(min(CHUNK, left))
                    if not chunk:  # the file shrank since: the client sees a short answer
                        self.close_connection = True
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)

        def log_message(self, format: str, *args: object) -> None:
            pass  # successful requests are not logged

        def log_error(self, format: str, *args: object) -> None:
            # one line per refused request (404, 414, a malformed request), never a traceback
            line = (format % args).replace("\n", " ")[:200]
            sys.stderr.write(f"serve: {self.address_string()} {line}\n")

    return Handler


class ServeError(GatelabError):
    """A problem the user can fix (bad folder or port). ``str()`` is one line: what is wrong and
    what to do."""


HOST = "127.0.0.1"


def check_folder(folder: Path) -> None:
    """Raise ServeError unless ``folder`` is an existing directory."""
    if not folder.exists():
        raise ServeError(f"report folder {folder} does not exist; build it with "
                         f"`gatelab tour --out {folder}` or point --dir at one")
    if not folder.is_dir():
        raise ServeError(f"{folder} is not a folder; point --dir at a report folder "
                         "(made by `gatelab tour`)")


def check_port(port: int) -> None:
    """Raise ServeError unless ``port`` is 0 (any free port) or 1..65535."""
    if not 0 <= port <= 65535:
        raise ServeError(f"port {port} is out of range; pick one from 1 to 65535 with --port "
                         "(0 picks a free one)")


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: tuple) -> None:
        # a request that failed (a client that hung up mid-answer): one line, no traceback
        e = sys.exc_info()[1]
        sys.stderr.write(f"serve: {client_address[0]} request failed: "
                         f"{type(e).__name__}: {e}\n")


def make_server(folder: Path, port: int = 0, idle_seconds: float = IDLE_SECONDS
                ) -> ThreadingHTTPServer:
    """A server for ``folder`` bound to 127.0.0.1 (port 0 picks a free one) that closes
    connections idle for ``idle_seconds``. Raises ServeError for a missing folder, a port out
    of range, or a port that cannot be bound."""
    check_port(port)
    check_folder(folder)
    try:
        return _Server((HOST, port), make_handler(folder, idle_seconds))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ServeError(f"port {port} on {HOST} is in use; pick another with --port "
                             "(0 picks a free one)") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise ServeError(f"no permission to listen on port {port}; pick one above 1023 "
                             "with --port") from None
        raise ServeError(f"cannot listen on {HOST}:{port} ({e.strerror or e}); pick another "
                         "port with --port") from None


def serve_folder(folder: Path, port: int) -> None:
    """Serve ``folder`` until Ctrl-C. Raises ServeError (before serving) when it cannot."""
    server = make_server(folder, port)
    print(f"serving {folder} on http://{HOST}:{server.server_address[1]}/ (Ctrl-C stops)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
