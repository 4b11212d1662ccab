"""Custom KPI formulas over catalogue metrics, parsed by hand: no ``eval``, nothing but names, numbers,
``+ - * /``, unary minus and parentheses.

A formula is parsed once into a small tree (``Kpi.tree``); evaluating it on the metrics' values of one row
is plain arithmetic where a division by zero, or any operand that is null, gives null (``None``) rather
than an error or a silent 0, so a chart shows a gap where a ratio is undefined.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Union

MAX_FORMULA_LENGTH = 500
MAX_DEPTH = 32
_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|([A-Za-z_][A-Za-z0-9_]*)|(.))")


class KpiError(ValueError):
    """A formula that cannot be accepted; the message points at the offending place."""


@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Name:
    name: str


@dataclass(frozen=True)
class Neg:
    operand: Node


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Node
    right: Node


Node = Union[Num, Name, Neg, BinOp]  # noqa: UP007 (a runtime alias used by the dataclasses above)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) with kind in number, name, op; the end is ("end", "", len)."""
    out = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:  # only trailing blanks left
            break
        number, name, other = match.groups()
        at = match.start(match.lastindex or 0)
        if number is not None:
            out.append(("number", number, at))
        elif name is not None:
            out.append(("name", name, at))
        elif other is not None:
            if other not in "+-*/()":
                raise KpiError(f"unexpected {other!r} at position {at + 1}: only metric names, numbers, "
                               "+ - * / and parentheses are allowed")
            out.append(("op", other, at))
        pos = match.end()
    out.append(("end", "", len(text)))
    return out


class _Parser:
    def __init__(self, text: str, known: frozenset[str]) -> None:
        self.tokens = _tokens(text)
        self.i = 0
        self.known = known

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def expr(self, depth: int) -> Node:
        node = self.term(depth)
        while self.peek()[0] == "op" and self.peek()[1] in "+-":
            op = self.take()[1]
            node = BinOp(op, node, self.term(depth))
        return node

    def term(self, depth: int) -> Node:
        node = self.factor(depth)
        while self.peek()[0] == "op" and self.peek()[1] in "*/":
            op = self.take()[1]
            node = BinOp(op, node, self.factor(depth))
        return node

    def factor(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise KpiError(f"the formula nests deeper than {MAX_DEPTH} levels")
        kind, text, at = self.take()
        if kind == "number":
            return Num(float(text))
        if kind == "name":
            if text not in self.known:
                raise KpiError(f"unknown metric {text!r} at position {at + 1}; known: {', '.join(sorted(self.known))}")
            return Name(text)
        if kind == "op" and text == "-":
            return Neg(self.factor(depth + 1))
        if kind == "op" and text == "(":
            node = self.expr(depth + 1)
            closing = self.take()
            if closing[:2] != ("op", ")"):
                raise KpiError(f"missing ')' at position {closing[2] + 1}")
            return node
        where = "the end" if kind == "end" else f"{text!r} at position {at + 1}"
        raise KpiError(f"expected a metric, a number or '(' but found {where}")


def parse(text: str, known: Iterable[str]) -> Node:
    """The tree of ``text``, whose names must all be in ``known`` (the metric catalogue)."""
    if not text.strip():
        raise KpiError("the formula is empty")
    if len(text) > MAX_FORMULA_LENGTH:
        raise KpiError(f"the formula is longer than {MAX_FORMULA_LENGTH} characters")
    parser = _Parser(text, frozenset(known))
    node = parser.expr(0)
    kind, rest, at = parser.peek()
    if kind != "end":
        raise KpiError(f"unexpected {rest!r} at position {at + 1}")
    return node


def names(node: Node) -> set[str]:
    """The metrics a formula reads."""
    if isinstance(node, Name):
        return {node.name}
    if isinstance(node, Neg):
        return names(node.operand)
    if isinstance(node, BinOp):
        return names(node.left) | names(node.right)
    return set()


def evaluate(node: Node, values: Mapping[str, float | int | None]) -> float | None:
    """The formula's value for one row; null when dividing by zero or when an operand is null."""
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Name):
        value = values.get(node.name)
        return None if value is None else float(value)
    if isinstance(node, Neg):
        inner = evaluate(node.operand, values)
        return None if inner is None else -inner
    left, right = evaluate(node.left, values), evaluate(node.right, values)
    if left is None or right is None:
        return None
    if node.op == "+":
        return left + right
    if node.op == "-":
        return left - right
    if node.op == "*":
        return left * right
    return None if right == 0 else left / right


@dataclass(frozen=True)
class Kpi:
    """A named formula, checked against the catalogue when it is made."""

    name: str
    formula: str
    tree: Node

    @classmethod
    def of(cls, name: str, formula: str, known: Iterable[str]) -> Kpi:
        return cls(name, formula, parse(formula, known))

    @property
    def metrics(self) -> list[str]:
        return sorted(names(self.tree))

    def value(self, values: Mapping[str, float | int | None]) -> float | None:
        return evaluate(self.tree, values)
