"""A hypothesis strategy for cell text that follows the grammar closely (shared by the tests)."""

from __future__ import annotations

from hypothesis import strategies as st

SIGNALS = ["x", "h", "c", "f", "r", "n"]
PARAMS = ["b", "p", "b_f"]
MATRICES = ["W", "U", "V_f"]
FUNCS = ["sigmoid", "tanh", "relu", "softplus", "exp", "log", "sqrt", "abs", "σ"]
NUMBERS = ["0", "1", "2", "0.5", "1e-3", "3.25", "1e3", "1e15", "1e16", "1e-16", "0.0", "4",
           "5", "1/3"]


def _expr(children):
    return st.one_of(
        st.tuples(children, st.sampled_from([" + ", " - ", " * ", " / ", " ⊙ ", " − "]),
                  children).map("".join),
        st.tuples(st.sampled_from(FUNCS), children).map(lambda t: f"{t[0]}({t[1]})"),
        st.tuples(st.sampled_from(MATRICES), children).map(lambda t: f"{t[0]} @ ({t[1]})"),
        st.tuples(st.sampled_from(MATRICES), st.sampled_from(SIGNALS)).map(
            lambda t: f"{t[0]} @ {t[1]}"),
        children.map(lambda e: f"-({e})"),
        children.map(lambda e: f"({e})"),
        st.tuples(children, st.sampled_from(NUMBERS + ["-1", "(1/2)", "-2", "(0-1)"])).map(
            lambda t: f"({t[0]}) ** {t[1]}"),
    )


LEAF = st.one_of(st.sampled_from(["h", "h", "c", "f", "r", "n"]), st.sampled_from(PARAMS),
                 st.sampled_from(NUMBERS))
EXPR = st.recursive(LEAF, _expr, max_leaves=8)


@st.composite
def cell_texts(draw) -> str:
    """A cell: input x; state h (and maybe c); some of the gates f, r and the let n; updates."""
    states = ["h"] + (["c"] if draw(st.booleans()) else [])
    defs = draw(st.lists(st.sampled_from(["gate f", "gate r", "let n"]), unique=True,
                         max_size=3))
    lines = []
    if draw(st.booleans()):
        # Rich markup like [/x] and brackets must come out literally in `gatelab show`
        chars = st.characters(categories=("L", "N", "P", "S", "Zs"))
        lines.append("# " + draw(st.one_of(st.just("[/x] [bold]"), st.text(chars, max_size=20))))
    lines += ["input x", "state " + ", ".join(states)]

    def rhs(k: int) -> str:
        # most updates also read the input and a state through their own maps, as real cells do
        tail = draw(st.sampled_from(["", f" + W{k} @ x + U{k} @ h", f" + W{k} @ x",
                                     f" * tanh(W{k} @ x + U{k} @ h + b{k})"]))
        return draw(EXPR) + tail

    lines += [f"{d} = {rhs(k)}" for k, d in enumerate(defs)]
    lines += [f"next {s} = {rhs(k + 3)}" for k, s in enumerate(states)]
    if len(states) > 1 or draw(st.booleans()):
        lines.append(f"output {draw(st.sampled_from(states))}")
    return "\n".join(lines) + "\n"
