"""Higher-order gradients for the generated backends.

The generated backward loops (:mod:`gatelab.engine.backward`, the scan's) are first-order code:
differentiating their results again would give a wrong number.
:func:`with_reference_double_backward` runs such a backend inside one autograd node whose backward

* without ``create_graph`` (ordinary training) backpropagates through the generated graph, as
  before, at its speed;
* with ``create_graph=True`` (gradient penalties, meta-learning, Hessian-vector products, and
  ``torch.autograd.gradgradcheck``) recomputes the layer with the ``reference`` loop of
  :func:`gatelab.cell.evaluate.step` from the saved inputs and differentiates that, building a
  graph that is itself differentiable: every order is exact, at the reference loop's speed.

Shapes: ``x (T, N, I)``, ``state0`` one ``(N, H)`` per state, ``tensors`` the packed parameters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Run = Callable[[torch.Tensor, tuple[torch.Tensor, ...], dict[str, torch.Tensor]],
               tuple[torch.Tensor, tuple[torch.Tensor, ...]]]


def with_reference_double_backward(fast: Run, reference: Run, x: torch.Tensor,
                                   state0: tuple[torch.Tensor, ...],
                                   tensors: dict[str, torch.Tensor]):
    """``fast(x, state0, tensors)`` -> ``(out, states)``, differentiable to any order (see the
    module docstring). Without autograd in play this is ``fast`` itself."""
    inputs = (x, *state0, *tensors.values())
    if not torch.is_grad_enabled() or not any(t.requires_grad for t in inputs):
        return fast(x, state0, tensors)
    names = tuple(tensors)
    n_s = len(state0)

    def split(flat):
        return flat[0], tuple(flat[1:1 + n_s]), dict(zip(names, flat[1 + n_s:], strict=True))

    res = _TwiceDifferentiable.apply(fast, reference, split, *inputs)
    return res[0], tuple(res[1:])


class _TwiceDifferentiable(torch.autograd.Function):
    """``apply(fast, reference, split, *inputs) -> (out, *states)``."""

    @staticmethod
    def forward(ctx, fast, reference, split, *inputs):
        with torch.enable_grad():
            # Detached leaves: the generated graph stays inside this node.
            leaves = [t.detach().requires_grad_(t.requires_grad) for t in inputs]
            out, states = fast(*split(leaves))
        ctx.reference, ctx.split = reference, split
        ctx.leaves, ctx.results = leaves, (out, *states)
        ctx.save_for_backward(*inputs)
        return tuple(r.detach() for r in ctx.results)

    @staticmethod
    def backward(ctx, *grads):
        inputs = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True: differentiate the reference loop, rebuilt on the real inputs.
            out, states = ctx.reference(*ctx.split(list(inputs)))
            results, wrt = (out, *states), inputs
        else:
            results, wrt = ctx.results, ctx.leaves
        pairs = [(r, g) for r, g in zip(results, grads, strict=True) if r.requires_grad]
        want = [i for i, t in enumerate(wrt) if t.requires_grad]
        got = torch.autograd.grad([r for r, _ in pairs], [wrt[i] for i in want],
                                  [g for _, g in pairs], allow_unused=True,
                                  retain_graph=True, create_graph=torch.is_grad_enabled())
        out_grads: list[torch.Tensor | None] = [None] * len(inputs)
        for i, g in zip(want, got, strict=True):
            out_grads[i] = g
        return (None, None, None, *out_grads)
