"""The vendor path: a cell proved equal to torch's on the IR runs torch's own kernels."""

from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence
from typer.testing import CliRunner

import gatelab
import gatelab.nn as gn
from gatelab.cli import app
from gatelab.engine.vendor import explain_path, vendor_match

MY_LSTM = """# an LSTM written by a user: other names, gates in another order
name mylstm
input u
state y
state m
gate  keep = sigmoid(A_k @ u + B_k @ y + k0)
let   cand = tanh(B_c @ y + A_c @ u + c0)
gate  out = sigmoid(A_o @ u + B_o @ y + o0)
gate  write = sigmoid(A_w @ u + B_w @ y + w0)
let   mem = keep * m + write * cand
next  m = mem
next  y = out * tanh(mem)
output y
"""


@pytest.fixture
def my_lstm(tmp_path):
    path = tmp_path / "mylstm.cell"
    path.write_text(MY_LSTM, encoding="utf-8")
    return path


@pytest.mark.parametrize("name, mode", [("lstm", "LSTM"), ("gru-torch", "GRU"),
                                        ("rnn", "RNN_TANH")])
def test_torch_cells_of_the_zoo_are_proved(name, mode):
    m = vendor_match(gatelab.load_cell(name))
    assert m.mode == mode and "proved" in m.reason


@pytest.mark.parametrize("name, why", [
    ("lstm-peephole", "no place for the parameters p_i, p_f, p_o"),
    ("gru", "multiply the output state alone"),  # the article's GRU: reset before the matmul
    ("mgu", "weight blocks"), ("cifg", "weight blocks"), ("mingru", "weight blocks")])
def test_other_cells_are_not(name, why):
    m = vendor_match(gatelab.load_cell(name))
    assert m.mode is None and why in m.reason


def test_renamed_reordered_lstm_qualifies(my_lstm):
    m = vendor_match(gatelab.load_cell(my_lstm))
    assert m.mode == "LSTM" and m.states == ("y", "m")
    assert m.ih_perm == (3, 0, 1, 2)  # torch's i, f, g, o are the user's write, keep, cand, out


def test_changed_equation_does_not_qualify(my_lstm, tmp_path):
    bad = tmp_path / "bad.cell"  # h' reads the previous memory: not an LSTM any more
    bad.write_text(MY_LSTM.replace("out * tanh(mem)", "out * tanh(m)"), encoding="utf-8")
    m = vendor_match(gatelab.load_cell(bad))
    assert m.mode is None and "equations differ" in m.reason


def test_relu_is_not_tanh():
    relu = gatelab.cell.parse_cell("name r\ninput x\nstate h\n"
                                   "next h = relu(W @ x + U @ h + b)\noutput h\n")
    assert vendor_match(relu).mode == "RNN_RELU"


@pytest.mark.parametrize("bidirectional", [False, True])
def test_user_lstm_on_torch_kernels_equals_its_own_equations(my_lstm, bidirectional):
    """The vendor path (permuted blocks, torch's kernel) against gatelab's reference loop,
    derived from the user's equations alone."""
    torch.manual_seed(0)
    fast = gn.RNN(my_lstm, 3, 4, num_layers=2, bidirectional=bidirectional).double()
    slow = gn.RNN(my_lstm, 3, 4, num_layers=2, bidirectional=bidirectional,
                  backend="reference").double()
    slow.load_state_dict(fast.state_dict())
    assert fast.path == "vendor" and fast.mode == "LSTM" and slow.path == "reference"
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    outs = [m(x) for m in (fast, slow)]
    for a, b in zip(torch.utils._pytree.tree_leaves(outs[0]),
                    torch.utils._pytree.tree_leaves(outs[1]), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    g = [torch.autograd.grad(o[0].sum(), [x, *m.parameters()]) for o, m in zip(outs, (fast, slow),
                                                                               strict=True)]
    for a, b in zip(*g, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_vendor_equals_torch_exactly_packed_and_projected():
    torch.manual_seed(1)
    ref = torch.nn.LSTM(3, 6, num_layers=2, bidirectional=True, proj_size=2)
    ours = gn.from_torch(ref)
    x = torch.randn(7, 4, 3)
    packed = pack_padded_sequence(x, torch.tensor([7, 2, 5, 3]), enforce_sorted=False)
    (o1, (h1, c1)), (o2, (h2, c2)) = ref(packed), ours(packed)
    assert torch.equal(o1.data, o2.data) and torch.equal(h1, h2) and torch.equal(c1, c2)
    assert ours.weight_hr_l1_reverse.shape == (2, 6)


@pytest.mark.parametrize("name, backend", [("mgu", "generated"), ("lstm-peephole", "generated"),
                                           ("mingru", "scan"), ("gru", "torch")])
def test_generated_backends_have_exact_second_derivatives(name, backend):
    torch.manual_seed(2)
    m = gn.RNN(name, 2, 3, backend=backend).double()
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)

    def f(x, *ps):
        return torch.func.functional_call(m, dict(zip(names, ps, strict=True)), (x,))[0]

    assert torch.autograd.gradgradcheck(f, (x, *params), fast_mode=True)


def test_cli_says_which_path(my_lstm):
    runner = CliRunner()
    res = runner.invoke(app, ["engine", str(my_lstm)])
    assert res.exit_code == 0 and "path (backend='auto'): vendor" in res.output
    res = runner.invoke(app, ["engine", "gru"])
    from gatelab.engine import c_pointwise

    kernel = "sequence" if c_pointwise.available() else "generated"
    assert f"path (backend='auto'): {kernel}" in res.output
    res = runner.invoke(app, ["analyze", "lstm", "--format", "json"])
    assert '"path": "vendor"' in res.output
    assert explain_path(gatelab.load_cell("mingru"))["path"] == "scan"


def test_engine_path_reported_is_the_one_auto_runs_for_every_zoo_cell():
    """analyze/engine state the path; backends.resolve is what the layer runs. They agree."""
    from gatelab.cell.zoo import zoo_names
    from gatelab.engine.backends import resolve

    for name in zoo_names():
        m = gn.RNN(name, 4, 4)
        said = explain_path(m.cell)["path"]
        runs = "vendor" if m.path == "vendor" else resolve(m.layout, "auto", torch.device("cpu"))
        assert said == (runs if runs != "c" else "generated"), name
    r = CliRunner().invoke(app, ["engine", "lstm-ln"])
    assert r.exit_code == 0 and "path (backend='auto'): generated" in r.output, r.output


OUTPUT_LET = {
    "lstm": ("input u\nstate y, m\ngate a = sigmoid(P @ u + Q @ y + p)\n"
             "gate b = sigmoid(R @ u + S @ y + q)\nlet g = tanh(T @ u + V @ y + r)\n"
             "gate e = sigmoid(X @ u + Y @ y + s)\nlet m2 = b * m + a * g\nnext m = m2\n"
             "let out = e * tanh(m2)\nnext y = out\noutput out\n"),
    "gru": ("input u\nstate y\ngate r = sigmoid(A @ u + B @ y + a)\n"
            "gate z = sigmoid(C @ u + D @ y + c)\n"
            "let n = tanh(E @ u + e + r * (F @ y + f))\nlet y2 = n + z * (y - n)\n"
            "next y = y2\noutput y2\n"),
}


@pytest.mark.parametrize("name", list(OUTPUT_LET))
def test_output_written_as_a_let_equal_to_a_state_keeps_the_vendor_path(name):
    """`let out = ...; next y = out; output out` is the same readout as `output y`: the proof
    accepts it, and torch's kernels give the reference loop's numbers."""
    cell = gatelab.parse_cell(OUTPUT_LET[name])
    assert vendor_match(cell).mode == name.upper()
    torch.manual_seed(0)
    fast = gn.RNN(cell, 3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    ref = gn.RNN(cell, 3, 4, num_layers=2, bidirectional=True, dtype=torch.float64,
                 backend="reference")
    ref.load_state_dict(fast.state_dict())
    assert fast.path == "vendor"
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    (o1, h1), (o2, h2) = fast(x), ref(x)
    assert (o1 - o2).abs().max() < 1e-12
    for a, b in zip(h1 if isinstance(h1, tuple) else (h1,), h2 if isinstance(h2, tuple)
                    else (h2,), strict=True):
        assert (a - b).abs().max() < 1e-12
