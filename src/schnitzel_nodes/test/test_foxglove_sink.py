"""foxglove_sink: a client speaking Foxglove's WebSocket protocol (the foxglove.sdk.v1 subprotocol, as the
Foxglove app does) sees one topic per stream — raw frames as foxglove.RawImage, events as JSON —
and receives the packets the node writes."""
import asyncio
import json
import logging
import socket
import struct

import numpy as np
import pytest

from schnitzel_core.codecs.image import image_packet
from schnitzel_core.packet import Packet, now_ns
from schnitzel_core.plugin import NodeContext

pytest.importorskip("foxglove", reason="foxglove-sdk is not installed (requirements.txt pins it)")
from schnitzel_nodes.plugins.foxglove import FoxgloveSinkLogic, json_message  # noqa: E402


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_json_message_decodes_a_json_payload():
    p = Packet.from_json("events", 3, "event", {"zone": "door", "n": 2})
    m = json_message(p)
    assert m["payload"] == {"zone": "door", "n": 2} and m["stream_id"] == "events" and m["seq"] == 3


def test_a_foxglove_client_sees_frames_as_images_and_events_as_json():
    import aiohttp

    port = _free_port()
    ctx = NodeContext("fox", {"port": port, "host": "127.0.0.1", "name": ""}, graph="g",
                      logger=logging.getLogger("test.fox"))
    node = FoxgloveSinkLogic(ctx)
    node.params = {**node.spec.defaults(), "port": port}
    node.configure()
    node.activate()
    frame = image_packet(np.full((4, 6, 3), 200, np.uint8), "rgb8", "cam", 1, stamp_ns=now_ns())
    event = Packet.from_json("events", 1, "event", {"zone": "door"}, stamp_ns=now_ns())
    node.write(frame)     # the channels exist (advertised) once a stream has sent something
    node.write(event)

    async def client():
        got = {}
        async with aiohttp.ClientSession() as s:
            async with s.ws_connect(f"ws://127.0.0.1:{port}", protocols=("foxglove.sdk.v1",)) as ws:
                channels = {}
                while len(channels) < 2:
                    m = json.loads((await ws.receive(timeout=10)).data)
                    if m.get("op") == "advertise":
                        channels.update({c["topic"]: c for c in m["channels"]})
                subs = {i + 1: channels[t]["id"] for i, t in enumerate(("/cam", "/events"))}
                await ws.send_json({"op": "subscribe",
                                    "subscriptions": [{"id": sid, "channelId": cid} for sid, cid in subs.items()]})
                await asyncio.sleep(0.3)    # subscribed: what is written now reaches this client
                node.write(frame)
                node.write(event)
                while len(got) < 2:
                    m = await ws.receive(timeout=10)
                    if m.type == aiohttp.WSMsgType.BINARY and m.data[0] == 0x01:
                        sid, _t = struct.unpack_from("<IQ", m.data, 1)
                        got[sid] = m.data[13:]
                return channels, got

    try:
        channels, got = asyncio.run(client())
    finally:
        node.deactivate()
    assert channels["/cam"]["schemaName"] == "foxglove.RawImage"
    assert channels["/events"]["encoding"] == "json"
    assert json.loads(got[2])["payload"] == {"zone": "door"}
    assert bytes([200] * 72) in got[1]          # the frame's pixels inside the RawImage message
    assert ctx.counters["frames_served"] == 2 and ctx.counters["messages_served"] == 2
