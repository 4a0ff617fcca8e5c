"""The report server binds 127.0.0.1 and never serves a file outside its folder; `gatelab serve`
and `gatelab tour` turn a bad port or folder into one `error:` line and exit status 2."""

from __future__ import annotations

import socket
import threading
import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

from gatelab.cli import app
from gatelab.report import serve as serve_mod
from gatelab.report.serve import make_server, resolve

# Requests to 127.0.0.1 must never go through a proxy set in the environment (http_proxy etc.).
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

runner = CliRunner()


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
    return OPENER.open(f"http://{host}:{port}{path}", timeout=5)


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
    # a folder's index.html that is itself a link out is refused too
    (root / "sub").mkdir()
    (root / "sub" / "index.html").symlink_to(tmp_path / "outside.txt")
    assert resolve(root, "/sub/") is None
    # an index.html inside the folder is served for its folder
    (root / "ok").mkdir()
    (root / "ok" / "index.html").write_text("<p>hi</p>")
    assert resolve(root, "/ok/") == (root / "ok" / "index.html").resolve()


# --- the CLI: bad port or folder -> one line, exit 2, no traceback --------------------------


class NoServe(serve_mod._Server):
    """Stands in for the server class ``make_server`` builds, so a test that gets past the checks
    returns at once instead of serving forever (patching a name ``make_server`` does not use once
    made the whole suite hang)."""

    bound_to: tuple | None = None

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        NoServe.bound_to = self.server_address
        raise KeyboardInterrupt  # what Ctrl-C does: serve_folder returns cleanly


@pytest.fixture()
def no_serve(monkeypatch):
    NoServe.bound_to = None
    monkeypatch.setattr(serve_mod, "_Server", NoServe)
    return NoServe


def assert_one_error_line(res, *fragments: str) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("port", ["99999", "65536", "-1"])
def test_serve_port_out_of_range(tmp_path, no_serve, port):
    res = runner.invoke(app, ["serve", "--dir", str(tmp_path), "--port", port])
    assert_one_error_line(res, f"port {port} is out of range", "1 to 65535", "--port")
    assert no_serve.bound_to is None


def test_serve_port_in_use(tmp_path, no_serve):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        res = runner.invoke(app, ["serve", "--dir", str(tmp_path), "--port", str(port)])
    assert_one_error_line(res, f"port {port}", "is in use", "pick another with --port")
    assert no_serve.bound_to is None


def test_serve_missing_folder(tmp_path, no_serve):
    missing = tmp_path / "nope"
    res = runner.invoke(app, ["serve", "--dir", str(missing), "--port", "0"])
    assert_one_error_line(res, str(missing), "does not exist", "gatelab tour --out")


def test_serve_folder_that_is_a_file(tmp_path, no_serve):
    f = tmp_path / "index.html"
    f.write_text("<h1>not a folder</h1>")
    res = runner.invoke(app, ["serve", "--dir", str(f), "--port", "0"])
    assert_one_error_line(res, str(f), "is not a folder", "--dir")


def test_serve_port_zero_picks_a_free_port_and_prints_its_url(tmp_path, no_serve):
    res = runner.invoke(app, ["serve", "--dir", str(tmp_path), "--port", "0"])
    assert res.exit_code == 0, (res.output, res.exception)
    host, port = no_serve.bound_to
    assert host == "127.0.0.1" and port != 0
    assert f"http://127.0.0.1:{port}/" in res.stdout


def test_tour_out_is_an_existing_file(tmp_path, monkeypatch):
    from gatelab.report import tour as tour_mod

    def no_builders():
        raise AssertionError("the tour started work before checking --out")

    monkeypatch.setattr(tour_mod, "_builders", no_builders)
    f = tmp_path / "report"
    f.write_text("I am a file")
    res = runner.invoke(app, ["tour", "--out", str(f)])
    assert_one_error_line(res, str(f), "is an existing file, not a folder", "--out")
    assert f.read_text() == "I am a file"
    res = runner.invoke(app, ["tour", "--out", str(f / "sub")])
    assert_one_error_line(res, str(f / "sub"), "cannot create report folder", "--out")
