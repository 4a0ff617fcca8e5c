"""Published cells written again by someone else: every name changed, statements reordered,
updates in another (equivalent) form. The expectations below were derived by hand from the
equations, not read off the analysis; the analysis must find them from the equations alone.
Each cell also trains on the adding problem, and the scan-parallel ones run through the scan.
"""

from __future__ import annotations

import csv
import math

import pytest
import torch

import gatelab
from gatelab.analysis import analyze
from gatelab.diagram.circuit import build_circuit
from gatelab.engine.backends import resolve
from gatelab.engine.layout import Layout
from gatelab.train import TrainConfig, train

# (source, memory states, readouts, {setting: (kind of the memory, identity path)},
#  {gate: switch type}, scan-parallel). Settings list gates in file order.
CELLS = {
    # LSTM: output first, the memory's let before the gates it uses.
    "lstm": ("""\
input u
state out, mem
let   mem_next = keep * mem + write * cand
gate  show = sigmoid(A_s @ u + B_s @ out + k_s)
next  out = show * tanh(mem_next)
let   cand = tanh(A_c @ u + B_c @ out + k_c)
gate  write = sigmoid(A_w @ u + B_w @ out + k_w)
gate  keep = sigmoid(A_k @ u + B_k @ out + k_k)
next  mem = mem_next
output out
""", ("mem",), ("out",), {
        "show=1, write=0, keep=0": ("zero", False),
        "show=1, write=1, keep=0": ("rnn", False),
        "show=0, write=1, keep=0": ("feedforward", False),  # the state reaches cand via show
        "show=1, write=0, keep=1": ("hold", True),
        "show=1, write=1, keep=1": ("residual_rnn", True),
        "show=0, write=1, keep=1": ("other", True),  # accumulator: mem + tanh(A_c u + k_c)
    }, {"show": "spst", "write": "spst", "keep": "spst"}, False),
    # GRU written as an interpolation s + upd (cand - s).
    "gru": ("""\
input inp
state s
next  s = s + upd * (cand - s)
let   cand = tanh(P @ inp + Q @ (rst * s) + c0)
gate  rst = sigmoid(P_r @ inp + Q_r @ s + c_r)
gate  upd = sigmoid(P_u @ inp + Q_u @ s + c_u)
""", ("s",), (), {
        "rst=1, upd=0": ("hold", True), "rst=0, upd=0": ("hold", True),
        "rst=1, upd=1": ("rnn", False), "rst=0, upd=1": ("feedforward", False),
    }, {"rst": "spst", "upd": "spdt"}, False),
    # SRU, the output written as a state (a readout that reads the input and never feeds back).
    "sru": ("""\
input v : hidden
state keep_out, acc
gate  r2 = sigmoid(M_r @ v + e_r)
next  keep_out = r2 * tanh(acc_new) + (1 - r2) * v
let   acc_new = f2 * acc + (1 - f2) * (M @ v)
gate  f2 = sigmoid(M_f @ v + e_f)
next  acc = acc_new
output keep_out
""", ("acc",), ("keep_out",), {
        "r2=1, f2=1": ("hold", True), "r2=0, f2=1": ("hold", True),
        "r2=1, f2=0": ("feedforward", False), "r2=0, f2=0": ("feedforward", False),
    }, {"r2": "spdt", "f2": "spdt"}, True),
    # The same SRU with the output as a let: the same verdicts.
    "sru-let": ("""\
input v : hidden
state acc
gate  f2 = sigmoid(M_f @ v + e_f)
let   acc_new = f2 * acc + (1 - f2) * (M @ v)
gate  r2 = sigmoid(M_r @ v + e_r)
let   y = r2 * tanh(acc_new) + (1 - r2) * v
next  acc = acc_new
output y
""", ("acc",), (), {
        "f2=1, r2=1": ("hold", True), "f2=0, r2=0": ("feedforward", False),
    }, {"r2": "spdt", "f2": "spdt"}, True),
    # QRNN fo-pooling: output gate on a readout.
    "qrnn": ("""\
input q
state hid, cel
next  hid = og * cel_new
gate  og = sigmoid(K_o @ q + d_o)
let   cel_new = fg * cel + (1 - fg) * zz
let   zz = tanh(K_z @ q + d_z)
gate  fg = sigmoid(K_f @ q + d_f)
next  cel = cel_new
output hid
""", ("cel",), ("hid",), {
        "og=1, fg=1": ("hold", True), "og=0, fg=0": ("feedforward", False),
    }, {"og": "spst", "fg": "spdt"}, True),
    # QRNN of filter width 2 (the paper's usual setting): the previous input is kept as a
    # readout state, and the gates read it. Gates are functions of x_t and x_{t-1}: still a scan.
    "qrnn2": ("""\
input q : hidden
state hid, cel, qprev
gate  og = sigmoid(K_o @ q + L_o @ qprev + d_o)
let   cel_new = fg * cel + (1 - fg) * zz
next  hid = og * cel_new
let   zz = tanh(K_z @ q + L_z @ qprev + d_z)
gate  fg = sigmoid(K_f @ q + L_f @ qprev + d_f)
next  qprev = q
next  cel = cel_new
output hid
""", ("cel",), ("hid", "qprev"), {
        "og=1, fg=1": ("hold", True), "og=0, fg=0": ("feedforward", False),
    }, {"og": "spst", "fg": "spdt"}, True),
    # The same with a highway output that reads the input itself: the output readout was
    # written in p's new value (p' = x) and the scan could not evaluate it.
    "qrnn2-highway": ("""\
input x : hidden
state c, h, p
next  p = x
gate  f = sigmoid(W_f @ x + U_f @ p + b_f)
gate  o = sigmoid(W_o @ x + U_o @ p + b_o)
let   cn = f * c + (1 - f) * tanh(W_z @ x + b_z)
next  c = cn
next  h = o * cn + (1 - o) * x
output h
""", ("c",), ("h", "p"), {
        "f=1, o=1": ("hold", True), "f=0, o=0": ("feedforward", False),
    }, {"f": "spdt", "o": "spdt"}, True),
    # IndRNN: the elementwise recurrence is the diagonal linear map diag(w_self).
    "indrnn": ("""\
input z
state a
next  a = relu(w_self * a + Win @ z + bias)
""", ("a",), (), {"(no gates)": ("rnn", False)}, {}, False),
    # Delta-RNN: multiplicative integration, linear in the state inside tanh.
    "delta": ("""\
input e
state st
gate  mix = sigmoid(Wd @ e + bm)
next  st = mix * st + (1 - mix) * inner
let   inner = tanh(al * (Vd @ st) * (Wd @ e) + be1 * (Vd @ st) + be2 * (Wd @ e) + bz)
""", ("st",), (), {"mix=1": ("hold", True), "mix=0": ("rnn", False)}, {"mix": "spdt"}, False),
    # The same Delta-RNN with the multiplicative integration factored: W·x ⊙ (α ⊙ V·h + β₂).
    "delta-factored": ("""\
input e
state st
gate  mix = sigmoid(Wd @ e + bm)
next  st = mix * st + (1 - mix) * inner
let   inner = tanh((Wd @ e) * (al * (Vd @ st) + be2) + be1 * (Vd @ st) + bz)
""", ("st",), (), {"mix=1": ("hold", True), "mix=0": ("rnn", False)}, {"mix": "spdt"}, False),
    # An RNN normalised over the summed pre-activation (LN(W·x + U·h), one normalisation).
    "ln-rnn": ("""\
input x
state s
next  s = tanh(gn * layer_norm(Wx @ x + Us @ s) + bn)
""", ("s",), (), {"(no gates)": ("rnn", False)}, {}, False),
    # JANET: two gates from one pre-activation, each a single-throw switch.
    "janet": ("""\
input xi
state cc
gate  ff = sigmoid(pre)
let   cand = tanh(Vc @ xi + Rc @ cc + bc)
gate  kk = sigmoid(pre - 1)
next  cc = ff * cc + (1 - kk) * cand
let   pre = Vf @ xi + Rf @ cc + bf
""", ("cc",), (), {
        "ff=0, kk=0": ("rnn", False), "ff=0, kk=1": ("zero", False),
        "ff=1, kk=0": ("residual_rnn", True), "ff=1, kk=1": ("hold", True),
    }, {"ff": "spst", "kk": "spst"}, False),
    # MUT1: tanh of the input itself (a hidden-size input).
    "mut1": ("""\
input xx : hidden
state hh
next  hh = hh * (1 - zg) + zg * tanh(Whh @ (rg * hh) + tanh(xx) + bh)
gate  rg = sigmoid(Wxr @ xx + Whr @ hh + br)
gate  zg = sigmoid(Wxz @ xx + bz)
""", ("hh",), (), {
        "rg=1, zg=0": ("hold", True), "rg=1, zg=1": ("rnn", False),
        "rg=0, zg=1": ("feedforward", False),
    }, {"rg": "spst", "zg": "spdt"}, False),
    # An idempotent gate: g*g acts as g, one double-throw switch.
    "square": ("""\
input x
state s
gate  g = sigmoid(Wg @ x + Ug @ s + bg)
next  s = g * g * s + (1 - g) * tanh(Wc @ x)
""", ("s",), (), {"g=1": ("hold", True), "g=0": ("feedforward", False)}, {"g": "spdt"}, False),
}


def _cell(name):
    return gatelab.parse_cell(CELLS[name][0], default_name=name)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_hand_derived_analysis(name):
    _, memory, readouts, modes, switches, scan = CELLS[name]
    a = analyze(_cell(name))
    assert a.memory_states == memory
    assert tuple(a.readouts) == readouts
    by_label = {m.label: m for m in a.modes}
    for label, (kind, identity) in modes.items():
        m = by_label[label]
        assert m.kind == {memory[0]: kind}, (label, m.kind)
        assert m.identity_path == {memory[0]: identity}, label
    assert {s.gate: s.type for s in a.switches} == switches
    assert a.scan_parallel is scan, a.scan_reasons
    assert set(build_circuit(a).gates) == set(switches)  # every gate drawn as a switch


def test_idempotent_gate_is_one_double_throw_labelled_g():
    a = analyze(_cell("square"))
    (place,) = a.switch("g").where
    assert place.type == "spdt" and a.switch("g").contacts == 2
    assert [str(s) for s in place.signals] == ["s", "tanh(MatVec(Wc, x))"]
    labels = {p.label for p in build_circuit(a).switches()}
    assert labels == {"g"}


def test_elementwise_recurrence_is_the_cores_recurrent_map():
    a = analyze(_cell("indrnn"))
    (block,) = a.core["a"]
    assert block.act == "relu" and block.recurrent_maps == ("diag(w_self)",)
    assert [str(t) for t in block.through] == ["a"] and block.biases == ("bias",)
    assert a.modes[0].kinds["a"].rnn.recurrent_maps == ("diag(w_self)",)
    delta = analyze(_cell("delta")).mode(mix=0).kinds["st"].rnn
    assert delta.act == "tanh" and "Vd" in " ".join(delta.recurrent_maps)


def test_kind_does_not_depend_on_how_a_product_is_written():
    """Delta-RNN factored or multiplied out: the same recurrent maps; its drawing keeps every
    path (the bias inside a factor, β₂ ⊙ W·x, is a path, not a shift to leave out)."""
    factored = analyze(_cell("delta-factored"))
    spread = analyze(_cell("delta"))
    maps = [set(a.mode(mix=0).kinds["st"].rnn.recurrent_maps) for a in (factored, spread)]
    assert maps[0] == {"diag(be1)·Vd", "diag(al ⊙ Wd·e)·Vd"} and len(maps[1]) == 2
    labels = {p.label for p in build_circuit(factored).parts()}
    assert {"al", "be1", "be2", "Wd", "Vd"} <= labels
    ln = analyze(_cell("ln-rnn")).modes[0].kinds["s"].rnn
    assert ln.recurrent_maps == ("diag(gn)·layer_norm∘Us",) and ln.input_maps == ("Wx",)


@pytest.mark.parametrize("name", ["qrnn2", "qrnn2-highway"])
def test_width_two_qrnn_scans_equal_to_the_loop(name):
    """The readout holding x_{t-1} is read by the gates: the scan (what auto takes) equals the
    reference loop in float64 on a packed batch, outputs and gradients."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    import gatelab.nn as gn

    cell = _cell(name)
    assert resolve(Layout.of(cell), "auto", torch.device("cpu")) == "scan"
    torch.manual_seed(0)
    ref = gn.RNN(cell, 3, 3, backend="reference", dtype=torch.float64)
    scan = gn.RNN(cell, 3, 3, backend="scan", dtype=torch.float64)
    scan.load_state_dict(ref.state_dict())
    x = torch.randn(6, 4, 3, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 3, 5, 1])
    results = []
    for m in (ref, scan):
        packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
        out, hn = m(packed)
        out, _ = pad_packed_sequence(out)
        loss = (out * torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(out)).sum()
        loss = loss + sum((h ** 2).sum() for h in hn)
        results.append((out, hn, torch.autograd.grad(loss, [x, *m.parameters()])))
    (o1, h1, g1), (o2, h2, g2) = results
    assert torch.allclose(o1, o2, atol=1e-12)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(h1, h2, strict=True))
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(g1, g2, strict=True))


def test_gate_made_of_gates_is_no_switch_of_its_own():
    """CIFG with its input gate declared as a gate, ``gate i = 1 - f``: the same settings and
    switches as with ``let i = 1 - f`` (not 8 settings, some the cell cannot take)."""
    body = """\
input x
state h, c
gate  f = sigmoid(W_f @ x + U_f @ h + b_f)
{kw}   i = 1 - f
gate  o = sigmoid(W_o @ x + U_o @ h + b_o)
let   cn = f * c + i * tanh(W_c @ x + U_c @ h + b_c)
next  c = cn
next  h = o * tanh(cn)
output h
"""
    as_gate = gatelab.parse_cell(body.format(kw="gate"), default_name="cifg")
    as_let = gatelab.parse_cell(body.format(kw="let"), default_name="cifg")
    assert as_gate == as_let and set(as_gate.gates) == {"f", "o"}
    a = analyze(as_gate)
    assert len(a.modes) == 4 and a.switch("f").type == "spdt"


def test_output_as_state_or_let_gets_the_same_verdict():
    a, b = analyze(_cell("sru")), analyze(_cell("sru-let"))
    assert a.memory_states == b.memory_states == ("acc",)
    assert a.scan_parallel and b.scan_parallel
    assert {m.label: m.kind for m in a.modes} == {
        ", ".join(sorted(m.label.split(", "), reverse=True)): m.kind for m in b.modes}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CELLS))
def test_trains_on_the_adding_problem(name, tmp_path):
    path = tmp_path / f"{name}.cell"
    path.write_text(CELLS[name][0], encoding="utf-8")
    cell = gatelab.load_cell(path)
    if CELLS[name][5]:  # scan-parallel cells run through the scan
        assert resolve(Layout.of(cell), "auto", torch.device("cpu")) == "scan"
    out = train(TrainConfig(task="adding", cell=str(path), T=10, hidden=6, batch=8, steps=3,
                            eval_every=3, eval_size=32, out=str(tmp_path / "run")),
                progress=False)
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert rows and all(math.isfinite(float(r["loss"])) for r in rows)


def test_many_coupled_memories_scan_step_by_step_equal_to_the_loop(monkeypatch):
    """Six memories, each mixing in the next (a ring): scan-parallel but coupled, K = 6 > 4,
    so the scan goes step by step over A's nonzero entries instead of K×K doubling (20 such
    memories peaked at 2.1 GB). Equal to the reference loop, with random initial states, on a
    packed batch, gradients included."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    import gatelab.engine.scan_cells as scan_cells
    import gatelab.nn as gn

    K = 6
    text = ("input x\nstate " + ", ".join(f"s{i}" for i in range(K)) + "\n"
            + "".join(f"gate g{i} = sigmoid(W{i} @ x + b{i})\n" for i in range(3))
            + "".join(f"next s{i} = g{i % 3}*s{i} + (1 - g{i % 3})*s{(i + 1) % K}"
                      f" + tanh(V{i % 2} @ x)\n" for i in range(K)) + "output s0\n")
    cell = gatelab.parse_cell(text, default_name="ring")
    calls = []
    monkeypatch.setattr(scan_cells, "_sparse_steps",
                        lambda *a, f=scan_cells._sparse_steps: calls.append(1) or f(*a))
    torch.manual_seed(0)
    ref = gn.RNN(cell, 2, 3, backend="reference", dtype=torch.float64)
    scan = gn.RNN(cell, 2, 3, backend="scan", dtype=torch.float64)
    scan.load_state_dict(ref.state_dict())
    x = torch.randn(7, 4, 2, dtype=torch.float64, requires_grad=True)
    hx = tuple(torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(K))
    results = []
    for m in (ref, scan):
        out, hn = m(pack_padded_sequence(x, torch.tensor([7, 3, 5, 1]), enforce_sorted=False),
                    hx)
        out, _ = pad_packed_sequence(out)
        loss = (out * torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(out)).sum()
        loss = loss + sum((h ** 2).sum() for h in hn)
        results.append((out, hn, torch.autograd.grad(loss, [x, *hx, *m.parameters()])))
    assert calls, "the step-by-step path did not run"
    (o1, h1, g1), (o2, h2, g2) = results
    assert o1.abs().max() > 0.1 and torch.allclose(o1, o2, atol=1e-12)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(h1, h2, strict=True))
    assert all(torch.allclose(a, b, atol=1e-10) for a, b in zip(g1, g2, strict=True))
