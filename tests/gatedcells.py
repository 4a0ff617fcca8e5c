"""Hypothesis strategies for valid gated cells, built from a small grammar (shared by tests).

A cell has the input ``x``, the state ``h`` (and maybe ``c``), one to three sigmoid gates, up to
two lets and an update per state. Expressions are sums, differences, products, gate mixes
``g * a + (1 - g) * b``, numbers, registry functions, linear maps and small powers over the
states, maps of the input, gates, lets and learned vectors. Every matrix gets its own name, so
shapes always agree.
"""

from __future__ import annotations

import re

from hypothesis import strategies as st

FUNCS = ["tanh", "sigmoid", "relu", "softplus", "exp", "log", "sqrt", "abs"]
NUMBERS = ["1", "2", "0.5", "0.1", "3"]


class _Names:
    """Fresh matrix and vector names (``M0``, ``M1``…, ``p0``…) within one cell."""

    def __init__(self) -> None:
        self.k = 0

    def __call__(self, stem: str) -> str:
        self.k += 1
        return f"{stem}{self.k}"


def _expr(draw, names: _Names, signals: list[str], gates: list[str], lets: list[str],
          depth: int) -> str:
    leaves = ["state", "input", "recurrent", "number", "vector"]
    leaves += ["gate"] * bool(gates) + ["let"] * bool(lets)
    nodes = ["add", "sub", "mul", "func", "map", "square"] + ["mix"] * bool(gates) * 2
    kind = draw(st.sampled_from(leaves + (nodes if depth > 0 else [])))

    def sub() -> str:
        return _expr(draw, names, signals, gates, lets, depth - 1)

    if kind == "state":
        return draw(st.sampled_from(signals))
    if kind == "input":
        return f"{names('W')} @ x"
    if kind == "recurrent":
        return f"{names('U')} @ {draw(st.sampled_from(signals))}"
    if kind == "number":
        return draw(st.sampled_from(NUMBERS))
    if kind == "vector":
        return names("p")
    if kind == "gate":
        return draw(st.sampled_from(gates))
    if kind == "let":
        return draw(st.sampled_from(lets))
    if kind in ("add", "sub", "mul"):
        op = {"add": "+", "sub": "-", "mul": "*"}[kind]
        return f"({sub()} {op} {sub()})"
    if kind == "func":
        return f"{draw(st.sampled_from(FUNCS))}({sub()})"
    if kind == "map":  # a map reads a signal: ``M @ (2 * p)`` is refused by the language
        arg = sub()
        if not _reads(arg, signals + gates + lets):
            arg = f"{arg} + {draw(st.sampled_from(signals))}"
        return f"{names('M')} @ ({arg})"
    if kind == "square":
        return f"({sub()}) ** 2"
    g = draw(st.sampled_from(gates))
    return f"({g} * {sub()} + (1 - {g}) * {sub()})"


def _reads(text: str, names: list[str]) -> bool:
    """Whether ``text`` mentions a signal (one of ``names``, or a map of the input)."""
    return "@" in text or any(re.search(rf"\b{n}\b", text) for n in names)


@st.composite
def cell_texts(draw, max_gates: int = 3, depth: int = 3) -> str:
    """The ``.cell`` text of a valid gated cell."""
    names = _Names()
    states = ["h"] + (["c"] if draw(st.booleans()) else [])
    gates = [f"g{k}" for k in range(draw(st.integers(1, max_gates)))]
    lines = ["name generated", "input x", "state " + ", ".join(states)]
    for g in gates:
        read = draw(st.sampled_from(states + ["none"]))
        recurrent = "" if read == "none" else f" + {names('U')} @ {read}"
        lines.append(f"gate {g} = sigmoid({names('W')} @ x{recurrent} + {names('b')})")
    lets: list[str] = []
    for k in range(draw(st.integers(0, 2))):
        body = _expr(draw, names, states, gates, lets, depth)
        lines.append(f"let n{k} = {body}")
        lets.append(f"n{k}")
    for s in states:
        body = _expr(draw, names, states, gates, lets, depth)
        if not _reads(body, states + gates + lets):  # a constant update is refused
            body = f"{body} + {s}"
        lines.append(f"next {s} = {body}")
    lines.append(f"output {draw(st.sampled_from(states + lets))}")
    return "\n".join(lines) + "\n"
