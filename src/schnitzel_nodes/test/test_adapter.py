"""NodeAdapter in this process: QoS and parameter mapping, ports_json, lifecycle edge cases,
threads, acks between a sink and its durable queue, live parameters."""
from __future__ import annotations

import json
import threading
import time
from typing import Any, List

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.lifecycle import TransitionCallbackReturn as T  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy  # noqa: E402

from schnitzel_core.packet import Packet  # noqa: E402
from schnitzel_core.plugin import Ack, Category, In, NodeLogic, Out, Param, PluginSpec  # noqa: E402
from schnitzel_nodes.base import SinkLogic, SourceLogic  # noqa: E402
from schnitzel_nodes.ros import params as P  # noqa: E402
from schnitzel_nodes.ros.adapter import LoadError, NodeAdapter, parse_ports  # noqa: E402
from schnitzel_nodes.ros.qos import QosError, to_profile  # noqa: E402

from test_container_support import Scale, unique_graph  # noqa: E402
from schnitzel_core.testing import wait_for  # noqa: E402


# ---------------------------------------------------------------- QoS and params (no DDS)
def test_qos_presets_and_resolved_mappings_map_to_rclpy_profiles():
    f = to_profile("frames")
    assert (f.reliability, f.durability, f.history, f.depth) == (
        ReliabilityPolicy.BEST_EFFORT, DurabilityPolicy.VOLATILE, HistoryPolicy.KEEP_LAST, 1)
    s = to_profile("state")
    assert (s.reliability, s.durability, s.depth) == (ReliabilityPolicy.RELIABLE, DurabilityPolicy.TRANSIENT_LOCAL, 1)
    m = to_profile({"reliability": "reliable", "durability": "volatile", "history": "keep_all", "depth": 5,
                    "deadline_ms": 250, "lifespan_ms": None})
    assert m.history == HistoryPolicy.KEEP_ALL and m.deadline.nanoseconds == 250_000_000
    assert to_profile(None).depth == 100   # the events preset
    with pytest.raises(QosError, match="reliability"):
        to_profile({"reliability": "sometimes"})
    with pytest.raises(QosError, match="unknown QoS preset"):
        to_profile("fast")


def test_param_schema_checks_say_what_is_wrong():
    spec = PluginSpec(name="p", category=Category.TRANSFORM, version="1.0.0", params=(
        Param("n", "int", 1, minimum=0, maximum=10), Param("mode", "str", "a", enum=("a", "b")),
        Param("names", "list", [], items="str"), Param("need", "float")))
    assert P.check_params(spec, {"need": 2}) == {"n": 1, "mode": "a", "names": [], "need": 2.0}
    with pytest.raises(P.ParamError) as e:
        P.check_params(spec, {"nn": 1, "mode": "c", "names": ["x", 3], "n": True})
    msg = str(e.value)
    assert "unknown parameter 'nn'" in msg and "did you mean 'n'" in msg
    assert "'mode'" in msg and "not one of" in msg
    assert "'names'[1]" in msg
    assert "'n' must be of type int" in msg          # a bool is not an int
    assert "'need' of plugin 'p' is required" in msg
    d = P.descriptor(spec.param("n"))
    assert d.integer_range[0].from_value == 0 and d.integer_range[0].to_value == 10
    lst = spec.param("names")
    assert P.from_ros(lst, P.to_ros(lst, ["a", "b"])) == ["a", "b"]
    with pytest.raises(P.ParamError, match="JSON"):
        P.from_ros(lst, "[oops")
    assert P.from_ros(lst, "[a, b]") == ["a", "b"]          # YAML flow style, as ros2 param set users type it
    assert P.from_ros(lst, ["a", "b"]) == ["a", "b"]        # a ROS string array
    anyp = Param("x", "any", None)
    assert P.from_ros(anyp, "plain text") == "plain text" and P.from_ros(anyp, "[1]") == [1]


def test_ports_json_is_checked_against_the_spec():
    outs, ins = parse_ports(Scale.spec, None, "/g/sc")
    assert outs["out"].topic == "/g/sc/out" and outs["out"].dds and not outs["out"].inproc
    assert [(e.port, e.topic) for e in ins] == [("in", "/g/sc/in")]
    outs, ins = parse_ports(Scale.spec, {"out": {"out": {"topic": "/g/sc/out", "qos": "frames",
                                                          "transports": ["inproc"]}},
                                         "in": {"in": [{"topic": "/g/a/out", "transport": "inproc"},
                                                       {"topic": "/g/b/out", "transport": "dds"}]}}, "/g/sc")
    assert outs["out"].inproc and not outs["out"].dds
    assert [(e.topic, e.transport) for e in ins] == [("/g/a/out", "inproc"), ("/g/b/out", "dds")]
    with pytest.raises(LoadError, match="has inputs"):
        parse_ports(Scale.spec, {"in": {"out": [{"topic": "/x"}]}}, "/g/sc")
    with pytest.raises(LoadError, match="transport"):
        parse_ports(Scale.spec, {"out": {"out": {"topic": "/x", "transports": ["carrier_pigeon"]}}}, "/g/sc")
    with pytest.raises(LoadError, match="qos"):
        parse_ports(Scale.spec, {"out": {"out": {"topic": "/x", "qos": {"depth": 0}}}}, "/g/sc")
    bad = PluginSpec(name="b", category=Category.SOURCE, version="1.0.0", ports=(Out("transition_event"),))
    with pytest.raises(LoadError, match="transition_event"):
        parse_ports(bad, None, "/g/b")


# ---------------------------------------------------------------- adapters on a live context
class Rig:
    def __init__(self) -> None:
        from rclpy.executors import SingleThreadedExecutor
        self.graph = unique_graph("ta")
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.nodes: List[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.02)

    def node(self, cls: type, name: str, params: Any = None, **kw: Any) -> NodeAdapter:
        a = NodeAdapter(cls, name, f"/{self.graph}", params or {}, graph=self.graph, context=self.context, **kw)
        self.nodes.append(a)
        self.executor.add_node(a)
        return a

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for a in self.nodes:
            if a.state_label() in ("active", "inactive", "unconfigured", "error"):
                a.trigger_shutdown()
            a.destroy_node()
        self.executor.shutdown()
        self.context.try_shutdown()


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


class BadConfigure(NodeLogic):
    spec = PluginSpec(name="t_badcfg", category=Category.TRANSFORM, version="1.0.0", ports=(In("in"),))

    def configure(self) -> None:
        raise FileNotFoundError("model.onnx not found")


class ThreadSource(SourceLogic):
    spec = PluginSpec(name="t_thread", category=Category.SOURCE, version="1.0.0", ports=(Out("out"),),
                      params=(Param("fail_after", "int", 0, minimum=0),))
    threaded = True

    def run(self, stop: threading.Event) -> None:
        self.ctx.node_thread = threading.current_thread()
        while not stop.wait(0.005):
            if self.params["fail_after"] and self.seq >= self.params["fail_after"]:
                raise ConnectionError("camera unplugged")
            self.emit("out", self.next_packet("telemetry"))


class Live(NodeLogic):
    spec = PluginSpec(name="t_live", category=Category.TRANSFORM, version="1.0.0", ports=(In("in"), Out("out")),
                      params=(Param("fps", "float", 5.0, minimum=0.5, maximum=60.0, live=True),))
    seen: List[Any] = []

    def on_params(self, changed: Any) -> None:
        Live.seen.append((dict(changed), threading.current_thread().name))
        super().on_params(changed)


class Queue(NodeLogic):
    spec = PluginSpec(name="t_queue", category=Category.STATE, version="1.0.0", ports=(Out("out"),),
                      durable_queue=True)
    acks: List[Ack] = []

    def on_ack(self, ack: Ack) -> None:
        Queue.acks.append(ack)


class AckSink(SinkLogic):
    spec = PluginSpec(name="t_acksink", category=Category.SINK, version="1.0.0", ports=(In("in"),))

    def write(self, packet: Packet) -> None:
        self.ctx.ack(Ack(queue_id=packet.meta["schnitzel.queue"], sink_id=self.ctx.node_id,
                         idempotency_key=packet.idempotency_key, row_id=int(packet.meta["schnitzel.row_id"])))


class WrongPort(SourceLogic):
    spec = PluginSpec(name="t_wrongport", category=Category.SOURCE, version="1.0.0", ports=(Out("out"),))

    def configure(self) -> None:
        self.tick_period_s = 0.01

    def tick(self) -> None:
        self.emit("typo", self.next_packet("telemetry"))


def test_configure_failure_keeps_node_unconfigured_with_the_reason(rig):
    a = rig.node(BadConfigure, "bad")
    assert a.trigger_configure() == T.FAILURE
    assert a.state_label() == "unconfigured"
    st = a.status_msg()
    assert st.errors == 1 and "model.onnx not found" in st.last_error


def test_threaded_source_starts_and_stops_with_lifecycle(rig):
    a = rig.node(ThreadSource, "th")
    assert a.trigger_configure() == T.SUCCESS
    assert a.trigger_activate() == T.SUCCESS
    assert wait_for(lambda: a.stats.packets_out > 5, 5)
    t = a.ctx.node_thread
    assert t.is_alive()
    assert a.trigger_deactivate() == T.SUCCESS
    assert not t.is_alive()
    n = a.stats.packets_out
    time.sleep(0.05)
    assert a.stats.packets_out == n
    assert a.trigger_activate() == T.SUCCESS   # and it starts again
    assert wait_for(lambda: a.ctx.node_thread is not t and a.ctx.node_thread.is_alive(), 5)
    assert a.trigger_shutdown() == T.SUCCESS    # from active
    assert a.state_label() == "finalized" and not a.ctx.node_thread.is_alive()


def test_a_dying_source_thread_puts_the_node_in_error(rig):
    a = rig.node(ThreadSource, "dies", {"fail_after": 3})
    assert a.trigger_configure() == T.SUCCESS and a.trigger_activate() == T.SUCCESS
    assert wait_for(lambda: a.state_label() == "error", 5)
    st = a.status_msg()
    assert st.state == "error" and "camera unplugged" in st.last_error
    assert a._state_machine.current_state[1] == "unconfigured"
    assert a.diagnostic(st).level == b"\x02"     # ERROR


def test_emitting_on_an_undeclared_port_is_counted_with_a_clear_message(rig):
    a = rig.node(WrongPort, "wp", {}, max_consecutive_errors=1000)
    assert a.trigger_configure() == T.SUCCESS and a.trigger_activate() == T.SUCCESS
    assert wait_for(lambda: a.stats.errors >= 3, 5)
    assert "no output port 'typo'" in a.stats.last_error and a.state_label() == "active"


def test_live_parameter_reaches_on_params_and_others_are_refused(rig):
    a = rig.node(Live, "live")
    Live.seen.clear()
    assert a.trigger_configure() == T.SUCCESS and a.trigger_activate() == T.SUCCESS
    res = a.set_parameters([Parameter("fps", value=12)])[0]   # an int for a float param is fine
    assert res.successful, res.reason
    assert wait_for(lambda: Live.seen, 3)
    assert Live.seen[-1][0] == {"fps": 12.0} and a.logic.params["fps"] == 12.0
    res = a.set_parameters([Parameter("fps", value=100.0)])[0]
    assert not res.successful and "fps" in res.reason
    res = a.set_parameters([Parameter(P.RESERVED_PREFIX + "max_consecutive_errors", value=0)])[0]
    assert not res.successful
    assert a.logic.params["fps"] == 12.0
    assert a.trigger_deactivate() == T.SUCCESS      # inactive: a live change still reaches the logic
    assert a.set_parameters([Parameter("fps", value=30.0)])[0].successful
    assert wait_for(lambda: a.logic.params["fps"] == 30.0, 3)


def test_sink_acks_reach_only_their_durable_queue(rig):
    Queue.acks.clear()
    q = rig.node(Queue, "q")
    other = rig.node(Queue, "q_other")
    s = rig.node(AckSink, "sink", ports={"in": {"in": [{"topic": f"/{rig.graph}/q/out", "transport": "inproc"}]}})
    for a in (q, other, s):
        assert a.trigger_configure() == T.SUCCESS and a.trigger_activate() == T.SUCCESS
    assert q.ctx.ros_node is q   # escape hatch for ros_topic_source/sink
    deadline = time.monotonic() + 10
    while not Queue.acks and time.monotonic() < deadline:   # first acks may precede discovery
        for i in range(3):
            s._deliver("in", Packet(stream_id="s", seq=i + 1, kind="event",
                                    meta={"schnitzel.queue": "q", "schnitzel.row_id": str(i + 1)}))
        time.sleep(0.2)
    assert Queue.acks, "no ack reached the queue"
    assert {a.queue_id for a in Queue.acks} == {"q"} and all(a.outcome == "delivered" for a in Queue.acks)
    assert all(a.sink_id == "sink" for a in Queue.acks)
    assert {a.row_id for a in Queue.acks} <= {1, 2, 3}


class FrameSource(SourceLogic):
    """Emits a 4x2 rgb8 frame on an Image-typed port."""

    spec = PluginSpec(name="t_frames", category=Category.SOURCE, version="1.0.0",
                      ports=(Out("image", ["video.frame"], qos="sensor", msg_type="sensor_msgs/msg/Image"),))

    def configure(self) -> None:
        self.tick_period_s = 0.02

    def tick(self) -> None:
        import numpy as np
        from schnitzel_core.codecs.image import image_packet
        self.seq += 1
        arr = np.arange(4 * 2 * 3, dtype=np.uint8).reshape(2, 4, 3)
        self.emit("image", image_packet(arr, "rgb8", "cam0", self.seq, frame_id="cam0_optical"))


class FrameSink(SinkLogic):
    spec = PluginSpec(name="t_framesink", category=Category.SINK, version="1.0.0",
                      ports=(In("image", ["video.frame"], qos="sensor", msg_type="sensor_msgs/msg/Image"),))
    got: List[Packet] = []

    def write(self, packet: Packet) -> None:
        FrameSink.got.append(packet)


def test_image_ports_publish_and_read_sensor_msgs_image(rig):
    from schnitzel_core.codecs.image import packet_image
    from sensor_msgs.msg import Image

    FrameSink.got.clear()
    topic = f"/{rig.graph}/cam/image"
    src = rig.node(FrameSource, "cam", ports={"out": {"image": {"topic": topic, "qos": "sensor", "transports": ["dds"]}}})
    sink = rig.node(FrameSink, "view", ports={"in": {"image": [{"topic": topic, "qos": "sensor", "transport": "dds"}]}})
    seen: List[Any] = []
    sink.create_subscription(Image, topic, seen.append, to_profile("sensor"))
    for a in (sink, src):
        assert a.trigger_configure() == T.SUCCESS and a.trigger_activate() == T.SUCCESS
    assert wait_for(lambda: seen and FrameSink.got, 10)
    msg = seen[0]
    assert (msg.width, msg.height, msg.encoding, msg.step) == (4, 2, "rgb8", 12)
    assert msg.header.frame_id == "cam0_optical" and bytes(msg.data) == bytes(range(24))
    p = FrameSink.got[0]
    assert p.kind == "video.frame" and p.stream_id == "cam0_optical"
    assert packet_image(p).tolist() == [[[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]],
                                        [[12, 13, 14], [15, 16, 17], [18, 19, 20], [21, 22, 23]]]


def test_an_unconnected_image_output_is_published_only_while_someone_subscribes(rig):
    from sensor_msgs.msg import Image

    topic = f"/{rig.graph}/cam2/image"
    # the compiler lists an output without edges with no transports; an inproc-only one likewise
    src = rig.node(FrameSource, "cam2", ports={"out": {"image": {"topic": topic, "qos": "sensor",
                                                                "transports": []}}})
    out = src._outs["image"]
    assert out.dds and out.lazy and out.qos == "frames"
    converted: List[Any] = []
    to_msg = out.wire.to_msg
    out.wire = out.wire._replace(to_msg=lambda p: converted.append(1) or to_msg(p))
    assert src.trigger_configure() == T.SUCCESS and src.trigger_activate() == T.SUCCESS
    assert wait_for(lambda: src.stats.packets_out >= 5, 10)
    assert converted == []                          # nobody watches: nothing converted
    viewer = rig.node(FrameSink, "viewer")          # a bare node standing in for rqt_image_view
    seen: List[Any] = []
    viewer.create_subscription(Image, topic, seen.append, to_profile("frames"))
    assert wait_for(lambda: seen, 10)
    assert (seen[-1].width, seen[-1].height, seen[-1].encoding) == (4, 2, "rgb8") and converted
    # a StreamPacket output without an edge still goes nowhere
    a = rig.node(ThreadSource, "plain", ports={"out": {"out": {"topic": f"/{rig.graph}/plain/out",
                                                              "qos": "sensor", "transports": []}}})
    assert not a._outs["out"].dds and not a._outs["out"].lazy


def test_status_names_the_ros_node_it_comes_from(rig):
    a = rig.node(ThreadSource, "src__r2", node_id="src")
    st = a.status_msg()
    assert (st.node_id, st.ros_name) == ("src", "src__r2")


def test_a_port_type_the_runtime_cannot_convert_is_refused_at_load():
    odd = PluginSpec(name="t_odd", category=Category.SOURCE, version="1.0.0",
                     ports=(Out("twist", msg_type="geometry_msgs/msg/Twist"),))
    with pytest.raises(LoadError, match="ros_topic_sink"):
        parse_ports(odd, {"out": {"twist": {"topic": "/g/o/twist", "transports": ["dds"]}}}, "/g/o")
    outs, _ = parse_ports(odd, {"out": {"twist": {"topic": "/g/o/twist", "transports": ["inproc"]}}}, "/g/o")
    assert outs["twist"].inproc   # inproc hands over the Packet, whatever the declared type


class Seen(NodeLogic):
    """Stateful: remembers every seq it processed."""

    spec = PluginSpec(name="t_seen", category=Category.STATE, version="1.0.0", stateful=True,
                      ports=(In("in"), Out("out")))

    def configure(self) -> None:
        self.seen: List[int] = []

    def on_packet(self, port: str, packet: Packet) -> None:
        self.seen.append(packet.seq)

    def get_state(self) -> Any:
        return {"seen": self.seen}

    def set_state(self, state: Any) -> None:
        self.seen = list(state["seen"])


def test_stateful_handover_processes_every_packet_exactly_once(rig):
    """docs/hot-replacement.md: the replacement holds inputs from configure, takes the old node's
    state and watermarks on activate, and replays only what the old node had not processed."""
    from schnitzel_core.blackboard import MemoryBackend
    from schnitzel_nodes.ros import InprocBus

    bus, board = InprocBus(), MemoryBackend()
    topic = f"/{rig.graph}/src/out"
    ports = {"in": {"in": [{"topic": topic, "transport": "inproc"}]}}
    seq = iter(range(1, 1000))

    def feed(n: int) -> None:
        for _ in range(n):
            bus.publish(topic, Packet(stream_id="cam", seq=next(seq), kind="telemetry"))

    old = rig.node(Seen, "seen", ports=ports, bus=bus, blackboard=board)
    assert old.trigger_configure() == T.SUCCESS and old.trigger_activate() == T.SUCCESS
    feed(10)
    new = rig.node(Seen, "seen__r1", ports=ports, bus=bus, blackboard=board, node_id="seen", handover=True)
    assert new.trigger_configure() == T.SUCCESS
    feed(10)                                   # 11..20: old processes them, new holds them
    assert old.trigger_deactivate() == T.SUCCESS   # saves state + watermark (cam: 20)
    feed(5)                                    # 21..25: only the new node holds them
    assert new.trigger_activate() == T.SUCCESS
    feed(5)                                    # 26..30: processed directly
    assert old.logic.seen == list(range(1, 21))
    assert new.logic.seen == list(range(1, 31))    # state 1..20 + replay 21..25 + live 26..30
    st = new.status_msg()
    assert st.node_id == "seen" and {kv.key: kv.value for kv in st.counters}["handover_skipped"] == "10"
    assert new.ctx.node_id == "seen"


def test_a_failed_handover_activate_drops_the_held_inputs_and_says_why(rig):
    from schnitzel_core.blackboard import MemoryBackend, handover_namespace
    from schnitzel_nodes.ros import InprocBus

    bus, board = InprocBus(), MemoryBackend()
    board.put(handover_namespace(rig.graph), "seen", {"state": {"wrong": "shape"}, "watermarks": {}})
    topic = f"/{rig.graph}/src2/out"
    new = rig.node(Seen, "seen__r2", ports={"in": {"in": [{"topic": topic, "transport": "inproc"}]}},
                   bus=bus, blackboard=board, node_id="seen", handover=True)
    assert new.trigger_configure() == T.SUCCESS
    for i in range(3):
        bus.publish(topic, Packet(stream_id="cam", seq=i + 1, kind="telemetry"))
    assert new.trigger_activate() == T.FAILURE
    assert new.state_label() == "inactive" and "KeyError" in new.stats.last_error
    assert new.stats.drops == 3


class RosHook(NodeLogic):
    """Uses the ctx.ros_node escape hatch; its own subscription callback fails on "bad"."""

    spec = PluginSpec(name="t_roshook", category=Category.SOURCE, version="1.0.0", ports=(Out("out"),),
                      params=(Param("topic", "str"),))

    def activate(self) -> None:
        from std_msgs.msg import String
        self.sub = self.ctx.ros_node.create_subscription(String, self.params["topic"], self.on_text, 10)

    def deactivate(self) -> None:
        self.ctx.ros_node.destroy_subscription(self.sub)

    def on_text(self, msg: Any) -> None:
        if msg.data == "bad":
            raise ValueError("cannot parse 'bad'")
        self.ctx.count("texts")


def test_callbacks_a_plugin_creates_on_ros_node_are_guarded(rig):
    from std_msgs.msg import String

    topic = f"/{rig.graph}/text"
    a = rig.node(RosHook, "hook", {"topic": topic}, max_consecutive_errors=3)
    assert a.trigger_configure() == T.SUCCESS and a.trigger_activate() == T.SUCCESS
    pub = a.create_publisher(String, topic, 10)
    assert wait_for(lambda: a.count_subscribers(topic) >= 1, 5)
    deadline = time.monotonic() + 10
    while a.ctx.counters.get("texts", 0) < 2 and time.monotonic() < deadline:
        pub.publish(String(data="good"))
        time.sleep(0.05)
    assert a.ctx.counters["texts"] >= 2
    for _ in range(3):
        pub.publish(String(data="bad"))
    # failures count against the node (with its id) and take it to the error state; the
    # executor thread survives and keeps serving the other nodes
    assert wait_for(lambda: a.state_label() == "error", 5), a.stats.last_error
    assert a.stats.errors >= 3 and "cannot parse 'bad'" in a.stats.last_error
    other = rig.node(Live, "still_served")
    assert other.trigger_configure() == T.SUCCESS and other.trigger_activate() == T.SUCCESS
    assert rig._thread.is_alive()


class SlowTransform(NodeLogic):
    spec = PluginSpec(name="t_slowx", category=Category.TRANSFORM, version="1.0.0", ports=(In("in"), Out("out")),
                      params=(Param("gain", "int", 1, live=True),))

    def configure(self) -> None:
        self.seqs: List[int] = []

    def on_packet(self, port: str, packet: Packet) -> None:
        time.sleep(0.5 if packet.seq == 1 else 0.0005)   # the first one holds the drainer up
        self.seqs.append(packet.seq)


def test_mailbox_overflow_drops_oldest_inputs_but_never_control_calls(rig):
    from schnitzel_nodes.ros.adapter import MAILBOX_LIMIT

    a = rig.node(SlowTransform, "slowx")
    assert a.trigger_configure() == T.SUCCESS and a.trigger_activate() == T.SUCCESS
    first = threading.Thread(target=a._deliver, args=("in", Packet(stream_id="s", seq=1, kind="x")))
    first.start()          # this thread becomes the mailbox's drainer, busy 0.5 s on packet 1
    time.sleep(0.05)
    total = MAILBOX_LIMIT + 600
    for i in range(2, 500):
        a._deliver("in", Packet(stream_id="s", seq=i, kind="x"))
    assert a.set_parameters([Parameter("gain", value=5)])[0].successful   # queued behind ~500 inputs
    for i in range(500, total + 1):
        a._deliver("in", Packet(stream_id="s", seq=i, kind="x"))
    first.join(30)
    seqs = a.logic.seqs
    assert seqs == sorted(seqs) and seqs[-1] == total          # order kept, the newest processed
    assert a.stats.drops > 0 and len(seqs) + a.stats.drops == total
    assert a.logic.params["gain"] == 5                         # the param change was not dropped


# ---- live parameters: applied before the answer, or refused (issue 20, defect 5) ----
def test_live_rate_hz_changes_the_tick_period_at_once(rig):
    from schnitzel_nodes.plugins.sources.synthetic import SyntheticSourceLogic

    a = rig.node(SyntheticSourceLogic, "syn", {"mode": "counter", "rate_hz": 20.0})
    assert a.trigger_configure() == T.SUCCESS and a.trigger_activate() == T.SUCCESS
    assert a._timer.timer_period_ns == 50_000_000
    res = a.set_parameters([Parameter("rate_hz", value=200.0)])[0]
    assert res.successful, res.reason
    assert a._timer.timer_period_ns == 5_000_000          # the running timer, not the next activation
    assert a.trigger_deactivate() == T.SUCCESS
    assert a.set_parameters([Parameter("rate_hz", value=50.0)])[0].successful
    assert a.trigger_activate() == T.SUCCESS and a._timer.timer_period_ns == 20_000_000


def test_a_value_the_plugin_refuses_is_refused_and_changes_nothing(rig):
    from schnitzel_nodes.plugins.policy import RulesLogic

    from schnitzel_nodes.ros.inproc import InprocBus

    bus = InprocBus()
    good = [{"when": "payload.n >= 0", "action": "emit", "set_meta": {"v": "1"}}]
    sink = rig.node(Collect, "rcollect", ports={"in": {"in": [{"topic": f"/{rig.graph}/rules/out",
                                                               "transport": "inproc"}]}}, bus=bus)
    a = rig.node(RulesLogic, "rules", {"rules": good}, bus=bus,
                 ports={"out": {"out": {"topic": f"/{rig.graph}/rules/out", "transports": ["inproc"]}}})
    for n in (sink, a):
        assert n.trigger_configure() == T.SUCCESS and n.trigger_activate() == T.SUCCESS
    stored = a.get_parameter("rules").value
    bad = json.dumps([{"when": "payload.n >>> 0", "action": "emit"}])
    res = a.set_parameters_atomically([Parameter("rules", value=bad)])
    assert not res.successful and "rule 0 'when'" in res.reason and "syntax error" in res.reason, res.reason
    assert a.get_parameter("rules").value == stored          # the ROS parameter store kept its value
    assert a.logic.params["rules"] == good
    a._deliver("in", Packet.from_json("s", 1, "x", {"n": 3}))
    assert wait_for(lambda: sink.logic.got, 3)
    assert sink.logic.got[-1].meta.get("v") == "1" and a.stats.errors == 0   # the old rules serve on
    # a parameter that is not live is refused while the node is configured, active or not
    from schnitzel_nodes.plugins.policy import DedupLogic
    d = rig.node(DedupLogic, "dd", {"key_fields": ["kind"]})
    assert d.trigger_configure() == T.SUCCESS
    res = d.set_parameters([Parameter("max_keys", value=5)])[0]
    assert not res.successful and "not live" in res.reason and d.get_parameter("max_keys").value == 100000


def test_schema_validate_with_only_schema_file_loads(rig, tmp_path):
    from schnitzel_nodes.plugins.transforms import SchemaValidateLogic

    f = tmp_path / "schema.json"
    f.write_text(json.dumps({"type": "object", "required": ["n"]}))
    a = rig.node(SchemaValidateLogic, "sv", {"schema_file": str(f)})
    assert a.trigger_configure() == T.SUCCESS, a.stats.last_error


# ---- drain on deactivate: what was accepted is processed (issue 20, defect 8) ----
class SlowRelay(NodeLogic):
    spec = PluginSpec(name="t_slowrelay", category=Category.TRANSFORM, version="1.0.0",
                      ports=(In("in"), Out("out")))

    def configure(self) -> None:
        self.busy = threading.Event()

    def on_packet(self, port: str, packet: Packet) -> None:
        if packet.seq == 0:
            self.busy.set()
        time.sleep(0.3 if packet.seq == 0 else 0.002)   # packet 0 holds the drainer: a backlog builds
        self.ctx.emit("out", packet)


class Collect(NodeLogic):
    spec = PluginSpec(name="t_collect", category=Category.SINK, version="1.0.0", ports=(In("in"),))

    def configure(self) -> None:
        self.got: List[Packet] = []

    def on_packet(self, port: str, packet: Packet) -> None:
        self.got.append(packet)


def test_flooded_slow_node_replaced_loses_nothing(rig):
    """Stateless hot swap by hand (as replace.py does it): new beside old, activate new,
    deactivate old. The old node's backlog is processed before it stops."""
    from schnitzel_nodes.ros.inproc import InprocBus

    bus = InprocBus()
    t_in, t_out = f"/{rig.graph}/src/out", f"/{rig.graph}/slow/out"
    ports = {"in": {"in": [{"topic": t_in, "transport": "inproc"}]},
             "out": {"out": {"topic": t_out, "transports": ["inproc"]}}}
    sink = rig.node(Collect, "sink", ports={"in": {"in": [{"topic": t_out, "transport": "inproc"}]}}, bus=bus)
    old = rig.node(SlowRelay, "slow", ports=ports, bus=bus)
    for n in (sink, old):
        assert n.trigger_configure() == T.SUCCESS and n.trigger_activate() == T.SUCCESS
    first = threading.Thread(target=bus.publish, args=(t_in, Packet(stream_id="s", seq=0, kind="x")))
    first.start()                                  # becomes old's drainer, busy on packet 0
    assert old.logic.busy.wait(5)
    for i in range(1, 400):
        bus.publish(t_in, Packet(stream_id="s", seq=i, kind="x"))
    new = rig.node(SlowRelay, "slow__r1", ports=ports, bus=bus, node_id="slow")
    assert new.trigger_configure() == T.SUCCESS and new.trigger_activate() == T.SUCCESS
    for i in range(400, 500):
        bus.publish(t_in, Packet(stream_id="s", seq=i, kind="x"))
    assert old.trigger_deactivate() == T.SUCCESS   # drains what it had accepted first
    for i in range(500, 600):
        bus.publish(t_in, Packet(stream_id="s", seq=i, kind="x"))
    first.join(10)
    assert wait_for(lambda: len({p.seq for p in sink.logic.got}) == 600, 10), \
        sorted(set(range(600)) - {p.seq for p in sink.logic.got})[:20]
    # the old node processed all it had accepted; only what came after it stopped passed it by
    assert old.stats.packets_in == 500 and old.stats.port_drops == {"in": 100}


# ---- overflow policy per input port (issue 20, defect 11) ----
def test_overflow_policy_per_port_drop_new_and_error(rig):
    ports = {"inputs": {"in": {"overflow": "drop_new", "max_queued": 10}}}
    a = rig.node(SlowRelay, "dn", ports=ports)
    assert a.trigger_configure() == T.SUCCESS and a.trigger_activate() == T.SUCCESS
    first = threading.Thread(target=a._deliver, args=("in", Packet(stream_id="s", seq=0, kind="x")))
    first.start()
    assert a.logic.busy.wait(5)
    for i in range(1, 31):
        a._deliver("in", Packet(stream_id="s", seq=i, kind="x"))
    first.join(10)
    assert wait_for(lambda: a.stats.packets_in == 11, 5)
    counters = {kv.key: kv.value for kv in a.status_msg().counters}
    assert a.stats.drops == 20 and counters["dropped_total.in"] == "20"

    e = rig.node(SlowRelay, "er", ports={"inputs": {"in": {"overflow": "error", "max_queued": 5}}})
    assert e.trigger_configure() == T.SUCCESS and e.trigger_activate() == T.SUCCESS
    first = threading.Thread(target=e._deliver, args=("in", Packet(stream_id="s", seq=0, kind="x")))
    first.start()
    assert e.logic.busy.wait(5)
    for i in range(1, 8):
        e._deliver("in", Packet(stream_id="s", seq=i, kind="x"))
    first.join(10)
    assert wait_for(lambda: e.state_label() == "error", 5), e.stats.last_error
    st = e.status_msg()
    assert "input 'in' overflowed" in st.last_error and "overflow: error" in st.last_error
    assert {kv.key: kv.value for kv in st.counters}.get("overflow_errors") == "1"
    with pytest.raises(LoadError, match="overflow must be one of"):
        rig.node(SlowRelay, "bad", ports={"inputs": {"in": {"overflow": "block"}}})


class Burst(SourceLogic):
    """Sends three packets as soon as it is active, then nothing (a short-lived event source)."""
    spec = PluginSpec(name="t_burst", category=Category.SOURCE, version="1.0.0", ports=(Out("out"),))
    threaded = True

    def run(self, stop: threading.Event) -> None:
        for _ in range(3):
            self.emit("out", self.next_packet("telemetry"))
        stop.wait()


def test_activation_waits_for_the_planned_readers_so_a_first_burst_reaches_a_late_reader(rig):
    """A reader the plan connects to a best-effort output, discovered after the node was told to
    activate: the node holds its activation until its writer matched that reader (LoadNode
    option dds_readers), so the packets it sends first are not lost."""
    from schnitzel_msgs.msg import StreamPacket

    topic = f"/{rig.graph}/burst/out"
    src = rig.node(Burst, "burst", ports={"out": {"out": {"topic": topic, "qos": "sensor", "transports": ["dds"]}}},
                   dds_readers='{"out": 1}')
    assert src.trigger_configure() == T.SUCCESS
    done: List[Any] = []
    t = threading.Thread(target=lambda: done.append(src.trigger_activate()), daemon=True)
    t.start()
    time.sleep(0.3)                       # the reader's container is slower to come up
    got: List[Any] = []
    reader = rig.node(ThreadSource, "late_reader")
    reader.create_subscription(StreamPacket, topic, got.append, to_profile("sensor"))
    t.join(10)
    assert done == [T.SUCCESS]
    assert wait_for(lambda: len(got) == 3, 5), [m.seq for m in got]
    assert [m.seq for m in got] == [1, 2, 3]


def test_dds_readers_option_is_checked():
    outs, _ = parse_ports(Scale.spec, None, "/g/sc")
    from schnitzel_nodes.ros.ports import parse_dds_readers
    assert parse_dds_readers('{"out": 2}', outs) == {"out": 2}
    assert parse_dds_readers("", outs) == {}
    with pytest.raises(LoadError, match="names output"):
        parse_dds_readers('{"outt": 1}', outs)
    with pytest.raises(LoadError, match="reader count"):
        parse_dds_readers('{"out": -1}', outs)
    with pytest.raises(LoadError, match="not valid JSON"):
        parse_dds_readers('{out', outs)
