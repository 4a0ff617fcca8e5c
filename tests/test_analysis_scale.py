"""The kind of an update does not depend on whether its outer scale is a number or a learned,
state-free vector: ``v ⊙ tanh(W·x + U·h + b)`` is an ``rnn`` as ``0.5 ⊙ tanh(...)`` is, and
``h + v ⊙ tanh(...)`` a ``residual_rnn`` (FastGRNN, Kusupati et al. 2018, at z=0 and z=1)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import gatelab
from gatelab.analysis.analyze import analyze

SCALES = st.sampled_from([
    "0.5", "v", "sigmoid(v)", "exp(-softplus(nu))", "(sigmoid(v) + sigmoid(w))",
    "sqrt(1 - exp(-softplus(nu)) ** 2)", "(v + 2)", "abs(v)",
])
ACTS = st.sampled_from(["tanh", "sigmoid", "relu", "softplus"])


def kinds(next_line: str) -> list[str]:
    cell = gatelab.parse_cell(f"name t\ninput x\nstate h\nnext h = {next_line}\n")
    return [m.kind["h"] for m in analyze(cell).modes]


@settings(max_examples=25, deadline=None)
@given(scale=SCALES, act=ACTS, left=st.booleans())
def test_learned_scale_reads_as_number_scale(scale: str, act: str, left: bool) -> None:
    core = f"{act}(W @ x + U @ h + b)"
    term = f"{scale} * {core}" if left else f"{core} * {scale}"
    assert kinds(term) == ["rnn"]
    assert kinds(f"h + {term}") == ["residual_rnn"]


def test_a_scale_holding_a_map_is_not_moved() -> None:
    # a linear map outside the function is not a scale: still read as before
    assert kinds("(V @ x) * tanh(U @ h + b)") == kinds("(V @ x) * tanh(U @ h + b)")
    assert kinds("(U2 @ h) * tanh(U @ h + b)") == ["other"]


def test_fastgrnn_modes() -> None:
    cell = gatelab.parse_cell("""\
name fastgrnn
input x
state h
let pre = W @ x + U @ h
gate z = sigmoid(pre + b_z)
let ht = tanh(pre + b_h)
next h = (sigmoid(zz) * (1 - z) + sigmoid(nn)) * ht + z * h
""")
    modes = {m.gates["z"]: m.kind["h"] for m in analyze(cell).modes}
    assert modes == {0: "rnn", 1: "residual_rnn"}


@settings(max_examples=25, deadline=None)
@given(coef=st.sampled_from(["0.01", "-0.01", "2", "v", "sigmoid(v)"]), act=ACTS,
       sign=st.sampled_from(["+", "-"]))
def test_number_times_state_inside_a_function_is_a_diagonal_map(coef: str, act: str,
                                                                 sign: str) -> None:
    # AntisymmetricRNN's tanh(W·h - γ h + V·x + b): diag(-γ) as diag(v) for a learned v
    pre = f"W @ x + U @ h {sign} {coef} * h + b"
    assert kinds(f"{act}(W @ x {sign} {coef} * h + b)") == ["rnn"]
    assert kinds(f"{act}({pre})") == ["rnn"]
    assert kinds(f"h + 0.1 * {act}({pre})") == ["residual_rnn"]


def test_state_outside_a_function_stays_an_accumulator() -> None:
    assert kinds("h + tanh(W @ x + b)") == ["other"]
    assert kinds("0.5 * h + 0.5 * tanh(W @ x + U @ h + b)") == ["other"]


@given(n=st.integers(-5, 5).filter(bool), k=st.integers(1, 4))
def test_a_scale_holding_exp_of_a_number_prints(n: int, k: int) -> None:
    # exp(-1) in a product printed as 1/E raised TypeError (a readout divided by exp(n'))
    import sympy

    from gatelab.analysis.symbols import txt
    v = sympy.Symbol("v")
    assert f"exp({n})" in txt(k * v * sympy.exp(n))
