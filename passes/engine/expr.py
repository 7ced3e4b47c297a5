"""A tiny interpreter for pattern expressions (``where:``, ``{...}`` values, ``weights:``).

Expressions are data: they are walked here, never handed to ``eval``. A value that cannot be known
(an unknown blob shape, say) is an :class:`Unknown`; it propagates through arithmetic and
comparisons, and a ``where:`` line that is not definitely true rejects the match with the reason.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from ncnnpass.ir.errors import GraphError

from .syntax import Node


class Unknown:
    """A value that cannot be decided (e.g. shape information is missing), with the reason."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unknown({self.reason!r})"

    def __bool__(self) -> bool:  # pragma: no cover - a bug if reached
        raise TypeError(f"an unknown value ({self.reason}) has no truth value")


class EvalError(GraphError):
    """An expression failed at match time (a bug in a rule or a hook, reported with the rule name)."""


_BIN: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
    "//": operator.floordiv, "%": operator.mod, "**": operator.pow,
}
_CMP: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


# Bounds on what one operator may build: ``9**9**9`` (an int of 10^8 digits, minutes of CPU) or
# ``[0] * 10**10`` in user pattern text must fail at once instead of hanging or eating memory.
MAX_INT_BITS = 4096
MAX_SEQUENCE = 1 << 20


def _check_size(op: str, x: Any, y: Any, node: Node) -> None:
    if op == "**" and isinstance(x, int) and isinstance(y, int) and y > 1 and abs(x) > 1:
        if y * (abs(x).bit_length() - 1) > MAX_INT_BITS:
            raise EvalError(f"{node.text or op}: the result would have more than {MAX_INT_BITS} bits")
    elif op == "*":
        for seq, n in ((x, y), (y, x)):
            if isinstance(seq, (list, tuple, str)) and isinstance(n, int) and len(seq) * n > MAX_SEQUENCE:
                raise EvalError(f"{node.text or op}: the result would have more than {MAX_SEQUENCE} items")


def values_equal(a: Any, b: Any) -> bool:
    """Equality as ncnn would see it: numbers compared as float32, lists element-wise."""
    if type(a) is int and type(b) is int:
        return a == b
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        if not isinstance(a, (list, tuple)) or not isinstance(b, (list, tuple)) or len(a) != len(b):
            return False
        return all(values_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, (int, float, np.number)) and isinstance(b, (int, float, np.number)):
        if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
            return int(a) == int(b)
        try:
            return bool(np.float32(a) == np.float32(b))
        except OverflowError:  # an int beyond the float64 range equals no float32
            return False
    return a is b or a == b


class Env:
    """What an expression can see: names, captures, attribute access and callables."""

    def name(self, name: str, node: Node) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def capture(self, name: str, node: Node) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def attr(self, obj: Any, name: str, node: Node) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def call(self, fn: Any, args: list[Any], node: Node) -> Any:  # pragma: no cover - interface
        raise NotImplementedError


def evaluate(node: Node, env: Env) -> Any:
    k, a = node.kind, node.args
    if k == "const":
        return a[0]
    if k == "capture":
        return env.capture(a[0], node)
    if k == "name":
        return env.name(a[0], node)
    if k == "list":
        items = [evaluate(x, env) for x in a]
        return items
    if k == "attr":
        obj = evaluate(a[0], env)
        if isinstance(obj, Unknown):
            return obj
        return env.attr(obj, a[1], node)
    if k == "index":
        obj, idx = evaluate(a[0], env), evaluate(a[1], env)
        for v in (obj, idx):
            if isinstance(v, Unknown):
                return v
        try:
            return obj[idx]
        except (IndexError, KeyError, TypeError) as exc:
            raise EvalError(f"{node.text or 'index'}: {exc}") from None
    if k == "call":
        fn = evaluate(a[0], env)
        args = [evaluate(x, env) for x in a[1]]
        return env.call(fn, args, node)
    if k == "bin":
        op, x, y = a[0], evaluate(a[1], env), evaluate(a[2], env)
        for v in (x, y):
            if isinstance(v, Unknown):
                return v
        _check_size(op, x, y, node)
        try:
            return _BIN[op](x, y)
        except (ArithmeticError, TypeError, ValueError) as exc:
            raise EvalError(f"{node.text or op}: {exc}") from None
    if k == "neg":
        x = evaluate(a[0], env)
        return x if isinstance(x, Unknown) else -x
    if k == "not":
        x = evaluate(a[0], env)
        return x if isinstance(x, Unknown) else not truth(x)
    if k == "and":
        x = evaluate(a[0], env)
        if not isinstance(x, Unknown) and not truth(x):
            return False
        y = evaluate(a[1], env)
        if not isinstance(y, Unknown) and not truth(y):
            return False
        if isinstance(x, Unknown):
            return x
        return y if isinstance(y, Unknown) else True
    if k == "or":
        x = evaluate(a[0], env)
        if not isinstance(x, Unknown) and truth(x):
            return True
        y = evaluate(a[1], env)
        if not isinstance(y, Unknown) and truth(y):
            return True
        if isinstance(x, Unknown):
            return x
        return y if isinstance(y, Unknown) else False
    if k == "if":
        c = evaluate(a[0], env)
        if isinstance(c, Unknown):
            return c
        return evaluate(a[1] if truth(c) else a[2], env)
    if k == "cmp":
        ops, operands = a
        left = evaluate(operands[0], env)
        result: Any = True
        for op, rnode in zip(ops, operands[1:], strict=True):
            right = evaluate(rnode, env)
            if isinstance(left, Unknown) or isinstance(right, Unknown):
                return left if isinstance(left, Unknown) else right
            if op == "in":
                ok = any(values_equal(left, r) for r in right)
            elif op == "not in":
                ok = not any(values_equal(left, r) for r in right)
            elif op == "==":
                ok = values_equal(left, right)
            elif op == "!=":
                ok = not values_equal(left, right)
            else:
                try:
                    ok = bool(_CMP[op](left, right))
                except TypeError as exc:
                    raise EvalError(f"{node.text or op}: {exc}") from None
            if not ok:
                return False
            left = right
        return result
    raise EvalError(f"unknown expression node {k!r}")  # pragma: no cover


def truth(v: Any) -> bool:
    if isinstance(v, np.ndarray):
        return bool(v.all()) if v.size else False
    return bool(v)


def names_used(node: Node) -> list[Node]:
    """Every ``name`` and ``capture`` node under ``node`` (for compile-time checks)."""
    out: list[Node] = []

    def walk(n: Node) -> None:
        if n.kind in ("name", "capture"):
            out.append(n)
            return
        for x in n.args:
            if isinstance(x, Node):
                walk(x)
            elif isinstance(x, tuple):
                for y in x:
                    if isinstance(y, Node):
                        walk(y)

    walk(node)
    return out
