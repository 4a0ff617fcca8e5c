"""The Ray a study runs on: its environment, its temp folder and token, the probe of a cluster
address (see :mod:`gatelab.study.runner` for what each is for)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .space import StudyError

PROBE_SECONDS = 3.0  # how long --address HOST:PORT may take to answer a plain TCP connect
# Ray puts Unix sockets at TEMP/session_<date>_<time>_<us>_<pid>/sockets/plasma_store: 62+ more
# characters, and a socket path has at most 107, so its temp folder must be this short.
MAX_RAY_TEMP_CHARS = 40
# One token per process: Ray's driver reads the token once, so a second local study in the same
# process (the trainability study runs one per task) must present the same one.
_TOKEN = secrets.token_hex(32)


def _on_loopback(address: str) -> str | None:
    """The host of ``HOST:PORT`` when it is in 127.0.0.0/8 (else None)."""
    host = address.rsplit(":", 1)[0]
    try:
        return host if ipaddress.ip_address(host).is_loopback else None
    except ValueError:
        return None


def ray_environment(address: str | None) -> None:
    """Environment Ray reads when it is imported and started."""
    # Tune's own console output and result loggers off: the study prints its own lines and
    # keeps its results in the run folders.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address is None:
        # Single-machine mode: every Ray listener on 127.0.0.1 (Ray's default picks eth0).
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


def probe_address(address: str, timeout: float = PROBE_SECONDS) -> None:
    """:class:`StudyError` unless a gRPC server (as Ray's GCS and Ray Client are) answers at
    ``HOST:PORT`` within ``timeout`` seconds (``auto`` is left to Ray). Ray itself would wait
    for minutes, and may dial this machine's external address, before giving up on an address
    where nothing runs or where something else (a web server, a plain TCP listener) listens."""
    if address == "auto":
        return
    where = address.removeprefix("ray://")
    host, sep, port_text = where.rpartition(":")
    host = host.strip("[]")
    if not (sep and host and port_text.isdigit() and 1 <= int(port_text) <= 65535):
        raise StudyError(f"--address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379) "
                         "or auto")
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout) as conn:
            speaks = _speaks_http2(conn, timeout)
    except OSError as e:
        why = "no answer" if isinstance(e, TimeoutError) else (e.strerror or str(e))
        raise StudyError(f"no Ray cluster answers at {address} ({why} within {timeout:g} s): "
                         "start one with `ray start --head`, or leave out --address to run on "
                         "this machine") from None
    if not speaks:
        raise StudyError(f"what listens at {address} is not a Ray cluster (it does not answer "
                         "as Ray's gRPC server does): check the port `ray start --head` printed, "
                         "or leave out --address to run on this machine")


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_HTTP2_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # an empty SETTINGS frame


def _speaks_http2(conn: socket.socket, timeout: float) -> bool:
    """Whether the server on ``conn`` opens HTTP/2 (which gRPC runs on) with its SETTINGS frame
    when sent the client preface: the first frame's 9-byte header has type 0x4, stream 0."""
    conn.settimeout(timeout)
    conn.sendall(_HTTP2_PREFACE + _HTTP2_SETTINGS)
    head = b""
    while len(head) < 9:
        chunk = conn.recv(9 - len(head))
        if not chunk:
            return False
        head += chunk
    return head[3] == 0x4 and head[5:9] == b"\x00\x00\x00\x00"


@contextlib.contextmanager
def ray_home(folder: Path) -> Iterator[Path]:
    """Ray's temp folder for a local study, and its authentication token in the environment
    for as long as the study runs (see the module docstring)."""
    own = folder / ".ray-tmp"
    short = len(str(own)) <= MAX_RAY_TEMP_CHARS
    if short:
        own.mkdir(exist_ok=True)
        temp = own
    else:
        temp = Path(tempfile.mkdtemp(prefix="gatelab-ray-"))  # mode 0700
    keys = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    saved = {k: os.environ.get(k) for k in keys}
    # The study's own Ray, with a token of its own: Ray would otherwise write one to ~/.ray.
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=_TOKEN)
    try:
        yield temp
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if not short:
            shutil.rmtree(temp, ignore_errors=True)


def init_ray(address: str | None, cpus: int, gpus: float, temp: Path | None = None) -> bool:
    """Connect to (or start) Ray; returns whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, log_to_driver=False, configure_logging=True,
                 logging_level="ERROR")
    if address is None:
        # address="local": a new Ray of our own, even when `ray start` left a cluster's
        # address in /tmp/ray (plain ray.init() would join that one instead).
        ray.init(address="local", num_cpus=cpus, num_gpus=gpus or None,
                 _temp_dir=str(temp) if temp else None, **quiet)
        return True
    host = _on_loopback(address)
    extra = {"_node_ip_address": host} if host else {}  # else Ray rewrites it to eth0's
    ray.init(address=address, log_to_driver=False, logging_level="ERROR", **extra)
    return True
