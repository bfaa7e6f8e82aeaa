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


ENUM = """  - name: q
    knobs: [{node: det, param: label, values: [object, person, car]}]
    objectives: [{node: det, metric: latency_p95_ms, max: 150}]
"""


def test_an_enum_knob_validates():
    assert codes(run(ENUM)) == []


@pytest.mark.parametrize("edit, code, words", [
    (("values: [object, person, car]", "values: [object, person], max: 2"), "SCH801",
     "a knob with `values` takes no max"),
    (("param: label, values: [object, person, car]", "param: latency_ms, values: [20, fast, 40]"), "SCH805",
     "value 'fast' is not of the parameter's type float"),
    (("param: label, values: [object, person, car]", "param: latency_ms, values: [20, -5]"), "SCH805",
     "value -5 is outside the parameter's schema [0, 60000]"),
    (("values: [object, person, car]", "values: [person, car]"), "SCH805",
     "starts with label = 'object', which is not one of knob det.label's values"),
    (("values: [object, person, car]", "min: 0, max: 1"), "SCH804",
     "is of type str; a knob with min/max must be a numeric parameter"),
])
def test_each_wrong_enum_knob_is_named(edit, code, words):
    report = run(ENUM.replace(*edit))
    assert codes(report) == [code], report.format_text()
    issue = report.issues[0]
    assert words in issue.message + " " + issue.hint and issue.line == 11


def test_model_variants_are_a_knob_and_a_setting_read_at_configure_is_not():
    text = ("schnitzel: 1\nname: t\nnodes:\n"
            "  - {id: src, plugin: synthetic_source, params: {mode: pattern}}\n"
            "  - {id: det, plugin: onnx_model, params: {model: models/det_s.onnx}}\n"
            "edges:\n  - {from: src.out, to: det.in}\n"
            "controllers:\n  - name: m\n"
            "    knobs: [{node: det, param: model, values: [models/det_n.onnx, models/det_s.onnx]},\n"
            "            {node: det, param: batch, values: [1, 2, 4]}]\n"
            "    objectives: [{node: det, metric: latency_p95_ms, max: 150}]\n")
    report = validate_text(text, file="t.yaml", registry=REG, env={})
    assert [i.code for i in report.issues if i.code.startswith("SCH8")] == [], report.format_text()
    report = validate_text(text.replace("param: batch, values: [1, 2, 4]", "param: provider, values: [cpu, cuda]"),
                           file="t.yaml", registry=REG, env={})
    ctl = [i for i in report.issues if i.code.startswith("SCH8")]
    assert [i.code for i in ctl] == ["SCH804"], report.format_text()
    assert "'provider' of node 'det' (onnx_model) is not live" in ctl[0].message
    assert "schnitzel apply" in ctl[0].message + ctl[0].hint


MODES = GOOD + """    modes:
      low_power: {set: {src.rate_hz: 5}, trigger: [{node: det, metric: cpu_percent, max: 90}], exit_after_s: 20}
"""


def test_a_mode_validates():
    assert codes(run(MODES)) == []


@pytest.mark.parametrize("edit, code, words", [
    (("{src.rate_hz: 5}", "{src.rate_hz: 50}"), "SCH809", "src.rate_hz = 50 is outside the knob's bounds [1, 30]"),
    (("{src.rate_hz: 5}", "{src.rate_hz: 5, det.latency_ms: 10}"), "SCH809",
     "sets det.latency_ms, which is not a knob of this controller"),
    (("{src.rate_hz: 5}", "{src.rate_hz: fast}"), "SCH809", "'fast' is not a number"),
    (("exit_after_s: 20", "exit_after: 20"), "SCH801", "unknown key 'exit_after'"),
    (("metric: cpu_percent", "metric: cpu"), "SCH801", "'cpu' is not a metric"),
])
def test_each_wrong_mode_is_named(edit, code, words):
    report = run(MODES.replace(*edit))
    assert codes(report) == [code], report.format_text()
    issue = report.issues[0]
    assert words in issue.message + " " + issue.hint and issue.line == 11
