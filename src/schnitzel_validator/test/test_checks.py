"""Details of the checks a user relies on: hints, suggestions, paths, no cascades, the JSON shape."""
import json

import pytest

import sch_fixture_plugins as fx
from schnitzel_core.plugin import Category, In, NodeLogic, Out, PluginSpec
from schnitzel_core.registry import PluginEntry, Registry
from schnitzel_validator import validate, validate_text
from schnitzel_core.graph_loader import load_graph

REG = fx.registry()


def run(body, reg=REG):
    return validate_text("schnitzel: 1\nname: t\n" + body, file="t.yaml", registry=reg, env={})


def one(report, code):
    found = [i for i in report.issues if i.code == code]
    assert len(found) == 1, report.format_text()
    return found[0]


def test_unknown_plugin_suggests_closest_names():
    r = run("nodes:\n  - {id: d, plugin: detektor}\n")
    i = one(r, "SCH301")
    assert "'detector'" in i.hint and i.node == "d" and (i.line, i.column) == (4, 21)


def test_unknown_param_suggests_and_lists():
    i = one(run("nodes:\n  - {id: c, plugin: camera, params: {uri: x, fsp: 3}}\n"), "SCH311")
    assert "did you mean 'fps'" in i.hint and "encoding" in i.hint


def test_unknown_port_lists_the_ports():
    r = run("nodes:\n  - {id: c, plugin: camera, params: {uri: x}}\n  - {id: d, plugin: detector, "
            "params: {model: m}}\nedges:\n  - {from: c.frames, to: d.imag}\n")
    i = one(r, "SCH402")
    assert "did you mean 'image'" in i.hint and "detections (out: detections)" in i.hint
    assert i.edge == "c.frames -> d.imag"


def test_no_cascade_from_an_unknown_plugin():
    r = run("nodes:\n  - {id: a, plugin: nope}\n  - {id: b, plugin: log_sink}\nedges:\n"
            "  - {from: a.x, to: b.in}\n  - {from: b.in, to: a.y}\n")
    assert [i.code for i in r.errors] == ["SCH301", "SCH405"]


def test_cycle_reports_the_whole_path():
    r = run("nodes:\n  - {id: a, plugin: router}\n  - {id: b, plugin: router}\n  - {id: c, plugin: router}\n"
            "  - {id: t, plugin: ticker}\nedges:\n  - {from: t.out, to: a.in}\n  - {from: a.a, to: b.in}\n"
            "  - {from: b.a, to: c.in}\n  - {from: c.a, to: a.in}\n")
    i = one(r, "SCH601")
    assert "a -> b -> c -> a" in i.message and i.line == 10
    assert "delay" in i.hint


def test_delay_with_initial_breaks_the_cycle_but_null_does_not():
    body = ("nodes:\n  - {id: t, plugin: ticker}\n  - {id: r, plugin: router}\n"
            "  - {id: d, plugin: delay, params: {initial: INIT}}\n  - {id: s, plugin: log_sink}\n"
            "edges:\n  - {from: t.out, to: r.in}\n  - {from: r.a, to: d.in}\n  - {from: d.out, to: r.in}\n"
            "  - {from: r.b, to: s.in}\n")
    assert run(body.replace("INIT", "0")).valid
    assert run(body.replace("INIT", "{boxes: []}")).valid
    assert one(run(body.replace("INIT", "null")), "SCH602").node == "d"


def test_self_loop_and_two_separate_cycles():
    r = run("nodes:\n  - {id: t, plugin: ticker}\n  - {id: a, plugin: router}\n  - {id: b, plugin: router}\n"
            "edges:\n  - {from: t.out, to: a.in}\n  - {from: a.a, to: a.in}\n  - {from: t.out, to: b.in}\n"
            "  - {from: b.b, to: b.in}\n")
    msgs = sorted(i.message for i in r.errors if i.code == "SCH601")
    assert len(msgs) == 2 and "a -> a" in msgs[0] and "b -> b" in msgs[1]


def test_egress_through_queue_and_router_is_valid():
    r = run("nodes:\n  - {id: t, plugin: ticker}\n  - {id: q, plugin: durable_queue}\n  - {id: r, plugin: router}\n"
            "  - {id: h, plugin: http_sink, params: {url: u}}\nedges:\n  - {from: t.out, to: q.in}\n"
            "  - {from: q.out, to: r.in}\n  - {from: r.a, to: h.in}\n  - {from: r.b, to: h.in}\n")
    assert r.valid, r.format_text()
    # a policy node between queue and sink is not allowed: it could drop or reorder without acks
    r = run("nodes:\n  - {id: t, plugin: ticker}\n  - {id: q, plugin: durable_queue}\n"
            "  - {id: e, plugin: event_builder}\n  - {id: h, plugin: http_sink, params: {url: u}}\nedges:\n"
            "  - {from: t.out, to: q.in}\n  - {from: q.out, to: e.in}\n  - {from: e.events, to: h.in}\n")
    assert one(r, "SCH603").node == "h"


def test_secret_value_is_never_echoed():
    r = run("nodes:\n  - {id: c, plugin: camera, params: {uri: x, token_env: 'hunter2-secret'}}\n")
    i = one(r, "SCH315")
    assert "hunter2" not in i.message + i.hint + r.to_json()


def test_writer_override_fixes_reliability():
    body = ("nodes:\n  - {id: c, plugin: camera, params: {uri: x}QOS}\n  - {id: s, plugin: log_sink}\n"
            "edges:\n  - {from: c.frames, to: s.in, qos: events}\n")
    assert one(run(body.replace("QOS", "")), "SCH503")
    assert run(body.replace("QOS", ", qos: {frames: events}")).valid
    assert one(run(body.replace("QOS", ", qos: {frame: events}")), "SCH402")


def test_kind_wildcards():
    body = "nodes:\n  - {id: c, plugin: camera, params: {uri: x}}\n  - {id: d, plugin: detector, params: {model: m}}\n" \
           "  - {id: s, plugin: log_sink}\nedges:\n  - {from: c.frames, to: d.image}\n  - {from: d.detections, to: s.in}\n"
    assert run(body).valid                         # video.frame into video.*, anything into *


def test_api_incompatible_names_both_versions():
    r = run("nodes:\n  - {id: f, plugin: future}\n")
    i = one(r, "SCH303")
    from schnitzel_core.plugin import PLUGIN_API_VERSION

    assert "2.0.0" in i.message and PLUGIN_API_VERSION in i.message


def test_broken_plugin_entry_is_sch302():
    reg = Registry([PluginEntry(name="broken", dist="acme", error="plugin 'broken' failed to import: boom")])
    i = one(run("nodes:\n  - {id: b, plugin: broken}\n", reg), "SCH302")
    assert "boom" in i.message and "acme" in i.hint


def test_validate_on_loaded_graph_and_json_shape():
    g = load_graph("schnitzel: 1\nname: t\nnodes:\n  - {id: t, plugin: ticker}\n  - {id: s, plugin: log_sink}\n"
                   "edges:\n  - {from: t.out, to: s.in}\n", file="g.yaml", env={})
    rep = validate(g, REG)
    assert rep.valid and rep.graph is g and rep.errors == [] and rep.warnings == []
    data = json.loads(run("nodes:\n  - {id: t, plugin: tickr}\n").to_json())
    assert data["valid"] is False and data["file"] == "t.yaml" and data["warnings"] == []
    assert set(data["errors"][0]) == {"code", "severity", "message", "file", "line", "column", "node", "edge",
                                      "hint"}


def test_text_format_has_file_line_col_code_and_hint():
    text = run("nodes:\n  - {id: t, plugin: tickr}\n").format_text().splitlines()
    assert text[0].startswith("t.yaml:4:21: SCH301 ")
    assert text[1].startswith("    hint: did you mean 'ticker'")
    assert text[-1] == "t.yaml: invalid: 1 error"


def test_big_graph_is_linear_enough():
    import time
    n = 400
    nodes = "".join(f"  - {{id: r{i}, plugin: router}}\n" for i in range(n))
    edges = "".join(f"  - {{from: r{i}.a, to: r{i + 1}.in}}\n" for i in range(n - 1))
    t0 = time.perf_counter()
    r = run("nodes:\n  - {id: t, plugin: ticker}\n" + nodes + "  - {id: s, plugin: log_sink}\nedges:\n"
            "  - {from: t.out, to: r0.in}\n" + edges + f"  - {{from: r{n - 1}.a, to: s.in}}\n")
    assert r.valid and time.perf_counter() - t0 < 2.0


def test_graph_built_in_code_validates():
    from schnitzel_core.graph import EdgeDecl, Graph, NodeDecl
    g = Graph(name="coded", nodes=[NodeDecl("t", "ticker"), NodeDecl("s", "log_sink")],
              edges=[EdgeDecl("t", "out", "s", "in")])
    assert validate(g, REG).valid
    g.edges.append(EdgeDecl("t", "out", "s", "nope"))
    assert [i.code for i in validate(g, REG).errors] == ["SCH402"]


def test_input_overflow_policy_is_checked_statically():
    body = ("nodes:\n  - {id: t, plugin: ticker}\n  - {id: s, plugin: log_sink INPUTS}\n"
            "edges:\n  - {from: t.out, to: s.in}\n")
    ok = run(body.replace("INPUTS", ", inputs: {in: {overflow: error, max_queued: 50}}"))
    assert ok.valid, ok.format_text()
    assert run(body.replace("INPUTS", ", inputs: {in: {overflow: drop_new}}")).valid
    i = one(run(body.replace("INPUTS", ", inputs: {inn: {overflow: drop_new}}")), "SCH410")
    assert "did you mean 'in'" in i.hint and i.node == "s" and i.line == 5
    i = one(run(body.replace("INPUTS", ", inputs: {in: {overflow: drop_newest}}")), "SCH411")
    assert "drop_oldest, drop_new, error" in i.message and "did you mean 'drop_new'" in i.hint
    assert one(run(body.replace("INPUTS", ", inputs: {in: {max_queued: 0}}")), "SCH411")
    assert one(run(body.replace("INPUTS", ", inputs: {in: {depth: 3}}")), "SCH411")
    assert one(run(body.replace("INPUTS", ", inputs: [in]")), "SCH104")
    comp = ("nodes:\n  - {id: t, plugin: ticker}\n  - {id: d, plugin: detector, params: {model: m}, "
            "inputs: {image: {overflow: error}}}\n")
    r = run(comp)
    assert any(x.code == "SCH411" and "latest-only" in x.message for x in r.issues), r.format_text()
