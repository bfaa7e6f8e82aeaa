"""How the lifecycle manager follows hot replacements (no DDS, no processes).

- `HotSwap` with a fake transport: an apply that stops half way reports a plan of what runs;
  `hold()` keeps requests out while the manager re-loads nodes; `reloaded()` resets a node's ref.
- `LifecycleManager._on_hotswap` / `_on_status` on a manager built without rclpy: tracks follow
  the new plan, counters add up across incarnations, the replacement's heartbeats under the graph
  id are not mistaken for the serving node's.
"""
from __future__ import annotations

import types

from schnitzel_core.graph_loader import load_graph
from schnitzel_core.plugin import Category, In, Out, Param, PluginSpec
from schnitzel_core.registry import Registry
from schnitzel_nodes.base import PolicyLogic, SinkLogic, SourceLogic

from schnitzel_bringup.compiler import compile_graph
from schnitzel_bringup.manager import LifecycleManager, MState
from schnitzel_bringup.replace import HotSwap, NodeRef, ReplaceTransport, StepFailed


class Src(SourceLogic):
    spec = PluginSpec(name="u_src", category=Category.SOURCE, version="1.0.0", ports=(Out("out"),))


class Pol(PolicyLogic):
    spec = PluginSpec(name="u_pol", category=Category.POLICY, version="1.0.0", ports=(In("in"), Out("out")),
                      params=(Param("tag", "str", "v1"),))


class Snk(SinkLogic):
    spec = PluginSpec(name="u_sink", category=Category.SINK, version="1.0.0", ports=(In("in"),))


class BadSnk(Snk):
    spec = PluginSpec(name="u_bad_sink", category=Category.SINK, version="1.0.0", ports=(In("in"),))


REG = Registry.from_classes([Src, Pol, Snk, BadSnk])

V1 = """
schnitzel: 1
name: g
nodes:
  - {id: src, plugin: u_src}
  - {id: pol, plugin: u_pol}
  - {id: a, plugin: u_sink}
edges:
  - {from: src.out, to: pol.in}
  - {from: pol.out, to: a.in}
"""
# adds b (loads fine), adds c (configure fails), removes a: stops after b was loaded
V2 = """
schnitzel: 1
name: g
nodes:
  - {id: src, plugin: u_src}
  - {id: pol, plugin: u_pol}
  - {id: b, plugin: u_sink}
  - {id: c, plugin: u_bad_sink}
edges:
  - {from: src.out, to: pol.in}
  - {from: pol.out, to: b.in}
  - {from: pol.out, to: c.in}
"""


class Fake(ReplaceTransport):
    def __init__(self, names):
        self.nodes = {f"/g/{n}": ("", i + 1) for i, n in enumerate(names)}
        self.next = len(names) + 1

    def load_node(self, container, plugin, node_name, namespace, parameters_json, options, remappings, timeout_s):
        full = f"{namespace}/{node_name}"
        self.nodes[full] = (plugin, self.next)
        self.next += 1
        return full, self.nodes[full][1]

    def unload_node(self, container, unique_id, node_name, timeout_s):
        self.nodes.pop(f"/g/{node_name}", None)

    def list_nodes(self, container, timeout_s):
        return sorted(self.nodes)

    def change_state(self, full, transition, timeout_s):
        if transition == "configure" and self.nodes[full][0] == "u_bad_sink":
            raise StepFailed("configure refused by the node: ConfigError: broken")

    def sleep(self, seconds):
        pass


def _hotswap(events):
    g = load_graph(V1, file="v1.yaml")
    plan = compile_graph(g, REG)
    return HotSwap(plan, g, REG, Fake([n.id for n in plan.nodes]), on_change=events.append,
                   overlap_s=0, drain_s=0)


def test_an_apply_that_stops_half_way_reports_the_graph_that_runs():
    events = []
    hs = _hotswap(events)
    ok, message, changes, steps = hs.apply_graph(V2, "v2.yaml")
    assert not ok and "already applied: load node b" in message, message
    [ev] = events
    assert ev["added"] == ["b"] and ev["removed"] == []
    ids = sorted(n.id for n in ev["plan"].nodes)
    assert ids == ["a", "b", "pol", "src"]          # c never loaded, a never removed
    assert sorted(n.id for n in hs.graph.nodes) == ids
    assert {(e.src, e.dst) for e in ev["plan"].edges} == {("src.out", "pol.in"), ("pol.out", "a.in"),
                                                          ("pol.out", "b.in")}
    # the next apply is computed against what runs: b is not added a second time
    ok, message, changes, _ = hs.apply_graph(V2.replace("u_bad_sink", "u_sink"), "v3.yaml")
    assert ok, message
    assert not any(c.startswith("add node b") for c in changes), changes
    assert any(c.startswith("add node c") for c in changes) and "remove node a" in changes


def test_hold_refuses_requests_with_the_reason_and_reloaded_resets_the_ref():
    events = []
    hs = _hotswap(events)
    assert hs.hold("re-loading pol")
    res = hs.replace_node("pol", "", '{"tag": "v2"}')
    assert not res.success and "busy (re-loading pol)" in res.message
    assert not hs.hold("again")
    hs.release()
    res = hs.replace_node("pol", "", '{"tag": "v2"}')
    assert res.success, res.message
    assert hs.refs["pol"].node_name == "pol__r1"
    hs.reloaded("pol", events[-1]["plan"].node("pol"))
    ref = hs.refs["pol"]
    assert ref.node_name == "pol" and ref.unique_id == 0 and "node_id" not in ref.options
    assert ref.params["tag"] == "v2"


# ---------------------------------------------------------------- the manager's side
def _manager(plan, busy=False):
    """A running manager's bookkeeping, without rclpy: every node active, containers up."""
    m = LifecycleManager.__new__(LifecycleManager)
    m._init_state(plan, log=lambda _s: None)
    m.state, m.started_at, m.ever_active = MState.ACTIVE, 0.0, True
    for t in m.tracks.values():
        t.loaded, t.state = True, "active"
    m.container_state = {c.id: "up" for c in plan.containers}
    m._container_prefix = {c.id: f"/g/_containers/{c.id}" for c in plan.containers}
    m.hotswap = types.SimpleNamespace(hotswap=types.SimpleNamespace(busy=busy))
    return m


def _status(node_id, n_in, n_out=None, pid=7, state="active", plugin="u_pol"):
    return types.SimpleNamespace(node_id=node_id, plugin=plugin, packets_in=n_in, packets_out=n_in if n_out is None else n_out,
                                 drops=0, errors=0, last_error="", latency_p50_ms=0.0, latency_p95_ms=0.0,
                                 latency_p99_ms=0.0, pid=pid, state=state, counters=[])


def test_heartbeats_and_counters_follow_the_node_that_serves():
    g = load_graph(V1, file="v1.yaml")
    plan = compile_graph(g, REG)
    m = _manager(plan)
    m._on_status(_status("pol", 100))
    m.hotswap.hotswap.busy = True
    # the replacement, loaded beside it, reports under the graph id (and under its own name)
    m._on_status(_status("pol", 0, state="error"))
    m._on_status(_status("pol__r1", 0, state="error"))
    m._on_status(_status("pol", 3, plugin="other"))
    assert m.tracks["pol"].state == "active" and m.tracks["pol"].total("packets_in") == 100
    m._on_status(_status("pol", 130))               # the old node's last count
    new_plan = compile_graph(load_graph(V1.replace("plugin: u_pol", "plugin: u_pol, params: {tag: v2}"),
                                        file="v1.yaml"), REG)
    m._on_hotswap({"plan": new_plan, "serving": {"pol": NodeRef("pol", "main", "pol__r1", "/g", 5, "u_pol")},
                   "added": [], "removed": []})
    m.hotswap.hotswap.busy = False
    t = m.tracks["pol"]
    assert t.ros_name == "pol__r1" and t.full_name == "/g/pol__r1" and t.node.params["tag"] == "v2"
    assert m.plan is new_plan
    m._on_status(_status("pol", 999))               # a stale copy under the graph id: ignored
    m._on_status(_status("pol__r1", 40))
    assert t.total("packets_in") == 170             # 130 by the old node + 40 by the new one
    m._on_status(_status("pol__r1", 60))
    assert t.total("packets_in") == 190


def test_added_and_removed_nodes_change_the_tracks():
    g = load_graph(V1, file="v1.yaml")
    m = _manager(compile_graph(g, REG))
    v2 = load_graph(V2.replace("u_bad_sink", "u_sink"), file="v2.yaml")
    plan2 = compile_graph(v2, REG)
    m._on_hotswap({"plan": plan2, "serving": {"b": NodeRef("b", "main", "b", "/g", 9, "u_sink"),
                                             "c": NodeRef("c", "main", "c", "/g", 10, "u_sink")},
                   "added": ["b", "c"], "removed": ["a"]})
    assert sorted(m.tracks) == ["b", "c", "pol", "src"]
    assert m.tracks["b"].state == "active" and m.tracks["b"].loaded
    snap = m.snapshot()
    assert snap["nodes_total"] == 4 and snap["nodes_active"] == 4
    assert any("hot swap: removed a" in e["event"] for e in m.events)


def test_an_idle_node_is_not_taken_for_its_failing_replacement():
    m = _manager(compile_graph(load_graph(V1, file="v1.yaml"), REG))
    m._on_status(_status("pol", 0))
    m.hotswap.hotswap.busy = True       # a replacement whose configure raises, no traffic
    m._on_status(_status("pol", 0, state="error"))
    m.hotswap.hotswap.busy = False
    assert m.tracks["pol"].state == "active"
    m._on_status(_status("pol", 0, state="error"))      # the node itself, later: that counts
    assert m.tracks["pol"].state == "error"


def _named(node_id, ros_name, n_in, **kw):
    st = _status(node_id, n_in, **kw)
    st.ros_name = ros_name
    return st


def test_heartbeats_are_told_apart_by_the_ros_name_they_come_from():
    m = _manager(compile_graph(load_graph(V1, file="v1.yaml"), REG))
    m._on_status(_named("pol", "pol", 0))
    m.hotswap.hotswap.busy = True
    # the replacement (same plugin, same pid) replays held inputs: more packets than the idle old
    # node, and then fails; the plugin/pid/counter heuristic would take both for the old node
    m._on_status(_named("pol", "pol__r1", 5))
    m._on_status(_named("pol__r1", "pol__r1", 5))      # the container's copy under the ROS name
    m._on_status(_named("pol", "pol__r1", 5, state="error"))
    m._on_status(_named("pol", "pol", 0))
    t = m.tracks["pol"]
    assert t.state == "active" and t.total("packets_in") == 0 and t.base["packets_in"] == 0
    m._on_hotswap({"plan": m.plan, "serving": {"pol": NodeRef("pol", "main", "pol__r1", "/g", 5, "u_pol")},
                   "added": [], "removed": []})
    m.hotswap.hotswap.busy = False
    m._on_status(_named("pol", "pol", 0))               # the old node's last words: ignored
    m._on_status(_named("pol", "pol__r1", 7))
    m._on_status(_named("pol__r1", "pol__r1", 7))       # counted once, not twice
    assert t.total("packets_in") == 7
    m._on_status(_named("pol", "pol__r1", 9, state="error"))
    assert t.state == "error"                           # the serving node's own error counts
