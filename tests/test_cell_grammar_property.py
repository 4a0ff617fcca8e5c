"""Property tests over the grammar: any cell text either fails `check` with a CellError that has
a position, or works in every command; its normalised text parses back to the same cell."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from cellgrammar import cell_texts
from gatelab import CellError, cell_latex, cell_text, cell_unicode, parse_cell

FAST = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
FEW = settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))


def _parse(text: str):
    try:
        return parse_cell(text, "t.cell")
    except CellError as e:
        assert e.problems
        for p in e.problems:  # every problem points into the file
            assert p.path == "t.cell" and p.line >= 1 and p.col >= 1 and p.message
            assert str(p).startswith(f"t.cell:{p.line}:{p.col}: ")
        return None


@FAST
@given(cell_texts())
def test_cells_parse_or_fail_with_a_position_and_round_trip(text):
    cell = _parse(text)
    if cell is None:
        return
    again = parse_cell(cell_text(cell))
    assert again == cell and cell_text(again) == cell_text(cell)
    assert cell_latex(cell) and cell_unicode(cell)


@FEW
@given(cell_texts())
def test_valid_cells_work_in_every_command(tmp_path_factory, text):
    from typer.testing import CliRunner

    from gatelab.cli import app

    cell = _parse(text)
    if cell is None:
        return
    folder = tmp_path_factory.mktemp("cell")
    path = folder / "c.cell"
    path.write_text(text)
    runner = CliRunner()
    for args in (["analyze", str(path)], ["diagram", str(path), "-o", str(folder / "c.svg")],
                 ["show", "--latex", str(path)],
                 ["train", "adding", "--cell", str(path), "--steps", "2", "--T", "4",
                  "--hidden", "3", "--batch", "4", "--eval-size", "8",
                  "--out", str(folder / "run")]):
        r = runner.invoke(app, args)
        # a run whose loss becomes NaN stops with exit 1 and one message: also a clean outcome
        ok = r.exit_code == 0 or (args[0] == "train" and r.exit_code == 1
                                  and "training stopped" in r.output)
        assert ok and r.exception is None or isinstance(r.exception, SystemExit), (
            args[0], r.exit_code, r.output[-500:], text)
