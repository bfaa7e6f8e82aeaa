"""The one check of a plugin parameter's value against its :class:`~.plugin.Param`.

Both the validator (SCH312..SCH315, at graph-check time) and the ROS adapter (ParamError,
at load and ``ros2 param set`` time) call :func:`param_problems`; each words the problems
its own way, so a value the validator passes is one the node accepts, and the other way round.

The rules come from ``Param.json_schema()`` and are checked with jsonschema, with these
details the schema alone does not say:

- ``int`` is strict: ``True`` and ``1.0`` are not integers (JSON Schema's would accept
  ``1.0``); ``float``/``number`` accept integers but never booleans;
- a float must be finite (``.inf``/``.nan`` are refused: no node can use them);
- ``null`` means "unset" for an optional parameter whose default is None (or of type any);
- a ``secret_env`` parameter must hold the *name* of an environment variable (or ""),
  and a problem with it never carries the value (it may be the secret itself).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any, List, Optional

from .plugin import Param

#: What a secret_env parameter may hold: an environment variable's name.
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

#: Problem kinds, in the order a single-message caller reports the first one.
TYPE, SECRET_ENV, FINITE, MINIMUM, MAXIMUM, ENUM, ITEM_TYPE = (
    "type", "secret_env", "finite", "minimum", "maximum", "enum", "item_type")
ORDER = (TYPE, SECRET_ENV, FINITE, MINIMUM, MAXIMUM, ENUM, ITEM_TYPE)


@dataclasses.dataclass(frozen=True)
class ParamProblem:
    kind: str                      # one of ORDER
    value: Any                     # the offending value (the item for ITEM_TYPE; None for SECRET_ENV)
    index: Optional[int] = None    # the item's index for ITEM_TYPE


def is_unset(p: Param, value: Any) -> bool:
    """``null`` given for an optional parameter whose default is unset: "not given"."""
    return value is None and not p.required and (p.default is None or p.type == "any")


@functools.lru_cache(maxsize=1)
def _validator_class() -> Any:
    import jsonschema

    def integer(_checker: Any, v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def number(_checker: Any, v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many({"integer": integer, "number": number})
    return jsonschema.validators.extend(base, type_checker=checker)


@functools.lru_cache(maxsize=1024)
def _validator(p: Param) -> Any:
    schema = {k: v for k, v in p.json_schema().items() if k not in ("default", "description", "x-live")}
    return _validator_class()(schema)


def param_problems(p: Param, value: Any) -> List[ParamProblem]:
    """What is wrong with ``value`` for ``p`` ([] when it fits), in :data:`ORDER`.

    A value of the wrong type gets only the TYPE problem; a list gets one ITEM_TYPE problem,
    for its first wrong item.
    """
    if is_unset(p, value):
        return []
    if p.secret_env:
        ok = isinstance(value, str) and (not value or ENV_NAME.match(value) is not None)
        return [] if ok else [ParamProblem(SECRET_ENV, None)]
    try:
        validator = _validator(p)
    except TypeError:   # an unhashable Param (a list default): build it uncached
        validator = _validator_class()(
            {k: v for k, v in p.json_schema().items() if k not in ("default", "description", "x-live")})
    found = {}
    for err in validator.iter_errors(value):
        if not err.path:
            kind = {"type": TYPE, "minimum": MINIMUM, "maximum": MAXIMUM, "enum": ENUM}.get(err.validator)
            if kind:
                found.setdefault(kind, ParamProblem(kind, value))
        elif err.validator == "type" and len(err.path) == 1 and isinstance(err.path[0], int):
            i = err.path[0]
            if ITEM_TYPE not in found or i < (found[ITEM_TYPE].index or 0):
                found[ITEM_TYPE] = ParamProblem(ITEM_TYPE, value[i], i)
    if TYPE in found:
        return [found[TYPE]]
    if isinstance(value, float) and not math.isfinite(value):
        found[FINITE] = ParamProblem(FINITE, value)
        found.pop(MINIMUM, None)
        found.pop(MAXIMUM, None)
    return [found[k] for k in ORDER if k in found]


__all__ = ["ENV_NAME", "ORDER", "ParamProblem", "is_unset", "param_problems",
           "TYPE", "SECRET_ENV", "FINITE", "MINIMUM", "MAXIMUM", "ENUM", "ITEM_TYPE"]
