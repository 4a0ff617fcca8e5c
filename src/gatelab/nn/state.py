"""Pickling of gatelab's modules as tensors and plain data.

A module's pickled state keeps its cell as ``.cell`` source text plus the order of its
parameters (the order fixes the packed layout, and the printer may order terms differently from
the file) and rebuilds the :class:`~gatelab.cell.Cell` on load, so ``torch.load(f,
weights_only=True)`` accepts a whole saved model with only gatelab's public module classes in
``torch.serialization.safe_globals``; no SymPy or IR object is ever pickled. ``copy.deepcopy`` and
plain ``pickle`` go through the same two methods.
"""

from __future__ import annotations

import dataclasses

from ..cell import Cell, cell_text, parse_cell

DERIVED = ("layout", "_vendor", "_vendor_route")  # rebuilt from the cell on load


def cell_to_state(cell: Cell) -> dict:
    """Plain data from which :func:`cell_from_state` rebuilds ``cell`` exactly."""
    return {"text": cell_text(cell), "params": list(cell.params), "source": cell.source}


def cell_from_state(state: dict) -> Cell:
    """The cell :func:`cell_to_state` described, parameters in their original order."""
    cell = parse_cell(state["text"], path=state.get("source", "<string>"))
    order = state["params"]
    if set(order) != set(cell.params):
        raise ValueError("pickled cell text and parameter list disagree; the file is damaged")
    return dataclasses.replace(cell, params={p: cell.params[p] for p in order},
                               source=state.get("source", cell.source))


class CellPickling:
    """Mixin for modules holding ``self.cell``: ``__getstate__``/``__setstate__`` as above; the
    class rebuilds what :data:`DERIVED` names in ``_derive()``. Also the one place that refuses
    ``torch.jit.script`` clearly."""

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for k in DERIVED:
            state.pop(k, None)
        state["cell"] = cell_to_state(self.cell)
        return state

    def __setstate__(self, state: dict) -> None:
        """Accepts gatelab's pickled form (the cell as text) and, as torch's modules do, a
        module's ``__dict__`` (the cell as a :class:`~gatelab.cell.Cell`; what is derived from
        it is rebuilt). A state without ``proj_size`` (torch's LSTM before 1.8) gets 0."""
        state = {k: v for k, v in state.items() if k not in DERIVED}
        if not isinstance(state["cell"], Cell):
            state["cell"] = cell_from_state(state["cell"])
        super().__setstate__(state)  # torch.nn.Module's: restores hook dictionaries
        if "_flat" in state and "proj_size" not in state:  # a layer, pickled before proj_size
            self.proj_size = 0
        self._derive()

    def __prepare_scriptable__(self):  # noqa: ANN204 - torch.jit.script's hook
        """``torch.jit.script`` calls this first: refuse with what works instead of a parse
        error deep inside the module (the engine's Python control flow is not TorchScript)."""
        raise RuntimeError(
            f"torch.jit.script cannot compile gatelab's {type(self).__name__} (TorchScript is "
            "deprecated in torch); use torch.jit.trace, torch.export or torch.compile, which "
            "all run it")
