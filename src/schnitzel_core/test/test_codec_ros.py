"""Packet ⇄ schnitzel_msgs/StreamPacket (schnitzel_core.codecs.ros)."""
import hashlib
import os
import subprocess
import sys
import time

import pytest

from schnitzel_core.codecs import CodecError
from schnitzel_core.packet import Packet, PayloadRef

msgs = pytest.importorskip("schnitzel_msgs.msg", reason="schnitzel_msgs is not built (run scripts/setup.sh)")
from schnitzel_core.codecs import ros as rc  # noqa: E402


def full_packet(payload=b"\x00\x01\xfe\xff payload"):
    return Packet(
        stream_id="cam0", seq=2**63 + 5, kind="detections", payload=payload, epoch=2**32 - 1,
        stamp_ns=1_700_000_000_123_456_789, frame_id="cam0_optical",
        schema="schnitzel.detections/1", content_type="application/json",
        packet_id="cam0/7/9", idempotency_key="k" * 32,
        payload_ref=PayloadRef(uri="shm://seg/4096", size=1 << 20, sha256="ab" * 32),
        meta={"zone": "dock", "model.version": "3", "ü": "ünïcode"},
    )


def test_every_field_reaches_the_message():
    p = full_packet()
    m = rc.to_msg(p)
    assert isinstance(m, msgs.StreamPacket)
    assert (m.header.stamp.sec, m.header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert m.header.frame_id == "cam0_optical"
    assert (m.packet_id, m.stream_id, m.seq, m.epoch) == ("cam0/7/9", "cam0", 2**63 + 5, 2**32 - 1)
    assert (m.kind, m.schema, m.content_type) == ("detections", "schnitzel.detections/1", "application/json")
    assert m.payload.tobytes() == p.payload
    assert (m.payload_ref.uri, m.payload_ref.size, m.payload_ref.sha256) == ("shm://seg/4096", 1 << 20, "ab" * 32)
    assert m.idempotency_key == "k" * 32
    assert [(kv.key, kv.value) for kv in m.meta] == [("zone", "dock"), ("model.version", "3"), ("ü", "ünïcode")]


def test_round_trip_preserves_every_field():
    p = full_packet()
    back = rc.from_msg(rc.to_msg(p))
    assert back == p
    assert isinstance(back.payload, bytes)
    assert list(back.meta) == list(p.meta)  # order too


@pytest.mark.parametrize("stamp_ns", [0, 1, -1, -1_500_000_000, 2**31 * 10**9 - 1])
def test_stamp_edges_round_trip(stamp_ns):
    p = Packet(stream_id="s", seq=1, kind="telemetry")
    p.stamp_ns = stamp_ns  # Packet() would replace 0 with "now"; the codec must not
    m = rc.to_msg(p)
    assert 0 <= m.header.stamp.nanosec < 10**9
    assert rc.from_msg(m).stamp_ns == stamp_ns


def test_inline_payload_has_no_ref_and_empty_meta():
    p = Packet(stream_id="s", seq=0, kind="telemetry", payload=b"x", stamp_ns=5)
    m = rc.to_msg(p)
    assert (m.payload_ref.uri, m.payload_ref.size, m.payload_ref.sha256) == ("", 0, "")
    back = rc.from_msg(m)
    assert back.payload_ref is None and back.meta == {} and back == p


def test_through_cdr_serialisation():
    ser = pytest.importorskip("rclpy.serialization", reason="rclpy is not importable")
    p = full_packet(payload=os.urandom(4096))
    raw = ser.serialize_message(rc.to_msg(p))
    assert rc.from_msg(ser.deserialize_message(raw, msgs.StreamPacket)) == p


def test_message_reuse_overwrites_everything():
    m = rc.to_msg(full_packet())
    q = Packet(stream_id="b", seq=1, kind="telemetry", stamp_ns=7)
    assert rc.to_msg(q, m) is m
    assert rc.from_msg(m) == q


def test_one_megabyte_payload_is_fast_and_intact():
    payload = os.urandom(1 << 20)
    p = full_packet(payload)
    enc = dec = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        m = rc.to_msg(p)
        t1 = time.perf_counter()
        back = rc.from_msg(m)
        t2 = time.perf_counter()
        enc, dec = min(enc, t1 - t0), min(dec, t2 - t1)
    assert hashlib.sha256(back.payload).digest() == hashlib.sha256(payload).digest()
    print(f"1 MB payload: to_msg {enc * 1e3:.2f} ms, from_msg {dec * 1e3:.2f} ms")
    # memcpy-speed is ~1 ms; an element-by-element copy of 1 MB costs ~60 ms or more.
    assert enc < 0.03 and dec < 0.03, (enc, dec)


@pytest.mark.parametrize("change, words", [
    (dict(seq=-1), ["seq -1", "out of range"]),
    (dict(epoch=2**32), ["epoch", "out of range"]),
    (dict(stamp_ns=2**31 * 10**9), ["stamp_ns", "out of range"]),
    (dict(seq="3"), ["seq must be an integer"]),
    (dict(kind=5), ["kind must be a string"]),
    (dict(payload="text"), ["payload must be bytes", "str"]),
    (dict(payload=5), ["payload must be bytes", "int"]),
    (dict(meta={1: "x"}), ["meta key 1"]),
])
def test_bad_packets_give_a_clear_error(change, words):
    p = Packet(stream_id="s", seq=1, kind="telemetry", stamp_ns=5)
    for k, v in change.items():
        setattr(p, k, v)
    with pytest.raises(CodecError) as exc:
        rc.to_msg(p)
    for w in words:
        assert w in str(exc.value)


def test_non_string_meta_values_become_text():
    p = Packet(stream_id="s", seq=1, kind="telemetry", stamp_ns=5, meta={"n": 3})
    assert rc.from_msg(rc.to_msg(p)).meta == {"n": "3"}


def test_rejects_what_is_not_a_packet():
    with pytest.raises(CodecError, match="expected a schnitzel_core.packet.Packet, got dict"):
        rc.to_msg({"stream_id": "s"})


def test_codecs_do_not_import_rclpy():
    # schnitzel_core's promise: no rclpy at import or when building messages.
    code = (
        "import sys, numpy as np\n"
        "from schnitzel_core.codecs import ros, image, legacy\n"
        "from schnitzel_core.packet import Packet\n"
        "ros.from_msg(ros.to_msg(Packet(stream_id='s', seq=1, kind='k')))\n"
        "image.from_ros_image(image.to_ros_image(np.zeros((2, 2), np.uint8), 'mono8'))\n"
        "legacy.msg_to_legacy(legacy.msg_from_legacy({'ts': 1}))\n"
        "assert 'rclpy' not in sys.modules, 'rclpy was imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
