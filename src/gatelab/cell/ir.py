"""``Cell``: the validated, symbolic form of a recurrent cell. Everything else derives from it.

Expressions are SymPy objects over commutative symbols (every operator is elementwise) with the
linear map ``MatVec(W, v)`` for ``W @ v``. A state's symbol always means its value at the previous
step; ``nexts[s]`` is its new value.

>>> from gatelab import load_cell
>>> cell = load_cell("mgu")
>>> cell.states, list(cell.gates), list(cell.lets)
(('h',), ['f'], ['n'])
>>> cell.params["U_n"]
Param(name='U_n', role='matrix', shape=('H', 'H'))
>>> cell.param_count()
4*d**2 + 2*d
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy

HIDDEN = "H"


@dataclass(frozen=True)
class Param:
    """A learned parameter. ``role`` is ``"matrix"`` (left of ``@``) or ``"vector"``.

    ``shape`` uses dimension labels: ``"H"`` (hidden size) or an input's label (``"I"`` when the
    cell has one input, ``"I_<name>"`` otherwise). A matrix is ``(H, dim of what it multiplies)``.
    """

    name: str
    role: str
    shape: tuple[str, ...]


class FrozenDict(dict):
    """A dict that refuses changes after it is built (a :class:`Cell` is a cache key)."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a Cell is immutable: build a new one (dataclasses.replace)")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self):
        return (FrozenDict, (dict(self),))


@dataclass(frozen=True, eq=False)
class Cell:
    """A recurrent cell: immutable and hashable (caches in the analysis and the engine key on it).

    Attributes:
        name: the cell's name (``name`` line, else the file stem).
        doc: leading comment lines of the file (the first is the title).
        inputs, states: declared vector names, in file order.
        gates, lets, nexts: name -> SymPy expression, in file order.
        output: the name emitted at each step.
        params: parameter name -> :class:`Param`, in order of first use.
        order: gates and lets as ``(kind, name)`` in a valid evaluation order.
        dims: every signal's dimension label (``"H"`` or an input label).
        source: the path the cell was read from (or ``"<string>"``).
    """

    name: str
    doc: tuple[str, ...]
    inputs: tuple[str, ...]
    states: tuple[str, ...]
    gates: dict[str, sympy.Expr]
    lets: dict[str, sympy.Expr]
    nexts: dict[str, sympy.Expr]
    output: str
    params: dict[str, Param]
    order: tuple[tuple[str, str], ...]
    dims: dict[str, str] = field(default_factory=dict)
    source: str = "<string>"

    def __post_init__(self) -> None:
        for f in ("gates", "lets", "nexts", "params", "dims"):
            object.__setattr__(self, f, FrozenDict(getattr(self, f)))

    # ---- identity --------------------------------------------------------------------------
    def _key(self) -> tuple:
        """What a cell is: everything its normalised ``.cell`` text states (name, doc lines,
        inputs with their sizes, states, definitions, output) plus the order of its parameters.

        The engine's caches (plans, layouts, vendor matches) key on the cell, so two cells that
        compute differently must never compare equal: ``dims`` (``input x : hidden`` changes
        every matrix that multiplies ``x``) and the parameters' shapes and order (the order
        fixes the packed layout of ``weight_ih``/``weight_hh``) are part of the key. The name
        and doc lines are too, so a cache never hands one cell's name to another, and so is the
        order of the lines (the text shows it), so different normalised texts always mean
        different cells. ``source`` (where the text was read from) is not part of it.
        """
        return (self.name, self.doc, self.inputs, self.states, self.output, self.order,
                frozenset(self.gates.items()), frozenset(self.lets.items()),  # order: above
                tuple(self.nexts.items()), frozenset(self.dims.items()),
                tuple(self.params.values()))

    def same_equations(self, other: Cell) -> bool:
        """Equal up to the order of the parameters (what a re-parse of the normalised text
        preserves: the printer may order terms, hence first uses, differently from the file)."""
        return self._key()[:-1] == other._key()[:-1] and set(self.params.values()) == set(
            other.params.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cell) and self._key() == other._key()

    def __hash__(self) -> int:
        # kept once computed: every engine cache keys on the cell, and the key hashes SymPy
        # trees (a Cell cannot change); not pickled, as hashes differ between processes
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash(self._key())
            object.__setattr__(self, "_hash", h)
        return h

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    def __repr__(self) -> str:
        return f"<Cell {self.name}: states={list(self.states)} gates={list(self.gates)}>"

    # ---- names -----------------------------------------------------------------------------
    @property
    def title(self) -> str:
        """The first line of the file's leading comment, or the name."""
        return self.doc[0] if self.doc else self.name

    @staticmethod
    def sym(name: str) -> sympy.Symbol:
        """The SymPy symbol a name stands for in this cell's expressions."""
        return sympy.Symbol(name)

    def definition(self, name: str) -> sympy.Expr:
        """The expression defining a gate or a let."""
        if name in self.gates:
            return self.gates[name]
        return self.lets[name]

    @property
    def matrices(self) -> list[str]:
        return [p.name for p in self.params.values() if p.role == "matrix"]

    @property
    def vectors(self) -> list[str]:
        return [p.name for p in self.params.values() if p.role == "vector"]

    @property
    def hidden_inputs(self) -> tuple[str, ...]:
        """Inputs declared ``input x : hidden`` (they have the hidden size: highway terms)."""
        return tuple(x for x in self.inputs if self.dims.get(x) == HIDDEN)

    # ---- derived expressions ---------------------------------------------------------------
    def inline(self, expr: sympy.Expr, keep: tuple[str, ...] | set[str] = ()) -> sympy.Expr:
        """Substitute gate and let definitions into ``expr`` until only inputs, previous states,
        parameters and the names in ``keep`` remain.

        >>> from gatelab import load_cell
        >>> c = load_cell("mgu")
        >>> c.inline(c.nexts["h"], keep={"f"})
        f*tanh(b_n + MatVec(U_n, f*h) + MatVec(W_n, x)) + h*(1 - f)
        """
        keep = set(keep)
        subs = {}
        for _, name in self.order:  # evaluation order: definitions only refer to earlier ones
            if name in keep:
                continue
            subs[self.sym(name)] = self.definition(name).xreplace(subs)
        return expr.xreplace(subs)

    def depends_on(self, expr: sympy.Expr, names: set[str] | tuple[str, ...]) -> bool:
        """Whether ``expr`` (after inlining gates and lets) mentions any of ``names``."""
        full = self.inline(expr)
        wanted = {self.sym(n) for n in names}
        return bool(full.free_symbols & wanted)

    def param_count(self, d: sympy.Symbol | int | None = None) -> sympy.Expr:
        """Number of learned scalars when every dimension (input and hidden) equals ``d``."""
        d = sympy.Symbol("d", positive=True, integer=True) if d is None else d
        total = sympy.Integer(0)
        for p in self.params.values():
            total += d ** len(p.shape)
        return sympy.expand(total)

    def _repr_latex_(self) -> str:
        """The equations, rendered when a cell is the last line of a Jupyter cell."""
        from .printers import cell_latex

        return "$$" + cell_latex(self) + "$$"

    def param_shape(self, name: str, input_size: int, hidden_size: int) -> tuple[int, ...]:
        """The concrete shape of a parameter for given sizes (one input size for all inputs)."""
        from .shapes import size_value

        return tuple(size_value(lab, input_size, hidden_size) for lab in self.params[name].shape)
