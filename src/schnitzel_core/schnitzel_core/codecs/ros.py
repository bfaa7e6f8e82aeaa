"""Packet ⇄ schnitzel_msgs/msg/StreamPacket, field for field.

=====================  ======================================================
Packet                 StreamPacket
=====================  ======================================================
stamp_ns               header.stamp (sec, nanosec; sec may be negative)
frame_id               header.frame_id
packet_id, stream_id,  same names
seq, epoch, kind,
schema, content_type,
idempotency_key
payload (bytes)        payload (uint8[])
payload_ref (or None)  payload_ref (uri empty, size 0, sha256 empty ⇔ None)
meta (dict[str, str])  meta (KeyValue[], in dict order; a repeated key: last wins)
=====================  ======================================================

Every field survives ``from_msg(to_msg(p)) == p``, a zero stamp included (kept as 0, not
replaced by "now"). Numbers out of the message's range (seq: uint64, epoch: uint32,
stamp: int32 seconds) raise :class:`CodecError` rather than rclpy's bare assertion.

Speed: the payload is assigned as ``bytes`` (one memcpy into rclpy's ``array.array('B')``)
and read back with ``array.tobytes()`` (one memcpy); assigning a memoryview, list or
ndarray instead is copied element by element and is 100x slower for megabyte payloads.

The message classes are imported lazily (they do not need rclpy), so importing this module
costs nothing on machines without schnitzel_msgs.
"""
from __future__ import annotations

import array
from typing import Any, Dict

from ..packet import Packet, PayloadRef
from . import CodecError

_NS = 1_000_000_000
_UINT64_MAX = 2**64 - 1
_UINT32_MAX = 2**32 - 1
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _msg_classes():
    try:
        from schnitzel_msgs.msg import KeyValue, StreamPacket
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise CodecError(
            "schnitzel_msgs is not importable; build the workspace (scripts/setup.sh) and "
            f"source scripts/env.sh ({exc})"
        ) from None
    return StreamPacket, KeyValue


def _check_int(name: str, value: Any, lo: int, hi: int, packet_id: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CodecError(f"packet {packet_id}: {name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise CodecError(f"packet {packet_id}: {name} {value} is out of range [{lo}, {hi}]")
    return value


def _check_str(name: str, value: Any, packet_id: str) -> str:
    if not isinstance(value, str):
        raise CodecError(f"packet {packet_id}: {name} must be a string, got {type(value).__name__}")
    return value


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, array.array):
        return value.tobytes()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(type(value).__name__)  # bytes(5) would silently give 5 zero bytes


def to_msg(packet: Packet, msg: Any = None) -> Any:
    """A schnitzel_msgs/msg/StreamPacket carrying every field of ``packet``.

    ``msg`` may be a message to fill in place (reused between publishes).
    """
    StreamPacket, KeyValue = _msg_classes()
    if not isinstance(packet, Packet):
        raise CodecError(f"expected a schnitzel_core.packet.Packet, got {type(packet).__name__}")
    pid = str(packet.packet_id)
    m = StreamPacket() if msg is None else msg
    stamp = _check_int("stamp_ns", packet.stamp_ns, _INT32_MIN * _NS, _INT32_MAX * _NS + _NS - 1, pid)
    m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp, _NS)
    m.header.frame_id = _check_str("frame_id", packet.frame_id, pid)
    m.packet_id = _check_str("packet_id", packet.packet_id, pid)
    m.stream_id = _check_str("stream_id", packet.stream_id, pid)
    m.seq = _check_int("seq", packet.seq, 0, _UINT64_MAX, pid)
    m.epoch = _check_int("epoch", packet.epoch, 0, _UINT32_MAX, pid)
    m.kind = _check_str("kind", packet.kind, pid)
    m.schema = _check_str("schema", packet.schema, pid)
    m.content_type = _check_str("content_type", packet.content_type, pid)
    m.idempotency_key = _check_str("idempotency_key", packet.idempotency_key, pid)
    try:
        m.payload = _as_bytes(packet.payload)  # bytes: one memcpy (see module doc)
    except TypeError:
        raise CodecError(f"packet {pid}: payload must be bytes, got {type(packet.payload).__name__}") from None
    ref = packet.payload_ref
    if ref is None:
        m.payload_ref.uri, m.payload_ref.size, m.payload_ref.sha256 = "", 0, ""
    else:
        m.payload_ref.uri = _check_str("payload_ref.uri", ref.uri, pid)
        m.payload_ref.size = _check_int("payload_ref.size", ref.size, 0, _UINT64_MAX, pid)
        m.payload_ref.sha256 = _check_str("payload_ref.sha256", ref.sha256, pid)
    meta = packet.meta or {}
    if not isinstance(meta, dict):
        raise CodecError(f"packet {pid}: meta must be a dict of strings, got {type(meta).__name__}")
    kvs = []
    for k, v in meta.items():
        if not isinstance(k, str):
            raise CodecError(f"packet {pid}: meta key {k!r} must be a string")
        kvs.append(KeyValue(key=k, value=v if isinstance(v, str) else str(v)))
    m.meta = kvs
    return m


def from_msg(msg: Any) -> Packet:
    """The :class:`Packet` of a StreamPacket message (every field, zero stamp included)."""
    ref = msg.payload_ref
    payload_ref = None
    if ref.uri or ref.size or ref.sha256:
        payload_ref = PayloadRef(uri=ref.uri, size=int(ref.size), sha256=ref.sha256)
    meta: Dict[str, str] = {kv.key: kv.value for kv in msg.meta}
    stamp_ns = int(msg.header.stamp.sec) * _NS + int(msg.header.stamp.nanosec)
    p = Packet(
        stream_id=msg.stream_id,
        seq=int(msg.seq),
        kind=msg.kind,
        payload=_as_bytes(msg.payload),
        epoch=int(msg.epoch),
        stamp_ns=stamp_ns,
        frame_id=msg.header.frame_id,
        schema=msg.schema,
        content_type=msg.content_type,
        packet_id=msg.packet_id,
        idempotency_key=msg.idempotency_key,
        payload_ref=payload_ref,
        meta=meta,
    )
    # Packet() fills a zero stamp with "now"; the message said 0 (unknown), keep it.
    p.stamp_ns = stamp_ns
    return p


# Longer names for call sites that read better with them.
packet_to_msg = to_msg
msg_to_packet = from_msg

__all__ = ["CodecError", "to_msg", "from_msg", "packet_to_msg", "msg_to_packet"]
