"""Argument checks of the recurrent modules, raising what ``torch.nn`` raises for the same
mistake (exception type and message, from ``torch/nn/modules/rnn.py`` and the ``_VF`` cell
kernels of torch 2.13), so code that catches torch's exceptions catches gatelab's.

>>> check_layer_args(3, 5, 1, bias=1, batch_first=False, dropout=0.0, proj_size=0)
Traceback (most recent call last):
...
TypeError: bias should be of type bool, got: int
"""

from __future__ import annotations

import numbers
import warnings

import torch


def check_layer_args(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                     proj_size: int = 0) -> None:
    """``torch.nn.RNNBase.__init__``'s checks, in its order."""
    if (not isinstance(dropout, numbers.Number) or isinstance(dropout, bool)
            or not 0 <= dropout <= 1):
        raise ValueError("dropout should be a number in range [0, 1] representing the "
                         "probability of an element being zeroed")
    if not isinstance(num_layers, int) or isinstance(num_layers, bool):
        raise TypeError(f"num_layers should be of type int, got: {type(num_layers).__name__}")
    if dropout > 0 and num_layers == 1:
        warnings.warn("dropout option adds dropout after all but last recurrent layer, so "
                      "non-zero dropout expects num_layers greater than 1, but got "
                      f"dropout={dropout} and num_layers={num_layers}", stacklevel=4)
    if not isinstance(bias, bool):
        raise TypeError(f"bias should be of type bool, got: {type(bias).__name__}")
    if not isinstance(batch_first, bool):
        raise TypeError(f"batch_first should be of type bool, got: {type(batch_first).__name__}")
    check_sizes(input_size, hidden_size)
    if num_layers <= 0:
        raise ValueError("num_layers must be greater than zero")
    if not isinstance(proj_size, int) or isinstance(proj_size, bool):
        raise TypeError(f"proj_size should be of type int, got: {type(proj_size).__name__}")
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if proj_size >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")


def check_sizes(input_size, hidden_size) -> None:
    """The size checks shared by layers and cells."""
    if not isinstance(input_size, int):
        raise TypeError(f"input_size should be of type int, got: {type(input_size).__name__}")
    if input_size <= 0:
        raise ValueError("input_size must be greater than zero")
    if not isinstance(hidden_size, int):
        raise TypeError(f"hidden_size should be of type int, got: {type(hidden_size).__name__}")
    if hidden_size <= 0:
        raise ValueError("hidden_size must be greater than zero")


def check_cell_sizes(input_size, hidden_size) -> None:
    """torch's cells check no sizes themselves: ``torch.empty`` refuses a size that is not an
    integer (``TypeError``) or is negative (``RuntimeError``), and 0 builds an empty cell that
    runs (``RNNCell(10, 0)`` maps ``(N, 10)`` to ``(N, 0)``)."""
    for size in (input_size, hidden_size):
        if not isinstance(size, int):
            raise TypeError(f"empty(): argument 'size' failed to unpack the object with error "
                            f"\"type must be tuple of ints,but got {type(size).__name__}\"")
        if size < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {size}: "
                               f"input_size={input_size}, hidden_size={hidden_size}")


def check_input(input: torch.Tensor, weight_dtype: torch.dtype, input_size: int,
                packed: bool, kernel_dtype_error: bool = False) -> None:
    """``torch.nn.RNNBase.check_input``: dtype, dimensions and feature size. With
    ``kernel_dtype_error`` a dtype mismatch is the RuntimeError torch's kernel raises (where
    torch's forward does not check first: packed LSTM input)."""
    if input.dtype != weight_dtype and not torch._C._is_any_autocast_enabled():
        if kernel_dtype_error:
            raise RuntimeError(f"mat1 and mat2 must have the same dtype, but got "
                               f"{_scalar_name(input.dtype)} and {_scalar_name(weight_dtype)}")
        raise ValueError(f"RNN input dtype ({input.dtype}) does not match weight dtype "
                         f"({weight_dtype}). Convert input: input.to({weight_dtype}), or "
                         f"convert model: model.to({input.dtype})")
    expected = 2 if packed else 3
    if input.dim() != expected:
        raise RuntimeError(f"input must have {expected} dimensions, got {input.dim()}")
    if input_size != input.size(-1):
        raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {input_size}, "
                           f"got {input.size(-1)}")


def _scalar_name(dtype: torch.dtype) -> str:
    """c10's name of a dtype, as torch's kernel messages print it (``Double``, ``Float``)."""
    return {torch.float64: "Double", torch.float32: "Float", torch.float16: "Half",
            torch.bfloat16: "BFloat16", torch.int64: "Long", torch.int32: "Int"}.get(
        dtype, str(dtype).removeprefix("torch."))


def check_hidden(hx: tuple[torch.Tensor, ...], expected: list[tuple[int, int, int]]) -> None:
    """``check_hidden_size`` for each state (LSTM's message names ``hidden[i]``)."""
    for i, (h, want) in enumerate(zip(hx, expected, strict=True)):
        if h.size() != want:
            what = "hidden" if len(hx) == 1 else f"hidden[{i}]"
            raise RuntimeError(f"Expected {what} size {want}, got {list(h.size())}")


def check_hx_dims(hx: tuple[torch.Tensor, ...], batched: bool) -> None:
    """The forward's check that ``hx`` is 3-D for batched input and 2-D for unbatched."""
    want = 3 if batched else 2
    kind = "batched 3-D" if batched else "unbatched 2-D"
    if len(hx) == 1:
        if hx[0].dim() != want:
            raise RuntimeError(f"For {kind} input, hx should also be {want}-D but got "
                               f"{hx[0].dim()}-D tensor")
    elif any(h.dim() != want for h in hx):
        names = " and ".join(["hx", "cx", *(f"hx[{i}]" for i in range(2, len(hx)))][:len(hx)])
        dims = ", ".join(f"{h.dim()}-D" for h in hx)
        raise RuntimeError(f"For {kind} input, {names} should also be {want}-D but got "
                           f"({dims}) tensors")


def check_cell_step(name: str, input: torch.Tensor, hx: tuple[torch.Tensor, ...] | None,
                    several: bool) -> None:
    """A cell's forward dimension checks (``torch.nn.LSTMCell.forward`` and friends)."""
    if input.dim() not in (1, 2):
        raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
    if hx is None:
        return
    for idx, h in enumerate(hx):
        if h.dim() not in (1, 2):
            what = f"hx[{idx}]" if several else "hidden"
            raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got {h.dim()}D instead")


def check_cell_shapes(input: torch.Tensor, hx: tuple[torch.Tensor, ...], input_size: int,
                      hidden_size: int) -> None:
    """What torch's ``_VF`` cell kernels check (batched ``(N, I)``, ``(N, H)``), with their
    messages; run before gatelab's own step so any cell reports as torch's do."""
    if input.size(1) != input_size:
        raise RuntimeError(f"input has inconsistent input_size: got {input.size(1)} expected "
                           f"{input_size}")
    for i, h in enumerate(hx):
        if input.size(0) != h.size(0):
            raise RuntimeError(f"Input batch size {input.size(0)} doesn't match hidden{i} "
                               f"batch size {h.size(0)}")
        if h.size(1) != hidden_size:
            raise RuntimeError(f"hidden{i} has inconsistent hidden_size: got {h.size(1)}, "
                               f"expected {hidden_size}")
        if h.dtype != input.dtype:
            raise RuntimeError(f"hidden{i} dtype ({h.dtype}) does not match input dtype "
                               f"({input.dtype})")


def check_hx_as_given(hx, n: int, kernel: str, position: int = 2) -> None:
    """What torch's kernels raise when a several-state ``hx`` reaches them as given: a single
    (stacked) tensor fails the argument parser (``TypeError``), a sequence of the wrong length
    the kernel's own check (``RuntimeError``). torch's Python code passes ``hx`` unconverted to
    the kernel for batched cell steps, batched layers and sorted packed input (unbatched and
    unsorted packed input are indexed ``hx[0], hx[1]`` first, so there a stacked tensor runs)."""
    if not isinstance(hx, (tuple, list)):  # a stacked tensor, a numpy array, ...
        raise TypeError(f"{kernel}(): argument 'hx' (position {position}) must be tuple of "
                        f"Tensors, not {type(hx).__name__}")
    if len(hx) != n:
        count = "two" if n == 2 else str(n)
        raise RuntimeError(f"{kernel} expects {count} hidden states")
