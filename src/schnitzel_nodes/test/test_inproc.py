"""In-process transport: the packet object itself goes from publisher to subscriber,
never converted or serialised; compute inputs are latest-only."""
from __future__ import annotations

import time
from typing import Any, List

import pytest

rclpy = pytest.importorskip("rclpy")

from schnitzel_core.codecs import ros as codec  # noqa: E402
from schnitzel_core.packet import Packet  # noqa: E402
from schnitzel_core.plugin import Category, Out, Param, PluginSpec  # noqa: E402
from schnitzel_nodes.base import SourceLogic  # noqa: E402

from test_container_support import Collect, InprocBox, Passthrough, SlowCompute  # noqa: E402
from schnitzel_core.testing import wait_for  # noqa: E402


class ObjSource(SourceLogic):
    """Remembers every packet object it emitted."""

    spec = PluginSpec(name="t_objsrc", category=Category.SOURCE, version="1.0.0",
                      ports=(Out("out"),), params=(Param("period_s", "float", 0.005),))
    sent: List[Packet] = []

    def configure(self) -> None:
        self.tick_period_s = self.params["period_s"]
        ObjSource.sent = []

    def tick(self) -> None:
        p = self.next_packet("telemetry", b"x" * 1_000_000)
        ObjSource.sent.append(p)
        self.emit("out", p)


@pytest.fixture
def box():
    b = InprocBox()
    yield b
    b.close()


def up(*adapters: Any) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn as T
    for a in adapters:
        assert a.trigger_configure() == T.SUCCESS, a.stats.last_error
        assert a.trigger_activate() == T.SUCCESS, a.stats.last_error


def test_inproc_hands_over_the_same_object_without_serialising(box, monkeypatch):
    calls = []

    def forbidden(*a: Any, **k: Any) -> Any:
        calls.append(a)
        raise AssertionError("inproc must not convert packets")
    monkeypatch.setattr(codec, "to_msg", forbidden)
    monkeypatch.setattr(codec, "from_msg", forbidden)
    src = box.load(ObjSource, "src", outs={"out": {"topic": box.topic("src"), "qos": "events", "transports": ["inproc"]}})
    mid = box.load(Passthrough, "mid",
                   outs={"out": {"topic": box.topic("mid"), "qos": "events", "transports": ["inproc"]}},
                   ins={"in": [{"topic": box.topic("src"), "qos": "events", "transport": "inproc"}]})
    Collect.instances.clear()
    sink = box.load(Collect, "sink", ins={"in": [{"topic": box.topic("mid"), "qos": "events", "transport": "inproc"}]})
    up(sink, mid, src)
    col = Collect.instances[-1]
    assert wait_for(lambda: len(col.received) >= 20, 10)
    src.trigger_deactivate()
    n = min(len(col.received), len(ObjSource.sent))
    assert n >= 20
    # the very objects the source emitted, in order, through two hops
    assert all(col.received[i] is ObjSource.sent[i] for i in range(n))
    assert calls == []
    assert src.stats.errors == mid.stats.errors == sink.stats.errors == 0
    # no DDS publisher exists for an inproc-only output
    assert box.container.node.count_publishers(box.topic("src")) == 0
    assert box.container.node.count_publishers(box.topic("mid")) == 0


def test_output_with_dds_and_inproc_edges_serves_both(box):
    from schnitzel_msgs.msg import StreamPacket

    src = box.load(ObjSource, "src2", {"period_s": 0.01},
                   outs={"out": {"topic": box.topic("src2"), "qos": "events", "transports": ["inproc", "dds"]}})
    Collect.instances.clear()
    sink = box.load(Collect, "k2", ins={"in": [{"topic": box.topic("src2"), "qos": "events", "transport": "inproc"}]})
    got: List[Any] = []
    box.container.node.create_subscription(StreamPacket, box.topic("src2"), got.append, 50)
    up(sink, src)
    col = Collect.instances[-1]
    assert wait_for(lambda: len(got) >= 3 and len(col.received) >= 3, 10)
    assert box.container.node.count_publishers(box.topic("src2")) == 1
    sent = {p.packet_id: p for p in ObjSource.sent}
    assert all(sent[p.packet_id] is p for p in col.received)
    first = codec.from_msg(got[0])
    assert first == sent[first.packet_id]   # the DDS copy equals the original, field for field


def test_compute_input_is_latest_only_and_runs_off_the_publisher_thread(box):
    src = box.load(ObjSource, "fast", {"period_s": 0.002},
                   outs={"out": {"topic": box.topic("fast"), "qos": "frames", "transports": ["inproc"]}})
    slow = box.load(SlowCompute, "model", {"delay_s": 0.05},
                    outs={"out": {"topic": box.topic("model"), "qos": "frames", "transports": ["inproc"]}},
                    ins={"in": [{"topic": box.topic("fast"), "qos": "frames", "transport": "inproc"}]})
    Collect.instances.clear()
    sink = box.load(Collect, "after", ins={"in": [{"topic": box.topic("model"), "qos": "frames", "transport": "inproc"}]})
    up(sink, slow, src)
    col = Collect.instances[-1]
    assert wait_for(lambda: len(col.received) >= 8, 10)
    src.trigger_deactivate()
    time.sleep(0.1)
    st = slow.status_msg()
    assert st.drops > 0                           # replaced inputs are counted
    assert st.packets_out < st.packets_in
    assert st.packets_in - st.packets_out - st.drops <= 2   # every input was processed or counted
    assert col.threads == {"model.worker"}        # the model ran on its worker thread
    # latest-only keeps frame age bounded (~one model call), where a FIFO would let it grow:
    # frames arrive many times faster than the 50 ms calls, so after 8 calls a queue would be
    # ~350 ms behind (the bound leaves room for a loaded machine)
    assert max(col.ages_ms) < 250, col.ages_ms
