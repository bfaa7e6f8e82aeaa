"""The validator and the ROS adapter judge a parameter value alike (schnitzel_core.param_check).

A graph the validator passes must load, and a value ``ros2 param set`` is refused must not
have passed ``schnitzel validate``: both callers are asked about the same table of values.
"""
import math

import pytest
import yaml

from schnitzel_core.plugin import Category, NodeLogic, Out, Param, PluginSpec
from schnitzel_core.registry import Registry
from schnitzel_nodes.ros.params import ParamError, check_value
from schnitzel_validator import validate_text

PARAMS = {p.name: p for p in (
    Param("count", "int", 1, minimum=0, maximum=10),
    Param("rate", "float", 1.0, minimum=0.1),
    Param("gain", "number", 1),
    Param("flag", "bool", False),
    Param("mode", "str", "a", enum=("a", "b")),
    Param("ids", "list", [], items="int"),
    Param("weights", "list", [], items="float"),
    Param("extra", "dict", {}),
    Param("anything", "any", 0),
    Param("schema", "dict", None),
    Param("token_env", "str", "", secret_env=True),
)}


class Probe(NodeLogic):
    spec = PluginSpec(name="probe", category=Category.SOURCE, version="1.0.0",
                      ports=(Out("out", ["telemetry"]),), params=tuple(PARAMS.values()))


REG = Registry.from_classes([Probe])

# (param, value, accepted)
TABLE = [
    ("count", 3, True), ("count", 0, True), ("count", 10, True),
    ("count", True, False),          # bool is not int
    ("count", 3.0, False),           # nor is a float with an integral value
    ("count", "3", False), ("count", -1, False), ("count", 11, False), ("count", None, False),
    ("rate", 2, True), ("rate", 2.5, True), ("rate", 0.05, False), ("rate", False, False),
    ("rate", math.inf, False), ("rate", math.nan, False),
    ("gain", -7, True), ("gain", 0.5, True), ("gain", True, False), ("gain", -math.inf, False),
    ("flag", True, True), ("flag", 1, False), ("flag", "true", False),
    ("mode", "b", True), ("mode", "c", False), ("mode", 1, False),
    ("ids", [1, 2], True), ("ids", [], True), ("ids", [1, True], False), ("ids", [1, 2.0], False),
    ("ids", "1,2", False),
    ("weights", [1, 2.5], True), ("weights", [0.5, "x"], False), ("weights", [False], False),
    ("extra", {"a": 1}, True), ("extra", [], False),
    ("anything", None, True), ("anything", [1, "x"], True), ("anything", "text", True),
    ("schema", None, True),          # null means "unset" where the default is None
    ("schema", {"type": "object"}, True), ("schema", "x", False),
    ("token_env", "MY_TOKEN", True), ("token_env", "", True),
    ("token_env", "s3cr3t value!", False), ("token_env", 123, False),
]


def validator_accepts(name, value):
    doc = {"schnitzel": 1, "name": "g", "nodes": [{"id": "p", "plugin": "probe", "params": {name: value}}]}
    text = yaml.safe_dump(doc)
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.strip().startswith(f"{name}:"))
    report = validate_text(text, file="g.yaml", registry=REG)
    param_issues = [i for i in report.issues if i.code in ("SCH312", "SCH313", "SCH314", "SCH315")]
    for issue in param_issues:   # reported at the value's line, and never echoing a secret
        assert issue.line == line and "s3cr3t" not in issue.message + issue.hint, issue
    return not param_issues


def adapter_accepts(name, value):
    try:
        check_value(PARAMS[name], value)
    except ParamError as exc:
        assert "s3cr3t" not in str(exc)
        return False
    return True


@pytest.mark.parametrize("name,value,accepted", TABLE, ids=[f"{n}={v!r}" for n, v, _ in TABLE])
def test_validator_and_adapter_agree_on_a_parameter_value(name, value, accepted):
    assert (validator_accepts(name, value), adapter_accepts(name, value)) == (accepted, accepted)
