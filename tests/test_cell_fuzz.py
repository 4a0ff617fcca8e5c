"""Property tests: whatever text a cell file holds, only CellError (or a Cell) comes out."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatelab import Cell, CellError, parse_cell

TOKENS = ["input", "state", "gate", "let", "next", "output", "name", "x", "h", "c", "f", "W",
          "U", "b", "=", "@", "*", "/", "+", "-", "**", "(", ")", ",", "sigmoid", "tanh", "σ",
          "⊙", "1", "0.5", "2e3", "\n", " ", "#", ".", "[", "]", "lambda", "__import__", ":",
          "'", "exp", "log", "relu", "1e999", "1/0", "0"]

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(text: str) -> None:
    try:
        result = parse_cell(text)
    except CellError as e:
        assert e.problems and all(p.line >= 0 and p.col >= 0 for p in e.problems)
        return
    assert isinstance(result, Cell)


@FAST
@given(st.text(max_size=400))
def test_random_text(text):
    outcome(text)


@FAST
@given(st.lists(st.sampled_from(TOKENS), max_size=80))
def test_token_soup(tokens):
    outcome(" ".join(tokens))


@FAST
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_token_soup_after_a_valid_head(tokens):
    outcome("input x\nstate h\nnext h = " + " ".join(tokens))


@FAST
@given(st.binary(max_size=300))
def test_random_bytes(data):
    try:
        parse_cell(data)
    except CellError:
        pass
