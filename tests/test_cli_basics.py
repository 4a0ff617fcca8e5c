"""`gatelab cells`, `show`, `check` and `tour` (zoo part) through the real CLI."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gatelab import zoo_names
from gatelab.cli import app

runner = CliRunner()


def test_cells_json_lists_every_zoo_cell_with_stable_keys():
    res = runner.invoke(app, ["cells", "--format", "json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["name"] for r in rows] == zoo_names()
    lstm = next(r for r in rows if r["name"] == "lstm")
    assert lstm == {"name": "lstm", "title": lstm["title"], "inputs": ["x"], "states": ["h", "c"],
                    "gates": ["i", "f", "o"], "output": "h", "params": "8*d**2 + 4*d"}


def test_cells_table_and_show():
    assert runner.invoke(app, ["cells"]).exit_code == 0
    res = runner.invoke(app, ["show", "mgu"])
    assert res.exit_code == 0 and "σ" in res.output and "h' =" in res.output
    res = runner.invoke(app, ["show", "gru", "--latex"])
    assert res.exit_code == 0 and "\\sigma" in res.output
    res = runner.invoke(app, ["show", "rnn", "--source"])
    assert res.exit_code == 0 and res.output.splitlines()[1].startswith("name")


def test_show_user_file(tmp_path):
    f = tmp_path / "mine.cell"
    f.write_text("input u\nstate s\nnext s = relu(A @ u + B @ s + k)\n")
    res = runner.invoke(app, ["show", str(f)])
    assert res.exit_code == 0 and "relu" in res.output and "mine" in res.output


def test_one_handler_user_errors_one_line_bugs_keep_their_traceback():
    """``GatelabGroup`` turns any GatelabError into its lines and exit status 2; a plain
    ValueError is a bug and is not swallowed."""
    import typer
    from typer.testing import CliRunner

    from gatelab.cli import GatelabGroup
    from gatelab.errors import UsageError

    app = typer.Typer(cls=GatelabGroup)

    @app.command()
    def user() -> None:
        raise UsageError("--steps must be at least 2")

    @app.command()
    def bug() -> None:
        raise ValueError("an internal mistake")

    runner = CliRunner()
    r = runner.invoke(app, ["user"])
    assert r.exit_code == 2 and r.stderr.strip() == "error: --steps must be at least 2"
    r = runner.invoke(app, ["bug"])
    assert isinstance(r.exception, ValueError) and r.exit_code == 1


def test_check_fails_a_cell_the_layers_cannot_run(tmp_path):
    """``check`` passing means ``train`` works too: two inputs, or a matrix applied to a
    function of the input, fail ``check`` with the layers' reason (exit 2)."""
    from typer.testing import CliRunner

    from gatelab.cli import app

    two = tmp_path / "two.cell"
    two.write_text("input x, y\nstate h\nnext h = tanh(W @ x + V @ y + U @ h)\n")
    fn = tmp_path / "fn.cell"
    fn.write_text("input x\nstate h\nnext h = tanh(W @ tanh(x) + U @ h)\n")
    for path, why in ((two, "2 inputs"), (fn, "multiplies tanh(x)")):
        r = CliRunner().invoke(app, ["check", str(path)])
        assert r.exit_code == 2 and why in r.output and "cannot run" in r.output, r.output
        r = CliRunner().invoke(app, ["analyze", str(path)])
        assert r.exit_code == 0


def test_unparsable_command_lines_are_one_error_line():
    """An option of the wrong type, an unknown option or command, a missing argument: one
    ``error:`` line naming the command, exit 2, no usage box (the console entry, as run)."""
    import subprocess
    import sys
    from pathlib import Path

    for argv in (["train", "adding", "--seed", "1.5"], ["bogus"], ["analyze"],
                 ["train", "adding", "--nope"], ["grad", "law", "--steps", "x"]):
        entry = Path(sys.executable).parent / "gatelab"
        res = subprocess.run([str(entry), *argv], capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, (argv, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: gatelab"), (argv, res.stderr)
        assert "╭" not in res.stderr
