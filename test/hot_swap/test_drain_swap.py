"""Hot replacement of a flooded slow node loses nothing (issue 20, defect 8).

The replacement protocol (schnitzel_bringup.replace.ReplaceProtocol, stateless: new beside
old, overlap, deactivate old, drain, cleanup, unload) runs against real node adapters in one
process (in-process edges), through a small transport. The old node has a backlog in its
mailbox when it is deactivated: it must process what it had accepted before it stops.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any, Dict, List

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.lifecycle import TransitionCallbackReturn as T  # noqa: E402
from schnitzel_core.packet import Packet  # noqa: E402
from schnitzel_core.plugin import Category, In, NodeLogic, Out, PluginSpec  # noqa: E402
from schnitzel_core.testing import wait_for  # noqa: E402
from schnitzel_nodes.ros.adapter import NodeAdapter  # noqa: E402
from schnitzel_nodes.ros.inproc import InprocBus  # noqa: E402

from schnitzel_bringup.replace import (NodeLoad, NodeRef, ReplaceProtocol, ReplaceTransport,  # noqa: E402
                                       StepFailed)

N_BURST = 500     # queued behind the slow node at once
N_AFTER = 300     # sent while the replacement runs


class SlowRelay(NodeLogic):
    spec = PluginSpec(name="t_slowrelay", category=Category.TRANSFORM, version="1.0.0",
                      ports=(In("in"), Out("out")))

    def configure(self) -> None:
        self.busy = threading.Event()

    def on_packet(self, port: str, packet: Packet) -> None:
        if packet.seq == 0:
            self.busy.set()
        time.sleep(0.3 if packet.seq == 0 else 0.002)   # packet 0 holds its thread: a backlog builds
        self.ctx.emit("out", packet)


class Collect(NodeLogic):
    spec = PluginSpec(name="t_collect", category=Category.SINK, version="1.0.0", ports=(In("in"),))

    def configure(self) -> None:
        self.got: List[int] = []

    def on_packet(self, port: str, packet: Packet) -> None:
        self.got.append(packet.seq)


class InProcessTransport(ReplaceTransport):
    """Loads adapters into this process (what a container does on LoadNode)."""

    def __init__(self, graph: str, context: Any, executor: Any, bus: InprocBus) -> None:
        self.graph, self.context, self.executor, self.bus = graph, context, executor, bus
        self.classes = {c.spec.name: c for c in (SlowRelay, Collect)}
        self.nodes: Dict[str, NodeAdapter] = {}

    def load_node(self, container, plugin, node_name, namespace, parameters_json, options, remappings,
                  timeout_s):
        a = NodeAdapter(self.classes[plugin], node_name, namespace, json.loads(parameters_json or "{}"),
                        graph=self.graph, context=self.context, bus=self.bus,
                        ports=json.loads(options["ports_json"]), node_id=options.get("node_id", ""),
                        handover=options.get("handover") == "1")
        self.executor.add_node(a)
        full = f"{namespace.rstrip('/')}/{node_name}"
        self.nodes[full] = a
        return full, len(self.nodes)

    def unload_node(self, container, unique_id, node_name, timeout_s):
        full = f"/{self.graph}/{node_name}"
        a = self.nodes.pop(full)
        a.trigger_shutdown()
        self.executor.remove_node(a)
        a.destroy_node()

    def list_nodes(self, container, timeout_s):
        return list(self.nodes)

    def change_state(self, full_node_name, transition, timeout_s):
        a = self.nodes[full_node_name]
        if getattr(a, f"trigger_{transition}")() != T.SUCCESS:
            raise StepFailed(f"{transition} failed: {a.stats.last_error}")

    def set_parameters(self, full_node_name, params, timeout_s):
        raise StepFailed("not used here")


@pytest.fixture
def world():
    from rclpy.executors import SingleThreadedExecutor

    graph = f"ds_{uuid.uuid4().hex[:8]}"
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ex.spin_once(timeout_sec=0.05)
    t = threading.Thread(target=spin, daemon=True)
    t.start()
    tr = InProcessTransport(graph, ctx, ex, InprocBus())
    yield tr
    stop.set()
    t.join(2)
    for full in list(tr.nodes):
        tr.unload_node("main", 0, full.rsplit("/", 1)[1], 5)
    rclpy.shutdown(context=ctx)


def test_flooded_slow_node_replaced_by_the_protocol_loses_nothing(world):
    g = world.graph
    t_in, t_out = f"/{g}/src/out", f"/{g}/slow/out"
    slow_ports = json.dumps({"in": {"in": [{"topic": t_in, "transport": "inproc"}]},
                             "out": {"out": {"topic": t_out, "transports": ["inproc"]}}})
    sink_ports = json.dumps({"in": {"in": [{"topic": t_out, "transport": "inproc"}]}, "out": {}})
    world.load_node("main", "t_collect", "sink", f"/{g}", "{}", {"ports_json": sink_ports}, {}, 5)
    world.load_node("main", "t_slowrelay", "slow", f"/{g}", "{}", {"ports_json": slow_ports}, {}, 5)
    for full in (f"/{g}/sink", f"/{g}/slow"):
        world.change_state(full, "configure", 5)
        world.change_state(full, "activate", 5)
    sink, old = world.nodes[f"/{g}/sink"], world.nodes[f"/{g}/slow"]

    # a thread busy in the slow node, then a burst that can only queue behind it
    drainer = threading.Thread(target=world.bus.publish, args=(t_in, Packet(stream_id="s", seq=0, kind="x")))
    drainer.start()
    assert old.logic.busy.wait(5)
    for i in range(1, N_BURST):
        world.bus.publish(t_in, Packet(stream_id="s", seq=i, kind="x"))

    def more():
        for i in range(N_BURST, N_BURST + N_AFTER):
            world.bus.publish(t_in, Packet(stream_id="s", seq=i, kind="x"))
            time.sleep(0.001)
    sender = threading.Thread(target=more)
    sender.start()

    proto = ReplaceProtocol(world, timeout_s=10, overlap_s=0.1, drain_s=0.1)
    old_ref = NodeRef("slow", "main", "slow", f"/{g}", 2, "t_slowrelay", {},
                      {"ports_json": slow_ports, "graph": g, "container": "main"})
    new = NodeLoad("t_slowrelay", {}, {"ports_json": slow_ports, "graph": g, "container": "main"})
    res = proto.replace(old_ref, new)
    assert res.success, "\n".join(res.step_lines()) + "\n" + res.message
    sender.join(30)
    drainer.join(30)
    total = N_BURST + N_AFTER
    assert wait_for(lambda: set(sink.logic.got) >= set(range(total)), 15), \
        f"lost: {sorted(set(range(total)) - set(sink.logic.got))[:20]}"
    assert f"/{g}/slow" not in world.nodes and f"/{g}/slow__r1" in world.nodes
