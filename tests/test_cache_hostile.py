"""A cache that cannot be turned against its user (issue 30, item 1): folders of other users or
writable by others are refused with one line; a library is loaded only when its bytes match the
digest recorded when it was built; no path is ever read from a cache file; tampered metadata is
a rebuild, never a crash; concurrent builders both end with a working library, compiled once."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sympy
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatelab import cache
from gatelab.engine import c_pointwise as cp
from gatelab.engine.pointwise import compile_many

needs_cc = pytest.mark.skipif(cache.compiler() is None, reason="no C compiler")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
SRC = Path(__file__).resolve().parent.parent / "src"
x, y = sympy.symbols("x y")
ONE_PLUS = "int f(int v) { return v + 1; }\n"
TIMES_TWO = "int f(int v) { return 2 * v; }\n"


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """An empty private cache root for this test, nothing loaded in this process."""
    r = tmp_path / "cache"
    monkeypatch.setenv("GATELAB_CACHE_DIR", str(r))
    monkeypatch.setattr(cache, "_LOADED", {})
    return r


def _refused(match: str, kind: str = "kernels") -> str:
    with pytest.raises(cache.CacheError, match=match) as e:
        cache.cache_folder(kind)
    (line,) = e.value.lines()  # one line, naming the folder
    assert line.startswith("error: ") and "\n" not in line
    return line


# ---- folders -----------------------------------------------------------------------------------
@given(mode=st.integers(0o700, 0o777), which=st.sampled_from(["root", "kernels"]))
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_folder_writable_by_group_or_others_is_refused(root, mode, which):
    folder = cache.cache_folder("kernels")
    target = root if which == "root" else folder
    os.chmod(target, mode)
    try:
        if mode & 0o022:
            assert str(target) in _refused("writable by group or others")
        else:
            assert cache.cache_folder("kernels") == folder
    finally:
        os.chmod(target, 0o700)


@needs_root
@pytest.mark.parametrize("which", ["root", "kernels", "symlinked root"])
def test_a_folder_owned_by_another_user_is_refused(root, tmp_path, which, monkeypatch):
    folder = cache.cache_folder("kernels")
    if which == "symlinked root":
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        link = tmp_path / "link"
        link.symlink_to(theirs)
        monkeypatch.setenv("GATELAB_CACHE_DIR", str(link))
        target = theirs
    else:
        target = root if which == "root" else folder
    os.chown(target, 12345, 12345)
    assert "owned by uid 12345" in _refused("owned by uid 12345")


@needs_root
def test_a_folder_inside_another_users_or_an_open_folder_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setenv("GATELAB_CACHE_DIR", str(shared / "gatelab"))
    os.chmod(shared, 0o777)  # anyone may rename our folder away and put theirs in its place
    _refused("without the sticky bit")
    os.chmod(shared, 0o1777)  # as /tmp: only the owner may rename it
    assert cache.cache_folder("kernels").is_dir()
    os.chmod(shared, 0o755)
    os.chown(shared, 12345, 12345)
    _refused("owned by uid 12345")


@needs_cc
@needs_root
def test_a_refused_kernel_folder_stops_the_c_backend_with_one_line(root):
    (root / "kernels").mkdir(parents=True, mode=0o700)
    os.chown(root / "kernels", 12345, 12345)
    with pytest.raises(cache.CacheError, match="owned by uid 12345"):
        compile_many([([x], [x + 1])], "c")


# ---- libraries: verified bytes -----------------------------------------------------------------
@needs_cc
def test_a_swapped_library_is_not_loaded_but_rebuilt(root):
    cache.compiled_library(TIMES_TWO, ["-O1"])
    one = cache.compiled_library(ONE_PLUS, ["-O1"])
    assert one.f(41) == 42
    folder = cache.cache_folder("kernels")
    k1, k2 = (cache.library_key(s, ["-O1"]) for s in (ONE_PLUS, TIMES_TWO))
    shutil.copyfile(folder / f"{k2}.so", folder / f"{k1}.so")  # other bytes, same name
    cache._LOADED.clear()  # as a new process
    assert cache.load_library(k1) is None
    assert cache.compiled_library(ONE_PLUS, ["-O1"]).f(41) == 42  # rebuilt, not 82
    assert cache.load_library(k1) is not None


@needs_cc
@given(offset=st.integers(0, 10**9), flip=st.integers(1, 255))
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_changed_byte_fails_the_digest(root, offset, flip):
    cache.compiled_library(ONE_PLUS, ["-O1"])
    key = cache.library_key(ONE_PLUS, ["-O1"])
    so = cache.cache_folder("kernels") / f"{key}.so"
    good = so.read_bytes()
    bad = bytearray(good)
    bad[offset % len(bad)] ^= flip
    so.write_bytes(bytes(bad))
    cache._LOADED.clear()
    try:
        assert cache.load_library(key) is None
    finally:
        so.write_bytes(good)


@needs_cc
def test_a_symlink_a_fifo_or_a_missing_record_is_not_loaded(root, tmp_path):
    cache.compiled_library(ONE_PLUS, ["-O1"])
    key = cache.library_key(ONE_PLUS, ["-O1"])
    folder = cache.cache_folder("kernels")
    elsewhere = tmp_path / "lib.so"
    shutil.copyfile(folder / f"{key}.so", elsewhere)
    (folder / f"{key}.so").unlink()
    (folder / f"{key}.so").symlink_to(elsewhere)
    cache._LOADED.clear()
    assert cache.load_library(key) is None
    (folder / f"{key}.so").unlink()
    shutil.copyfile(elsewhere, folder / f"{key}.so")
    assert cache.load_library(key) is not None
    cache._LOADED.clear()
    (folder / f"{key}.so").unlink()
    os.mkfifo(folder / f"{key}.so")  # would block a plain open()
    assert cache.load_library(key) is None
    assert cache.compiled_library(ONE_PLUS, ["-O1"]).f(1) == 2  # rebuilt over it
    cache._LOADED.clear()
    (folder / f"{key}.sha256").unlink()
    assert cache.load_library(key) is None


@needs_cc
def test_a_compiler_failure_is_a_gatelab_error_with_its_first_lines(root):
    with pytest.raises(cache.CompileError, match="expected") as e:
        cache.compiled_library("int f(int v) { return v + ; }\n", ["-O1"])
    assert e.value.lines()[0].startswith("error: ") and len(str(e.value)) <= 2200


# ---- step records: no path, no crash -----------------------------------------------------------
def _evil_library(tmp_path: Path) -> tuple[Path, Path]:
    """A library whose constructor leaves a marker file when anything dlopens it."""
    marker = tmp_path / "evil-ran"
    src = tmp_path / "evil.c"
    src.write_text('#include <stdio.h>\n__attribute__((constructor)) static void evil(void) '
                   f'{{ FILE *f = fopen("{marker}", "w"); if (f) fclose(f); }}\n'
                   "void gl_f32_0(void) {}\nvoid gl_f64_0(void) {}\n")
    so = tmp_path / "evil.so"
    subprocess.run([cache.compiler(), "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    return so, marker


def _step_functions(key: str):
    return compile_many([([x, y], [x * y + 2, sympy.Integer(3)])], "c", key=key)


def _check(fns) -> None:
    a, b = torch.arange(6.0).view(2, 3), torch.full((2, 3), 2.0)
    out = fns[0](a, b)
    assert torch.equal(out[0], a * b + 2) and out[1] == 3.0


@needs_cc
def test_step_records_hold_no_path_and_tampering_rebuilds(root, tmp_path):
    so, marker = _evil_library(tmp_path)
    other = compile_many([([x], [x - 1])], "c", key="another step")  # a valid foreign library
    _check(_step_functions("step A"))
    folder = cache.cache_folder("kernels")
    record = folder / f"{cp._step_name('step A')}.json"
    saved = json.loads(record.read_text())
    assert set(saved) == {"library", "functions"} and "/" not in json.dumps(saved)
    foreign = json.loads((folder / f"{cp._step_name('another step')}.json").read_text())
    assert other
    planted = [
        {"library": str(so), "functions": 1},  # an absolute path: never followed
        {"library": f"../../{so.name}", "functions": 1},
        {"library": so.stem, "functions": 1},
        dict(foreign),  # another step's good library: its tag does not match
        {"library": saved["library"], "functions": 7},
        {"library": saved["library"]},
        [saved["library"]], "garbage", None, 1e308,
    ]
    shutil.copyfile(so, folder / f"{so.stem}.so")  # even inside the cache folder, no digest
    for bad in planted:
        record.write_text(json.dumps(bad))
        cache._LOADED.clear()
        assert cp.load_step("step A", [2]) is None
        _check(_step_functions("step A"))  # rebuilt (or the verified library found again)
    for raw in (b"", b"{", b"\xff\xfe", b"[" * 100000 + b"]" * 100000, b"NaN"):
        record.write_bytes(raw)
        cache._LOADED.clear()
        assert cp.load_step("step A", [2]) is None
        _check(_step_functions("step A"))
    assert not marker.exists()


@needs_cc
@given(record=st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=80)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["library", "functions", "n_out", "live", "used", "consts", "x"]),
        inner, max_size=4), max_leaves=12))
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_step_record_is_a_library_that_fits_or_nothing(root, record):
    """Whatever the record holds, :func:`load_step` returns None or the step's own library
    (whose compiled-in description matches the step's key and input counts)."""
    if not (cache.cache_folder("kernels") / f"{cp._step_name('step B')}.json").exists():
        _step_functions("step B")
    good = json.loads((cache.cache_folder("kernels")
                       / f"{cp._step_name('step B')}.json").read_text())
    cache.write_json("kernels", cp._step_name("step B"), record)
    cache._LOADED.clear()
    got = cp.load_step("step B", [2])
    assert got is None or record == good
    cache.write_json("kernels", cp._step_name("step B"), good)


@needs_cc
def test_a_step_loaded_with_other_input_counts_is_refused(root):
    _step_functions("step C")
    assert cp.load_step("step C", [2]) is not None
    assert cp.load_step("step C", [1]) is None  # the kernel reads input 1: not with one input
    assert cp.load_step("step C", [2, 2]) is None


# ---- processes ---------------------------------------------------------------------------------
_CHILD = """
import sys
from gatelab import cache
lib = cache.compiled_library(sys.argv[1], ["-O1"])
print(lib.f(20))
"""


def _logging_compiler(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "cc.log"
    wrapper = tmp_path / "cc-wrapper"
    wrapper.write_text(f'#!/bin/sh\ncase " $* " in *" -c "*) echo "$*" >> "{log}"; sleep 1;; esac\n'
                       f'exec "{cache.compiler()}" "$@"\n')
    wrapper.chmod(0o755)
    return wrapper, log


def _compiles(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


@needs_cc
def test_concurrent_builders_both_work_and_compile_once(root, tmp_path):
    wrapper, log = _logging_compiler(tmp_path)
    env = {**os.environ, "CC": str(wrapper), "GATELAB_CACHE_DIR": str(root),
           "PYTHONPATH": str(SRC)}
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, ONE_PLUS], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o.strip() for o, _ in outs] == ["21", "21"]
    assert _compiles(log) == 1  # the second waited for the first's library
    third = subprocess.run([sys.executable, "-c", _CHILD, ONE_PLUS], env=env,
                           capture_output=True, text=True, timeout=300)
    assert third.stdout.strip() == "21" and _compiles(log) == 1  # loaded, not compiled


@needs_cc
def test_loading_kernels_leaves_the_floating_point_mode_alone(root):
    """A fast-math kernel library must not switch the process to flush-to-zero: torch's own
    subnormal numbers stay (a fresh process, as the mode is process-wide)."""
    code = ("import torch; from gatelab.engine import c_pointwise as cp; assert cp.available(); "
            "print(float(torch.tensor(1e-40) * 1), float(torch.tensor(1e-310, "
            "dtype=torch.float64) * 1))")
    env = {**os.environ, "GATELAB_CACHE_DIR": str(root), "PYTHONPATH": str(SRC)}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    f32, f64 = map(float, res.stdout.split())
    assert f32 > 0 and f64 > 0


@needs_cc
def test_the_library_is_loaded_from_verified_memory_not_the_file(root, monkeypatch):
    """Bytes checked are bytes loaded: ``dlopen`` never sees the cache file's name, so swapping
    the file after the check cannot matter."""
    seen = []
    real = ctypes.CDLL

    def spy(name, *a, **k):
        seen.append(str(name))
        return real(name, *a, **k)

    monkeypatch.setattr(ctypes, "CDLL", spy)
    cache.compiled_library(ONE_PLUS, ["-O1"])
    cache._LOADED.clear()
    assert cache.compiled_library(ONE_PLUS, ["-O1"]).f(1) == 2
    folder = str(cache.cache_folder("kernels"))
    assert seen and not any(s.startswith(folder) and s.endswith(f"{k}.so")
                            for s in seen for k in [cache.library_key(ONE_PLUS, ["-O1"])])


@needs_cc
def test_bench_loads_no_planted_library(root, tmp_path):
    """``gatelab bench`` (a fresh process, C kernels on) after every cached library was swapped
    for a planted one and every step record names it: the bench runs, the plant never does."""
    code = ("from gatelab.engine.bench import run_benchmark; run_benchmark(T=3, N=2, H=4, "
            "repeats=1, scan_T=8, scan_N=2, scan_H=4, memory=False, small=(3, 2, 4, 2), "
            "threads=1); print('ok')")
    env = {**os.environ, "GATELAB_CACHE_DIR": str(root), "PYTHONPATH": str(SRC),
           "GATELAB_CPU_KERNELS": "c"}

    def bench():
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, timeout=600)
        assert res.returncode == 0 and res.stdout.strip().endswith("ok"), res.stderr[-2000:]

    bench()
    so, marker = _evil_library(tmp_path)
    folder = cache.cache_folder("kernels")
    libraries, records = list(folder.glob("*.so")), list(folder.glob("step-*.json"))
    assert libraries and records
    for lib in libraries:
        shutil.copyfile(so, lib)
    for rec in records:
        n = json.loads(rec.read_text())["functions"]
        rec.write_text(json.dumps({"library": str(so), "functions": n}))
    bench()
    assert not marker.exists()
