"""Optional dependencies, grouped as the package's extras.

The core install (the cell language, the analysis, the diagram, the engine, training and the
report) needs none of these. ``gatelab study`` needs the ``study`` extra (Ray Tune, Optuna's
fANOVA with scikit-learn), the ``jsb`` task needs the ``music`` extra (music21's
corpus of Bach chorales), the bag-of-words baseline needs scikit-learn. :func:`require` is called
where a command starts using one, so a missing extra is one error line with the pip command,
not an ``ImportError`` traceback in the middle of a run.

>>> EXTRAS["music"]
('music21',)
>>> try:
...     require("music", "the jsb task", _find=lambda name: None)
... except MissingExtra as e:
...     print(e)
the jsb task needs music21 (the 'music' extra): pip install 'gatelab[music]'
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

from .errors import UsageError

EXTRAS: dict[str, tuple[str, ...]] = {
    "study": ("ray", "optuna", "sklearn"),
    "music": ("music21",),
    "baseline": ("sklearn",),
    "peer": ("jax",),
}
# the distribution name pip installs, where it differs from the module imported
_DISTRIBUTION = {"sklearn": "scikit-learn"}


class MissingExtra(UsageError):
    """An optional dependency a command needs is not installed; ``str()`` names it and the pip
    command that installs it."""


def missing(extra: str, _find: Callable[[str], object] = importlib.util.find_spec) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (empty when all can)."""
    out = []
    for name in EXTRAS[extra]:
        try:
            found = _find(name)
        except (ImportError, ValueError):
            found = None
        if found is None:
            out.append(_DISTRIBUTION.get(name, name))
    return out


def require(extra: str, what: str,
            _find: Callable[[str], object] = importlib.util.find_spec) -> None:
    """Raise :class:`MissingExtra` when a module of ``extra`` is missing; ``what`` names the
    command or feature that needs it (``"gatelab study"``)."""
    gone = missing(extra, _find)
    if gone:
        raise MissingExtra(f"{what} needs {', '.join(gone)} (the {extra!r} extra): "
                           f"pip install 'gatelab[{extra}]'")
