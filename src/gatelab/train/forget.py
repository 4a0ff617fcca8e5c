"""The forget gate of any cell, found from its analysis, and its initial bias.

Jozefowicz et al. (2015) initialise the LSTM's forget-gate bias to 1; Greff et al. (2017) search
over it. Which gate is "the forget gate" is read from the analysis, never from a name: it is the
gate ``g`` whose value alone is the weight-free gain of a memory state through one step
(:mod:`gatelab.analysis`, stage 2's ``direct_gain``): ``g`` (LSTM's ``f``, GRU's ``z``; sign +1)
or ``1 - g`` (MGU's ``f``, CIFG's ``i``; sign −1). Raising ``sign · b`` keeps more memory.
A cell whose gain is anything else (the RNN's ``0``, NFG's ``1``, minLSTM's ``f/(f + i)``) has no
forget gate in this sense.

>>> forget_gate("lstm"), forget_gate("cifg"), forget_gate("mgu"), forget_gate("nfg")
(('f', 1, 'b_f'), ('i', -1, 'b_i'), ('f', -1, 'b_f'), None)
"""

from __future__ import annotations

import sympy
import torch

from ..cell import Cell, load_cell


def _bias_of(cell: Cell, gate: str) -> str | None:
    """The vector added inside the gate's squashing function (``b_f`` in
    ``sigmoid(W_f @ x + U_f @ h + b_f)``), or None."""
    expr = cell.gates[gate]
    if not isinstance(expr, sympy.Function) or len(expr.args) != 1:
        return None
    terms = sympy.Add.make_args(expr.args[0])
    vectors = set(cell.vectors)
    found = [t.name for t in terms if isinstance(t, sympy.Symbol) and t.name in vectors]
    return found[0] if len(found) == 1 else None


def forget_gate(cell: str | Cell) -> tuple[str, int, str] | None:
    """``(gate, sign, bias parameter)`` of the cell's forget gate, or None when it has none."""
    from ..analysis import analyze

    c = load_cell(cell) if isinstance(cell, str) else cell
    gains = analyze(c).to_dict()["stages"]["2"]["direct_gain"]
    for state in sorted(gains):
        gain = gains[state].replace(" ", "")
        for g in c.gates:
            sign = 1 if gain == g else -1 if gain == f"1-{g}" else 0
            bias = _bias_of(c, g) if sign else None
            if bias is not None:
                return g, sign, bias
    return None


def add_forget_bias(rnn: torch.nn.Module, value: float) -> None:
    """Add ``sign · value`` to the forget gate's bias in every layer and direction of a
    ``gatelab.nn.RNN`` (in place, at initialisation). Raises ``ValueError`` when the cell has no
    forget gate."""
    found = forget_gate(rnn.cell)
    if found is None:
        raise ValueError(f"cell {rnn.cell.name!r} has no forget gate (no gate alone sets how much "
                         "of the memory is kept), so --forget-bias does not apply to it")
    _, sign, bias = found
    layout, H = rnn.layout, rnn.hidden_size
    with torch.no_grad():
        for layer in range(rnn.num_layers):
            for d in range(rnn.num_directions):
                tensors = rnn.packed_params(layer, d)
                if bias in tensors:  # stored alone
                    tensors[bias].add_(sign * value)
                elif bias in layout.pairs and f"bias_{layout.pairs[bias][0][0]}" in tensors:
                    side, matrix = layout.pairs[bias][0]  # the cell's b is the sum of the parts
                    tensors[f"bias_{side}"][layout.rows(side, matrix, H)].add_(sign * value)
                else:
                    raise ValueError(f"the layer was built without biases (bias=False): "
                                     f"cannot set the forget-gate bias {bias}")
