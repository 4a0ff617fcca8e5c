"""Kinds of a reduced update ``s' = E``, read off the expression's structure.

=============== ================================================================
``zero``        ``s' = 0``
``hold``        ``s' = s``
``feedforward`` ``s'`` does not depend on ``s``
``rnn``         ``s' = a · act(W x + U g(s) + b)``: every term that depends on the
                state is a linear map of it (a matrix, a diagonal ``u ⊙ g(s)``, or a
                normalised map ``layer_norm(U g(s))``, read like tanh of a linear map);
                ``g`` (what the state enters through) and ``act`` (possibly
                ``identity``) are reported exactly
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

from ..cell.functions import FUNCTIONS, MatVec, function_name, layer_norm
from .symbols import is_scalar, split_scalar, txt

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


def map_label(diag: sympy.Expr, matrix: str | None, lead: frozenset[str] = frozenset()) -> str:
    """How a recurrent map is named: ``U``, ``diag(u)`` (an elementwise product ``u ⊙ h`` is the
    diagonal linear map ``diag(u)·h``) or ``diag(α ⊙ W·x)·V`` (multiplicative integration)."""
    if matrix is None:
        return f"diag({txt(diag, lead)})"
    return matrix if diag == 1 else f"diag({txt(diag, lead)})·{matrix}"


def linear_term(term: sympy.Expr, states: set[sympy.Symbol], scalars: set[sympy.Symbol],
                inside: bool = False) -> tuple[sympy.Expr, str | None, sympy.Expr] | None:
    """A state-dependent term of a pre-activation as a linear map of (a function of) the state:
    ``(diag, matrix, through)`` with ``term = diag ⊙ (matrix · through)`` (``matrix`` None: the
    map is ``diag`` alone). ``diag`` is free of the states (parameters, inputs, maps of the
    input); gates and numbers stay with ``through`` (they are scalars). None when the term is not
    linear in a function of the state this way (``h ⊙ h``, a map of a map of the state).
    ``inside``: the term is inside a nonlinearity, where a number times the state is the
    diagonal map ``diag(number)`` as ``v ⊙ h`` is ``diag(v)`` (AntisymmetricRNN's ``- γ h`` in
    ``tanh(W·h - γ h + V·x + b)``); outside, ``s + …`` stays the accumulator.
    """
    diag, rest = sympy.Integer(1), sympy.Integer(1)
    for f in sympy.Mul.make_args(term):
        if f.is_Number or is_scalar(f, scalars) or f.free_symbols & states:
            rest *= f
        else:
            diag *= f
    coeff, core = split_scalar(rest, scalars)
    if isinstance(core, layer_norm):  # a normalised linear map of the state: LN(U·g(s) + …)
        # The normalisation may also hold input maps and biases, normalised together
        # (LN(W·x + U·h)); exactly one term of its sum reads the state, through one map.
        reading = [t for t in sympy.Add.make_args(core.args[0]) if t.free_symbols & states]
        if len(reading) != 1:
            return None
        c2, inner = split_scalar(reading[0], scalars)
        if not isinstance(inner, MatVec) or inner.vector.has(MatVec) or not (
                inner.vector.free_symbols & states):
            return None
        return diag, f"layer_norm∘{inner.matrix.name}", coeff * c2 * inner.vector
    if isinstance(core, MatVec):
        if core.vector.has(MatVec) or not (core.vector.free_symbols & states):
            return None
        return diag, core.matrix.name, coeff * core.vector
    if (inside and diag == 1 and coeff.is_Number and not core.has(MatVec)
            and len(sympy.Mul.make_args(core)) == 1):
        return coeff, None, core
    if diag == 1 or core.has(MatVec) or len(sympy.Mul.make_args(core)) != 1:
        return None  # h alone (an accumulator's s), h ⊙ h, U·h ⊙ h: not a diagonal map
    return diag, None, coeff * core


_MAX_SPREAD = 64  # terms a product may multiply out to when its kind is read


def _spread_size(term: sympy.Expr) -> int:
    """How many terms ``term`` multiplies out to at its top level (a product of sums: the
    product of their lengths; powers are not multiplied out)."""
    size = 1
    for f in sympy.Mul.make_args(term):
        size *= len(sympy.Add.make_args(f))
    return size


def _learned_scale(scale: sympy.Expr, rest: sympy.Expr, states: set[sympy.Symbol]
                   ) -> tuple[sympy.Expr, sympy.Expr]:
    """Move factors built from parameters and numbers alone into the scale when what is left is
    one function of the state: ``v ⊙ tanh(U·h + ...)`` is scaled by ``v`` as ``0.5 ⊙ tanh(...)``
    is by 0.5 (FastGRNN's ``(ζ + ν) ⊙ tanh(...)``), so the kind does not depend on whether a
    scale is a number or a state-free vector. Factors holding a linear map stay in ``rest``."""
    if not isinstance(rest, sympy.Mul):
        return scale, rest
    fixed = [f for f in rest.args if not f.free_symbols & states and not f.atoms(MatVec)]
    core = sympy.Mul(*[f for f in rest.args if f not in fixed])
    fname = function_name(core)
    if fixed and fname is not None and len(core.args) == 1 and core.args[0].free_symbols & states:
        return scale * sympy.Mul(*fixed), core
    return scale, rest


def match_rnn(expr: sympy.Expr, s: sympy.Symbol, states: set[sympy.Symbol],
              scalars: set[sympy.Symbol]) -> RnnForm | None:
    """``expr`` as ``scale · act(W x + U g(s) + b)``, or None if it has another shape.

    A state-dependent term may be ``U·g(s)``, an elementwise ``u ⊙ g(s)`` (the diagonal map
    ``diag(u)``), or either multiplied by a state-free vector (``α ⊙ W·x ⊙ V·h``: the map
    ``diag(α ⊙ W·x)·V``, still linear in the state).
    """
    scale, rest = split_scalar(expr, scalars)
    if rest == 1:
        return None
    scale, rest = _learned_scale(scale, rest, states)
    fname = function_name(rest)
    if fname is not None and len(rest.args) == 1 and rest.args[0].free_symbols & states:
        act, pre = fname, rest.args[0]
    else:
        act, pre = "identity", rest
    lead = frozenset(x.name for x in scalars)
    inputs, recurrent, through = [], [], []
    terms = list(sympy.Add.make_args(pre))
    while terms:
        term = terms.pop(0)
        maps = sorted(term.atoms(MatVec), key=sympy.default_sort_key)
        # maps of the input, alone or inside a state term (α ⊙ W·x ⊙ V·h, LN(W·x + U·h))
        inputs += [m.matrix.name for m in maps if not (m.vector.free_symbols & states)]
        if not (term.free_symbols & states):
            continue
        found = linear_term(term, states, scalars, inside=act != "identity")
        if found is None:
            # A product of sums may be linear once multiplied out: W·x ⊙ (α ⊙ V·h + β) is
            # α ⊙ W·x ⊙ V·h + β ⊙ W·x (the kind must not depend on how the product is written).
            if not 1 < _spread_size(term) <= _MAX_SPREAD:  # counted before multiplying out
                return None  # the state enters outside a linear map: not an RNN update
            spread = sympy.Add.make_args(sympy.expand(term, deep=False, multinomial=False,
                                                      power_base=False, power_exp=False))
            terms = list(spread) + terms
            continue
        diag, matrix, via = found
        recurrent.append(map_label(diag, matrix, lead))
        through.append(via)
    if not any(s in t.free_symbols for t in through):
        return None
    return RnnForm(act, scale, pre, tuple(dict.fromkeys(inputs)), tuple(recurrent),
                   tuple(through))


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
    expr, rest = _collect_state(expr, s, syms, scalars)
    form = match_rnn(expr, s, syms, scalars) if rest is None else None
    if form is not None:
        return KindInfo(state, "rnn", expr, form, deps, _rnn_words(state, form, lead))
    if rest is None and isinstance(expr, sympy.Add) and s in expr.args:
        rest = expr - s
    if rest is not None:
        if s not in rest.free_symbols:
            return KindInfo(state, "other", expr, None, deps,
                            f"an accumulator: {state} plus {txt(rest, lead)}, a term that "
                            f"does not depend on {state}")
        form = match_rnn(rest, s, syms, scalars)
        if form is not None:
            return KindInfo(state, "residual_rnn", expr, form, deps,
                            f"{state} plus an RNN update: " + _rnn_words(state, form, lead))
    return KindInfo(state, "other", expr, None, deps, "none of the named forms")


def _collect_state(expr: sympy.Expr, s: sympy.Symbol, states: set[sympy.Symbol],
                   scalars: set[sympy.Symbol]) -> tuple[sympy.Expr, sympy.Expr | None]:
    """The terms ``d ⊙ s`` of ``expr`` (``d`` free of the states) gathered into one, so that the
    kind does not depend on how the author wrote a factor: ``(1 + lb) ⊙ h`` and
    ``h + lb ⊙ h`` are both ``h`` plus the diagonal map ``lb ⊙ h``, ``2 ⊙ h + 2 ⊙ lb ⊙ h`` and
    ``(2 + 2 ⊙ lb) ⊙ h`` both one diagonal map. Returns ``(expr, rest)``: ``rest`` is the
    update less ``s`` when the gathered factor is ``1`` plus terms holding a learned value
    (``s`` passes unchanged beside them), else None; ``expr`` is rewritten only when several
    such terms were gathered."""
    from .paths import scalar_part  # the same reading of a factor as the direct gain's

    terms = [u for t in sympy.Add.make_args(expr) for u in sympy.Add.make_args(
        sympy.expand(t, deep=False, multinomial=False, power_base=False, power_exp=False)
        if 1 < _spread_size(t) <= _MAX_SPREAD else t)]
    diag, others = [], []
    for t in terms:
        factors = sympy.Mul.make_args(t)
        coef = t / s
        if factors.count(s) == 1 and not (coef.free_symbols & states):
            diag.append(coef)
        else:
            others.append(t)
    d = sympy.expand(sympy.Add(*diag))
    if scalar_part(d, scalars) == 1 and d != 1:
        return expr, sympy.expand(d - 1) * s + sympy.Add(*others)
    if len(diag) > 1:
        return d * s + sympy.Add(*others), None
    return expr, None


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
