"""Simple IO sinks: ``stdout_sink``.

``stdout_sink`` prints one compact line per packet (``format: line``) or the packet as one
JSON object per line (``format: json``; the payload as JSON when it is JSON, else base64 —
``Packet.to_dict``). A line looks like::

    2026-11-26T05:40:01.123Z cam0/0/17 video.frame image/raw rgb8 320x240 230400B
    2026-11-26T05:40:01.150Z range/0/3 sensor.range {"range":2.01}

(``time: received`` leads with the time the sink received the packet instead of its stamp.)

Printing never raises into the graph: a closed stdout (a pipe whose reader went away) is
counted (``write_errors``) and the packet dropped.
"""
from __future__ import annotations

import datetime as _dt
import json
import sys
from typing import Optional

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, In, Param, PluginSpec
from schnitzel_nodes.base import SinkLogic

NODE = "stdout_sink"


def _iso(stamp_ns: int) -> str:
    t = _dt.datetime.fromtimestamp(stamp_ns / 1e9, tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def format_line(packet: Packet, max_payload_chars: int = 120, time_ns: Optional[int] = None) -> str:
    """The compact one-line form of ``packet`` (led by ``time_ns``, default its stamp)."""
    t = packet.stamp_ns if time_ns is None else time_ns
    head = f"{_iso(t)} {packet.stream_id}/{packet.epoch}/{packet.seq} {packet.kind}"
    ct = packet.content_type or ""
    media, _, rest = ct.partition(";")
    if media == "image/raw":
        params = dict(kv.split("=", 1) for kv in rest.split(";") if "=" in kv)
        body = (f"image/raw {params.get('encoding', '?')} {params.get('width', '?')}x"
                f"{params.get('height', '?')} {len(packet.payload)}B")
    elif media.startswith("application/json"):
        try:
            body = json.dumps(packet.json(), separators=(",", ":"), sort_keys=True)
        except ValueError:
            body = f"{ct} (invalid JSON) {len(packet.payload)}B"
    elif packet.payload_ref is not None and packet.payload_ref.uri:
        body = f"{ct or '-'} ref={packet.payload_ref.uri} {packet.payload_ref.size}B"
    else:
        body = f"{ct or '-'} {len(packet.payload)}B"
    if max_payload_chars and len(body) > max_payload_chars:
        body = body[:max_payload_chars - 1] + "…"
    return f"{head} {body}"


class StdoutSinkLogic(SinkLogic):
    spec = PluginSpec(
        name=NODE,
        category=Category.SINK,
        version="1.0.0",
        description="Prints one compact line (or one JSON object) per packet.",
        ports=(In("in", ("*",), qos="sensor", description="Any packets."),),
        params=(
            Param("format", "str", "line", "line: compact summary; json: the whole packet as JSON.",
                  enum=("line", "json"), live=True),
            Param("stream", "str", "stdout", "Where to print.", enum=("stdout", "stderr")),
            Param("max_payload_chars", "int", 120, "line format: cut the summary after this many "
                  "characters (0 = never).", minimum=0, live=True),
            Param("prefix", "str", "", "Text printed before every line (e.g. the node name).", live=True),
            Param("time", "str", "stamp", "line format: lead with the packet's source stamp or the "
                  "time this sink received it.", enum=("stamp", "received"), live=True),
        ),
    )

    def configure(self) -> None:
        p = self.params
        if p.get("format") not in ("line", "json"):
            raise ValueError(f"{NODE}: param 'format' must be line or json, got {p.get('format')!r}")
        if p.get("stream") not in ("stdout", "stderr"):
            raise ValueError(f"{NODE}: param 'stream' must be stdout or stderr, got {p.get('stream')!r}")

    def write(self, packet: Packet) -> None:
        p = self.params
        if p.get("format") == "json":
            try:
                text = json.dumps(packet.to_dict(), separators=(",", ":"), sort_keys=True)
            except ValueError:  # JSON content type with a non-JSON payload
                import base64
                import dataclasses

                d = dataclasses.asdict(packet)
                d["payload"] = base64.b64encode(packet.payload).decode("ascii")
                d["payload_encoding"] = "base64"
                text = json.dumps(d, separators=(",", ":"), sort_keys=True)
        else:
            received = self.ctx.clock_ns() if p.get("time") == "received" else None
            text = format_line(packet, int(p.get("max_payload_chars") or 0), received)
        out = sys.stderr if p.get("stream") == "stderr" else sys.stdout
        try:
            out.write(f"{p.get('prefix') or ''}{text}\n")
            out.flush()
        except (OSError, ValueError):
            self.ctx.count("write_errors")
            return
        self.ctx.count("printed")
