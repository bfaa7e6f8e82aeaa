"""graph_diff: what changed between two graphs, and the order the manager applies it in."""
import random

import pytest
from schnitzel_core.graph_diff import GraphDiffError, describe_plan, diff_graphs, plan_application
from schnitzel_core.graph_loader import load_graph
from schnitzel_core.plugin import Category, In, NodeLogic, Out, Param, PluginSpec
from schnitzel_core.registry import Registry


class _Src(NodeLogic):
    spec = PluginSpec(name="d_src", category=Category.SOURCE, version="1.0.0", ports=(Out("out"),),
                      params=(Param("rate_hz", "float", 5.0, live=True), Param("count", "int", 0)))


class _Rule(NodeLogic):
    spec = PluginSpec(name="d_rule", category=Category.POLICY, version="1.0.0",
                      ports=(In("in"), Out("out")),
                      params=(Param("threshold", "float", 0.5, live=True), Param("mode", "str", "a")))


class _Rule2(NodeLogic):
    spec = PluginSpec(name="d_rule2", category=Category.POLICY, version="2.0.0",
                      ports=(In("in"), Out("out")), params=(Param("threshold", "float", 0.5),))


class _Sink(NodeLogic):
    spec = PluginSpec(name="d_sink", category=Category.SINK, version="1.0.0", ports=(In("in"),),
                      params=(Param("path", "str", "out.jsonl"),))


REG = Registry.from_classes([_Src, _Rule, _Rule2, _Sink])

BASE = """
schnitzel: 1
name: g
containers: [{id: main}]
nodes:
  - {id: src, plugin: d_src, params: {rate_hz: 5.0}}
  - {id: rule, plugin: d_rule, params: {threshold: 0.5}}
  - {id: sink_a, plugin: d_sink, params: {path: a.jsonl}}
edges:
  - {from: src.out, to: rule.in}
  - {from: rule.out, to: sink_a.in}
"""


def _g(text):
    return load_graph(text, file="g.yaml")


def _diff(new_text, old_text=BASE, registry=REG):
    return diff_graphs(_g(old_text), _g(new_text), registry)


def test_identical_graphs_have_no_changes_and_an_empty_plan():
    d = _diff(BASE)
    assert d.empty and d.lines() == []
    assert plan_application(d, REG) == []


def test_add_one_sink_and_remove_another_loads_first_rewires_then_unloads():
    new = BASE.replace("{id: sink_a, plugin: d_sink, params: {path: a.jsonl}}",
                       "{id: sink_b, plugin: d_sink, params: {path: b.jsonl}}").replace("sink_a.in", "sink_b.in")
    d = _diff(new)
    assert d.lines() == [
        "add node sink_b: plugin d_sink in container main",
        "remove node sink_a",
        "add edge rule.out -> sink_b.in",
        "remove edge rule.out -> sink_a.in",
    ]
    plan = plan_application(d, REG)
    assert [(a.action, a.target) for a in plan] == [("load", "sink_b"), ("unload", "sink_a")]
    # rule's inputs are unchanged: only its output gained a reader, so it is not replaced
    assert describe_plan(plan)[0] == "1. load node sink_b in container main (added)"


def test_node_changes_are_reported_field_by_field():
    new = BASE.replace("{id: rule, plugin: d_rule, params: {threshold: 0.5}}",
                       "{id: rule, plugin: d_rule2, version: '^2.0', params: {threshold: 0.7}}")
    d = _diff(new)
    assert d.lines() == ["change node rule: plugin: \"d_rule\" -> \"d_rule2\"; version: none -> \"^2.0\"; "
                         "params.threshold: 0.5 -> 0.7"]
    ch = d.nodes_changed["rule"]
    assert ch.fields == ("plugin", "version", "params")
    plan = plan_application(d, REG)
    assert [(a.action, a.target) for a in plan] == [("replace", "rule")]
    assert "plugin, version, params changed" in plan[0].reason


def test_live_param_change_is_set_in_place_without_replacement():
    d = _diff(BASE.replace("threshold: 0.5", "threshold: 0.9").replace("rate_hz: 5.0", "rate_hz: 20.0"))
    plan = plan_application(d, REG)
    assert [(a.action, a.target, dict(a.params)) for a in plan] == [
        ("set_params", "rule", {"threshold": 0.9}),
        ("set_params", "src", {"rate_hz": 20.0}),
    ]


def test_removed_live_param_reverts_to_its_default_in_place():
    d = _diff(BASE.replace("{threshold: 0.5}", "{}"))
    assert d.lines() == ["change node rule: params.threshold: removed (was 0.5)"]
    assert [(a.action, dict(a.params)) for a in plan_application(d, REG)] == [("set_params", {"threshold": 0.5})]


def test_a_non_live_param_forces_a_replacement():
    d = _diff(BASE.replace("{threshold: 0.5}", "{threshold: 0.6, mode: b}"))
    plan = plan_application(d, REG)
    assert [(a.action, a.target) for a in plan] == [("replace", "rule")]
    assert "mode not live" in plan[0].reason


def test_without_a_registry_every_param_change_is_a_replacement():
    d = _diff(BASE.replace("threshold: 0.5", "threshold: 0.9"), registry=None)
    assert [a.action for a in plan_application(d)] == ["replace"]


def test_edge_qos_and_transport_changes_rewire_the_right_nodes():
    new = BASE.replace("{from: src.out, to: rule.in}", "{from: src.out, to: rule.in, qos: events, transport: dds}")
    d = _diff(new)
    assert d.lines() == ['change edge src.out -> rule.in: qos: default -> "events"; transport: auto -> dds']
    plan = plan_application(d, REG)
    # reader QoS lives at the destination; a transport change touches both ends; downstream first
    assert [(a.action, a.target) for a in plan] == [("replace", "rule"), ("replace", "src")]


def test_inserting_a_node_loads_it_before_rewiring_downstream_and_unloads_last():
    # src -> rule -> sink_a   becomes   src -> filt -> sink_a, and rule is removed
    new = """
schnitzel: 1
name: g
containers: [{id: main}, {id: aux}]
nodes:
  - {id: src, plugin: d_src, params: {rate_hz: 5.0}}
  - {id: filt, plugin: d_rule2, container: aux}
  - {id: sink_a, plugin: d_sink, params: {path: a.jsonl}}
edges:
  - {from: src.out, to: filt.in}
  - {from: filt.out, to: sink_a.in}
"""
    plan = plan_application(_diff(new), REG)
    assert [str(a) for a in plan] == [
        "start container aux (added)",
        "load node filt in container aux (added)",
        "replace node sink_a in container main (input added: filt.out -> sink_a.in; "
        "input removed: rule.out -> sink_a.in)",
        "unload node rule in container main (removed)",
    ]


def test_removed_nodes_unload_upstream_first_and_containers_stop_after():
    new = """
schnitzel: 1
name: g
containers: [{id: other}]
nodes:
  - {id: sink_a, plugin: d_sink, container: other, params: {path: a.jsonl}}
"""
    plan = plan_application(_diff(new), REG)
    assert [(a.action, a.target) for a in plan] == [
        ("start_container", "other"), ("replace", "sink_a"),
        ("unload", "src"), ("unload", "rule"), ("stop_container", "main")]
    assert str(plan[1]).startswith("replace node sink_a (move main -> other)")


def test_result_does_not_depend_on_declaration_order():
    g_new = _g(BASE.replace("sink_a", "sink_b"))
    lines, plans = set(), set()
    for seed in range(5):
        g = _g(BASE)
        random.Random(seed).shuffle(g.nodes)
        random.Random(seed).shuffle(g.edges)
        d = diff_graphs(g, g_new, REG)
        lines.add(tuple(d.lines()))
        plans.add(tuple(describe_plan(plan_application(d, REG))))
    assert len(lines) == 1 and len(plans) == 1


def test_a_different_graph_name_is_refused_with_a_clear_message():
    with pytest.raises(GraphDiffError, match="named 'h' but the running graph is 'g'"):
        _diff(BASE.replace("name: g", "name: h"))


def test_moving_a_populated_container_to_another_host_cannot_be_applied_live():
    d = _diff(BASE.replace("[{id: main}]", "[{id: main, host: robot2}]"))
    assert d.lines() == ['change container main: host: "localhost" -> "robot2"']
    with pytest.raises(GraphDiffError, match="cannot move"):
        plan_application(d, REG)
