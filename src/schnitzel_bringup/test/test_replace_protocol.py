"""The hot-replacement protocol against a fake container (no DDS).

The fake container runs real NodeLogic objects with lifecycle states and does what
docs/hot-replacement.md asks of the adapter (watermarks, handover save/restore, held
inputs), using the helpers in schnitzel_core.blackboard. Every transport call first
pushes a few packets through the container, so traffic flows during every step of
the protocol, as it does on a robot.
"""
import json

from schnitzel_core.blackboard import InputHold, MemoryBackend, Watermarks, restore_handover, save_handover
from schnitzel_core.graph_loader import load_graph
from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, In, NodeContext, NodeLogic, Out, Param, PluginSpec
from schnitzel_core.registry import Registry

from schnitzel_bringup.replace import (NodeLoad, NodeRef, ReplaceProtocol, ReplaceTransport, StepFailed,
                                       merge_params, temp_name, validate_replacement)


# ---------------------------------------------------------------- plugins
class Label(NodeLogic):
    """Policy v1: tags every packet with its version."""
    spec = PluginSpec(name="label", category=Category.POLICY, version="1.0.0", ports=(In("in"), Out("out")),
                      params=(Param("tag", "str", "v1", live=True), Param("mode", "str", "a")))

    def on_packet(self, port, packet):
        self.emit("out", packet.derive(kind="event", payload=json.dumps(
            {"seq": packet.seq, "tag": self.params["tag"]}).encode()))


class Label2(Label):
    spec = PluginSpec(name="label2", category=Category.POLICY, version="2.0.0", ports=(In("in"), Out("out")),
                      params=(Param("tag", "str", "v2"),))


class BadConfigure(Label):
    spec = PluginSpec(name="bad_configure", category=Category.POLICY, version="1.0.0",
                      ports=(In("in"), Out("out")))

    def configure(self):
        raise FileNotFoundError("model file /models/zones.onnx is missing")


class BadActivate(Label):
    spec = PluginSpec(name="bad_activate", category=Category.POLICY, version="1.0.0",
                      ports=(In("in"), Out("out")))

    def activate(self):
        raise RuntimeError("camera calibration refused")


class Dedup(NodeLogic):
    """Stateful: emits a label the first time it is seen, suppresses it afterwards."""
    spec = PluginSpec(name="dedup", category=Category.STATE, version="1.0.0", stateful=True,
                      ports=(In("in"), Out("out")))

    def configure(self):
        self.seen = set()

    def on_packet(self, port, packet):
        label = packet.json()["label"]
        if label not in self.seen:
            self.seen.add(label)
            self.emit("out", packet.derive(kind="event"))

    def get_state(self):
        return {"seen": sorted(self.seen)}

    def set_state(self, state):
        self.seen = set(state["seen"])


class Dedup2(Dedup):
    spec = PluginSpec(name="dedup2", category=Category.STATE, version="2.0.0", stateful=True,
                      ports=(In("in"), Out("out")))


class BadActivateDedup(Dedup):
    spec = PluginSpec(name="bad_activate_dedup", category=Category.STATE, version="1.0.0", stateful=True,
                      ports=(In("in"), Out("out")))

    def activate(self):
        raise RuntimeError("state schema v3 not understood")


PLUGINS = {c.spec.name: c for c in (Label, Label2, BadConfigure, BadActivate, Dedup, Dedup2, BadActivateDedup)}


# ---------------------------------------------------------------- fake container
class FakeNode:
    def __init__(self, cls, name, params, options, container):
        self.cls, self.name, self.params, self.options = cls, name, dict(params), dict(options)
        self.container = container
        self.state = "unconfigured"
        self.logic = None
        self.watermarks = Watermarks()
        self.hold = InputHold() if options.get("handover") == "1" else None
        self.node_id = options.get("node_id", name.rsplit("/", 1)[-1])

    def transition(self, t):
        allowed = {"configure": "unconfigured", "activate": "inactive", "deactivate": "active",
                   "cleanup": "inactive"}
        if self.state != allowed[t]:
            raise StepFailed(f"cannot {t} from {self.state}")
        c = self.container
        if t == "configure":
            ctx = NodeContext(self.node_id, {**self.cls.spec.defaults(), **self.params}, graph="g",
                              emit=lambda port, p: c.out.append((self.name, p)), blackboard=c.board)
            logic = self.cls(ctx)
            try:
                logic.configure()
            except Exception as exc:  # the adapter turns it into a failed transition
                raise StepFailed(f"configure failed: {type(exc).__name__}: {exc}") from None
            self.logic, self.state = logic, "inactive"
        elif t == "activate":
            record = None
            if self.hold is not None:
                record = restore_handover(c.board, "g", self.node_id, self.logic)
            try:
                self.logic.activate()
            except Exception as exc:
                if self.hold is not None:
                    self.hold.release()  # held inputs die with the failed node
                raise StepFailed(f"activate failed: {type(exc).__name__}: {exc}") from None
            self.state = "active"
            if self.hold is not None:
                for port, p in self.hold.release(record):
                    self.process(port, p)
                self.hold = None
        elif t == "deactivate":
            self.logic.deactivate()
            self.state = "inactive"
            if self.cls.spec.stateful:
                save_handover(c.board, "g", self.node_id, self.logic, self.watermarks.as_dict())
        elif t == "cleanup":
            self.logic.cleanup()
            self.state = "unconfigured"

    def process(self, port, packet):
        self.container.processed.append((self.name, packet.seq))
        self.logic.on_packet(port, packet)
        self.watermarks.note(packet)

    def deliver(self, port, packet):
        if self.state == "active":
            self.process(port, packet)
        elif self.state == "inactive" and self.hold is not None:
            self.hold.hold(port, packet)
        else:
            self.container.dropped.append((self.name, packet.seq))


class FakeContainer(ReplaceTransport):
    """One container, one input stream fed to every node (they all subscribe to /g/src/out)."""

    def __init__(self, labels=None, per_call=3, fail=None):
        self.nodes = {}
        self.ids = {}
        self.next_id = 1
        self.board = MemoryBackend()
        self.out = []              # (emitting node full name, packet)
        self.dropped = []
        self.processed = []        # (node full name, seq) each time a logic processed a packet
        self.seq = 0
        self.labels = labels
        self.per_call = per_call
        self.calls = []
        self.fail = fail or {}     # (method, target) -> reason
        self.param_sets = []
        self.starting = False     # no traffic while the graph is first brought up

    # traffic
    def pump(self, n=None):
        for _ in range(self.per_call if n is None else n):
            self.seq += 1
            value = {"label": self.labels[(self.seq - 1) % len(self.labels)]} if self.labels else {"x": self.seq}
            p = Packet.from_json("cam", self.seq, "telemetry", value)
            for node in list(self.nodes.values()):
                node.deliver("in", p)

    def _call(self, what, target):
        self.calls.append((what, target))
        if not self.starting:
            self.pump()
        if (what, target) in self.fail:
            raise StepFailed(self.fail[(what, target)])

    def start(self, plugin, name, params=None):
        self.starting = True
        full, uid = self.load_node("main", plugin, name, "/g", json.dumps(params or {}), {}, {}, 1)
        self.change_state(full, "configure", 1)
        self.change_state(full, "activate", 1)
        self.calls.clear()
        self.starting = False
        return NodeRef(name, "main", name, "/g", uid, plugin, dict(params or {}),
                       stateful=PLUGINS[plugin].spec.stateful)

    # transport
    def load_node(self, container, plugin, node_name, namespace, parameters_json, options, remappings, timeout_s):
        full = f"{namespace}/{node_name}"
        self._call("load_node", full)
        if plugin not in PLUGINS:
            raise StepFailed(f"no plugin named {plugin!r}")
        if full in self.nodes:
            raise StepFailed(f"a node named {full} is already loaded")
        self.nodes[full] = FakeNode(PLUGINS[plugin], full, json.loads(parameters_json), options, self)
        self.ids[full] = self.next_id
        self.next_id += 1
        return full, self.ids[full]

    def unload_node(self, container, unique_id, node_name, timeout_s):
        full = next((f for f, i in self.ids.items() if i == unique_id), f"/g/{node_name}")
        self._call("unload_node", full)
        if full not in self.nodes:
            raise StepFailed(f"no node {full}")
        del self.nodes[full]
        del self.ids[full]

    def list_nodes(self, container, timeout_s):
        self._call("list_nodes", container)
        return sorted(self.nodes)

    def change_state(self, full, transition, timeout_s):
        self._call(transition, full)
        self.nodes[full].transition(transition)

    def set_parameters(self, full, params, timeout_s):
        self._call("set_parameters", full)
        node = self.nodes[full]
        for k, v in params.items():
            p = node.cls.spec.param(k)
            if p is None or not p.live:
                raise StepFailed(f"parameter {k!r} is not live")
            if not isinstance(v, str):
                raise StepFailed(f"parameter {k!r} must be of type str, got {v!r}")
        node.logic.on_params(params)
        self.param_sets.append((full, dict(params)))

    def sleep(self, seconds):
        self.calls.append(("sleep", seconds))
        self.pump()

    # checks
    def seqs_out(self):
        return [p.seq for _, p in self.out]

    def states(self):
        return {f: n.state for f, n in sorted(self.nodes.items())}


def _proto(c):
    return ReplaceProtocol(c, timeout_s=1, overlap_s=0.3, drain_s=0.5)


def _load(plugin, params=None):
    return NodeLoad(plugin, dict(params or {}), {"ports_json": "{}"}, "main",
                    stateful=PLUGINS[plugin].spec.stateful,
                    live_params=tuple(p.name for p in PLUGINS[plugin].spec.params if p.live))


# ---------------------------------------------------------------- stateless replacement
def test_success_runs_the_steps_in_order_and_misses_no_packet():
    c = FakeContainer()
    old = c.start("label", "rule")
    c.pump(5)
    res = _proto(c).replace(old, _load("label2"))
    c.pump(5)
    assert res.success, res.message
    assert [s.name for s in res.steps] == ["list_nodes", "load", "configure", "wait_inputs", "activate",
                                           "overlap", "deactivate", "drain", "cleanup", "unload"]
    assert [s.target for s in res.steps][1:4] == ["/g/rule__r1"] * 3
    assert res.steps[6].target == "/g/rule"
    assert c.states() == {"/g/rule__r1": "active"}           # only the new node is left
    assert res.serving.full_name == "/g/rule__r1" and res.serving.plugin == "label2"
    # no sequence number missing; duplicates only during the overlap, with the same key
    seqs = c.seqs_out()
    assert sorted(set(seqs)) == list(range(1, c.seq + 1))
    keys = {}
    for _, p in c.out:
        keys.setdefault(p.seq, set()).add(p.idempotency_key)
    assert all(len(k) == 1 for k in keys.values())
    dups = [s for s in set(seqs) if seqs.count(s) > 1]
    assert dups, "the overlap should have been exercised"
    # the new behaviour shows once the new node is active, the old one stops after deactivate
    by_new = [json.loads(p.payload)["tag"] for n, p in c.out if n == "/g/rule__r1"]
    assert by_new and set(by_new) == {"v2"}
    last_old = max(p.seq for n, p in c.out if n == "/g/rule")
    assert all(p.seq <= last_old for n, p in c.out if n == "/g/rule")
    assert max(seqs) > last_old


def test_step_lines_carry_utc_timestamps_in_order():
    c = FakeContainer()
    t = iter(range(1_700_000_000_000_000_000, 1_800_000_000_000_000_000, 1_000_000))
    res = ReplaceProtocol(c, timeout_s=1, clock_ns=lambda: next(t)).replace(c.start("label", "rule"),
                                                                             _load("label2"))
    lines = res.step_lines()
    assert lines[1].startswith("2023-11-14T22:13:20.001Z load /g/rule__r1: ok (")
    assert lines[1].endswith("plugin label2 in container main")
    stamps = [line.split(" ")[0] for line in lines]
    assert stamps == sorted(stamps)


def test_a_second_replacement_takes_the_next_temporary_name():
    c = FakeContainer()
    res1 = _proto(c).replace(c.start("label", "rule"), _load("label2"))
    res2 = _proto(c).replace(res1.serving, _load("label"))
    assert res2.success and res2.serving.full_name == "/g/rule__r2"
    assert list(c.nodes) == ["/g/rule__r2"]
    assert temp_name("rule", ["/g/rule", "/g/rule__r7", "/g/other__r9"]) == "rule__r8"


# ---------------------------------------------------------------- rollback
def test_rollback_when_configure_raises_keeps_the_old_node_serving():
    c = FakeContainer()
    old = c.start("label", "rule")
    res = _proto(c).replace(old, _load("bad_configure"))
    c.pump(5)
    assert not res.success and res.rolled_back
    assert "failed to configure" in res.message and "model file /models/zones.onnx is missing" in res.message
    assert "/g/rule keeps serving" in res.message
    assert [s.name for s in res.steps] == ["list_nodes", "load", "configure", "rollback_unload"]
    assert [s.ok for s in res.steps] == [True, True, False, True]
    assert c.states() == {"/g/rule": "active"}
    assert res.serving is old
    assert c.seqs_out() == list(range(1, c.seq + 1))          # nothing lost, nothing doubled


def test_rollback_when_activate_fails():
    c = FakeContainer()
    old = c.start("label", "rule")
    res = _proto(c).replace(old, _load("bad_activate"))
    assert not res.success and res.rolled_back
    assert "failed to activate: activate failed: RuntimeError: camera calibration refused" in res.message
    assert [s.name for s in res.steps][-2:] == ["activate", "rollback_unload"]
    assert c.states() == {"/g/rule": "active"}
    assert c.seqs_out() == list(range(1, c.seq + 1))


def test_a_plugin_that_cannot_load_changes_nothing():
    c = FakeContainer()
    old = c.start("label", "rule")
    res = _proto(c).replace(old, _load("label2").__class__("zones_v9", {}, {}, "main"))
    assert not res.success and "cannot load zones_v9: no plugin named 'zones_v9'" in res.message
    assert c.states() == {"/g/rule": "active"}


def test_old_node_that_will_not_unload_is_reported_but_the_new_one_serves():
    c = FakeContainer(fail={("unload_node", "/g/rule"): "container busy"})
    res = _proto(c).replace(c.start("label", "rule"), _load("label2"))
    assert not res.success and not res.rolled_back
    assert "/g/rule__r1 (label2) now serves rule" in res.message and "container busy" in res.message
    assert c.states() == {"/g/rule": "unconfigured", "/g/rule__r1": "active"}


# ---------------------------------------------------------------- stateful hand-over
def test_stateful_node_hands_its_state_over_and_no_suppressed_event_reappears():
    c = FakeContainer(labels=["a", "b", "c", "a", "b", "d"], per_call=2)
    old = c.start("dedup", "dedup")
    c.pump(4)                                   # a, b, c seen by the old node
    res = _proto(c).replace(old, _load("dedup2"))
    c.labels = ["a", "b", "c", "d", "e"]        # only "e" is new after the replacement
    c.pump(10)
    assert res.success, res.message
    assert [s.name for s in res.steps] == ["list_nodes", "load", "configure", "wait_inputs", "deactivate",
                                           "activate", "drain", "cleanup", "unload"]
    labels = [p.json()["label"] for _, p in c.out]
    assert sorted(labels) == ["a", "b", "c", "d", "e"]     # each once: the new node knew what the old saw
    # held inputs covered the hand-over gap: every packet processed by exactly one of the two
    assert sorted(seq for _, seq in c.processed) == list(range(1, c.seq + 1))
    assert any(n == "/g/dedup" for n, _ in c.processed) and any(n == "/g/dedup__r1" for n, _ in c.processed)
    assert {n for n, p in c.out if p.json()["label"] == "e"} == {"/g/dedup__r1"}
    record = c.board.get("handover/g", "dedup")
    assert record["plugin"] == "dedup" and record["watermarks"]["cam"][1] > 0


def test_stateful_rollback_reactivates_the_old_node_with_its_state():
    c = FakeContainer(labels=["a", "b", "a", "c"], per_call=1)
    old = c.start("dedup", "dedup")
    res = _proto(c).replace(old, _load("bad_activate_dedup"))
    c.pump(8)
    assert not res.success and res.rolled_back and "state schema v3 not understood" in res.message
    assert [s.name for s in res.steps][-3:] == ["activate", "rollback_unload", "rollback_activate"]
    assert c.states() == {"/g/dedup": "active"}
    assert sorted(p.json()["label"] for _, p in c.out) == ["a", "b", "c"]


# ---------------------------------------------------------------- live parameters
def test_live_param_change_is_applied_in_place_without_replacement():
    c = FakeContainer()
    old = c.start("label", "rule", {"tag": "v1"})
    res = _proto(c).update(old, _load("label", {"tag": "night"}))
    c.pump(2)
    assert res.success and res.mode == "live_params"
    assert [s.name for s in res.steps] == ["set_parameters"]
    assert c.param_sets == [("/g/rule", {"tag": "night"})]
    assert list(c.nodes) == ["/g/rule"]                      # same node, no replacement
    assert json.loads(c.out[-1][1].payload)["tag"] == "night"


def test_non_live_param_change_goes_through_replacement():
    c = FakeContainer()
    old = c.start("label", "rule", {"tag": "v1"})
    res = _proto(c).update(old, _load("label", {"tag": "v1", "mode": "b"}))
    assert res.success and res.mode == "replace" and list(c.nodes) == ["/g/rule__r1"]


def test_refused_live_param_reports_the_reason_and_changes_nothing():
    c = FakeContainer()
    old = c.start("label", "rule", {"tag": "v1"})
    res = _proto(c).set_live_params(old, {"tag": 5})
    assert not res.success and "must be of type str" in res.message and "nothing was changed" in res.message
    assert c.param_sets == [] and list(c.nodes) == ["/g/rule"]


def test_same_plugin_and_params_is_a_noop():
    c = FakeContainer()
    old = c.start("label", "rule", {"tag": "v1"})
    res = _proto(c).update(old, _load("label", {"tag": "v1"}))
    assert res.success and res.mode == "noop" and c.calls == []


# ---------------------------------------------------------------- request helpers
def test_merge_params_same_plugin_merges_other_plugin_replaces():
    assert merge_params({"a": 1, "b": 2}, {"b": 3}, plugin_changed=False) == {"a": 1, "b": 3}
    assert merge_params({"a": 1}, None, plugin_changed=False) == {"a": 1}
    assert merge_params({"a": 1}, {"z": 0}, plugin_changed=True) == {"z": 0}


def test_validate_replacement_uses_the_validator_on_the_changed_graph():
    reg = Registry.from_classes([Label, Label2])
    g = load_graph("""
schnitzel: 1
name: g
nodes:
  - {id: rule, plugin: label}
edges: []
""", file="g.yaml")
    new_graph, errors = validate_replacement(g, "rule", "label2", {"tag": "v2"}, reg)
    assert errors == [] and new_graph.node("rule").plugin == "label2" and g.node("rule").plugin == "label"
    _, errors = validate_replacement(g, "rule", "label2", {"colour": "red"}, reg)
    assert errors and "colour" in errors[0]
    _, errors = validate_replacement(g, "nope", "label2", {}, reg)
    assert errors == ["graph 'g' has no node 'nope' (nodes: rule)"]


# ---------------------------------------------------------------- applying a graph difference
def test_apply_adds_a_sink_before_removing_the_other_and_the_rest_keeps_running():
    from schnitzel_core.graph_diff import diff_graphs, plan_application
    from schnitzel_bringup.replace import apply_actions

    reg = Registry.from_classes([Label, Label2])
    old_g = load_graph("""
schnitzel: 1
name: g
nodes:
  - {id: rule, plugin: label}
  - {id: sink_a, plugin: label2}
edges:
  - {from: rule.out, to: sink_a.in}
""", file="old.yaml")
    new_g = load_graph("""
schnitzel: 1
name: g
nodes:
  - {id: rule, plugin: label, params: {tag: night}}
  - {id: sink_b, plugin: label2}
edges:
  - {from: rule.out, to: sink_b.in}
""", file="new.yaml")
    actions = plan_application(diff_graphs(old_g, new_g, reg), reg)
    assert [(a.action, a.target) for a in actions] == [("load", "sink_b"), ("set_params", "rule"),
                                                       ("unload", "sink_a")]
    c = FakeContainer()
    running = {"rule": c.start("label", "rule"), "sink_a": c.start("label2", "sink_a")}
    res = apply_actions(_proto(c), actions, running, {"sink_b": _load("label2")}, "/g")
    c.pump(3)
    assert res.success, res.message
    assert [s.name for s in res.steps] == ["load", "configure", "activate", "set_parameters",
                                           "deactivate", "drain", "cleanup", "unload"]
    assert c.states() == {"/g/rule": "active", "/g/sink_b": "active"}
    assert res.removed == ["sink_a"] and sorted(res.serving) == ["rule", "sink_b"]
    # the node that stays saw every packet throughout: its rate never dropped
    assert [seq for n, seq in c.processed if n == "/g/rule"] == list(range(1, c.seq + 1))
    # the new sink was active before the old one went away: no packet without a sink
    sinks = {seq for n, seq in c.processed if n in ("/g/sink_a", "/g/sink_b")}
    assert sinks == set(range(1, c.seq + 1))


def test_apply_stops_at_the_first_failure_and_says_what_was_done():
    from schnitzel_core.graph_diff import Action
    from schnitzel_bringup.replace import apply_actions

    c = FakeContainer()
    running = {"rule": c.start("label", "rule")}
    actions = [Action("load", "extra", "main", "added"), Action("replace", "rule", "main", "plugin changed"),
               Action("unload", "rule", "main", "removed")]
    res = apply_actions(_proto(c), actions, running,
                        {"extra": _load("label2"), "rule": _load("bad_configure")}, "/g")
    assert not res.success
    assert "failed to configure" in res.message and "already applied: load node extra" in res.message
    assert c.states() == {"/g/extra": "active", "/g/rule": "active"}
