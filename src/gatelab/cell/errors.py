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


class CellError(GatelabError, ValueError):
    """A cell file (or text) is not a valid cell. ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.line, p.col))
        super().__init__("\n".join(str(p) for p in self.problems))

    def lines(self) -> list[str]:
        """One ``PATH:LINE:COL: ...`` line per problem."""
        return [str(p) for p in self.problems]
