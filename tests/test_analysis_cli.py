"""``gatelab analyze``: every format, ``--set``, and clear errors (exit 2, no traceback)."""

import json

import typer
from typer.testing import CliRunner

from gatelab.analysis.cli import register
from gatelab.cli import GatelabGroup

app = typer.Typer(cls=GatelabGroup)  # gatelab's one error handler, as in the real CLI


@app.callback()
def _root() -> None:
    """Keep ``analyze`` a subcommand, as in the real CLI."""


register(app)
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, ["analyze", *args])


def test_json_is_the_documented_schema():
    r = run("gru", "--format", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["cell"] == "gru" and d["memory_states"] == ["h"] and len(d["modes"]) == 4


def test_set_gives_one_mode():
    r = run("lstm", "--format", "json", "--set", "i=1,f=0,o=1")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["gates"] == {"i": 1, "f": 0, "o": 1} and d["kind"] == {"c": "rnn"}


def test_text_md_latex(tmp_path):
    path = tmp_path / "my.cell"
    path.write_text("input x\nstate h\ngate f = σ(W_f @ x)\nnext h = f ⊙ h + (1 - f) ⊙ "
                    "tanh(W @ x + U @ h)\noutput h\n", encoding="utf-8")
    text = run(str(path))
    assert text.exit_code == 0 and "stage 3" in text.output and "spdt" in text.output
    md = run("mgu", "--format", "md")
    assert md.exit_code == 0 and "| f | ganged |" in md.output
    tex = run("mgu", "--format", "latex")
    assert tex.exit_code == 0 and "\\begin{aligned}" in tex.output and "\\text{hold}" in tex.output
    one = run("mgu", "--format", "md", "--set", "f=0")
    assert one.exit_code == 0 and "hold" in one.output


def test_bad_input_is_a_message_not_a_traceback(tmp_path):
    for args, needle in [(("gru", "--set", "q=1"), "unknown gate 'q'"),
                         (("gru", "--set", "z=2"), "0 or 1"),
                         (("no-such-cell",), "no built-in cell"),
                         ((str(tmp_path / "missing.cell"),), "missing.cell")]:
        r = run(*args)
        assert r.exit_code == 2, (args, r.output)
        assert needle in r.output and "Traceback" not in r.output
    bad = tmp_path / "bad.cell"
    bad.write_text("input x\nstate h\nnext h = tanh(W @ x +)\noutput h\n", encoding="utf-8")
    r = run(str(bad))
    assert r.exit_code == 2 and "bad.cell:3:" in r.output


def test_a_gate_set_twice_is_one_line_exit_2_in_every_command(tmp_path):
    """``--set f=1,f=0`` used to keep the last value silently; every ``--set`` goes through the
    analysis' parser, so analyze, diagram and grad flow all refuse it the same way."""
    from gatelab.cli import app as main_app

    for args in (["analyze", "lstm", "--set", "f=1,f=0"],
                 ["diagram", "lstm", "--set", "f=1,i=0,f=0", "-o", str(tmp_path / "x.svg")],
                 ["grad", "flow", "lstm", "--set", "f=1,f=0", "--steps", "2"]):
        r = runner.invoke(main_app, args)
        assert r.exit_code == 2, (args, r.output)
        assert "gate f is set twice: f=1 and f=0" in r.output, r.output
        assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "x.svg").exists()
