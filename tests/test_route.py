"""The one route: the path gatelab reports for a cell (``module.path``, ``route()``, ``analyze``'s
engine field, ``gatelab engine``) is the path that runs, for every zoo cell and for generated
cells, across backend names and dtypes on the CPU; and the engine, analysis and nn packages
import one another without a cycle."""

from __future__ import annotations

import ast
import importlib.machinery
import sys
import types
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import gatelab
import gatelab.nn as gn
from gatelab.analysis import analyze
from gatelab.cli import app
from gatelab.engine import route as route_mod
from gatelab.engine.layout import EngineError
from gatelab.engine.route import BACKENDS, route

I, H = 3, 4
DTYPES = (torch.float32, torch.float64, torch.bfloat16)
PER_LAYER = {"torch": "generated", "c": "c", "triton": "triton"}  # run_fused's compiler


class Ran(Exception):  # noqa: N818 -- a signal, not an error: which runner was reached
    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.path = path


@pytest.fixture
def spies(monkeypatch):
    """Every runner raises ``Ran(path)`` when reached: the call tells which path runs, without
    compiling or computing anything."""
    from gatelab.engine import autograd, backends, scan
    from gatelab.nn import forward

    def stop(path):
        def runner(*args, **kwargs):
            raise Ran(path)
        return runner

    def fused(*args, compiler="torch", **kwargs):
        raise Ran(PER_LAYER[compiler])

    monkeypatch.setattr(forward, "run_vendor", stop("vendor"))
    monkeypatch.setattr(backends, "run_reference", stop("reference"))
    monkeypatch.setattr(scan, "run_scan", stop("scan"))
    monkeypatch.setattr(autograd, "run_fused", fused)
    if route_mod.sequence_available():  # the real kernel, where this build has it
        monkeypatch.setattr(route_mod.sequence_module(), "run_sequence", stop("sequence"))
    fake = types.ModuleType(route_mod.SEQUENCE_MODULE)
    fake.__spec__ = importlib.machinery.ModuleSpec(route_mod.SEQUENCE_MODULE, None)
    fake.run_sequence = stop("sequence")
    return fake


def ran(module, dtype) -> str:
    """The path a call of ``module`` reaches."""
    i = H if module.cell.hidden_inputs else I
    with pytest.raises(Ran) as caught:
        module(torch.randn(3, 2, i, dtype=dtype))
    return caught.value.path


def check_cell(cell, backends=BACKENDS, dtypes=DTYPES) -> None:
    """For each backend and dtype: the route raises an EngineError and so does the module (at
    construction or call, with the same message), or route, ``module.path`` and the runner
    reached agree."""
    i = H if cell.hidden_inputs else I
    for backend in backends:
        for dtype in dtypes:
            where = f"{cell.name} backend={backend} {dtype}"
            try:
                said = route(cell, backend=backend, device="cpu", dtype=dtype)
            except EngineError as e:
                with pytest.raises(EngineError) as refused:
                    ran(gn.RNN(cell, i, H, backend=backend, dtype=dtype), dtype)
                assert str(refused.value) == str(e), where
                continue
            m = gn.RNN(cell, i, H, num_layers=2, bidirectional=not cell.hidden_inputs,
                       backend=backend, dtype=dtype)
            assert m.path == said.path and m.route == said, where
            assert ran(m, dtype) == said.path, where
            assert said.reason, where


@pytest.mark.parametrize("name", gatelab.zoo_names())
def test_every_zoo_cell_runs_the_path_reported(name, spies, monkeypatch):
    cell = gatelab.load_cell(name)
    check_cell(cell)
    auto = route(cell)
    assert analyze(cell).to_dict()["engine"] == auto.to_dict()
    # with the sequence kernel present: taken only when asked for, until SEQUENCE_BY_DEFAULT
    monkeypatch.setitem(sys.modules, route_mod.SEQUENCE_MODULE, spies)
    check_cell(cell, ("auto", "sequence"), (torch.float64,))
    assert route(cell).path == auto.path
    monkeypatch.setattr(route_mod, "SEQUENCE_BY_DEFAULT", True)
    flipped = route(cell)
    kept = auto.path in ("vendor", "scan") or "layer_norm" in auto.reason
    assert flipped.path == (auto.path if kept else "sequence")
    check_cell(cell, ("auto",), (torch.float64,))


@pytest.mark.parametrize("name", ["mgu", "mingru", "lstm-ln", "lstm"])
def test_c_kernels_opted_in_route_and_run_the_same(name, spies, monkeypatch):
    monkeypatch.setenv("GATELAB_CPU_KERNELS", "c")
    check_cell(gatelab.load_cell(name), ("auto", "c", "generated"))


def test_the_sequence_backend_absent_is_one_clear_error():
    if route_mod.sequence_available():
        pytest.skip("the sequence kernel is in this build")
    with pytest.raises(EngineError, match="sequence kernel.*not in this build"):
        route(gatelab.load_cell("mgu"), backend="sequence")
    with pytest.raises(EngineError, match="sequence kernel.*not in this build"):
        gn.MGU(I, H, backend="sequence")(torch.randn(3, 2, I))
    r = CliRunner().invoke(app, ["engine", "mgu", "--backend", "sequence"])
    assert r.exit_code == 2 and "error: backend 'sequence'" in r.output


def test_the_sequence_backend_without_a_compiler_runs_the_generated_step(spies, monkeypatch):
    from gatelab.engine import c_pointwise as cp

    monkeypatch.setitem(sys.modules, route_mod.SEQUENCE_MODULE, spies)
    monkeypatch.setattr(cp, "available", lambda: False)
    said = route(gatelab.load_cell("mgu"), backend="sequence")
    assert said.path == "generated" and "no C compiler" in said.reason
    check_cell(gatelab.load_cell("mgu"), ("sequence",), (torch.float64,))


LN_SCAN = ("input x\nstate h\ngate z = sigmoid(layer_norm(W_z @ x) + b_z)\n"
           "let n = W_n @ x + b_n\nnext h = (1 - z) * h + z * n\noutput h\n")


def test_scan_cell_with_layer_norm_on_x_is_reported_as_the_scan_it_runs(tmp_path):
    """It used to be reported ``generated`` (layer_norm checked first) while the layer ran the
    scan; the scan's numbers are the reference loop's."""
    cell = gatelab.parse_cell(LN_SCAN, default_name="ln-scan")
    assert route(cell).path == "scan"
    assert analyze(cell).to_dict()["engine"]["path"] == "scan"
    torch.manual_seed(0)
    auto = gn.RNN(cell, I, H, dtype=torch.float64)
    ref = gn.RNN(cell, I, H, dtype=torch.float64, backend="reference")
    ref.load_state_dict(auto.state_dict())
    x = torch.randn(5, 2, I, dtype=torch.float64)
    assert auto.path == "scan" and torch.allclose(auto(x)[0], ref(x)[0], atol=1e-12)
    (tmp_path / "ln-scan.cell").write_text(LN_SCAN, encoding="utf-8")
    r = CliRunner().invoke(app, ["engine", str(tmp_path / "ln-scan.cell")])
    assert r.exit_code == 0 and "path (backend='auto'): scan" in r.output


@pytest.mark.parametrize("name", ["lstm", "mgu", "mingru"])
@pytest.mark.parametrize("backend", ["auto", "generated", "scan"])
def test_while_tracing_the_route_is_the_traced_one(name, backend, spies, monkeypatch):
    """Under an exporter or compiler the layer states and runs torch's kernels or the unrolled
    reference step, never a cached Python decision the tracer would have to follow."""
    from gatelab.engine import backends

    cell = gatelab.load_cell(name)
    if backend == "scan" and route(cell).path != "scan":
        return
    m = gn.RNN(cell, I, H, backend=backend)
    monkeypatch.setattr(backends, "run_traceable", lambda *a, **k: (_ for _ in ()).throw(
        Ran("reference")))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    with torch.no_grad():  # (with autograd recording, forward's _compiled_autograd case)
        assert m.path == ran(m, torch.float32)
    want = "vendor" if route(cell).path == "vendor" and backend == "auto" else "reference"
    assert m.route == route_mod.traced_route(m._vendor_route, backend) and m.path == want


# ---- generated cells --------------------------------------------------------------------------

@st.composite
def cells(draw) -> str:
    """A cell whose gates and candidate may read the state or not (scan-parallel or not), may
    normalise the input's or the state's product (``layer_norm``), with a vector recurrence, a
    hidden-width input read as itself, and a second state that is a readout or a memory."""
    hidden_input = draw(st.booleans())
    lines = ["input x : hidden" if hidden_input else "input x", "state h"]

    def term(m: str, v: str) -> str:
        return draw(st.sampled_from([f"{m} @ {v}", f"layer_norm({m} @ {v})"]))

    for g in ("f", "k")[:draw(st.integers(1, 2))]:
        rec = draw(st.sampled_from(["", f" + {term('U_' + g, 'h')}", f" + p_{g} * h"]))
        lines.append(f"gate {g} = sigmoid({term('W_' + g, 'x')}{rec} + b_{g})")
    k = lines[-1].split()[1]
    rec = draw(st.sampled_from(["", " + U_n @ h", " + U_n @ (f * h)", " + u * h"]))
    read_x = draw(st.sampled_from([term("W_n", "x"), "x"] if hidden_input else [term("W_n", "x")]))
    act = draw(st.sampled_from(["tanh", "", "relu"]))
    lines.append(f"let n = {act}({read_x}{rec} + b_n)")
    lines.append("let h_new = " + draw(st.sampled_from(
        ["f * h + (1 - f) * n", f"f * h + {k} * n", "h + f * (n - h)", "f * n"])))
    lines.append("next h = h_new")
    second = draw(st.sampled_from(["none", "readout", "memory"]))
    if second == "readout":
        lines[1] = "state h, y"
        lines += ["next y = tanh(h_new)", "output y"]
    elif second == "memory":
        lines[1] = "state h, m"
        lines += ["next m = f * m + (1 - f) * h", "output h"]
    return "\n".join(lines) + "\n"


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(cells())
def test_generated_cells_run_the_path_reported(spies, text):
    cell = gatelab.parse_cell(text, default_name="generated")
    check_cell(cell, dtypes=(torch.float32, torch.float64))
    assert analyze(cell).to_dict()["engine"] == route(cell).to_dict()


# ---- import graph -----------------------------------------------------------------------------

PACKAGES = ("engine", "analysis", "nn")


def module_level_imports(path: Path, package: str) -> set[str]:
    """The gatelab subpackages a module imports when it is imported (its top-level statements,
    ``if`` blocks included; imports inside functions run later and are not cycles)."""
    found = set()
    body = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while body:
        node = body.pop()
        if isinstance(node, ast.If | ast.Try):
            if not (isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)):
                body += [*node.body, *getattr(node, "orelse", []),
                         *getattr(node, "finalbody", [])]
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level == 2 and node.module:
                found.add(node.module.split(".")[0])
            elif node.level == 1:
                found.add(package)
            elif node.module and node.module.startswith("gatelab."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("gatelab.")}
    return found


def test_engine_analysis_and_nn_import_one_another_without_a_cycle():
    root = Path(gatelab.__file__).parent
    edges = {p: set() for p in PACKAGES}
    for p in PACKAGES:
        for f in (root / p).glob("*.py"):
            edges[p] |= module_level_imports(f, p) & set(PACKAGES) - {p}

    def reaches(a: str, b: str, seen: frozenset = frozenset()) -> bool:
        return any(n == b or (n not in seen and reaches(n, b, seen | {n})) for n in edges[a])

    assert not [p for p in PACKAGES if reaches(p, p)], edges
    assert "nn" not in edges["engine"] and "nn" not in edges["analysis"], edges
