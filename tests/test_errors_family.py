"""One family of user errors: every exception class gatelab defines is a GatelabError (the CLI's
one handler prints it in one line), except private control-flow signals (a leading underscore).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import gatelab
from gatelab.errors import GatelabError

# modules that need an optional GPU stack to import
_SKIP = ("gatelab.engine.triton_",)


def _modules():
    for info in pkgutil.walk_packages(gatelab.__path__, "gatelab."):
        if info.name.startswith(_SKIP):
            continue
        try:
            yield importlib.import_module(info.name)
        except ImportError:  # an optional dependency (an extra) that is not installed
            continue


def test_every_public_exception_is_a_gatelab_error():
    outside = []
    for mod in _modules():
        for name, obj in vars(mod).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException)
                    and obj.__module__ == mod.__name__ and not name.startswith("_")
                    and not issubclass(obj, GatelabError)):
                outside.append(f"{mod.__name__}.{name}")
    assert outside == []
