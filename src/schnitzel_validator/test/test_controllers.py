"""`controllers:` are validated against the graph's nodes and their parameter schemas (SCH80x)."""
import pytest

from schnitzel_core.registry import load_registry
from schnitzel_validator import validate_text

REG = load_registry()
NODES = """nodes:
  - {id: src, plugin: synthetic_source, params: {mode: pattern, rate_hz: 10}}
  - {id: det, plugin: synthetic_model, params: {latency_ms: 20}}
  - {id: out, plugin: stdout_sink}
edges:
  - {from: src.out, to: det.in}
  - {from: det.out, to: out.in}
"""


def run(controllers):
    return validate_text("schnitzel: 1\nname: t\n" + NODES + "controllers:\n" + controllers,
                         file="t.yaml", registry=REG, env={})


def codes(report):
    return sorted(i.code for i in report.issues if i.severity == "error")


GOOD = """  - name: fps
    policy: aimd
    knobs: [{node: src, param: rate_hz, min: 1, max: 30, max_step: 5}]
    objectives: [{node: det, metric: latency_p95_ms, max: 150}]
    guardrails: {cooldown_s: 5, dwell_s: 3}
"""


def test_a_good_controller_validates():
    assert codes(run(GOOD)) == []


@pytest.mark.parametrize("edit, code, words", [
    (("node: src, param", "node: cam, param"), "SCH802", "'cam', which is not in the graph"),
    (("param: rate_hz", "param: rate"), "SCH803", "did you mean 'rate_hz'"),
    (("param: rate_hz", "param: count"), "SCH804", "is not live"),
    (("max: 30", "max: 20000"), "SCH805", "outside the parameter's schema [0.01, 10000]"),
    (("policy: aimd", "policy: pid"), "SCH806", "no policy named 'pid'"),
    (("node: det, metric", "node: dett, metric"), "SCH807", "did you mean 'det'"),
    (("min: 1", "min: 40"), "SCH801", "min 40 is above max 30"),
    (("dwell_s: 3", "dwel_s: 3"), "SCH801", "unknown key 'dwel_s'"),
])
def test_each_wrong_controller_is_named(edit, code, words):
    report = run(GOOD.replace(*edit))
    assert codes(report) == [code], report.format_text()
    issue = report.issues[0]
    assert words in issue.message + " " + issue.hint and issue.line == 11


def test_one_knob_two_controllers():
    report = run(GOOD + GOOD.replace("name: fps", "name: fps2"))
    assert codes(report) == ["SCH808"]
