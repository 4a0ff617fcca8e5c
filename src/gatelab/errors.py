"""The one family of user errors: what a user must change (a cell, an option, a file, a data
package), as opposed to a bug.

Every error gatelab raises for bad input is a :class:`GatelabError`; the command line
(``gatelab.cli``) has one handler that prints its :meth:`~GatelabError.lines` on stderr and exits
with its ``exit_code`` (2: change the input). Anything else is a bug and keeps its traceback.
Subclasses that used to be plain ``ValueError``/``RuntimeError``/``FileNotFoundError`` keep that
second base, so ``except ValueError`` in callers' code still catches them.

>>> issubclass(UsageError, ValueError) and issubclass(UsageError, GatelabError)
True
>>> UsageError("--steps must be at least 2").lines()
['error: --steps must be at least 2']
"""

from __future__ import annotations


class GatelabError(Exception):
    """Bad input to gatelab: one clear message, no traceback, exit status ``exit_code``."""

    exit_code = 2

    def lines(self) -> list[str]:
        """What the command line prints, one string per line."""
        return [f"error: {self}"]


class UsageError(GatelabError, ValueError):
    """An option, a file or a run folder that cannot work (the message says what to change)."""


class NotFound(GatelabError, FileNotFoundError):
    """A file or folder the user named does not exist or is not what the command needs."""


class Interrupted(GatelabError):
    """Ctrl-C in a long command (``train``, ``compare``, ``study``): one line saying how to go on
    (``--resume``), exit status 130 as a shell gives an interrupted program."""

    exit_code = 130

    def lines(self) -> list[str]:
        return [f"interrupted: {self}"]
