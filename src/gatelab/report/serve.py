"""A read-only static server for the report: binds 127.0.0.1 and never leaves its folder."""

from __future__ import annotations

import mimetypes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


def resolve(root: Path, url_path: str) -> Path | None:
    """The file a URL path names under ``root``, or None when it does not exist or would leave
    ``root`` (``..``, absolute paths, links pointing out)."""
    root = root.resolve()
    rel = unquote(urlsplit(url_path).path).lstrip("/")
    if "\x00" in rel:
        return None
    target = (root / rel).resolve()
    if target != root and root not in target.parents:
        return None
    if target.is_dir():
        target = target / "index.html"
    return target if target.is_file() else None


def make_handler(root: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            self._send(body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._send(body=False)

        def _send(self, body: bool) -> None:
            target = resolve(root, self.path)
            if target is None:
                self.send_error(404, "not found")
                return
            data = target.read_bytes()
            ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def make_server(folder: Path, port: int = 0) -> ThreadingHTTPServer:
    """A server bound to 127.0.0.1 (port 0 picks a free one)."""
    return ThreadingHTTPServer(("127.0.0.1", port), make_handler(folder))


def serve_folder(folder: Path, port: int) -> None:
    server = make_server(folder, port)
    print(f"serving {folder} on http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
