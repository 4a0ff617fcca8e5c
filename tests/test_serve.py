"""The report server binds 127.0.0.1 and never serves a file outside its folder."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest

from gatelab.report.serve import make_server, resolve


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "report"
    (root / "img").mkdir(parents=True)
    (root / "index.html").write_text("<h1>hello</h1>")
    (root / "img" / "a.svg").write_text("<svg/>")
    (tmp_path / "secret.txt").write_text("do not serve")
    srv = make_server(root, 0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv, root
    srv.shutdown()
    srv.server_close()


def get(srv, path):
    host, port = srv.server_address
    return urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5)


def test_binds_loopback_only(server):
    srv, _ = server
    assert srv.server_address[0] == "127.0.0.1"


def test_serves_files_under_the_folder(server):
    srv, _ = server
    assert b"hello" in get(srv, "/").read()
    resp = get(srv, "/img/a.svg")
    assert resp.headers["Content-Type"] == "image/svg+xml"


@pytest.mark.parametrize("path", ["/../secret.txt", "/%2e%2e/secret.txt", "/img/../../secret.txt",
                                  "//etc/passwd", "/%2e%2e%2fsecret.txt", "/nope.html"])
def test_paths_leaving_the_folder_get_404(server, path):
    srv, _ = server
    with pytest.raises(urllib.error.HTTPError) as err:
        get(srv, path)
    assert err.value.code == 404


def test_resolve_refuses_symlink_out(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    (tmp_path / "outside.txt").write_text("x")
    (root / "link.txt").symlink_to(tmp_path / "outside.txt")
    assert resolve(root, "/link.txt") is None
