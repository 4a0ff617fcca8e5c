"""A read-only static server for the report: binds 127.0.0.1 and never leaves its folder."""

from __future__ import annotations

import errno
import mimetypes
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import GatelabError

MAX_URL = 2048  # longer request paths get 414; file names are far shorter


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


def make_handler(root: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self._send(body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._send(body=False)

        def _send(self, body: bool) -> None:
            if len(self.path) > MAX_URL:
                self.send_error(414, "URI too long")
                return
            target = resolve(root, self.path)
            try:
                data = target.read_bytes() if target is not None else None
            except OSError:  # unreadable, or gone since it was resolved
                data = None
            if data is None:
                self.send_error(404, "not found")
                return
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if body:
                self.wfile.write(data)

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


def make_server(folder: Path, port: int = 0) -> ThreadingHTTPServer:
    """A server for ``folder`` bound to 127.0.0.1 (port 0 picks a free one). Raises ServeError
    for a missing folder, a port out of range, or a port that cannot be bound."""
    check_port(port)
    check_folder(folder)
    try:
        return _Server((HOST, port), make_handler(folder))
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
