"""Plugins for fault tests, loaded as "fault_plugins:<Class>" by containers that have this
directory on PYTHONPATH: a sink that fails on every packet, a slow sink, a threaded source."""
from schnitzel_core.plugin import Category, In, Out, PluginSpec
from schnitzel_nodes.base import SinkLogic, SourceLogic


class FailingSink(SinkLogic):
    spec = PluginSpec(name="failing_sink", category=Category.SINK, version="1.0.0",
                      ports=(In("in", ("*",)),))

    def write(self, packet):
        raise RuntimeError(f"cannot store packet {packet.seq}")


class SlowSink(SinkLogic):
    """Takes 20 ms per packet: fed faster than that, its input queue grows."""

    spec = PluginSpec(name="slow_sink", category=Category.SINK, version="1.0.0",
                      ports=(In("in", ("*",)),))

    def write(self, packet):
        import time
        time.sleep(0.02)


class PulseSource(SourceLogic):
    """Emits 200 packets/s from its own thread. Feeding a node that another source feeds from
    the executor thread, inputs arrive from two threads: while one works the node's queue off,
    the other only queues, so a backlog builds behind a slow node."""

    threaded = True
    spec = PluginSpec(name="pulse_source", category=Category.SOURCE, version="1.0.0",
                      ports=(Out("out", ("*",)),))

    def run(self, stop):
        from schnitzel_core.packet import Packet
        n = 0
        while not stop.wait(0.005):
            n += 1
            self.emit("out", Packet(stream_id="pulse", seq=n, kind="telemetry"))
