"""Test-wide settings."""

import os

# Triton kernels run on the CPU through Triton's interpreter when no GPU is present; the variable
# must be set before triton is imported anywhere.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


import pytest  # noqa: E402

# Training scripts run as programs by the drop-in tests (they read sys.argv when imported), not
# test modules: --doctest-modules must not import them.
collect_ignore_glob = ["scripts/*.py"]


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests never read or fill the user's cache (compiled kernels, the tour's cached model).
    The xdist workers of one session share one cache (its builders take turns: gatelab.cache),
    so each C kernel library is compiled once per session, not once per worker."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder = base / "gatelab-cache"
    mp = pytest.MonkeyPatch()
    mp.setenv("GATELAB_CACHE_DIR", str(folder))
    mp.setenv("GATELAB_CACHE", str(folder))
    yield
    mp.undo()
