"""Recording and replay nodes (docs/record-replay.md): ``recorder`` and ``replay_source``.

``recorder`` (sink) writes every packet it takes in to one MCAP channel (``topic``) in
rosbag2's layout (``schnitzel_core.recording``): StreamPacket CDR, chunked, compressed, a
chunk closed at least every ``flush_interval_s`` so a killed process loses at most that
much. ``schnitzel run --record`` records whole graphs (one channel per edge topic) with a
separate recorder process instead.

``replay_source`` (source) feeds the packets of a recording into a graph, unchanged: same
stamps, ids, sequence numbers and idempotency keys, in log-time order, paced at ``rate``
times the recorded pace (0 = as fast as possible), from ``start_s`` to ``end_s`` seconds
after the recording's first message.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Optional

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, In, Out, Param, PluginSpec
from schnitzel_nodes.base import SinkLogic, SourceLogic


class RecorderLogic(SinkLogic):
    spec = PluginSpec(
        name="recorder", category=Category.SINK, version="1.0.0",
        description="Writes the packets it takes in to an MCAP file that ros2 bag reads.",
        ports=(In("in", ("*",), description="Any packets (several edges may feed it)."),),
        params=(
            Param("path", "str", description="MCAP file to write (replaced if it exists)"),
            Param("topic", "str", "", "channel topic in the file (default /<graph>/<node id>/in)"),
            Param("compression", "str", "zstd", "chunk compression", enum=("zstd", "lz4", "none")),
            Param("chunk_size", "int", 4 * 1024 * 1024, "bytes per chunk before it is closed", minimum=1024),
            Param("flush_interval_s", "float", 1.0, "close a chunk at least this often (bounds loss on a kill)",
                  minimum=0.01),
        ),
    )

    def configure(self) -> None:
        from schnitzel_core.recording import Recorder, RecordingError, STREAM_PACKET

        p = self.params
        self.topic = str(p.get("topic") or f"/{self.ctx.graph}/{self.ctx.node_id}/in")
        try:
            self.rec = Recorder(p["path"], compression=p.get("compression", "zstd"),
                                chunk_size=int(p.get("chunk_size")), flush_interval_s=float(p["flush_interval_s"]))
        except (RecordingError, ValueError) as exc:
            raise ValueError(f"recorder {self.ctx.node_id}: {exc}") from None
        self.rec.add_topic(self.topic, STREAM_PACKET)
        self.tick_period_s = float(p["flush_interval_s"])

    def write(self, packet: Packet) -> None:
        self.rec.write_packet(self.topic, packet, self.ctx.clock_ns())
        self.ctx.count("recorded")

    def tick(self) -> None:
        self.rec.tick()

    def cleanup(self) -> None:
        rec = getattr(self, "rec", None)
        if rec is not None:
            rec.close()


class ReplaySourceLogic(SourceLogic):
    threaded = True
    spec = PluginSpec(
        name="replay_source", category=Category.SOURCE, version="1.0.0",
        description="Feeds the StreamPackets of an MCAP recording into the graph, unchanged.",
        ports=(Out("out", ("*",), description="The recorded packets, stamps and keys as recorded."),),
        params=(
            Param("path", "str", description="MCAP recording (schnitzel run --record, recorder, ros2 bag)"),
            Param("topics", "list", [], "recorded topics to replay ([] = every StreamPacket topic)", items="str"),
            Param("rate", "float", 1.0, "1.0 = recorded pace, 2.0 = twice as fast, 0 = as fast as possible",
                  minimum=0.0),
            Param("start_s", "float", 0.0, "skip what was recorded before this many seconds", minimum=0.0),
            Param("end_s", "float", 0.0, "stop at this many seconds into the recording (0 = the end)", minimum=0.0),
        ),
    )

    def configure(self) -> None:
        from schnitzel_core.recording import RecordingError, STREAM_PACKET, info

        p = self.params
        try:
            meta = info(p["path"])
        except RecordingError as exc:
            raise ValueError(f"replay_source {self.ctx.node_id}: {exc}") from None
        wanted = list(p.get("topics") or [])
        have = {t: d for t, d in meta["topics"].items() if d["type"] == STREAM_PACKET}
        missing = [t for t in wanted if t not in have]
        if missing:
            raise ValueError(f"replay_source {self.ctx.node_id}: {p['path']} has no StreamPacket topic "
                             f"{', '.join(missing)} (it has: {', '.join(sorted(have)) or 'none'})")
        self.topics = wanted or sorted(have)
        self.first_ns = int(meta["start_ns"])
        self.status = "ready"
        self.replayed = 0

    def run(self, stop: threading.Event) -> None:
        from schnitzel_core.recording import decode_packet, read_messages

        p = self.params
        rate = float(p.get("rate") or 0.0)
        start = self.first_ns + int(float(p.get("start_s") or 0.0) * 1e9)
        end = self.first_ns + int(float(p["end_s"]) * 1e9) if float(p.get("end_s") or 0.0) > 0 else None
        self.status = "replaying"
        t0: Optional[int] = None
        w0 = 0.0
        for m in read_messages(p["path"], self.topics, start, end):
            if stop.is_set():
                return
            if rate > 0:
                if t0 is None:
                    t0, w0 = m.log_time_ns, time.monotonic()
                due = w0 + (m.log_time_ns - t0) / 1e9 / rate
                delay = due - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return
            try:
                packet = decode_packet(m.data)
            except ValueError as exc:
                self.ctx.count("undecodable")
                self.ctx.logger.warning("replay_source %s: %s at %d on %s skipped: %s", self.ctx.node_id,
                                        "message", m.log_time_ns, m.topic, exc)
                continue
            self.emit("out", packet)
            self.replayed += 1
            self.ctx.count("replayed")
        self.status = "finished"
        self.ctx.logger.info("replay_source %s: end of %s after %d packets", self.ctx.node_id, p["path"],
                             self.replayed)

    def health(self) -> Any:
        return {"level": "ok", "message": f"{getattr(self, 'status', '?')}: {getattr(self, 'replayed', 0)} replayed",
                "values": {"replayed": getattr(self, "replayed", 0)}}


__all__ = ["RecorderLogic", "ReplaySourceLogic"]
