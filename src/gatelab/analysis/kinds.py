"""Kinds of a reduced update ``s' = E``, read off the expression's structure.

=============== ================================================================
``zero``        ``s' = 0``
``hold``        ``s' = s``
``feedforward`` ``s'`` does not depend on ``s``
``rnn``         ``s' = a · act(W x + U g(s) + b)``: every term that depends on the
                state is a linear map of it; ``g`` (what the state enters through)
                and ``act`` (possibly ``identity``) are reported exactly
``residual_rnn`` ``s' = s + rnn``
``other``       anything else (the expression says what), e.g. ``s + W x`` (an
                accumulator), ``s/2 + n/2``, or 0/0 at a normalised gate setting
=============== ================================================================

``a`` is a scalar: 1 at a full 0/1 setting, possibly a free gate when only some gates are set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sympy

from ..cell.functions import FUNCTIONS, MatVec, function_name
from .symbols import split_scalar, txt

if TYPE_CHECKING:
    from .stages import Mode

KINDS = ("hold", "rnn", "residual_rnn", "feedforward", "zero", "other")
# How titles and labels name each kind; JSON keeps the names of KINDS.
KIND_LABELS = {"hold": "hold", "rnn": "RNN", "residual_rnn": "residual RNN",
               "feedforward": "feed-forward", "zero": "zero", "other": "other"}


def kind_label(kind: str) -> str:
    """The human name of one kind: ``"residual_rnn"`` -> ``"residual RNN"``."""
    return KIND_LABELS.get(kind, kind)


def kind_text(mode: Mode | Mapping[str, str], *, labels: bool = True,
              merge: bool = False) -> str:
    """A mode's kind (or a ``{memory state: kind}`` map) as one line of text.

    One memory state: its kind alone; several: ``"c: RNN, m: hold"``. ``merge``: the kind
    alone also when every memory state has the same one. ``labels=False`` keeps the analysis'
    names (``residual_rnn``).

    >>> kind_text({"c": "residual_rnn"})
    'residual RNN'
    >>> kind_text({"c": "hold", "m": "hold"}), kind_text({"c": "hold", "m": "hold"}, merge=True)
    ('c: hold, m: hold', 'hold')
    """
    kinds = mode if isinstance(mode, Mapping) else mode.kind
    name = kind_label if labels else str
    if len(kinds) == 1 or (merge and len(set(kinds.values())) == 1):
        return name(next(iter(kinds.values())))
    return ", ".join(f"{s}: {name(k)}" for s, k in kinds.items())


@dataclass(frozen=True)
class RnnForm:
    """``scale · act(pre)`` with ``pre = Σ W·x + Σ U·through + biases``."""

    act: str
    scale: sympy.Expr
    pre: sympy.Expr
    input_maps: tuple[str, ...]
    recurrent_maps: tuple[str, ...]
    through: tuple[sympy.Expr, ...]

    def to_dict(self, state: str, lead: frozenset[str] = frozenset()) -> dict:
        return {
            "act": self.act,
            "scale": txt(self.scale, lead),
            "pre_activation": txt(self.pre, lead),
            "input_maps": list(self.input_maps),
            "recurrent_maps": list(self.recurrent_maps),
            "through": [txt(t, lead) for t in self.through],
            "enters_through": enters_through(self.through, sympy.Symbol(state), lead),
        }


@dataclass(frozen=True)
class KindInfo:
    """The kind of one memory state's reduced update, with the structure that decided it."""

    state: str
    kind: str
    expr: sympy.Expr
    rnn: RnnForm | None = None
    depends_on: tuple[str, ...] = field(default_factory=tuple)
    description: str = ""


def enters_through(through: tuple[sympy.Expr, ...], s: sympy.Symbol,
                   lead: frozenset[str] = frozenset()) -> str:
    """How the state reaches the recurrent map: ``identity``, ``tanh``, or the expression."""
    names = []
    for t in through:
        if t == s:
            names.append("identity")
        elif function_name(t) and t.args[0] == s:
            names.append(function_name(t))
        else:
            names.append(txt(t, lead))
    return ", ".join(dict.fromkeys(names))


def match_rnn(expr: sympy.Expr, s: sympy.Symbol, states: set[sympy.Symbol],
              scalars: set[sympy.Symbol]) -> RnnForm | None:
    """``expr`` as ``scale · act(W x + U g(s) + b)``, or None if it has another shape."""
    scale, rest = split_scalar(expr, scalars)
    if rest == 1:
        return None
    fname = function_name(rest)
    if fname is not None and len(rest.args) == 1 and rest.args[0].has(MatVec):
        act, pre = fname, rest.args[0]
    else:
        act, pre = "identity", rest
    inputs, recurrent, through = [], [], []
    for term in sympy.Add.make_args(pre):
        coeff, core = split_scalar(term, scalars)
        if not (term.free_symbols & states):
            if isinstance(core, MatVec):
                inputs.append(core.matrix.name)
            continue
        if not isinstance(core, MatVec) or core.vector.has(MatVec):
            return None  # the state enters outside a linear map: not an RNN update
        recurrent.append(core.matrix.name)
        through.append(coeff * core.vector)
    if not any(s in t.free_symbols for t in through):
        return None
    return RnnForm(act, scale, pre, tuple(inputs), tuple(recurrent), tuple(through))


def classify(expr: sympy.Expr, state: str, memory_states: tuple[str, ...],
             scalars: set[sympy.Symbol]) -> KindInfo:
    """The kind of ``state' = expr`` (``expr`` in memory states, inputs, parameters, gates)."""
    s = sympy.Symbol(state)
    syms = {sympy.Symbol(m) for m in memory_states}
    lead = frozenset(x.name for x in scalars)
    deps = tuple(m for m in memory_states if sympy.Symbol(m) in expr.free_symbols)
    if expr.has(sympy.nan, sympy.zoo):
        return KindInfo(state, "other", expr, None, deps,
                        "undefined at this setting (0/0: the gates' normalisation divides by 0)")
    if expr == 0:
        return KindInfo(state, "zero", expr, None, deps, "reset to 0")
    if expr == s:
        return KindInfo(state, "hold", expr, None, deps,
                        "held: the input is ignored")
    if s not in expr.free_symbols:
        others = [m for m in deps if m != state]
        tail = f" (it reads {', '.join(others)})" if others else ""
        return KindInfo(state, "feedforward", expr, None, deps,
                        f"no dependence on {state}: no memory through it{tail}")
    form = match_rnn(expr, s, syms, scalars)
    if form is not None:
        return KindInfo(state, "rnn", expr, form, deps, _rnn_words(state, form, lead))
    if isinstance(expr, sympy.Add) and s in expr.args:
        rest = expr - s
        if s not in rest.free_symbols:
            return KindInfo(state, "other", expr, None, deps,
                            f"an accumulator: {state} plus {txt(rest, lead)}, a term that "
                            f"does not depend on {state}")
        form = match_rnn(rest, s, syms, scalars)
        if form is not None:
            return KindInfo(state, "residual_rnn", expr, form, deps,
                            f"{state} plus an RNN update: " + _rnn_words(state, form, lead))
    return KindInfo(state, "other", expr, None, deps, "none of the named forms")


def _rnn_words(state: str, form: RnnForm, lead: frozenset[str]) -> str:
    gated = "" if form.scale == 1 else f", the whole term scaled by {txt(form.scale, lead)}"
    maps = ", ".join(form.input_maps) or "none"
    rec = ", ".join(form.recurrent_maps)
    how = enters_through(form.through, sympy.Symbol(state), lead)
    if how == "identity":
        enters = f"{state} itself"
    elif how in FUNCTIONS:
        enters = f"{how}({state})"
    else:
        enters = how
    act = "no activation (a sum of linear maps)" if form.act == "identity" else form.act
    return (f"{act} of input maps {maps} and recurrent maps {rec}; {state} enters the "
            f"recurrent maps through {enters}{gated}")
