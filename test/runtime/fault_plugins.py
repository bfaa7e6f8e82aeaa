"""A plugin that fails on every packet, for fault tests (loaded as "fault_plugins:FailingSink"
by containers that have this directory on PYTHONPATH)."""
from schnitzel_core.plugin import Category, In, PluginSpec
from schnitzel_nodes.base import SinkLogic


class FailingSink(SinkLogic):
    spec = PluginSpec(name="failing_sink", category=Category.SINK, version="1.0.0",
                      ports=(In("in", ("*",)),))

    def write(self, packet):
        raise RuntimeError(f"cannot store packet {packet.seq}")
