"""`serve` under hostile requests: long paths, a symlink loop, a FIFO: 404/414, no traceback."""

from __future__ import annotations

import http.client
import os
import threading

from gatelab.report.serve import make_server


def test_long_paths_and_link_loops_get_404_or_414(tmp_path, capfd):
    (tmp_path / "index.html").write_text("<p>hi</p>")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    os.mkfifo(tmp_path / "pipe.html")
    server = make_server(tmp_path, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        answers = {}
        for path in ["/", "/loop", "/loop/x", "/" + "a" * 300, "/" + "b/" * 150,
                     "/" + "c" * 5000, "/pipe.html", "/%00", "/../../etc/passwd"]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path)
            answers[path[:20]] = conn.getresponse().status
            conn.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert answers.pop("/") == 200
    assert answers.pop("/" + "c" * 19) == 414
    assert set(answers.values()) == {404}, answers
    err = capfd.readouterr().err
    assert "Traceback" not in err and err.count("serve:") == 8
