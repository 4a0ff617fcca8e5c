"""The vendor path on cells written as torch's documentation writes them: two biases to a gate
(``W_ii x + b_ii + W_hi h + b_hi``; GRU's ``b_hn`` inside ``r * (W_hn h + b_hn)``).

Cells are generated with random names, gate order and term order (the class of writing, not a
few files); each is proved torch's, then run three ways in float64: the vendor path, gatelab's
reference engine on the same parameters, and torch's own module loaded with the vendor mapping.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import gatelab
import gatelab.nn as gn
from gatelab.engine.vendor import bias_blocks, flat_weights, vendor_match

TOL = 1e-10
TORCH_MODULES: dict[str, Callable[..., torch.nn.RNNBase]] = {
    "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU,
    "RNN_TANH": lambda *a, **k: torch.nn.RNN(*a, nonlinearity="tanh", **k),
    "RNN_RELU": lambda *a, **k: torch.nn.RNN(*a, nonlinearity="relu", **k)}


class Names:
    """Fresh, random-looking identifiers (never a function name of the cell language)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng, self.used = rng, set()

    def __call__(self) -> str:
        while True:
            n = self.rng.choice("ABCDEFGHJKLMNPQRSTVYZ") + self.rng.choice("aeoquvy") + str(
                self.rng.randrange(100))
            if n not in self.used:
                self.used.add(n)
                return n


def _sum(rng: random.Random, terms: list[str]) -> str:
    terms = terms[:]
    rng.shuffle(terms)
    return " + ".join(terms)


def _product(rng: random.Random, a: str, b: str) -> str:
    return f"{a} * {b}" if rng.random() < 0.5 else f"{b} * {a}"


def gen_lstm(seed: int) -> tuple[str, dict[str, tuple[str, str]]]:
    """An LSTM with two biases per gate; returns the text and torch gate -> its two biases."""
    rng = random.Random(seed)
    new = Names(rng)
    x, h, c = new(), new(), new()
    gate = {g: new() for g in "ifgo"}
    pre, biases = {}, {}
    for g in "ifgo":
        bx, bh = new(), new()
        biases[g] = (bx, bh)
        pre[g] = _sum(rng, [f"{new()} @ {x}", bx, f"{new()} @ {h}", bh])
    lines = [f"gate  {gate[g]} = sigmoid({pre[g]})" for g in "ifo"]
    lines.append(f"let   {gate['g']} = tanh({pre['g']})")
    rng.shuffle(lines)  # evaluation order is derived, file order is free
    mem = new()
    lines.append(f"let   {mem} = " + _sum(rng, [_product(rng, gate["f"], c),
                                                 _product(rng, gate["i"], gate["g"])]))
    states = [h, c]
    rng.shuffle(states)
    text = "\n".join([f"name lstm-{seed}", f"input {x}", f"state {', '.join(states)}", *lines,
                      f"next {c} = {mem}", f"next {h} = {_product(rng, gate['o'], f'tanh({mem})')}",
                      f"output {h}", ""])
    return text, biases


def gen_gru(seed: int) -> tuple[str, dict[str, tuple[str, str]]]:
    """torch's GRU with two biases per gate, ``b_hn`` inside ``r * (...)``."""
    rng = random.Random(seed)
    new = Names(rng)
    x, h = new(), new()
    r, z, n = new(), new(), new()
    biases = {g: (new(), new()) for g in "rzn"}
    lines = [f"gate  {g} = sigmoid(" + _sum(rng, [f"{new()} @ {x}", biases[k][0],
                                                  f"{new()} @ {h}", biases[k][1]]) + ")"
             for g, k in ((r, "r"), (z, "z"))]
    inner = "(" + _sum(rng, [f"{new()} @ {h}", biases["n"][1]]) + ")"
    lines.append(f"let   {n} = tanh(" + _sum(rng, [f"{new()} @ {x}", biases["n"][0],
                                                   _product(rng, r, inner)]) + ")")
    rng.shuffle(lines)
    update = rng.choice([f"(1 - {z}) * {n} + {z} * {h}", f"{n} + {z} * ({h} - {n})",
                         f"{z} * {h} + {n} - {z} * {n}"])
    text = "\n".join([f"name gru-{seed}", f"input {x}", f"state {h}", *lines,
                      f"next {h} = {update}", f"output {h}", ""])
    return text, biases


def gen_elman(seed: int, act: str = "tanh") -> tuple[str, dict[str, tuple[str, str]]]:
    rng = random.Random(seed)
    new = Names(rng)
    x, h, bx, bh = new(), new(), new(), new()
    pre = _sum(rng, [f"{new()} @ {x}", bx, f"{new()} @ {h}", bh])
    text = "\n".join([f"name elman-{seed}", f"input {x}", f"state {h}",
                      f"next {h} = {act}({pre})", f"output {h}", ""])
    return text, {"h": (bx, bh)}


GENERATED = [("LSTM", *gen_lstm(s)) for s in range(3)] + [
    ("GRU", *gen_gru(s)) for s in range(3)] + [
    ("RNN_TANH", *gen_elman(s)) for s in range(2)] + [("RNN_RELU", *gen_elman(7, "relu"))]

# torch's documentation, literally (with its gate order and names)
TORCH_DOCS_LSTM = """name lstm-docs
input x
state h, c
gate i = sigmoid(W_ii @ x + b_ii + W_hi @ h + b_hi)
gate f = sigmoid(W_if @ x + b_if + W_hf @ h + b_hf)
let g = tanh(W_ig @ x + b_ig + W_hg @ h + b_hg)
gate o = sigmoid(W_io @ x + b_io + W_ho @ h + b_ho)
next c = f * c + i * g
next h = o * tanh(f * c + i * g)
output h
"""
# one gate with two biases, the others one or none: every bias lands on one block, zeros elsewhere
MIXED_GRU = """name gru-mixed
input x
state h
gate r = sigmoid(Wr @ x + Ur @ h + br)
gate z = sigmoid(bz_h + Uz @ h + Wz @ x + bz_x)
let n = tanh(Wn @ x + r * (Un @ h + bn))
next h = (1 - z) * n + z * h
output h
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cell.cell"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("mode, text, biases", GENERATED,
                         ids=[f"{m}-{k}" for k, (m, _, _) in enumerate(GENERATED)])
def test_two_bias_cells_are_proved_and_map_biases(tmp_path, mode, text, biases):
    cell = gatelab.load_cell(_write(tmp_path, text))
    engine = gatelab.analyze(cell).to_dict()["engine"]
    assert engine["path"] == "vendor" and engine["torch"] == mode, (engine, text)
    m = vendor_match(cell)
    gates = {"LSTM": "ifgo", "GRU": "rzn"}.get(mode, "h")
    for k, g in enumerate(gates):
        # additive gates: either bias may be the ih one (both are summed); GRU's n: determined
        assert {m.ih_bias[k], m.hh_bias[k]} == set(biases[g])
    if mode == "GRU":  # b_in sits with W_in x, b_hn inside r * (W_hn h + b_hn)
        assert (m.ih_bias[2], m.hh_bias[2]) == biases["n"]


def test_natural_assignment_and_torch_docs_form():
    """Written ``W x + b_i + U h + b_h``, the bias beside the input term is ``bias_ih``."""
    m = vendor_match(gatelab.cell.parse_cell(TORCH_DOCS_LSTM))
    assert m.mode == "LSTM" and m.ih_perm == (0, 1, 2, 3) and m.states == ("h", "c")
    assert m.ih_bias == ("b_ii", "b_if", "b_ig", "b_io")
    assert m.hh_bias == ("b_hi", "b_hf", "b_hg", "b_ho")
    m = vendor_match(gatelab.cell.parse_cell(MIXED_GRU))
    assert m.mode == "GRU" and m.ih_bias[2] is None and m.hh_bias[2] == "bn"


@pytest.mark.parametrize("change, why", [
    # b_hn outside r * (...): that is not torch's GRU (r would scale it)
    ("let n = tanh(Wn @ x + bin + bhn + r * (Un @ h))", "no place for the parameters"),
    ("let n = tanh(Wn @ x + bin + r * (Un @ h) + bhn)", "no place for the parameters"),
    # both inside r * (...): torch has one bias block there
    ("let n = tanh(Wn @ x + r * (Un @ h + bhn + bin))", "no place for the parameters"),
])
def test_misplaced_second_bias_is_not_torch(change, why):
    text = ("name bad\ninput x\nstate h\ngate r = sigmoid(Wr @ x + bir + Ur @ h + bhr)\n"
            "gate z = sigmoid(Wz @ x + biz + Uz @ h + bhz)\n" + change + "\n"
            "next h = (1 - z) * n + z * h\noutput h\n")
    m = vendor_match(gatelab.cell.parse_cell(text))
    assert m.mode is None and why in m.reason


def test_two_bias_equation_change_is_caught():
    bad = TORCH_DOCS_LSTM.replace("next h = o * tanh(f * c + i * g)", "next h = o * tanh(c)")
    m = vendor_match(gatelab.cell.parse_cell(bad))
    assert m.mode is None and "equations differ" in m.reason


def _leaves(out) -> list[torch.Tensor]:
    return torch.utils._pytree.tree_leaves(out)


def _max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    assert len(a) == len(b)
    return max(float((p - q).abs().max().detach()) for p, q in zip(a, b, strict=True))


CASES = [(m, t) for m, t, _ in GENERATED] + [("LSTM", TORCH_DOCS_LSTM), ("GRU", MIXED_GRU)]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("mode, text", CASES, ids=[f"{m}-{k}" for k, (m, _) in enumerate(CASES)])
def test_vendor_equals_reference_and_torch(tmp_path, mode, text, bias):
    """Outputs and gradients of torch's kernels on the cell's own parameters equal gatelab's
    reference engine (the user's equations), and torch's module loaded with the vendor mapping
    gives the same outputs: the biases reach torch's bias_ih/bias_hh blocks correctly."""
    torch.manual_seed(0)
    path = _write(tmp_path, text)
    kw = dict(num_layers=2, bidirectional=True, bias=bias, dtype=torch.float64)
    fast = gn.RNN(path, 3, 4, **kw)
    slow = gn.RNN(path, 3, 4, backend="reference", **kw)
    slow.load_state_dict(fast.state_dict())
    assert fast.path == "vendor" and fast.mode == mode and slow.path == "reference"
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    hx = tuple(torch.randn(4, 2, 4, dtype=torch.float64) for _ in fast.state_names)
    hx = hx if len(hx) > 1 else hx[0]
    outs = [m(x, hx) for m in (fast, slow)]
    assert _max_diff(_leaves(outs[0]), _leaves(outs[1])) <= TOL
    grads = [torch.autograd.grad(sum((t * t).sum() for t in _leaves(o)), [x, *m.parameters()])
             for o, m in zip(outs, (fast, slow), strict=True)]
    assert _max_diff(list(grads[0]), list(grads[1])) <= TOL

    ref = TORCH_MODULES[mode](3, 4, **kw)
    per = [fast.packed_params(k, d) for k in range(2) for d in range(2)]
    with torch.no_grad():
        for p, w in zip(ref._flat_weights, flat_weights(fast._vendor, per, 4), strict=True):
            p.copy_(w)
    assert _max_diff(_leaves(ref(x, hx)), _leaves(outs[1])) <= TOL
    lengths = torch.tensor([5, 2])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    a, b = fast(packed, hx), ref(packed, hx)
    assert _max_diff([a[0].data, *_leaves(a[1])], [b[0].data, *_leaves(b[1])]) <= TOL


def test_bias_blocks_are_torch_order_for_the_cell_kernel():
    """One step of torch's cell kernel with :func:`bias_blocks` equals the reference step."""
    torch.manual_seed(3)
    layer = gn.RNN(gatelab.cell.parse_cell(MIXED_GRU), 3, 4, dtype=torch.float64)
    v, t = layer._vendor, layer.packed_params()
    b_ih, b_hh = bias_blocks(v, t, 4)
    assert torch.equal(b_ih[8:], torch.zeros(4, dtype=torch.float64))  # no bias beside Wn @ x
    assert torch.equal(b_hh[8:], t["bn"])
    x, h = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)
    w_ih, w_hh = flat_weights(v, [t], 4)[:2]
    fast = torch._VF.gru_cell(x, h, w_ih, w_hh, b_ih, b_hh)
    slow = layer.layout.traceable({**layer.cell_params(), "h": h, "x": x})[0]["h"]
    assert float((fast - slow).abs().max().detach()) <= TOL


@pytest.mark.parametrize("mode, text", CASES[:1] + CASES[3:4] + CASES[-2:],
                         ids=["LSTM", "GRU", "docs-LSTM", "mixed-GRU"])
def test_single_step_cell_module(tmp_path, mode, text):
    """``gatelab.nn.Cell`` on a two-bias cell: its vendor step must put the loose biases in
    torch's blocks (needs ``gatelab.nn.cell.Cell._vendor_step`` to use ``bias_blocks``)."""
    torch.manual_seed(4)
    step = gn.Cell(_write(tmp_path, text), 3, 4, dtype=torch.float64)
    assert step.path == "vendor"
    x = torch.randn(2, 3, dtype=torch.float64)
    hs = tuple(torch.randn(2, 4, dtype=torch.float64) for _ in step.state_names)
    got = step(x, hs if len(hs) > 1 else hs[0])
    nxt = step.layout.traceable({**step.cell_params(), **dict(zip(step.state_names, hs,
                                                                  strict=True)),
                                 step.cell.inputs[0]: x})[0]
    assert _max_diff(_leaves(got), [nxt[s] for s in step.state_names]) <= TOL
