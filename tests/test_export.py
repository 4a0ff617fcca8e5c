"""Shipping a gatelab model: ONNX export (checked in onnxruntime) and ``torch.compile``.

A model Linear -> gatelab recurrent layer -> Linear with a custom zoo cell (MGU: gatelab's
generated engine) and with LSTM (torch's kernels, the vendor path) must give the same numbers
in onnxruntime, a runtime that has never heard of gatelab, and under ``torch.compile``.
"""

from __future__ import annotations

import pytest
import torch

import gatelab.nn as gn

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


class Model(torch.nn.Module):
    """``(N, T, 3) -> (N, T, 2)``: Linear, a gatelab layer of ``cell``, Linear."""

    def __init__(self, cell: str) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(3, 4)
        self.rnn = gn.RNN(cell, 4, 5, batch_first=True)
        self.out = torch.nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.rnn(self.inp(x))
        return self.out(y)


def _onnx_roundtrip(model: torch.nn.Module, x: torch.Tensor, path, dynamo: bool):
    torch.onnx.export(model, (x,), str(path), dynamo=dynamo)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    return torch.from_numpy(got)


def _export_case(cell: str, dynamo: bool, tmp_path) -> None:
    torch.manual_seed(0)
    model = Model(cell).eval()
    x = torch.randn(2, 4, 3)
    with torch.no_grad():
        want = model(x)
    got = _onnx_roundtrip(model, x, tmp_path / f"{cell}.onnx", dynamo)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_paths_are_the_ones_meant():
    # MGU runs gatelab's own engine (an autograd.Function), LSTM torch's kernels: both kinds
    # of path are what the export tests below cover.
    assert Model("mgu").rnn.path != "vendor"
    assert Model("lstm").rnn.path == "vendor"


@pytest.mark.parametrize("cell", ["mgu", "lstm", "gru-torch"])
def test_onnx_export_torchscript_matches_onnxruntime(cell, tmp_path):
    _export_case(cell, False, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["mgu", "lstm"])
def test_onnx_export_dynamo_matches_onnxruntime(cell, tmp_path):
    _export_case(cell, True, tmp_path)


def test_eager_after_export_still_uses_engine(tmp_path):
    # The export switch is only active while tracing: eager calls afterwards are unchanged.
    torch.manual_seed(0)
    model = Model("mgu").eval()
    x = torch.randn(2, 4, 3)
    before = model(x).detach()
    _onnx_roundtrip(model, x, tmp_path / "m.onnx", False)
    from gatelab.engine.backends import graph_capture

    assert not graph_capture()
    torch.testing.assert_close(model(x).detach(), before, rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["mgu", "lstm"])
def test_torch_compile_matches_eager(cell):
    torch.manual_seed(0)
    model = Model(cell)
    x = torch.randn(2, 4, 3)
    want = model(x)
    torch._dynamo.reset()
    got = torch.compile(model)(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # Gradients through the compiled model equal eager's.
    g_want = torch.autograd.grad(want.sum(), list(model.parameters()))
    g_got = torch.autograd.grad(got.sum(), list(model.parameters()))
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", ["mgu", "lstm-peephole", "gru"])
def test_traceable_step_equals_reference_step(cell):
    # The closures exporters and compilers run are the reference step, number for number.
    from gatelab import load_cell
    from gatelab.cell.evaluate import init_params, step, traceable_step

    c = load_cell(cell)
    g = torch.Generator().manual_seed(0)
    params = init_params(c, 3, 4, generator=g)
    states = {s: torch.randn(2, 4, generator=g) for s in c.states}
    x = torch.randn(2, 3, generator=g)
    want = step(c, {c.inputs[0]: x}, states, params)
    new, out = traceable_step(c)({**params, **states, c.inputs[0]: x})
    for s in c.states:
        torch.testing.assert_close(new[s], want.states[s], rtol=0, atol=0)
    torch.testing.assert_close(out, want.output, rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("cell", ["mgu", "lstm"])
def test_torch_compile_has_no_graph_break(cell):
    torch._dynamo.reset()
    explained = torch._dynamo.explain(Model(cell))(torch.randn(2, 4, 3))
    assert explained.graph_break_count == 0, explained.break_reasons
    assert explained.graph_count == 1


@pytest.mark.slow
def test_onnx_dynamic_batch(tmp_path):
    # The batch stays dynamic through the unrolled loop (the sequence length does not).
    torch.manual_seed(0)
    model = Model("mgu").eval()
    path = tmp_path / "b.onnx"
    torch.onnx.export(model, (torch.randn(2, 4, 3),), str(path), dynamo=True,
                      input_names=["x"], dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 4, 3)
    (got,) = sess.run(None, {"x": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(got), model(x), rtol=1e-5, atol=1e-5)
