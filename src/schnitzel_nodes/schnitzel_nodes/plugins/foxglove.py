"""foxglove_sink: the packets it receives, served live to Foxglove over foxglove-sdk.

Foxglove (app or web) connects to ``ws://<host>:<port>`` ("Open connection" -> "Foxglove
WebSocket") and sees one topic per stream: ``/<stream_id>``. Raw frames (content type
``image/raw;...``) are ``foxglove.RawImage`` messages, shown in an Image panel; every other
packet is a JSON message (its envelope and, when the payload is JSON, the decoded payload), shown
in a Raw Messages or Plot panel. The log time of each message is the packet's source stamp.

One foxglove-sdk WebSocket server per node, started on activate and stopped on deactivate, bound
to 127.0.0.1 unless ``host`` says otherwise.
"""
from __future__ import annotations

import json
from typing import Any, Dict

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, In, Param, PluginSpec

from ..base import SinkLogic

NODE = "foxglove_sink"
PIP = "foxglove-sdk==0.30.3"


def json_message(packet: Packet) -> Dict[str, Any]:
    """What Foxglove shows for a non-image packet: the envelope, and the payload decoded from
    JSON (text otherwise, or its size for binary)."""
    msg: Dict[str, Any] = {"stream_id": packet.stream_id, "seq": packet.seq, "epoch": packet.epoch,
                           "kind": packet.kind, "stamp_ns": packet.stamp_ns, "schema": packet.schema,
                           "content_type": packet.content_type, "meta": dict(packet.meta)}
    try:
        msg["payload"] = json.loads(packet.payload) if packet.payload else None
    except (ValueError, UnicodeDecodeError):
        try:
            msg["payload"] = packet.payload.decode("utf-8")
        except UnicodeDecodeError:
            msg["payload_bytes"] = len(packet.payload)
    return msg


def raw_image_fields(packet: Packet) -> Dict[str, Any]:
    """encoding, width, height, step of a raw frame (schnitzel_core.codecs.image content type)."""
    from schnitzel_core.codecs.image import RAW_MEDIA_TYPE, parse_content_type
    media, p = parse_content_type(packet.content_type)
    if media != RAW_MEDIA_TYPE:
        return {}
    return {"encoding": p.get("encoding", ""), "width": int(p.get("width", 0)), "height": int(p.get("height", 0)),
            "step": int(p.get("step", 0))}


class FoxgloveSinkLogic(SinkLogic):
    spec = PluginSpec(
        name=NODE,
        category=Category.SINK,
        version="1.0.0",
        description="Serves the packets it receives to Foxglove (foxglove-sdk WebSocket server): raw frames as "
                    "images, everything else as JSON, one topic per stream.",
        ports=(In("in", ("*",), qos="sensor", description="Any packets: frames, events, telemetry."),),
        params=(
            Param("port", "int", 8765, "TCP port of the Foxglove WebSocket server.", minimum=1, maximum=65535),
            Param("host", "str", "127.0.0.1", "Address it binds to."),
            Param("name", "str", "", "Server name shown in Foxglove (default: <graph>/<node id>)."),
        ),
    )

    def configure(self) -> None:
        try:
            import foxglove  # noqa: F401
        except ImportError:
            raise ValueError(f"{NODE} needs the foxglove-sdk package: pip install {PIP}") from None
        self.server: Any = None
        self.channels: Dict[str, Any] = {}

    def activate(self) -> None:
        import foxglove
        self.fg_ctx = foxglove.Context()   # this node's channels and server only
        self.channels = {}
        p = self.params
        try:
            self.server = foxglove.start_server(
                name=p.get("name") or f"{self.ctx.graph}/{self.ctx.node_id}", host=str(p.get("host", "127.0.0.1")),
                port=int(p.get("port", 8765)), context=self.fg_ctx)
        except Exception as exc:  # noqa: BLE001 - e.g. the port is taken: say which, plainly
            raise ValueError(f"{NODE} {self.ctx.node_id}: cannot serve Foxglove on "
                             f"{p.get('host')}:{p.get('port')}: {exc}") from None

    def deactivate(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.channels = {}

    def write(self, packet: Packet) -> None:
        from foxglove import Channel
        from foxglove.channels import RawImageChannel
        from foxglove.messages import RawImage, Timestamp

        topic = "/" + packet.stream_id.lstrip("/")
        img = raw_image_fields(packet) if packet.content_type.startswith("image/raw") else {}
        key = topic + (" image" if img else "")
        ch = self.channels.get(key)
        if ch is None:
            if img:
                ch = RawImageChannel(topic, context=self.fg_ctx)
            else:
                ch = Channel(topic if topic not in self.channels else topic + "/json", message_encoding="json",
                             context=self.fg_ctx)
            self.channels[key] = ch
        log_time = packet.stamp_ns or None
        if img:
            sec, nsec = divmod(packet.stamp_ns, 1_000_000_000)
            ch.log(RawImage(timestamp=Timestamp(sec=sec, nsec=nsec), frame_id=packet.frame_id,
                            width=img["width"], height=img["height"], encoding=img["encoding"], step=img["step"],
                            data=bytes(packet.payload)), log_time=log_time)
            self.ctx.count("frames_served")
        else:
            ch.log(json_message(packet), log_time=log_time)
            self.ctx.count("messages_served")
