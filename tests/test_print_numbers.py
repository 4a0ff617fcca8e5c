"""Numbers print as people write them: a decimal stays a decimal (``0.042``, not ``21/500``) in
the ``.cell`` text, the Unicode equations, LaTeX and the analysis, and reads back as the same
number; a fraction with no exact decimal (``1/3``) stays a fraction."""

from __future__ import annotations

import json
from decimal import Decimal
from fractions import Fraction

import sympy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatelab import cell_latex, cell_text, cell_unicode, parse_cell
from gatelab.analysis import analyze
from gatelab.cell.printers import decimal_text

SOME = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))

# decimals well inside the parser's constant limits, up to 12 significant digits
DECIMALS = st.builds(lambda m, e: Decimal(m).scaleb(e), st.integers(1, 10 ** 12 - 1),
                     st.integers(-14, 3)).filter(lambda d: Decimal("1e-12") <= d <= Decimal("1e12"))


@given(DECIMALS)
def test_decimal_text_is_exact_and_has_no_fraction(d):
    text = decimal_text(sympy.Rational(Fraction(d)))
    assert text is not None and "/" not in text and Fraction(text) == Fraction(d)


@given(st.integers(1, 10 ** 6), st.integers(2, 10 ** 6))
def test_fractions_without_an_exact_decimal_stay_fractions(p, q):
    r = sympy.Rational(p, q)
    text = decimal_text(r)
    if text is None:
        assert any(q2 not in (2, 5) for q2 in sympy.factorint(r.q))
    else:
        assert Fraction(text) == Fraction(p, q)


def _leaky(lit: str):
    return parse_cell(f"input x\nstate h\nlet n = tanh(W @ x + U @ h + b)\n"
                      f"next h = {lit}*h + n\noutput h\n")


@SOME
@given(DECIMALS)
def test_cell_printers_write_decimals_and_the_text_reads_back(d):
    cell = _leaky(str(d))
    text = cell_text(cell)
    update = next(ln for ln in text.splitlines() if ln.startswith("next"))
    assert "/" not in update
    assert parse_cell(text) == cell
    assert "/" not in cell_unicode(cell).splitlines()[-1]
    assert r"\frac" not in cell_latex(cell)


def test_the_issue_example_in_every_form():
    cell = _leaky("0.042")
    assert "0.042*h" in cell_text(cell)
    assert "0.042 ⊙ h" in cell_unicode(cell)
    assert "0.042 h" in cell_latex(cell)
    third = _leaky("1/3")
    assert "h/3" in cell_text(third)


def test_analysis_writes_decimals():
    report = json.dumps(analyze(_leaky("0.042")).to_dict(), ensure_ascii=False)
    assert "0.042" in report and "21/500" not in report and "frac{21}" not in report
