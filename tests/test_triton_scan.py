"""The Triton parallel scan (interpreter on the CPU) against the sequential loop, forward and
backward."""

from __future__ import annotations

import pytest
import torch

from gatelab.engine import triton_scan as ts
from gatelab.engine.triton_scan import linear_scan_reference, triton_linear_scan


def _inputs(T, N, H, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(T, N, H, generator=g).to(dtype)  # decays in (0, 1), like 1 - z
    b = torch.randn(T, N, H, generator=g).to(dtype)
    h0 = torch.randn(N, H, generator=g).to(dtype)
    return a, b, h0


@pytest.mark.parametrize("blocks", [(8, 4), (64, 8)], ids=["chunked", "one-chunk"])
def test_scan_forward_and_backward_match_the_loop(monkeypatch, blocks):
    # T=37 with 8-row chunks crosses 5 chunk borders (carry) and ends in a partial chunk;
    # 6 columns with 4 per program leave a masked tail.
    monkeypatch.setattr(ts, "_blocks", lambda T, C: blocks)
    a, b, h0 = (t.requires_grad_() for t in _inputs(37, 2, 3))
    h = triton_linear_scan(a, b, h0)
    w = torch.randn_like(h)
    grads = torch.autograd.grad((h * w).sum(), (a, b, h0))
    ref = linear_scan_reference(a, b, h0)
    ref_grads = torch.autograd.grad((ref * w).sum(), (a, b, h0))
    assert h.shape == (37, 2, 3)
    assert (h - ref).abs().max().item() < 1e-5
    for name, g, r in zip(("a", "b", "h0"), grads, ref_grads, strict=True):
        assert (g - r).abs().max().item() < 1e-5, name


def test_scan_default_blocks_zero_h0_and_one_step():
    a, b, _ = _inputs(5, 3, 4, seed=1)
    assert (triton_linear_scan(a, b) - linear_scan_reference(a, b)).abs().max().item() < 1e-6
    a1, b1, h1 = _inputs(1, 1, 1, seed=2)
    assert torch.allclose(triton_linear_scan(a1, b1, h1)[0], a1[0] * h1 + b1[0])
    a0, b0, h00 = (t.requires_grad_() for t in _inputs(0, 2, 3))  # an empty sequence
    h = triton_linear_scan(a0, b0, h00)
    assert h.shape == (0, 2, 3)
    (g,) = torch.autograd.grad(h.sum() + h00.sum(), (h00,))
    assert torch.equal(g, torch.ones(2, 3))


def test_scan_bf16_storage_fp32_math():
    a, b, h0 = _inputs(20, 2, 4, torch.bfloat16, seed=3)
    h = triton_linear_scan(a, b, h0)
    assert h.dtype == torch.bfloat16
    ref = linear_scan_reference(a.float(), b.float(), h0.float())
    # each stored value is rounded once (not once per step): within a bf16 ulp of the fp32 scan
    assert ((h.float() - ref).abs() <= 2**-7 * ref.abs().clamp(min=1)).all()


def test_scan_clear_errors(monkeypatch):
    a, b, h0 = _inputs(4, 2, 3)
    with pytest.raises(ValueError, match=r"\(T, N, H\)"):
        triton_linear_scan(a, b[:, :1], h0)
    with pytest.raises(ValueError, match="h0 must be"):
        triton_linear_scan(a, b, h0[:1])
    with pytest.raises(TypeError, match="dtype"):
        triton_linear_scan(a.double(), b.double(), h0.double())
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="need a CUDA GPU"):
        triton_linear_scan(a, b, h0)


def test_engine_scan_path_with_triton_matches_the_loop():
    """The engine's scan (``gatelab.engine.scan.LinearScan``) as it runs on CUDA: the Triton
    kernel for the forward scan and for the reverse scan of its backward."""
    from gatelab.engine.scan import LinearScan

    a, b, h0 = (t.requires_grad_() for t in _inputs(9, 2, 3, seed=4))
    h = LinearScan.apply(a, b, h0, True)
    w = torch.randn_like(h)
    grads = torch.autograd.grad((h * w).sum(), (a, b, h0))
    ref = linear_scan_reference(a, b, h0)
    ref_grads = torch.autograd.grad((ref * w).sum(), (a, b, h0))
    assert (h - ref).abs().max().item() < 1e-5
    for g, r in zip(grads, ref_grads, strict=True):
        assert (g - r).abs().max().item() < 1e-5
