"""The circuit diagram: structure read from the equations, settings, SVG/PNG output, CLI."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gatelab import analyze, parse_cell, zoo_names
from gatelab.analysis import KIND_LABELS, reduce_setting
from gatelab.cli import app
from gatelab.diagram import build_circuit, cell_data, draw, figure, prepare, save
from gatelab.diagram.settings import identity_uses, live_parts
from gatelab.diagram.svgpost import web_svg

NS = "{http://www.w3.org/2000/svg}"
runner = CliRunner()


def shape(p) -> tuple:
    """A part tree as nested tuples (kind, label, children...) for hand-written references."""
    return (p.kind, p.label, *[shape(c) for c in p.children])


def texts(svg: str) -> list[str]:
    return ["".join(t.itertext()) for t in ET.fromstring(svg).iter(NS + "text")]


# ---- structure ------------------------------------------------------------------------------

def test_lstm_circuit_is_the_articles() -> None:
    """c' = f c + i tanh(W_g x + U_g (o tanh c)): f and i switch two branches into a sum, o
    sits before U_g (the substituted readout), biases are left out."""
    c = build_circuit(analyze("lstm"))
    assert c.sources == ["c", "x"]
    src_c, src_x = ("source", "c"), ("source", "x")
    core = ("func", "tanh", ("sum", "+",
                             ("map", "U_g", ("switch", "o", ("func", "tanh", src_c))),
                             ("map", "W_g", src_x)))
    assert shape(c.roots["c"]) == ("sum", "+", ("switch", "f", src_c), ("switch", "i", core))


def test_gru_z_is_a_selector_and_mgu_is_ganged() -> None:
    gru = build_circuit(analyze("gru"))
    root = gru.roots["h"]
    assert root.kind == "select" and root.gate == "z"
    assert shape(root.children[0]) == ("source", "h")  # z = 1 keeps h
    mgu = build_circuit(analyze("mgu"))
    assert [p.kind for p in mgu.switches("f")] == ["select", "switch"]
    assert mgu.ganged() == {"f"}


@pytest.mark.parametrize("name", zoo_names())
def test_switch_types_agree_with_the_analysis(name: str) -> None:
    a, circuit, _ = prepare(name)
    for sw in a.switches:
        parts = circuit.switches(sw.gate)
        if sw.type == "ganged":
            assert len(parts) > 1
        elif sw.type == "spdt":
            assert [p.kind for p in parts] == ["select"]
        elif sw.type == "spst":
            assert [p.kind for p in parts] == ["switch"]
        else:  # e.g. minLSTM's f/(f+i): a multiplier depending on several gates
            assert not parts
            assert any(sw.gate in {str(s) for s in p.coef.free_symbols}
                       for p in circuit.switches())


@pytest.mark.parametrize("name", zoo_names())
def test_identity_paths_agree_with_the_analysis(name: str) -> None:
    """The green wire exists exactly in the modes where the analysis finds an identity path."""
    a, circuit, _ = prepare(name)
    for mode in a.modes:
        found = identity_uses(circuit, mode.gates)
        for state, flag in mode.identity_path.items():
            assert bool(found.get(state)) == flag, (mode.gates, state)


def test_dead_parts_under_a_setting() -> None:
    a, circuit, _ = prepare("lstm")
    by_label = {p.label: p for p in circuit.parts() if p.kind in ("map", "switch")}
    live = live_parts(circuit, {"i": 0})
    assert by_label["U_g"].id not in live and by_label["W_g"].id not in live
    assert by_label["f"].children[0].id in live
    live = live_parts(circuit, {"f": 0})
    assert by_label["f"].children[0].id not in live and by_label["U_g"].id in live


# ---- drawings ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", zoo_names())
def test_every_zoo_cell_draws_valid_svg(name: str) -> None:
    svg = draw(name)
    root = ET.fromstring(svg)
    assert root.tag == NS + "svg"
    assert any(t.startswith(name.upper()) for t in texts(svg))
    web = ET.fromstring(web_svg(figure(name)))
    clickable = {el.get("data-gate") for el in web.iter() if el.get("data-gate")}
    assert clickable == set(build_circuit(analyze(name)).gates)
    assert "#e0" not in web_svg(figure(name))  # every marker colour was replaced


@pytest.mark.parametrize("name", ["lstm", "gru", "mgu"])
def test_cli_every_setting(name: str, tmp_path: Path) -> None:
    """``gatelab diagram CELL --set ...`` for every setting: valid SVG titled with the kind."""
    a = analyze(name)
    for setting in (m.gates for m in a.modes):
        text = ",".join(f"{g}={v}" for g, v in setting.items())
        out = tmp_path / f"{name}-{text}.svg"
        r = runner.invoke(app, ["diagram", name, "--set", text, "-o", str(out)])
        assert r.exit_code == 0, r.output
        kinds = reduce_setting(a, setting).kind
        title = f"{name.upper()}, {' '.join(f'{g}={v}' for g, v in setting.items())}: "
        title += ", ".join(KIND_LABELS[k] for k in kinds.values())
        assert title in texts(out.read_text())


def test_article_read_off_titles() -> None:
    assert "LSTM, i=1 f=0 o=1: RNN" in texts(draw("lstm", {"i": 1, "f": 0, "o": 1}))
    assert "GRU, z=1 r=0: hold" in texts(draw("gru", {"z": 1, "r": 0}))


def test_png_export(tmp_path: Path) -> None:
    out = save("mgu", tmp_path / "mgu.png", {"f": 1})
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_user_cells(tmp_path: Path) -> None:
    """No gates still draws the core; two memory states get two outputs; odd terms draw."""
    plain = parse_cell("input u\nstate s\nnext s = s + exp(W @ u)\noutput s\n")
    svg = draw(plain)
    assert any(t.startswith("CELL: no gates") for t in texts(svg))
    assert "stroke:#c0392b" in svg  # the red core box
    two = parse_cell(
        "input x\nstate a\nstate b\ngate g = sigmoid(W_g @ x)\n"
        "next a = g * a + (1 - g) * tanh(W_a @ x + U_a @ b)\n"
        "next b = tanh(W_b @ x + U_b @ a) - b\noutput a\n", default_name="two")
    fig = figure(two, {"g": 1})
    assert set(fig.layout.outputs) == {"a", "b"}
    ET.fromstring(draw(two, {"g": 0}))


def test_bad_input_is_a_message(tmp_path: Path) -> None:
    for args, words in [(["gru", "--set", "q=1"], "unknown gate 'q'"),
                        (["gru", "--set", "z=2"], "0 or 1"),
                        (["no-such-cell"], "no built-in cell"),
                        (["gru", "-o", str(tmp_path / "x.pdf")], ".svg or .png"),
                        (["gru", "-o", str(tmp_path / "nope" / "x.svg")], "does not exist")]:
        r = runner.invoke(app, ["diagram", *args])
        assert r.exit_code == 2, args
        assert words in r.output and "Traceback" not in r.output


# ---- page data ----------------------------------------------------------------------------

def test_page_data_follows_the_analysis() -> None:
    data = cell_data("lstm")
    assert len(data["settings"]) == 8 and data["start"] == "111"
    a = analyze("lstm")
    for key, entry in data["settings"].items():
        setting = dict(zip(data["gates"], map(int, key), strict=True))
        mode = reduce_setting(a, setting).to_dict()
        assert entry["kind"] == mode["kind"] and entry["updates"] == mode["updates"]
        assert 'data-gate="f"' in entry["svg"]


# ---- the same circuit however the cell is written (probe defects D1-D4) ----------------------

LSTM_HEAD = """input x
state h, c
gate i = sigmoid(W_i @ x + U_i @ h + b_i)
gate f = sigmoid(W_f @ x + U_f @ h + b_f)
let g = tanh(W_g @ x + U_g @ h + b_g)
gate o = sigmoid(W_o @ x + U_o @ h + b_o)
let c_new = f * c + i * g
next c = c_new
"""
GRU_TORCH_HEAD = """input x
state h
gate r = sigmoid(W_r @ x + U_r @ h + b_r)
gate z = sigmoid(W_z @ x + U_z @ h + b_z)
"""
MINLSTM_HEAD = """input x
state h
gate f = sigmoid(W_f @ x + b_f)
gate i = sigmoid(W_i @ x + b_i)
"""
SERIES_HEAD = "input x\nstate c\n" + "".join(
    f"gate g{k} = sigmoid(W{k} @ x + U{k} @ c)\n" for k in (0, 1)
) + "let a = tanh(Wa @ x + Ua @ c)\n"
SAME_CIRCUIT = [  # (zoo cell or None, writings that must all draw the same circuit)
    # D2: an output written as a let that is exactly a state's new value is drawn once
    ("lstm", [LSTM_HEAD + "let hh = o * tanh(c_new)\nnext h = hh\noutput hh\n"]),
    ("indrnn", ["input x\nstate h\nlet y = relu(W @ x + u * h + b)\nnext h = y\noutput y\n"]),
    # D1: torch's GRU with r distributed over its map and bias is one r switch
    ("gru-torch", [GRU_TORCH_HEAD + f"let n = tanh(W_n @ x + b_in + {rn})\n"
                   "next h = (1 - z) * n + z * h\n"
                   for rn in ("r * (U_n @ h) + r * b_hn", "r * b_hn + (U_n @ h) * r")]),
    # D3: minLSTM's normalised gates, with lets or as one quotient
    ("minlstm", [MINLSTM_HEAD + "let n = W_n @ x + b_n\nlet fp = f / (f + i)\n"
                 "let ip = i / (f + i)\nnext h = fp * h + ip * n\n",
                 MINLSTM_HEAD + "next h = (f * h + i * (W_n @ x + b_n)) / (i + f)\n"]),
    # D4: nested selects, with the inner select as a let or spelled out
    (None, [SERIES_HEAD + "let e1 = g0 * c + (1 - g0) * a\nnext c = g1 * e1 + (1 - g1) * a\n",
            SERIES_HEAD + "next c = g1 * (g0 * c + (1 - g0) * a) + (1 - g1) * a\n"]),
]


def drawn(circuit) -> tuple:
    """What must not depend on the writing: the trees, the switch labels, the ganged gates."""
    return ({k: shape(v) for k, v in circuit.roots.items()},
            sorted((p.kind, p.label) for p in circuit.switches()), circuit.ganged())


@pytest.mark.parametrize(("zoo", "texts_"), SAME_CIRCUIT, ids=[
    z or "nested" for z, _ in SAME_CIRCUIT])
def test_writings_draw_the_same_circuit(zoo: str | None, texts_: list[str]) -> None:
    circuits = [build_circuit(analyze(parse_cell(t, default_name="variant"))) for t in texts_]
    ref = drawn(build_circuit(analyze(zoo))) if zoo else drawn(circuits[0])
    for c in circuits:
        assert drawn(c) == ref
        # each gate the analysis calls spst/spdt at one place is one switch, never ganged
        for sw in c.analysis.switches:
            if sw.type in ("spst", "spdt"):
                assert len(c.switches(sw.gate)) == 1 and sw.gate not in c.ganged()


def test_normalised_gates_are_drawn_as_their_quotients() -> None:
    """minLSTM's f and i are ``other`` in the analysis: drawn as the quotients ``f/(f+i)``,
    ``i/(f+i)``, never as plain 0/1 switches ``f``, ``i`` nor as a ``1/(f+i)`` switch."""
    text = MINLSTM_HEAD + "next h = (f * h + i * (W_n @ x + b_n)) / (i + f)\n"
    c = build_circuit(analyze(parse_cell(text, default_name="minlstm-quotient")))
    assert sorted(p.label for p in c.switches()) == ["f/(f+i)", "i/(f+i)"]


def test_nested_selects_are_drawn_as_the_analysis_places_them() -> None:
    """g1 picks ``e1`` or ``a``, g0 inside ``e1`` picks ``c`` or ``a``: g1 is the outer
    selector, although the update's polynomial is symmetric in g0 and g1."""
    text = SERIES_HEAD + "let e1 = g0 * c + (1 - g0) * a\nnext c = g1 * e1 + (1 - g1) * a\n"
    root = build_circuit(analyze(parse_cell(text, default_name="nested"))).roots["c"]
    assert (root.kind, root.label, root.children[0].kind, root.children[0].label) == (
        "select", "g1", "select", "g0")


# ---- odd cells: gates in denominators, deep nesting ----------------------------------------

DENOM_HEAD = "input x\nstate h\ngate f = sigmoid(W_f @ x + U_f @ h)\n"
DENOMINATORS = {
    # f ⊙ (1 - f) is 0 at both settings: the canonical reading once divided by that 0 (zoo)
    "one-minus": DENOM_HEAD + "next h = h / f + tanh(V @ x) / (1 - f)\n",
    "minus-one": DENOM_HEAD + "next h = h / f + tanh(V @ x) / (f - 1)\n",
    "two-gates": DENOM_HEAD + "gate g = sigmoid(W_g @ x + U_g @ h)\n"
                 "next h = h/(f-g) + tanh(V@x)/(1-f)/(f*g-1+g)\n",
}


@pytest.mark.parametrize("text", DENOMINATORS.values(), ids=DENOMINATORS.keys())
def test_gates_in_denominators_draw(text: str, tmp_path: Path) -> None:
    """A cell that passes ``check`` draws: a gate in a denominator is a quotient switch."""
    path, out = tmp_path / "denom.cell", tmp_path / "denom.svg"
    path.write_text(text, encoding="utf-8")
    assert runner.invoke(app, ["check", str(path)]).exit_code == 0
    r = runner.invoke(app, ["diagram", str(path), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert ET.fromstring(out.read_text()).tag == NS + "svg"
    c = build_circuit(analyze(parse_cell(text, default_name="denom")))
    shown = {str(s) for p in c.switches() for s in (p.coef.free_symbols if p.coef is not None
                                                    else {p.gate})}
    assert shown == set(c.cell.gates)


def test_reader_takes_any_leaf_or_node() -> None:
    """Whatever SymPy makes of an update (zoo, nan, pi, a negative power, a two-argument
    function) is drawn as a constant or a block, never an IndexError."""
    import sympy

    from gatelab.diagram.circuit import _Reader

    cell = parse_cell(DENOM_HEAD + "next h = f * h\n", default_name="leaves")
    reader = _Reader(cell, ["h", "x"])
    h, x = sympy.symbols("h x")
    for e in (sympy.zoo, sympy.nan, sympy.pi, sympy.Rational(1, 3), h ** -2,
              sympy.Max(h, x), sympy.zoo * h + x):
        assert reader.read(e).kind in ("const", "func", "sum", "product", "scale")


def _nested(kind: str, n: int) -> str:
    core = "U @ h + W @ x"
    if kind == "lets":
        lets = [f"let l0 = tanh({core})"] + [f"let l{k} = tanh(l{k - 1} + l{k - 1})"
                                              for k in range(1, n)]
        return "input x\nstate h\n" + "\n".join(lets) + f"\nnext h = l{n - 1}\n"
    names = ["exp"] if kind == "exp" else ["tanh", "softplus", "abs", "log", "exp", "sigmoid"]
    body = core
    for k in range(n):
        body = f"{names[k % len(names)]}({body})"
    return f"input x\nstate h\nnext h = {body}\n"


@pytest.mark.parametrize(("kind", "n"), [("exp", 31), ("lets", 60), ("mix", 31)])
def test_deeply_nested_cells_draw(kind: str, n: int) -> None:
    """Ordering a part's children once read its whole subtree again at every level (2^n work:
    half a minute at 20 levels); each must now draw well within the hang bound."""
    import signal

    def hang(*_):
        raise TimeoutError(f"{kind}{n} did not draw within the bound")

    old = signal.signal(signal.SIGALRM, hang)
    signal.alarm(60)
    try:
        svg = draw(parse_cell(_nested(kind, n), default_name=f"{kind}{n}"))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert ET.fromstring(svg).tag == NS + "svg"


def test_too_large_a_drawing_is_refused_quickly(tmp_path: Path) -> None:
    """Twelve gates each switching the same signal (``g0*h + ... + g11*h``) nest 2^12 selectors
    deep: refused after MAX_PARTS symbols with one line and exit 2, where it used to build
    20,000 parts and then hang in the layout (over 60 s, GBs for a PNG)."""
    from gatelab.diagram.circuit import MAX_PARTS, DiagramTooLarge

    gates = "".join(f"gate g{i} = sigmoid(W{i} @ x + U @ h)\n" for i in range(12))
    text = ("input x\nstate h\n" + gates + "next h = " + " + ".join(f"g{i}*h" for i in range(12))
            + " + tanh(U @ h)\n")
    with pytest.raises(DiagramTooLarge, match=f"more than {MAX_PARTS}"):
        build_circuit(analyze(parse_cell(text, default_name="wide")))
    path = tmp_path / "wide.cell"
    path.write_text(text)
    r = CliRunner().invoke(app, ["diagram", str(path), "--out", str(tmp_path / "w.svg")])
    assert r.exit_code == 2 and "too large to draw" in r.output
    assert not (tmp_path / "w.svg").exists()
    # what the zoo draws is far below the limit
    assert max(sum(1 for _ in build_circuit(analyze(n)).parts()) for n in zoo_names()) < 40
