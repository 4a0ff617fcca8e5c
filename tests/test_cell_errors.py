"""Bad cell files: one `PATH:LINE:COL: what; expected` line per problem, exit 2, nothing runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from gatelab import CellError, parse_cell
from gatelab.cell import load_file
from gatelab.cli import app

LINE = re.compile(r"^(?P<path>[^:]+):(?P<line>\d+):(?P<col>\d+): (?P<msg>.+)$")

GOOD_HEAD = "input x\nstate h\n"

# (case, text, line, col, fragment of the message)
CASES = [
    ("syntax", GOOD_HEAD + "next h = tanh(W @ x + )\n", 3, 23, "unexpected ')'"),
    ("unknown function", GOOD_HEAD + "next h = tanh(W @ x) + frob(h)\n", 3, 24,
     "unknown function 'frob'"),
    ("undefined name right of @", GOOD_HEAD + "next h = tanh(W @ x + U @ hh)\n", 3, 27,
     "undefined name"),
    ("undefined output", GOOD_HEAD + "next h = tanh(W @ x + U @ h)\noutput y\n", 4, 8,
     "output y is undefined"),
    ("state without next", GOOD_HEAD + "state c\nnext h = tanh(W @ x + U @ h)\n", 3, 7,
     "state c has no `next c"),
    ("next for undeclared state", GOOD_HEAD + "next h = tanh(W @ x)\nnext q = h\n", 4, 6,
     "`next q` for a name that is not a state"),
    ("duplicate definition", GOOD_HEAD + "gate f = sigmoid(W @ x)\nlet f = h\nnext h = f * h\n",
     4, 5, "duplicate definition of f"),
    ("cyclic lets", GOOD_HEAD + "let a = tanh(b + h)\nlet b = a * h\nnext h = a\n", 3, 5,
     "cyclic definition"),
    ("gate without expression", GOOD_HEAD + "gate f =\nnext h = h\n", 3, 8,
     "gate f has no expression"),
    ("empty file", "", 1, 1, "empty cell file"),
    ("comments only", "# nothing here\n\n", 1, 1, "empty cell file"),
    ("attribute access", GOOD_HEAD + "next h = os.system(h)\n", 3, 12, "attribute access"),
    ("subscript", GOOD_HEAD + "next h = h[0]\n", 3, 11, "subscripts are not allowed"),
    ("lambda", GOOD_HEAD + "next h = lambda: h\n", 3, 10, "reserved word"),
    ("comprehension", GOOD_HEAD + "next h = [h for h in x]\n", 3, 10, "subscripts"),
    ("keyword argument", GOOD_HEAD + "next h = tanh(x=h)\n", 3, 16, "keyword arguments"),
    ("dunder", GOOD_HEAD + "next h = __class__ * h\n", 3, 10, "dunder name"),
    ("__import__", GOOD_HEAD + "next h = __import__(h)\n", 3, 10, "dunder name"),
    ("string", GOOD_HEAD + "next h = tanh('rm -rf')\n", 3, 15, "strings are not allowed"),
    ("size mismatch", GOOD_HEAD + "next h = tanh(x + U @ h)\n", 3, 17, "different sizes"),
    ("state used as matrix", GOOD_HEAD + "next h = tanh(h @ x)\n", 3, 15,
     "left of @ must be a weight matrix"),
    ("role clash", GOOD_HEAD + "next h = tanh(W @ x + W)\n", 3, 23, "used as a vector here"),
    ("unknown statement", GOOD_HEAD + "import os\nnext h = h\n", 3, 1,
     "unknown statement 'import'"),
    ("next has input size", GOOD_HEAD + "next h = x\n", 3, 10, "input's size"),
]


def problems_of(text: str | bytes, path: str = "bad.cell"):
    with pytest.raises(CellError) as info:
        parse_cell(text, path)
    return info.value.problems


@pytest.mark.parametrize("case,text,line,col,fragment", CASES, ids=[c[0] for c in CASES])
def test_each_bad_input_names_line_column_and_expectation(case, text, line, col, fragment):
    problems = problems_of(text)
    first = problems[0]
    assert (first.line, first.col) == (line, col), str(first)
    assert fragment in first.message, str(first)
    assert LINE.match(str(first)), str(first)
    if case not in ("empty file", "comments only"):
        assert first.expected, "every problem says what was expected"


def test_several_problems_are_all_reported_one_per_line():
    text = GOOD_HEAD + "gate f = frob(x)\nlet g = h[1]\nnext h = f * g\n"
    problems = problems_of(text)
    assert [(p.line, p.col) for p in problems] == [(3, 10), (4, 10)]


def test_binary_junk_is_refused():
    problems = problems_of(b"input x\n\x00\x01\x02garbage")
    assert problems[0].line == 2 and "binary" in problems[0].message
    problems = problems_of(b"input x\nstate h\nnext h = \xff\xfe")
    assert "UTF-8" in problems[0].message and problems[0].line == 3


def test_one_megabyte_file_is_refused_without_reading_it_all(tmp_path: Path):
    big = tmp_path / "big.cell"
    big.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(CellError, match="too large"):
        load_file(big)


runner = CliRunner()


def run_cli(*args: str) -> Result:
    """The CLI in-process (fast); ``test_console_entry_...`` covers the real ``gatelab`` command."""
    res = runner.invoke(app, list(args))
    # A CellError (or anything else) escaping the app would be a traceback for a user.
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res


def test_check_command_exit_status_and_lines(tmp_path: Path):
    files = []
    for i, case in enumerate(CASES[:6]):
        f = tmp_path / f"bad{i}.cell"
        f.write_text(case[1])
        files.append(str(f))
    res = run_cli("check", *files)
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) >= 6 and all(LINE.match(ln) for ln in lines), res.stderr
    assert "Traceback" not in res.stderr
    good = tmp_path / "good.cell"
    good.write_text(GOOD_HEAD + "next h = tanh(W @ x + U @ h + b)\n")
    ok = run_cli("check", str(good))
    assert ok.exit_code == 0, ok.stderr


def test_a_file_trying_to_run_code_runs_nothing(tmp_path: Path):
    marker = tmp_path / "pwned"
    attempts = [
        f"next h = __import__('os').system('touch {marker}')",
        f"next h = exec(\"open('{marker}', 'w')\")",
        f"next h = eval(\"open('{marker}', 'w')\")",
        "next h = (lambda: 1)()",
        "next h = [c for c in ().__class__.__base__.__subclasses__()]",
        f"next h = open({marker!r}, 'w')",
    ]
    for code in attempts:
        f = tmp_path / "evil.cell"
        f.write_text(GOOD_HEAD + code + "\n")
        res = run_cli("check", str(f))
        assert res.exit_code == 2 and LINE.match(res.stderr.splitlines()[0]), res.stderr
        res = run_cli("show", str(f))
        assert res.exit_code == 2
        assert LINE.match(res.stderr.splitlines()[0]) and "Traceback" not in res.output, res.output
    assert not marker.exists()


def console_entry() -> list[str]:
    """The installed ``gatelab`` script next to this Python, else ``python -m gatelab``."""
    script = Path(sys.executable).with_name("gatelab")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "gatelab"]


def test_console_entry_reports_a_bad_cell_without_traceback(tmp_path: Path):
    """The one real subprocess: the console entry turns a bad cell into PATH:LINE:COL, exit 2."""
    f = tmp_path / "bad.cell"
    f.write_text(GOOD_HEAD + "next h = tanh(W @ x) + frob(h)\n")
    res = subprocess.run([*console_entry(), "show", str(f)], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert lines and all(LINE.match(ln) for ln in lines), res.stderr
    m = LINE.match(lines[0])
    assert (m["path"], m["line"], m["col"]) == (str(f), "3", "24"), lines[0]
    assert "unknown function 'frob'" in m["msg"]
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout


def test_parser_source_uses_no_eval():
    src = Path(__file__).parents[1] / "src" / "gatelab" / "cell"
    for f in src.glob("*.py"):
        text = f.read_text()
        assert not re.search(r"(?<!def )\b(eval|exec|sympify|parse_expr)\(", text), f


@pytest.mark.parametrize("stem, name", [("my cell", "my-cell"), ("GRU (Cho 2014)", "GRU-Cho-2014"),
                                         ("_draft.v2", "draft.v2"), ("???", "cell")])
def test_file_without_name_line_takes_a_valid_name_from_any_file_name(tmp_path: Path, stem, name):
    """A file name that is not a valid cell name (spaces, brackets) gives the cell a cleaned
    name instead of failing the final round-trip check with a misleading message."""
    p = tmp_path / f"{stem}.cell"
    p.write_text(GOOD_HEAD + "next h = tanh(W @ x + U @ h)\n")
    cell = load_file(p)
    assert cell.name == name
    r = CliRunner().invoke(app, ["check", str(p)])
    assert r.exit_code == 0 and f"({name}: 1 state" in r.output, r.output


def test_thousands_of_bad_lines_print_a_screenful_and_a_count(tmp_path: Path):
    p = tmp_path / "junk.cell"
    p.write_text(GOOD_HEAD + "? what\n" * 3000)
    r = CliRunner().invoke(app, ["check", str(p)])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 51, len(lines)
    assert all(LINE.match(line) for line in lines[:50])
    # 3000 unknown statements and the state without a `next` line
    assert lines[1].startswith(f"{p}:3:1:") and lines[-1] == f"{p}: 2951 more problem(s) not shown"
