"""A plugin's parameter schema <-> ROS 2 parameters, and the schema check.

ROS types: int -> INTEGER, float/number -> DOUBLE, str -> STRING, bool -> BOOL;
list, dict and any travel as JSON text in a STRING parameter (so
``ros2 param set /g/n zones '[{"name": "a"}]'`` works). Every parameter is
declared with ``dynamic_typing`` so that ``ros2 param set ... 5`` on a float
parameter is accepted (the value is then checked and converted here).
"""
from __future__ import annotations

import difflib
import json
import math
from typing import Any, Dict, List, Mapping

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

from schnitzel_core import param_check
from schnitzel_core.plugin import Param, PluginSpec

#: Adapter settings live under this prefix so they never clash with a plugin's params.
RESERVED_PREFIX = "schnitzel."
#: ROS parameters every node has that are not the plugin's.
FOREIGN = ("use_sim_time", "start_type_description_service")

_JSON_TYPES = ("list", "dict", "any")
_ROS_TYPE = {"int": ParameterType.PARAMETER_INTEGER, "float": ParameterType.PARAMETER_DOUBLE,
             "number": ParameterType.PARAMETER_DOUBLE, "str": ParameterType.PARAMETER_STRING,
             "bool": ParameterType.PARAMETER_BOOL}


class ParamError(ValueError):
    """One or more parameter values that do not fit the plugin's schema."""


def check_value(p: Param, value: Any) -> Any:
    """``value`` checked against ``p`` (schnitzel_core.param_check: the validator's rules too);
    returns it normalised (an int given for a float parameter becomes a float).

    Raises ParamError with a message that names the parameter and says what fits.
    """
    if param_check.is_unset(p, value):
        return None   # "not given": an optional parameter whose default is None (e.g. schema)
    problems = param_check.param_problems(p, value)
    if problems:
        raise ParamError(_message(p, problems[0]))
    if p.type == "float" and isinstance(value, int):
        value = float(value)
    return value


def _message(p: Param, problem: param_check.ParamProblem) -> str:
    value = problem.value
    if problem.kind == param_check.TYPE:
        return f"parameter {p.name!r} must be of type {p.type}, got {value!r} ({type(value).__name__})"
    if problem.kind == param_check.SECRET_ENV:   # never echo the value: it may be the secret itself
        return (f"parameter {p.name!r} must name an environment variable holding the secret, "
                "not hold the secret itself")
    if problem.kind == param_check.FINITE:
        return f"parameter {p.name!r} must be a finite number, got {value!r}"
    if problem.kind == param_check.MINIMUM:
        return f"parameter {p.name!r} = {value!r} is below its minimum {p.minimum:g}"
    if problem.kind == param_check.MAXIMUM:
        return f"parameter {p.name!r} = {value!r} is above its maximum {p.maximum:g}"
    if problem.kind == param_check.ENUM:
        return f"parameter {p.name!r} = {value!r} is not one of {list(p.enum or ())!r}"
    return f"parameter {p.name!r}[{problem.index}] must be of type {p.items}, got {value!r}"


def check_params(spec: PluginSpec, given: Mapping[str, Any]) -> Dict[str, Any]:
    """Defaults from ``spec`` merged with ``given``, checked; raises ParamError listing every problem."""
    problems: List[str] = []
    out: Dict[str, Any] = dict(spec.defaults())
    known = [p.name for p in spec.params]
    for name, value in given.items():
        if name.startswith(RESERVED_PREFIX) or name in FOREIGN:
            continue
        p = spec.param(name)
        if p is None:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else (
                f"; known parameters: {', '.join(known)}" if known else "; this plugin takes no parameters")
            problems.append(f"unknown parameter {name!r} for plugin {spec.name!r}{hint}")
            continue
        try:
            out[name] = check_value(p, value)
        except ParamError as exc:
            problems.append(str(exc))
    for p in spec.params:
        if p.required and p.name not in out:
            problems.append(f"parameter {p.name!r} of plugin {spec.name!r} is required")
    if problems:
        raise ParamError("; ".join(problems))
    return out


def descriptor(p: Param) -> ParameterDescriptor:
    """The ROS descriptor of ``p`` (ranges where both bounds exist; limits spelled out in text)."""
    d = ParameterDescriptor(name=p.name, description=p.description or "", dynamic_typing=True)
    d.type = _ROS_TYPE.get(p.type, ParameterType.PARAMETER_STRING)
    notes = []
    if p.type in _JSON_TYPES:
        notes.append(f"JSON text ({p.type})")
    if p.minimum is not None:
        notes.append(f">= {p.minimum:g}")
    if p.maximum is not None:
        notes.append(f"<= {p.maximum:g}")
    if p.enum is not None:
        notes.append(f"one of {list(p.enum)!r}")
    notes.append("live: may change while active, applied at once" if p.live
                 else "not live: refused while the node is configured (inactive or active)")
    d.additional_constraints = "; ".join(notes)
    if p.minimum is not None and p.maximum is not None:
        if p.type == "int":
            d.integer_range = [IntegerRange(from_value=int(math.ceil(p.minimum)),
                                            to_value=int(math.floor(p.maximum)), step=0)]
        elif p.type in ("float", "number"):
            d.floating_point_range = [FloatingPointRange(from_value=float(p.minimum),
                                                         to_value=float(p.maximum), step=0.0)]
    return d


def to_ros(p: Param, value: Any) -> Any:
    """A Python value as the ROS parameter value of ``p`` (JSON text for list/dict/any)."""
    if p.type in _JSON_TYPES:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if p.type in ("float", "number") and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def from_ros(p: Param, value: Any) -> Any:
    """A ROS parameter value of ``p`` as the Python value (decodes JSON text; raises ParamError)."""
    if p.type in _JSON_TYPES and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            if p.type == "any":
                return value   # plain text is a fine value for an "any" parameter
            try:
                # YAML flow style too, as ROS users write it: ros2 param set /g/n zones '{a: 1}'
                import yaml
                loaded = yaml.safe_load(value)
            except Exception:  # noqa: BLE001 - report the JSON error, the documented form
                loaded = None
            if isinstance(loaded, (list, dict)):
                return loaded
            raise ParamError(f"parameter {p.name!r} must be JSON text ({p.type}): {exc}") from None
    if p.type in _JSON_TYPES and isinstance(value, (list, tuple)):
        return list(value)  # a ROS array given for a list parameter
    if isinstance(value, (list, tuple)) or type(value).__name__ == "array":
        return list(value)
    return value


def parse_parameters_json(text: str) -> Dict[str, Any]:
    """LoadNode.parameters_json -> dict (raises ParamError with the reason)."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParamError(f"parameters_json is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ParamError(f"parameters_json must be a JSON object, got {type(value).__name__}")
    return value


__all__ = ["ParamError", "RESERVED_PREFIX", "check_params", "check_value", "descriptor",
           "from_ros", "parse_parameters_json", "to_ros"]
