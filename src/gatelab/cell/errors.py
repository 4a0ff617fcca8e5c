"""Errors a cell file can produce: every problem names the file, line and column."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import GatelabError


@dataclass(frozen=True)
class Problem:
    """One problem in a cell file: ``PATH:LINE:COL: what is wrong; what was expected``."""

    path: str
    line: int
    col: int
    message: str
    expected: str = ""

    def __str__(self) -> str:
        tail = f"; expected {self.expected}" if self.expected else ""
        if self.line <= 0:  # about the file as a whole (cannot be read, no such cell)
            return f"{self.path}: {self.message}{tail}"
        return f"{self.path}:{self.line}:{self.col}: {self.message}{tail}"


class ColumnError(GatelabError, ValueError):
    """A problem found inside one line, before the file's path and line are known (the parser
    and the constant folder raise it; the builder turns it into a :class:`Problem` of a
    :class:`CellError`). ``col`` is 1-based."""

    def __init__(self, col: int, message: str, expected: str = ""):
        super().__init__(message)
        self.col, self.message, self.expected = col, message, expected


MAX_SHOWN = 50  # problems printed; a file of 30,000 bad lines is one screen, not 30,000 lines


class CellError(GatelabError, ValueError):
    """A cell file (or text) is not a valid cell. ``problems`` lists every problem found; the
    message shows the first :data:`MAX_SHOWN` and counts the rest."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.line, p.col))
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """One ``PATH:LINE:COL: ...`` line per problem (at most :data:`MAX_SHOWN`, then one line
        counting the others)."""
        shown = [str(p) for p in self.problems[:MAX_SHOWN]]
        rest = len(self.problems) - len(shown)
        if rest:
            shown.append(f"{self.problems[0].path}: {rest} more problem(s) not shown")
        return shown
