"""The two plugins `schnitzel test` puts around the part of a graph a runtime case runs:
``graphtest_source`` emits a case's input packets (JSON lines, Packet.to_dict) unchanged, stamps
and keys included; ``graphtest_capture`` writes every packet it receives to a JSON-lines file.
Both are test plumbing: the capture file is the test's own output, not an external system."""
from __future__ import annotations

import json
import threading

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, In, NodeLogic, Out, Param, PluginSpec


class GraphtestSource(NodeLogic):
    spec = PluginSpec(
        name="graphtest_source", category=Category.SOURCE, version="1.0.0", api_version="1.0.0",
        description="schnitzel test: emits the packets of a JSON-lines file once, unchanged.",
        ports=(Out("out", ["*"]),),
        params=(Param("path", "str", description="JSON lines, one Packet.to_dict per line"),
                Param("start_delay_s", "float", 1.0, minimum=0.0, description="wait after activation"),
                Param("rate_hz", "float", 200.0, minimum=0.1, description="packets per second")),
    )
    threaded = True

    def configure(self) -> None:
        with open(self.params["path"], encoding="utf-8") as fh:
            self.packets = [Packet.from_dict(json.loads(line)) for line in fh if line.strip()]

    def run(self, stop: threading.Event) -> None:
        if stop.wait(float(self.params["start_delay_s"])):
            return
        for p in self.packets:
            self.emit("out", p)
            self.ctx.count("sent")
            if stop.wait(1.0 / float(self.params["rate_hz"])):
                return
        stop.wait()


class GraphtestCapture(NodeLogic):
    spec = PluginSpec(
        name="graphtest_capture", category=Category.SINK, version="1.0.0", api_version="1.0.0",
        description="schnitzel test: writes every packet it receives to a JSON-lines file.",
        ports=(In("in", ["*"]),),
        params=(Param("path", "str", description="the capture file (JSON lines)"),),
    )

    def configure(self) -> None:
        self.fh = open(self.params["path"], "a", encoding="utf-8")
        self.lock = threading.Lock()

    def on_packet(self, port: str, packet: Packet) -> None:
        with self.lock:
            self.fh.write(json.dumps(packet.to_dict(), default=str) + "\n")
            self.fh.flush()

    def cleanup(self) -> None:
        self.fh.close()
