"""Compiler: graph -> plan (start order, params after defaults, QoS, transports, ports_json)."""
import json

import pytest
from schnitzel_core.graph_loader import load_graph
from schnitzel_core.registry import Registry

from schnitzel_bringup.compiler import compile_graph
from schnitzel_bringup.plan import Plan, PlanError

from _plugins import ALL

REG = Registry.from_classes(ALL)

ONE = """
schnitzel: 1
name: lobby
containers:
  - {id: main, restart: on-failure, restart_backoff_s: 0.5, restart_limit: 3}
nodes:
  - {id: snk, plugin: t_sink, params: {path: /tmp/out.jsonl}}
  - {id: src, plugin: t_src, params: {count: 3}}
  - {id: rule, plugin: t_rule}
  - {id: map, plugin: t_map, params: {factor: 7}}
edges:
  - {from: src.out, to: map.in}
  - {from: map.out, to: rule.in}
  - {from: rule.out, to: snk.in}
"""


def _plan(text, registry=REG):
    return compile_graph(load_graph(text, file="g.yaml"), registry)


def test_start_order_sinks_first_sources_last_and_stop_order_sources_first():
    plan = _plan(ONE)
    assert plan.start_order == ["snk", "rule", "map", "src"]
    assert plan.stop_order == ["src", "map", "rule", "snk"]
    assert [n.id for n in plan.nodes] == plan.start_order
    assert plan.containers[0].nodes == plan.start_order
    assert plan.sources == ["src"] and plan.sinks == ["snk"]


def test_params_after_defaults_and_restart_policy():
    plan = _plan(ONE)
    assert plan.node("src").params == {"count": 3, "label": "x", "rate_hz": 5.0}
    assert plan.node("map").params == {"factor": 7, "tags": ["a", "b"], "table": {"k": [1, 2]}}
    c = plan.containers[0]
    assert (c.restart.policy, c.restart.backoff_s, c.restart.limit) == ("on-failure", 0.5, 3)
    assert c.arguments == ["--graph", "lobby", "--container", "main"]


def test_inproc_inside_one_container_and_ports_json_shape():
    plan = _plan(ONE)
    assert {e.transport for e in plan.edges} == {"inproc"}
    src = plan.node("src").ports
    assert src["out"]["out"]["topic"] == "/lobby/src/out"
    assert src["out"]["out"]["transports"] == ["inproc"]
    # the writer keeps the port's preset (sensor: best_effort, depth 10)
    assert src["out"]["out"]["qos"]["reliability"] == "best_effort"
    assert src["out"]["out"]["qos"]["depth"] == 10
    m_in = plan.node("map").ports["in"]["in"]
    assert m_in == [{"topic": "/lobby/src/out", "qos": src["out"]["out"]["qos"],
                     "transport": "inproc", "from": "src.out"}]
    opts = plan.node("map").load_options("lobby")
    assert json.loads(opts["ports_json"]) == plan.node("map").ports
    assert opts["graph"] == "lobby" and opts["container"] == "main"


FOUR = ONE.replace("containers:\n  - {id: main, restart: on-failure, restart_backoff_s: 0.5, restart_limit: 3}",
                   "containers:\n  - {id: a}\n  - {id: b}\n  - {id: c, restart: never}\n  - {id: d}") \
    .replace("t_sink, params", "t_sink, container: d, params") \
    .replace("plugin: t_src,", "plugin: t_src, container: a,") \
    .replace("plugin: t_rule}", "plugin: t_rule, container: c}") \
    .replace("plugin: t_map,", "plugin: t_map, container: b,")


def test_dds_readers_count_each_dds_edge_of_an_output_and_travel_as_a_load_option():
    assert all(not n.dds_readers and "dds_readers" not in n.load_options("lobby") for n in _plan(ONE).nodes)
    text = FOUR + "  - {from: src.out, to: rule.in}\n"     # src.out now feeds map (b) and rule (c)
    plan = _plan(text)
    assert plan.node("src").dds_readers == {"out": 2} and plan.node("map").dds_readers == {"out": 1}
    assert json.loads(plan.node("src").load_options("lobby")["dds_readers"]) == {"out": 2}
    assert Plan.from_json(plan.to_json()).node("src").dds_readers == {"out": 2}


def test_dds_across_containers_and_edge_qos_override():
    text = FOUR.replace("{from: map.out, to: rule.in}", "{from: map.out, to: rule.in, qos: {depth: 5}}")
    plan = _plan(text)
    assert [c.id for c in plan.containers] == ["a", "b", "c", "d"]
    assert {e.transport for e in plan.edges} == {"dds"}
    assert plan.container("c").restart.policy == "never"
    edge = next(e for e in plan.edges if e.src == "map.out")
    assert edge.qos["depth"] == 5 and edge.writer_qos["depth"] == 100  # reader merged over writer (events)
    assert plan.node("rule").ports["in"]["in"][0]["qos"]["depth"] == 5
    assert plan.node("map").ports["out"]["out"]["transports"] == ["dds"]


def test_mixed_transports_on_one_output():
    text = FOUR.replace("  - {from: rule.out, to: snk.in}",
                        "  - {from: rule.out, to: snk.in}\n  - {from: src.out, to: rule.in}") \
        .replace("plugin: t_rule, container: c}", "plugin: t_rule, container: a}")
    plan = _plan(text)
    assert plan.node("src").ports["out"]["out"]["transports"] == ["inproc", "dds"]
    assert [i["from"] for i in plan.node("rule").ports["in"]["in"]] == ["map.out", "src.out"]


def test_durable_queue_gets_the_sinks_it_feeds_through_a_router():
    text = """
schnitzel: 1
name: egress
nodes:
  - {id: src, plugin: t_src}
  - {id: q, plugin: t_queue}
  - {id: r, plugin: t_router}
  - {id: s1, plugin: t_sink, params: {path: a}}
  - {id: s2, plugin: t_sink, params: {path: b}}
edges:
  - {from: src.out, to: q.in}
  - {from: q.out, to: r.in}
  - {from: r.a, to: s1.in}
  - {from: r.b, to: s2.in}
"""
    plan = _plan(text)
    assert plan.node("q").feeds_sinks == ["s1", "s2"]
    assert plan.node("q").params["sinks"] == ["s1", "s2"]
    assert plan.start_order.index("s1") < plan.start_order.index("r") < plan.start_order.index("q") \
        < plan.start_order.index("src")


def test_plan_round_trips_through_json(tmp_path):
    plan = _plan(FOUR)
    path = plan.write(tmp_path / "x.plan.json")
    again = Plan.read(path)
    assert again.to_dict() == plan.to_dict()
    assert again.container("a").full_name == "/lobby/_containers/a"
    assert again.node("src").full_name == "/lobby/src"


def test_plan_read_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PlanError, match="not valid JSON"):
        Plan.read(bad)
    bad.write_text('{"schnitzel_plan": 99}')
    with pytest.raises(PlanError, match="format 99"):
        Plan.read(bad)
    with pytest.raises(PlanError, match="cannot read plan"):
        Plan.read(tmp_path / "missing.json")


def test_input_overflow_policy_reaches_ports_json_and_the_adapter_parses_it():
    plan = _plan(ONE.replace("{id: snk, plugin: t_sink,", "{id: snk, plugin: t_sink, "
                             "inputs: {in: {overflow: error, max_queued: 5}},"))
    assert plan.node("snk").ports["inputs"] == {"in": {"overflow": "error", "max_queued": 5}}
    assert "inputs" not in plan.node("map").ports
    rt = pytest.importorskip("schnitzel_nodes.ros.adapter")
    from schnitzel_nodes.mailbox import InputPolicy
    spec = REG.get("t_sink").spec
    assert rt.parse_input_policies(spec, plan.node("snk").ports) == {"in": InputPolicy("error", 5)}


def test_an_output_feeding_a_durable_queue_gets_an_outbox():
    text = """
schnitzel: 1
name: egress
nodes:
  - {id: src, plugin: t_src}
  - {id: q, plugin: t_queue}
  - {id: s1, plugin: t_sink, params: {path: a}}
edges:
  - {from: src.out, to: q.in, outbox: durable, outbox_max: 500}
  - {from: q.out, to: s1.in}
"""
    plan = _plan(text)
    assert plan.node("src").ports["out"]["out"]["outbox"] == {"mode": "durable", "max": 500, "queues": 1}
    assert "outbox" not in plan.node("q").ports["out"]["out"]   # the queue's own output: leases, no outbox
    plain = _plan(text.replace(", outbox: durable, outbox_max: 500", ""))
    assert plain.node("src").ports["out"]["out"]["outbox"] == {"mode": "memory", "max": 10000, "queues": 1}
    # swapping the queue for another one leaves the sender's ports (so the sender) untouched
    swapped = _plan(text.replace("id: q,", "id: q2,").replace("to: q.in", "to: q2.in").replace("from: q.out", "from: q2.out"))
    assert swapped.node("src").ports == plan.node("src").ports
