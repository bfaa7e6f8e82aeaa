"""A tiny, safe expression language over packet fields (used by ``rules`` and ``router``).

Expressions use Python syntax but only a whitelist of constructs is accepted; nothing is
passed to ``eval``. Allowed:

- names: ``payload``, ``meta``, ``kind``, ``stream_id``, ``seq``, ``epoch``, ``stamp_ns``,
  ``stamp`` (seconds, float), ``frame_id``, ``schema``, ``content_type``, ``true``/``false``/
  ``null`` (and Python's ``True``/``False``/``None``)
- field access: ``payload.score``, ``payload.boxes[0].label``, ``meta["zone"]``; a missing
  field is ``None`` (never an error)
- literals: numbers, strings, lists/tuples of literals
- comparisons ``== != < <= > >= in not in``, ``and``/``or``/``not``,
  arithmetic ``+ - * / // %`` and unary minus
- functions: ``len``, ``abs``, ``min``, ``max``, ``round``, ``lower``, ``upper``,
  ``startswith(text, prefix)``, ``float``, ``int``, ``str``

A comparison involving ``None`` or mismatched types is false instead of an error;
arithmetic on ``None`` gives ``None``.
"""
from __future__ import annotations

import ast
import operator
from typing import Any, Callable, Dict

from schnitzel_core.packet import Packet

from ._common import ConfigError, json_body

NAMES = ("payload", "meta", "kind", "stream_id", "seq", "epoch", "stamp_ns", "stamp",
         "frame_id", "schema", "content_type")
CONSTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


def _safe(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any) -> Any:
        try:
            return fn(*args)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            return None
    return wrapped


FUNCS: Dict[str, Callable[..., Any]] = {
    "len": _safe(len), "abs": _safe(abs), "min": _safe(min), "max": _safe(max),
    "round": _safe(round), "float": _safe(float), "int": _safe(int), "str": _safe(str),
    "lower": _safe(lambda s: s.lower()), "upper": _safe(lambda s: s.upper()),
    "startswith": _safe(lambda s, p: s.startswith(p)),
}
BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
          ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}
CMPOPS = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
          ast.Gt: operator.gt, ast.GtE: operator.ge,
          ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}

Env = Dict[str, Any]


class _Lazy(dict):
    """The evaluation environment; the payload is decoded on first use."""

    def __init__(self, packet: Packet) -> None:
        super().__init__()
        self.packet = packet

    def __missing__(self, key: str) -> Any:
        p = self.packet
        if key == "payload":
            v = json_body(p, required=False)
        elif key == "meta":
            v = p.meta
        elif key == "stamp":
            v = p.stamp_ns / 1e9
        else:
            v = getattr(p, key)
        self[key] = v
        return v


def _member(obj: Any, key: Any) -> Any:
    if isinstance(obj, dict):
        return obj.get(key)
    if isinstance(obj, (list, tuple, str)) and isinstance(key, int) and not isinstance(key, bool):
        return obj[key] if -len(obj) <= key < len(obj) else None
    return None


class Expression:
    """A compiled safe expression: ``Expression("payload.score > 0.5")(packet) -> value``."""

    def __init__(self, text: str, what: str = "expression") -> None:
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{what} must be non-empty text, got {text!r}")
        self.text = text
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as exc:
            raise ConfigError(f"{what} {text!r}: syntax error at column {exc.offset}: {exc.msg}") from None
        self._what = what
        self._fn = self._compile(tree.body)

    def _err(self, node: ast.AST, why: str) -> ConfigError:
        col = getattr(node, "col_offset", 0) + 1
        return ConfigError(f"{self._what} {self.text!r}: {why} (column {col}); allowed: field access "
                           f"({', '.join(NAMES)}), literals, comparisons, and/or/not, + - * / // %, "
                           f"functions {', '.join(sorted(FUNCS))}")

    def _compile(self, node: ast.AST) -> Callable[[Env], Any]:  # noqa: C901
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float, str, bool, type(None))):
                raise self._err(node, f"constant {node.value!r} is not allowed")
            val = node.value
            return lambda env: val
        if isinstance(node, ast.Name):
            if node.id in CONSTS:
                c = CONSTS[node.id]
                return lambda env: c
            if node.id not in NAMES:
                raise self._err(node, f"unknown name {node.id!r}")
            name = node.id
            return lambda env: env[name]
        if isinstance(node, ast.Attribute):
            base = self._compile(node.value)
            attr = node.attr
            return lambda env: _member(base(env), attr)
        if isinstance(node, ast.Subscript):
            base = self._compile(node.value)
            if isinstance(node.slice, ast.Slice):
                raise self._err(node, "slices are not allowed")
            idx = self._compile(node.slice)
            return lambda env: _member(base(env), idx(env))
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self._compile(e) for e in node.elts]
            return lambda env: [f(env) for f in items]
        if isinstance(node, ast.BoolOp):
            parts = [self._compile(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return lambda env: all(bool(f(env)) for f in parts)
            return lambda env: any(bool(f(env)) for f in parts)
        if isinstance(node, ast.UnaryOp):
            operand = self._compile(node.operand)
            if isinstance(node.op, ast.Not):
                return lambda env: not operand(env)
            if isinstance(node.op, (ast.USub, ast.UAdd)):
                sign = -1 if isinstance(node.op, ast.USub) else 1
                return _safe_num(lambda env: sign * operand(env))
            raise self._err(node, "operator is not allowed")
        if isinstance(node, ast.BinOp):
            op = BINOPS.get(type(node.op))
            if op is None:
                raise self._err(node, f"operator {type(node.op).__name__} is not allowed")
            left, right = self._compile(node.left), self._compile(node.right)

            def binop(env: Env) -> Any:
                a, b = left(env), right(env)
                if op is operator.mul and (isinstance(a, (str, list)) or isinstance(b, (str, list))):
                    return None  # no "x" * 10**9: repetition is not part of the language
                return op(a, b)
            return _safe_num(binop)
        if isinstance(node, ast.Compare):
            ops = []
            for o in node.ops:
                f = CMPOPS.get(type(o))
                if f is None:
                    raise self._err(node, f"comparison {type(o).__name__} is not allowed")
                ops.append(f)
            first = self._compile(node.left)
            rest = [self._compile(c) for c in node.comparators]

            def cmp(env: Env) -> bool:
                a = first(env)
                for f, nxt in zip(ops, rest):
                    b = nxt(env)
                    try:
                        if (a is None or b is None) and f not in (operator.eq, operator.ne):
                            return False
                        if not f(a, b):
                            return False
                    except TypeError:
                        return False
                    a = b
                return True
            return cmp
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCS or node.keywords:
                raise self._err(node, "only calls of the listed functions (positional args) are allowed")
            fn = FUNCS[node.func.id]
            args = [self._compile(a) for a in node.args]
            return lambda env: fn(*[a(env) for a in args])
        if isinstance(node, ast.IfExp):
            t, b, o = self._compile(node.test), self._compile(node.body), self._compile(node.orelse)
            return lambda env: b(env) if t(env) else o(env)
        raise self._err(node, f"{type(node).__name__} is not allowed")

    def __call__(self, packet: Packet) -> Any:
        return self._fn(_Lazy(packet))

    def test(self, packet: Packet) -> bool:
        return bool(self(packet))


def _safe_num(fn: Callable[[Env], Any]) -> Callable[[Env], Any]:
    def wrapped(env: Env) -> Any:
        try:
            return fn(env)
        except (TypeError, ZeroDivisionError, OverflowError, ValueError):
            return None
    return wrapped
