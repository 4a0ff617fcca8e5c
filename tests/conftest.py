"""Test-wide settings."""

import os

# Triton kernels run on the CPU through Triton's interpreter when no GPU is present; the variable
# must be set before triton is imported anywhere.
os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
