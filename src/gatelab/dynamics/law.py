"""The law of exploding and vanishing gradients, measured (docs/design.md, "The article", point 2).

A linear RNN ``h_t = W h_{t-1} + W_x x_t`` has ``∂h_t/∂h_0 = W^t``. With the SVD
``W = U Σ Vᵀ`` the article says the product grows or decays like ``σ_max^t``. We build ``W`` from
a chosen spectrum ``σ_1 = σ_max ≥ … ≥ σ_H = σ_min`` (evenly spaced) and random orthogonal
factors from a seeded generator, compute every ``J_t = ∂h_t/∂h_0`` (``t = 0..T``) by autograd
(one vectorised reverse pass over the whole unrolled sequence) and fit the per-step rate
``exp(slope of log ‖J_t‖ against t)`` over the second half of the steps.

Which norm, and which ``W``:

* ``‖J_t‖`` is the **operator (spectral) norm**: the largest gain over all directions, so no
  lucky or unlucky direction enters the measurement (a fixed random direction ``v`` would see
  ``‖W^t v‖``, which only reaches the same rate after enough steps for the top mode to win).
* ``σ_max^t`` is only an upper bound for a general ``W``: ``‖W^t‖ ≤ ‖W‖^t = σ_max^t``, and the
  true per-step rate is the spectral radius ``ρ(W) = max |λ|``. The two agree when ``W`` is
  normal. So the default ``coupling="symmetric"`` takes ``V = U``: ``W = U Σ Uᵀ``,
  ``W^t = U Σ^t Uᵀ`` and ``‖W^t‖ = σ_max^t`` exactly; the fit then recovers ``σ_max`` to float
  precision for any ``T``. ``coupling="independent"`` draws ``V`` independently: the fit then
  finds ``ρ(W)``, which for random factors lies well below ``σ_max`` (reported beside it).
* ``activation="tanh"`` multiplies each step by ``diag(1 - h_t²) ≤ 1``, so the rate falls below
  the linear one as the state saturates.

Shapes: ``W`` is ``(H, H)``; ``t`` and ``norm`` have ``T + 1`` entries (``norm[0] = 1``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..errors import UsageError
from ..threads import single_thread
from .model import json_safe

ACTIVATIONS = ("identity", "tanh")
COUPLINGS = ("symmetric", "independent")


@dataclass
class LawResult:
    """One measurement of ``‖∂h_t/∂h_0‖`` against ``t``."""

    sigma_max: float
    sigma_min: float
    hidden: int
    steps: int
    activation: str
    coupling: str
    seed: int
    spectral_radius: float
    fitted_rate: float
    relative_error: float  # fitted_rate / sigma_max - 1
    t: list[int]
    norm: list[float]
    bound: list[float]  # σ_max^t, the article's line

    def to_json(self) -> dict:
        return json_safe(asdict(self))


def random_orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-random ``(n, n)`` orthogonal matrix (QR of a Gaussian, signs fixed)."""
    q, r = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))


def matrix_from_spectrum(sigmas: torch.Tensor, *, coupling: str = "symmetric",
                         generator: torch.Generator) -> torch.Tensor:
    """``W = U diag(σ) Vᵀ`` (float64, ``(H, H)``); ``V = U`` when ``coupling == "symmetric"``."""
    if coupling not in COUPLINGS:
        raise UsageError(f"coupling must be one of {', '.join(COUPLINGS)}, not {coupling!r}")
    n = sigmas.numel()
    u = random_orthogonal(n, generator)
    v = u if coupling == "symmetric" else random_orthogonal(n, generator)
    return u @ torch.diag(sigmas.double()) @ v.T


def jacobian_norms(w: torch.Tensor, steps: int, *, activation: str = "identity",
                   generator: torch.Generator) -> torch.Tensor:
    """``‖∂h_t/∂h_0‖₂`` for ``t = 0..steps`` (shape ``(steps + 1,)``) by autograd.

    ``h_t = act(W h_{t-1} + W_x x_t)`` with random inputs ``x_t`` (they only matter for tanh).
    Steps whose Jacobian overflows float64 read ``inf``.
    """
    if activation not in ACTIVATIONS:
        raise UsageError(f"activation must be one of {', '.join(ACTIVATIONS)}, "
                         f"not {activation!r}")
    h = w.shape[0]
    drive = torch.randn(steps, h, generator=generator, dtype=torch.float64) * 0.5
    h0 = torch.randn(h, generator=generator, dtype=torch.float64) * 0.5
    act = torch.tanh if activation == "tanh" else (lambda z: z)

    def unroll(start: torch.Tensor) -> torch.Tensor:
        trail = [start]
        for k in range(steps):
            trail.append(act(w @ trail[-1] + drive[k]))
        return torch.stack(trail)  # (T + 1, H)

    jac = torch.autograd.functional.jacobian(unroll, h0, vectorize=True)  # (T + 1, H, H)
    # a large σ_max^t overflows float64: those steps read inf (the fit skips them)
    ok = torch.isfinite(jac).all(dim=(1, 2))
    norms = torch.full((steps + 1,), math.inf, dtype=torch.float64)
    norms[ok] = torch.linalg.matrix_norm(jac[ok], ord=2)
    return norms


def fit_rate(t: torch.Tensor, norm: torch.Tensor) -> float:
    """Per-step rate ``exp(slope)`` of a least-squares line through ``log norm`` against ``t``.

    Fits the second half of the points (after any transient) whose norm is finite and positive;
    all such points when the second half has fewer than two (overflow or underflow); nan if
    fewer than two are left.
    """
    valid = (norm > 0) & torch.isfinite(norm)
    keep = valid & (t >= t.max() / 2)
    if int(keep.sum()) < 2:
        keep = valid
    if int(keep.sum()) < 2:
        return float("nan")
    x, y = t[keep].double(), torch.log(norm[keep].double())
    x = x - x.mean()
    slope = float((x * (y - y.mean())).sum() / (x * x).sum())
    return math.exp(slope)


def _powers(base: float, steps: int) -> list[float]:
    """``base^t`` for ``t = 0..steps``, ``inf`` where float64 overflows."""
    out = []
    for k in range(steps + 1):
        try:
            out.append(base**k)
        except OverflowError:
            out.append(math.inf)
    return out


def measure_law(sigma_max: float, *, steps: int = 60, hidden: int = 32,
                sigma_min: float | None = None, activation: str = "identity",
                coupling: str = "symmetric", seed: int = 0) -> LawResult:
    """Build ``W`` with singular values evenly spaced in ``[σ_min, σ_max]`` (default
    ``σ_min = σ_max / 2``), measure ``‖∂h_t/∂h_0‖`` and fit the per-step rate.

    >>> r = measure_law(1.1, steps=50, hidden=8)
    >>> abs(r.fitted_rate / 1.1 - 1) < 1e-9
    True
    """
    from ..budget import check_law

    if not sigma_max > 0:
        raise UsageError(f"--sigma-max must be positive, not {sigma_max}")
    # every option finite and bounded, the Jacobian within the memory budget, before any tensor
    check_law(steps=steps, hidden=hidden, seed=seed, sigma_max=sigma_max, sigma_min=sigma_min)
    sigma_min = sigma_max / 2 if sigma_min is None else sigma_min
    if not 0 <= sigma_min <= sigma_max:
        raise UsageError(f"--sigma-min must lie in [0, σ_max = {sigma_max}], not {sigma_min}")
    g = torch.Generator().manual_seed(seed)
    sigmas = torch.linspace(sigma_max, sigma_min, hidden, dtype=torch.float64)
    w = matrix_from_spectrum(sigmas, coupling=coupling, generator=g)
    with single_thread():
        norms = jacobian_norms(w, steps, activation=activation, generator=g)
    t = torch.arange(steps + 1)
    rate = fit_rate(t, norms)
    rho = float(torch.linalg.eigvals(w).abs().max())
    return LawResult(
        sigma_max=sigma_max, sigma_min=sigma_min, hidden=hidden, steps=steps,
        activation=activation, coupling=coupling, seed=seed, spectral_radius=rho,
        fitted_rate=rate, relative_error=rate / sigma_max - 1,
        t=t.tolist(), norm=norms.tolist(), bound=_powers(sigma_max, steps),
    )
