"""Test-wide settings."""

import os

# Triton kernels run on the CPU through Triton's interpreter when no GPU is present; the variable
# must be set before triton is imported anywhere.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests never read or fill the user's cache (the tour's cached model)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("GATELAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()
