"""The one error every loader raises when its source is missing or unreadable."""

from __future__ import annotations

from ..errors import GatelabError


class DataUnavailable(GatelabError):
    """A data source is not installed or cannot be read.

    The message says what was looked for and how to install it; the CLI prints it without a
    traceback.
    """
