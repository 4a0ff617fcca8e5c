"""Tokenizer and recursive-descent parser for ``.cell`` text. It never evaluates anything.

The grammar (one statement per line, ``#`` starts a comment)::

    statement  := "name" CELLNAME | ("input" | "state") NAME ("," NAME)*
                | "input" NAME ("," NAME)* ":" "hidden"   # an input of the hidden size
                | "state" NAME ("," NAME)* ":" shape       # a sized (e.g. matrix) state
                | ("gate" | "let") NAME (":" shape)? "=" expr
                | "next" NAME "=" expr | "output" NAME
    shape      := size (("x" | "×") size)?              # a vector, or a rows x cols matrix
    size       := "hidden" | INT "*" "hidden" | INT | "scalar"   # 1 or "scalar": per-step scalar
    expr       := term (("+" | "-") term)*
    term       := unary (("*" | "⊙" | "/") unary)*
    unary      := "-" unary | matmul
    matmul     := NAME "@" unary | power ("⊗" unary)?   # @ and ⊗ bind tighter than * and /
    power      := atom ("**" unary)?
    atom       := NUMBER | NAME | FUNC "(" expr ("," expr)* ")" | "(" expr ")"

``W @ v`` applies a learned matrix, ``S @ v`` a matrix signal (``S v``), ``v @ S`` reads a vector
through one (``Sᵀ v``); ``a ⊗ b`` is ``outer(a, b)``. Sizes are checked by the builder.

The result is a list of :class:`Statement` whose expressions are small position-carrying trees;
:mod:`gatelab.cell.build` checks them and turns them into SymPy.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

from .errors import ColumnError, Problem
from .functions import BY_NAME, FUNCTION_ALIASES, FUNCTIONS
from .limits import MAX_DEPTH, MAX_LITERAL_CHARS, MAX_NAME_CHARS, MAX_NODES

KEYWORDS = ("name", "input", "state", "gate", "let", "next", "output")
# Unicode operator spellings -> ASCII.
OPERATOR_ALIASES = {"⊙": "*", "·": "*", "×": "*", "−": "-"}
SINGLE_OPS = set("+-*/@()=,⊗")
OPERATORS = ("+", "-", "*", "/", "@", "**", "⊗")


@dataclass(frozen=True)
class Token:
    kind: str  # NAME NUMBER OP END
    text: str
    col: int  # 1-based


# ---- expression tree --------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    col: int


@dataclass(frozen=True)
class Num(Node):
    text: str


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class Call(Node):
    func: str
    args: tuple[Node, ...]

    @property
    def arg(self) -> Node:
        """The first (for most functions the only) argument."""
        return self.args[0]


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # + - * / **
    left: Node
    right: Node


@dataclass(frozen=True)
class Neg(Node):
    operand: Node


@dataclass(frozen=True)
class MatMul(Node):
    matrix: Name
    vector: Node


@dataclass
class Statement:
    keyword: str
    line: int
    col: int
    names: list[tuple[str, int]] = field(default_factory=list)  # (name, col)
    expr: Node | None = None
    broken: bool = False  # the line had a syntax error; kept so its name still counts as defined
    size: str | None = None  # `input x : hidden`: "hidden"
    shape: str | None = None  # `state C : hidden x hidden`, `let z : 2*hidden`: a shape label


class ParseError(ColumnError):
    """A syntax error at column ``col`` of its line."""


DIGITS = "0123456789"  # only ASCII digits make numbers: '²' or '٣' are not numbers


def split_lines(text: str) -> list[str]:
    """The lines of a cell file: only ``\\n`` (or ``\\r\\n``) ends a line. A lone ``\\r``,
    ``\\v``, a form feed or U+2028 stays inside its line, where it is reported as a control
    character with its position, instead of silently shifting every later line number."""
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]


def _is_name_start(ch: str) -> bool:
    return ch == "_" or (ch.isalpha() and ch.isprintable())


def _is_name_char(ch: str) -> bool:
    return ch == "_" or (ch.isalnum() and ch.isprintable())


def tokenize(text: str) -> list[Token]:
    """Split one line (comment already removed) into tokens."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        col = i + 1
        if ch in " \t":
            i += 1
        elif _is_name_start(ch):
            j = i + 1
            while j < n and _is_name_char(text[j]):
                j += 1
            if j - i > MAX_NAME_CHARS:
                raise ParseError(col, f"name of {j - i} characters is too long",
                                 f"a name of at most {MAX_NAME_CHARS} characters")
            if "ᵀ" in text[i:j]:  # a letter to Python, so `kᵀ` would be a new parameter
                raise ParseError(i + text[i:j].index("ᵀ") + 1, "the transpose mark ᵀ is not "
                                 "part of the language", "outer(v, k) or v ⊗ k for v kᵀ, "
                                 "q @ S for Sᵀ q")
            tokens.append(Token("NAME", text[i:j], col))
            i = j
        elif ch in DIGITS or (ch == "." and i + 1 < n and text[i + 1] in DIGITS):
            j = i
            while j < n and text[j] in DIGITS:
                j += 1
            if j < n and text[j] == ".":
                j += 1
                while j < n and text[j] in DIGITS:
                    j += 1
            if j < n and text[j] in "eE":
                k = j + 1
                if k < n and text[k] in "+-":
                    k += 1
                if k < n and text[k] in DIGITS:
                    j = k
                    while j < n and text[j] in DIGITS:
                        j += 1
            if j < n and _is_name_char(text[j]):
                raise ParseError(j + 1, f"unexpected {text[j]!r} after number", "an operator")
            if j - i > MAX_LITERAL_CHARS:
                raise ParseError(col, f"number of {j - i} characters is too long",
                                 f"a number of at most {MAX_LITERAL_CHARS} characters")
            tokens.append(Token("NUMBER", text[i:j], col))
            i = j
        elif text.startswith("**", i):
            tokens.append(Token("OP", "**", col))
            i += 2
        elif ch in SINGLE_OPS or ch in OPERATOR_ALIASES:
            tokens.append(Token("OP", OPERATOR_ALIASES.get(ch, ch), col))
            i += 1
        else:
            what = {
                ".": "attribute access is not allowed",
                "[": "subscripts are not allowed",
                "]": "subscripts are not allowed",
                ":": "':' is not allowed (no lambdas, slices or annotations)",
                "'": "strings are not allowed",
                '"': "strings are not allowed",
                "{": "braces are not allowed",
                ";": "one statement per line",
            }.get(ch, f"unexpected character {ch!r}")
            # reported by the parser in column order with other lexical problems
            tokens.append(Token("BAD", what, col))
            i += 1
    tokens.append(Token("END", "", n + 1))
    return tokens


def check_identifier(name: str, col: int) -> None:
    """Refuse names that could mean something to Python or clash with the language."""
    if name.startswith("__") or name.endswith("__"):
        raise ParseError(col, f"dunder name {name!r} is not allowed", "a plain name like W_f")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise ParseError(col, f"{name!r} is a reserved word", "a plain name like W_f")


class ExprParser:
    """Recursive descent over one line's tokens."""

    def __init__(self, tokens: list[Token]):
        self.tokens, self.i = tokens, 0
        self.depth = 0  # current nesting; bounded so a hostile line cannot exhaust the stack

    def deeper(self, col: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError(col, f"expression nested more than {MAX_DEPTH} levels deep",
                             "a flatter expression (name intermediate values with `let`)")

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def take(self) -> Token:
        t = self.tokens[self.i]
        self.i += 1
        return t

    def at(self, text: str) -> bool:
        return self.tok.kind == "OP" and self.tok.text == text

    def expect(self, text: str, expected: str) -> Token:
        if not self.at(text):
            raise ParseError(self.tok.col, f"unexpected {describe(self.tok)}", expected)
        return self.take()

    def parse(self) -> Node:
        for t in self.tokens:  # lexical problems first, leftmost first
            if t.kind == "BAD":
                raise ParseError(t.col, t.text, "names, numbers and + - * / @ ** ( )")
            if t.kind == "NAME":
                check_identifier(t.text, t.col)
        parts = [t for t in self.tokens if t.kind in ("NAME", "NUMBER") or t.text in OPERATORS]
        if len(parts) > MAX_NODES:
            raise ParseError(parts[MAX_NODES].col, f"expression of {len(parts)} parts is too "
                             "long", f"at most {MAX_NODES} names, numbers and operators (name "
                             "intermediate values with `let`)")
        node = self.expr()
        if self.tok.kind != "END":
            raise ParseError(self.tok.col, f"unexpected {describe(self.tok)}",
                             "an operator or the end of the line")
        return node

    def expr(self) -> Node:
        node = self.term()
        while self.at("+") or self.at("-"):
            op = self.take()
            node = BinOp(op.col, op.text, node, self.term())
        return node

    def term(self) -> Node:
        node = self.unary()
        while self.at("*") or self.at("/"):
            op = self.take()
            node = BinOp(op.col, op.text, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.at("-") or self.at("+"):
            op = self.take()
            self.deeper(op.col)
            node = self.unary()
            self.depth -= 1
            return Neg(op.col, node) if op.text == "-" else node
        return self.matmul()

    def matmul(self) -> Node:
        nxt = self.tokens[self.i + 1] if self.i + 1 < len(self.tokens) else None
        if self.tok.kind == "NAME" and nxt is not None and nxt.kind == "OP" and nxt.text == "@":
            name_tok = self.take()
            check_identifier(name_tok.text, name_tok.col)
            if name_tok.text in FUNCTIONS or name_tok.text in FUNCTION_ALIASES:
                raise ParseError(name_tok.col, f"{name_tok.text} is a function, not a matrix",
                                 "a weight matrix name left of @")
            self.take()
            self.deeper(name_tok.col)
            node = MatMul(name_tok.col, Name(name_tok.col, name_tok.text), self.unary())
            self.depth -= 1
            return node
        node = self.power()
        if self.at("⊗"):
            op = self.take()
            self.deeper(op.col)
            node = Call(op.col, "outer", (node, self.unary()))
            self.depth -= 1
        if self.at("@"):
            raise ParseError(self.tok.col, "left of @ must be a weight matrix name",
                             "NAME @ vector, e.g. W_f @ x")
        return node

    def power(self) -> Node:
        node = self.atom()
        if self.at("**"):
            op = self.take()
            self.deeper(op.col)
            node = BinOp(op.col, "**", node, self.unary())
            self.depth -= 1
        return node

    def atom(self) -> Node:
        t = self.tok
        if t.kind == "NUMBER":
            self.take()
            return Num(t.col, t.text)
        if t.kind == "NAME":
            self.take()
            check_identifier(t.text, t.col)
            fname = FUNCTION_ALIASES.get(t.text, t.text)
            if self.at("("):
                if fname not in FUNCTIONS:
                    raise ParseError(t.col, f"unknown function {t.text!r}",
                                     "one of " + ", ".join(FUNCTIONS))
                self.take()
                self.deeper(t.col)
                arity = BY_NAME[fname].arity
                args = [self.expr()]
                while self.at(",") and len(args) < arity:
                    self.take()
                    args.append(self.expr())
                self.depth -= 1
                if self.at(","):
                    raise ParseError(self.tok.col, f"{fname} takes {_count(arity)}", "')'")
                if self.at("="):
                    raise ParseError(self.tok.col, "keyword arguments are not allowed", "')'")
                if self.at(")") and len(args) < arity:
                    raise ParseError(self.tok.col, f"{fname} takes {_count(arity)}", "','")
                self.expect(")", "')'")
                return Call(t.col, fname, tuple(args))
            if fname in FUNCTIONS:
                raise ParseError(t.col, f"{t.text} is a function", f"{t.text}(...)")
            return Name(t.col, t.text)
        if self.at("("):
            self.deeper(self.take().col)
            node = self.expr()
            self.depth -= 1
            self.expect(")", "')'")
            return node
        raise ParseError(t.col, f"unexpected {describe(t)}",
                         "a name, a number, a function call or '('")


def _count(arity: int) -> str:
    return "one argument" if arity == 1 else f"{arity} arguments"


def describe(t: Token) -> str:
    return "end of line" if t.kind == "END" else repr(t.text)


_HEAD = re.compile(r"\s*(gate|let|next|input|state)\s+([^\W\d]\w*)")


def _strip_comment(raw: str) -> tuple[str, str | None]:
    pos = raw.find("#")
    if pos < 0:
        return raw, None
    return raw[:pos], raw[pos + 1 :]


def parse_statements(text: str, path: str) -> tuple[list[Statement], list[str], list[Problem]]:
    """Parse every line: statements, the leading comment lines (the cell's doc), problems."""
    statements: list[Statement] = []
    doc: list[str] = []
    problems: list[Problem] = []
    seen_statement = False
    for lineno, raw in enumerate(split_lines(text), start=1):
        code, comment = _strip_comment(raw)
        if comment is not None and not seen_statement and not code.strip():
            doc.append(comment.strip())
        if not code.strip():
            continue
        seen_statement = True
        try:
            statements.append(_parse_line(code, lineno))
        except ParseError as e:
            problems.append(Problem(path, lineno, e.col, e.message, e.expected))
            m = _HEAD.match(code)
            if m:  # keep the declaration so later checks do not report it missing as well
                st = Statement(m.group(1), lineno, m.start(1) + 1, broken=True)
                st.names.append((m.group(2), m.start(2) + 1))
                statements.append(st)
    return statements, doc, problems


def _parse_line(code: str, lineno: int) -> Statement:
    stripped = code.lstrip()
    col0 = len(code) - len(stripped) + 1
    word = stripped.split(None, 1)[0]
    if word not in KEYWORDS:
        raise ParseError(col0, f"unknown statement {word!r}", "one of " + ", ".join(KEYWORDS))
    rest_offset = col0 - 1 + len(word)
    rest = code[rest_offset:]
    st = Statement(word, lineno, col0)
    if word == "name":
        value = rest.strip()
        vcol = rest_offset + len(rest) - len(rest.lstrip()) + 1
        ok = value and (value[0].isalnum()) and all(c.isalnum() or c in "_.-" for c in value)
        if ok and len(value) > MAX_NAME_CHARS:
            raise ParseError(vcol, f"cell name of {len(value)} characters is too long",
                             f"a name of at most {MAX_NAME_CHARS} characters")
        if not ok:
            raise ParseError(vcol, f"bad cell name {value!r}" if value else "missing cell name",
                             "letters, digits, '_', '-' or '.'")
        st.names.append((value, vcol))
        return st
    if word == "input" and ":" in rest:  # `input x : hidden`: the input has the hidden size
        pos = rest.index(":")
        size = rest[pos + 1:].strip()
        if size != "hidden":
            scol = rest_offset + pos + 2 + len(rest[pos + 1:]) - len(rest[pos + 1:].lstrip())
            raise ParseError(scol, f"unknown input size {size!r}" if size else
                             "missing input size after ':'", "`input x : hidden` (an input of "
                             "the hidden size) or `input x`")
        st.size, rest = size, rest[:pos]
    elif word == "state" and ":" in rest:  # `state C : hidden x hidden`
        pos = rest.index(":")
        st.shape = parse_shape(rest[pos + 1:], rest_offset + pos + 2)
        rest = rest[:pos]
    elif word in ("gate", "let") and ":" in rest.partition("=")[0]:  # `let z : 2*hidden = ...`
        head, _, tail = rest.partition("=")
        pos = head.index(":")
        st.shape = parse_shape(head[pos + 1:], rest_offset + pos + 2)
        rest = head[:pos] + " " * (len(head) - pos) + "=" + tail
    toks = tokenize(" " * rest_offset + rest)
    if word in ("input", "state", "output"):
        bad = next((t for t in toks if t.kind == "BAD"), None)
        if bad is not None:
            raise ParseError(bad.col, bad.text, f"names after {word!r}")
        i = 0
        while True:
            t = toks[i]
            if t.kind != "NAME":
                raise ParseError(t.col, f"unexpected {describe(t)}", f"a name after {word!r}")
            check_identifier(t.text, t.col)
            st.names.append((t.text, t.col))
            i += 1
            if toks[i].kind == "END":
                break
            if word == "output" or not (toks[i].kind == "OP" and toks[i].text == ","):
                raise ParseError(toks[i].col, f"unexpected {describe(toks[i])}",
                                 "end of line" if word == "output" else "',' or end of line")
            i += 1
        return st
    # gate / let / next: NAME "=" expr
    t = toks[0]
    if t.kind != "NAME":
        raise ParseError(t.col, f"unexpected {describe(t)}", f"{word} NAME = expression")
    check_identifier(t.text, t.col)
    if t.text in FUNCTIONS or t.text in FUNCTION_ALIASES:
        raise ParseError(t.col, f"{t.text!r} is a function name", "another name")
    st.names.append((t.text, t.col))
    eq = toks[1]
    if eq.kind == "END" or (eq.kind == "OP" and eq.text == "=" and toks[2].kind == "END"):
        raise ParseError(eq.col, f"{word} {t.text} has no expression",
                         f"{word} {t.text} = <expression>")
    if not (eq.kind == "OP" and eq.text == "="):
        raise ParseError(eq.col, f"unexpected {describe(eq)}", f"'=' after {word} {t.text}")
    st.expr = ExprParser(toks[2:]).parse()
    return st


_SIZE = r"(?:(\d+)\s*\*\s*)?(hidden)|(\d+|scalar)"
_SHAPE = re.compile(rf"\s*(?:{_SIZE})\s*(?:(?:x|×)\s*(?:{_SIZE}))?\s*$")
SHAPE_HELP = ("a size such as `hidden`, `2*hidden`, `16` or `1` (a per-step scalar), or a "
              "matrix `hidden x hidden`")


def parse_shape(text: str, col: int) -> str:
    """The shape label (see :mod:`gatelab.cell.shapes`) written after ``:``; ``col`` is the
    column of ``text``'s first character."""
    from .shapes import MAX_SIZE, matrix

    where = col + len(text) - len(text.lstrip())
    m = _SHAPE.match(text)
    if not text.strip() or m is None:
        shown = text.strip()
        raise ParseError(where, f"unknown size {shown!r}" if shown else "missing size after ':'",
                         SHAPE_HELP)
    sizes = []
    for k, hid, num in (m.group(1, 2, 3), m.group(4, 5, 6)):
        if hid is None and num is None:
            continue
        num = "1" if num == "scalar" else num  # `let d : scalar` is `let d : 1`
        factor = int(k) if k else int(num) if num else 1
        if not 1 <= factor <= MAX_SIZE or (hid and k and factor < 2):
            raise ParseError(where, f"size factor {factor} is out of range",
                             f"a whole number from {2 if hid else 1} to {MAX_SIZE}")
        sizes.append("H" if hid and not k else f"{factor}*H" if hid else str(factor))
    return sizes[0] if len(sizes) == 1 else matrix(*sizes)
