"""A drawing computes its cell: every circuit, read back as an expression, equals the update it
was read from (biases aside, which the drawing leaves out and keeps), and that update equals the
cell's own equations. Over the zoo, published cells written from their papers, and cells
generated from a grammar (tests/gatedcells.py)."""

from __future__ import annotations

import pytest
import sympy
from hypothesis import HealthCheck, given, settings
from typer.testing import CliRunner

import gatelab
from gatedcells import cell_texts
from gatelab import load_cell
from gatelab.analysis import analyze
from gatelab.analysis.symbols import as_switches
from gatelab.cell.zoo import zoo_names
from gatelab.diagram import circuit as circuit_module
from gatelab.diagram.circuit import DiagramTooLarge, build_circuit
from gatelab.diagram.readback import DiagramMismatch, readback, same_function
from gatelab.errors import GatelabError
from published_cells import PUBLISHED


def switches_of(a) -> set[str]:
    return set(a.gates) | {p.name for p in a.memory.prev_gates.values()}


def assert_round_trip(cell: gatelab.Cell) -> None:
    """Each tree reads back as what it was read from; with no readouts, that is the cell's own
    update (gates as 0/1 switches)."""
    a = analyze(cell)
    c = build_circuit(a)
    assert c.roots, "nothing drawn"
    for name, root in c.roots.items():
        assert same_function(readback(root), c.exprs[name], switches_of(a)), name
    if not a.readouts:
        gates = {cell.sym(g) for g in cell.gates}
        for m in a.memory_states:
            own = as_switches(cell.inline(cell.nexts[m], keep=set(cell.gates)), gates)
            assert same_function(c.exprs[m], own, switches_of(a)), m


@pytest.mark.parametrize("name", zoo_names())
def test_zoo_drawings_compute_the_cell(name):
    assert_round_trip(load_cell(name))


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_cells_round_trip(name):
    assert_round_trip(gatelab.parse_cell(PUBLISHED[name]))


# Numbers inside sums, wherever the sum is: a candidate's direct term, under a root, inside a
# map's argument, beside a selector, in a product's factor, under a function, as a lone term.
CONSTANTS = {
    "candidate": "let a = 1 + tanh(U @ x + w * h)\nnext h = w * h + (1 - w) * a",
    "sqrt": "let lam = sigmoid(V @ x)\nnext h = w * h + (1 - w) * sqrt(1 - lam ** 2) * (W @ x)",
    "map": "next h = w * h + (1 - w) * tanh(M @ (2 + h) + W @ x)",
    "beside a select": "next h = 0.5 + w * h + (1 - w) * tanh(W @ x + U @ h) + b",
    "factor": "next h = w * h + (1 - w) * (3 - tanh(U @ h)) * (W @ x)",
    "function": "next h = w * h + (1 - w) * exp(2 - relu(W @ x + U @ h))",
    "lone": "next h = w * (h + 1) + (1 - w) * (W @ x)",
}


@pytest.mark.parametrize("where", sorted(CONSTANTS))
def test_numbers_in_sums_are_drawn(where):
    text = ("input x\nstate h\ngate w = sigmoid(W_w @ x + U_w @ h + b_w)\n"
            + CONSTANTS[where] + "\n")
    cell = gatelab.parse_cell(text, default_name="constants")
    assert_round_trip(cell)
    c = build_circuit(analyze(cell))
    # the number is drawn: a constant into an adder, or a scale once a product multiplied out
    assert any(p.kind in ("const", "scale") and p.value.is_Number for p in c.parts())


def test_biases_are_left_out_of_the_picture_but_kept():
    """The article draws no biases: a tree read as drawn has none, read in full it has them."""
    c = build_circuit(analyze("gru-torch"))
    for name, root in c.roots.items():
        drawn = readback(root, biases=False)
        assert not {s.name for s in drawn.free_symbols} & {"b_in", "b_hn"}
        assert same_function(readback(root), c.exprs[name], set(c.cell.gates))


def test_a_drawing_that_drops_a_term_is_refused(monkeypatch):
    """Reading sums without their numbers (what the diagram did before) is caught by the
    round trip and refused with one line, never drawn."""
    read_sum = circuit_module._Reader.read_sum

    def drop_numbers(self, e):
        kept = [t for t in sympy.Add.make_args(e) if not t.is_Number]
        return read_sum(self, sympy.Add(*kept))

    monkeypatch.setattr(circuit_module._Reader, "read_sum", drop_numbers)
    cell = gatelab.parse_cell(PUBLISHED["brc"])
    with pytest.raises(DiagramMismatch, match="would not compute the cell"):
        build_circuit(analyze(cell))
    assert issubclass(DiagramMismatch, GatelabError)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(cell_texts())
def test_generated_cells_round_trip(text):
    try:
        cell = gatelab.parse_cell(text, default_name="generated")
    except GatelabError:
        return  # the grammar can write a constant the language refuses (tanh(1), log(2))
    try:
        assert_round_trip(cell)
    except DiagramTooLarge:
        pass


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_cells_through_the_command_line(name, tmp_path):
    from gatelab.cli import app

    path = tmp_path / f"{name}.cell"
    path.write_text(PUBLISHED[name])
    for args in (["check", str(path)], ["analyze", str(path)],
                 ["diagram", str(path), "-o", str(tmp_path / f"{name}.svg")]):
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
    assert (tmp_path / f"{name}.svg").read_text().startswith("<svg")
