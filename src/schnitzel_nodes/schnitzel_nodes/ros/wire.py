"""What a port carries on DDS: its ROS message type and the Packet conversions.

- ``schnitzel_msgs/msg/StreamPacket`` (every port unless the plugin declares another
  ``msg_type``): ``schnitzel_core.codecs.ros``, field for field.
- ``sensor_msgs/msg/Image``: a raw-frame packet (``image/raw;encoding=..;width=..;height=..;step=..``)
  as an Image with the same bytes, stamp and frame_id, so rviz and rqt_image_view show it;
  an Image arriving on an input becomes such a packet (stream = frame_id, or the topic).

Inproc edges always hand over the Packet itself, whatever the port's ``msg_type``.
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, NamedTuple

from schnitzel_core.codecs import CodecError
from schnitzel_core.codecs import ros as codec
from schnitzel_core.packet import Packet
from schnitzel_core.plugin import STREAM_PACKET

IMAGE = "sensor_msgs/msg/Image"
_NS = 1_000_000_000


class Wire(NamedTuple):
    msg_type: str
    msg_cls: Any
    to_msg: Callable[[Packet], Any]
    from_msg: Callable[[Any], Packet]


def _image_to_msg(packet: Packet) -> Any:
    from sensor_msgs.msg import Image
    from schnitzel_core.codecs import image as img

    media, params = img.parse_content_type(packet.content_type)
    if media != img.RAW_MEDIA_TYPE or not all(k in params for k in ("encoding", "width", "height")):
        raise CodecError(f"packet {packet.packet_id}: content type {packet.content_type!r} is not a raw frame "
                         "(image/raw;encoding=...;width=...;height=...); cannot publish it as sensor_msgs/msg/Image")
    try:
        width, height = int(params["width"]), int(params["height"])
        step = int(params.get("step") or (len(packet.payload) // max(height, 1)))
    except ValueError:
        raise CodecError(f"packet {packet.packet_id}: content type {packet.content_type!r} has a non-integer size") from None
    if len(packet.payload) < step * height:
        raise CodecError(f"packet {packet.packet_id}: payload has {len(packet.payload)} bytes, "
                         f"the frame needs step*height = {step * height}")
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(packet.stamp_ns), _NS)
    msg.header.frame_id = packet.frame_id
    msg.height, msg.width, msg.step = height, width, step
    msg.encoding = params["encoding"]
    msg.is_bigendian = 1 if params.get("bigendian", "0") not in ("0", "false", "") else 0
    msg.data = packet.payload  # bytes: one memcpy
    return msg


def _image_from_msg_factory(topic: str) -> Callable[[Any], Packet]:
    from schnitzel_core.codecs import image as img

    seq = itertools.count(1)

    def convert(msg: Any) -> Packet:
        stamp = int(msg.header.stamp.sec) * _NS + int(msg.header.stamp.nanosec)
        p = Packet(stream_id=msg.header.frame_id or topic, seq=next(seq), kind="video.frame",
                   payload=msg.data.tobytes() if hasattr(msg.data, "tobytes") else bytes(msg.data),
                   stamp_ns=stamp, frame_id=msg.header.frame_id,
                   content_type=img.image_content_type(msg.encoding, msg.width, msg.height, msg.step,
                                                       msg.is_bigendian))
        return p
    return convert


def wire_for(msg_type: str, topic: str = "") -> Wire:
    """The Wire of a port's declared message type; raises ValueError for one we cannot convert."""
    if not msg_type or msg_type == STREAM_PACKET:
        from schnitzel_msgs.msg import StreamPacket
        return Wire(STREAM_PACKET, StreamPacket, codec.to_msg, codec.from_msg)
    if msg_type == IMAGE:
        from sensor_msgs.msg import Image
        return Wire(IMAGE, Image, _image_to_msg, _image_from_msg_factory(topic))
    raise ValueError(f"message type {msg_type!r} is not converted by the runtime (it converts "
                     f"{STREAM_PACKET} and {IMAGE}); bridge other types with ros_topic_source/ros_topic_sink")


__all__ = ["IMAGE", "Wire", "wire_for"]
