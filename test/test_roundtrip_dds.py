"""StreamPacket round trip across two OS processes over DDS.

A publisher subprocess (this file run as a script) sends, on one reliable topic:
  1. a packet with every field set to a non-default value,
  2. a packet with a 1 MB payload,
  3. 1,000 small packets, seq 0..999.
The subscriber in the test process checks every field, the 1 MB payload's sha256, and that
the 1,000 packets arrive complete and in order. Both sides convert with
schnitzel_core.codecs.ros, so the codec is exercised on real CDR messages.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
import uuid

N_SMALL = 1000
BIG_SIZE = 1 << 20
DEPTH = N_SMALL + 16  # reliable + deep history: the writer never overwrites an unacknowledged sample


def full_packet():
    from schnitzel_core.packet import Packet, PayloadRef

    return Packet(
        stream_id="cam_roundtrip", seq=2**64 - 1, kind="detections", epoch=2**32 - 1,
        payload=bytes(range(256)) * 3, stamp_ns=1_700_000_000_987_654_321, frame_id="cam0_optical",
        schema="schnitzel.detections/1", content_type="application/json; charset=utf-8",
        packet_id="cam_roundtrip/4294967295/18446744073709551615", idempotency_key="f" * 32,
        payload_ref=PayloadRef(uri="shm://seg0/4096", size=123456, sha256="0123abcd" * 8),
        meta={"zone": "dock", "model.version": "3.1", "unicode": "grüße ✓", "empty": ""},
    )


def big_payload() -> bytes:
    # Deterministic, incompressible-looking bytes both processes can rebuild.
    block = b"".join(hashlib.sha256(i.to_bytes(4, "little")).digest() for i in range(BIG_SIZE // 32))
    return block[:BIG_SIZE]


def big_packet():
    from schnitzel_core.packet import Packet

    payload = big_payload()
    return Packet(stream_id="cam_big", seq=1, kind="video.frame", payload=payload,
                  content_type="application/octet-stream", stamp_ns=1_700_000_001_000_000_000,
                  meta={"sha256": hashlib.sha256(payload).hexdigest()})


def small_packet(i: int):
    from schnitzel_core.packet import Packet

    return Packet(stream_id="imu", seq=i, kind="sensor.imu", payload=f"sample {i}".encode(),
                  stamp_ns=1_700_000_002_000_000_000 + i)


def qos():
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                      history=HistoryPolicy.KEEP_LAST, depth=DEPTH)


# ---- publisher (runs in the subprocess) ---------------------------------------

def publish_main(topic: str, match_timeout: float = 90.0) -> int:
    import rclpy
    from rclpy.duration import Duration
    from rclpy._rclpy_pybind11 import RCLError

    from schnitzel_core.codecs.ros import to_msg
    from schnitzel_msgs.msg import StreamPacket

    rclpy.init()
    node = rclpy.create_node(f"roundtrip_pub_{os.getpid()}")
    pub = node.create_publisher(StreamPacket, topic, qos())
    deadline = time.monotonic() + match_timeout
    while pub.get_subscription_count() < 1:  # discovery, not a fixed sleep
        if time.monotonic() > deadline:
            print("ERROR: no subscriber matched", flush=True)
            return 2
        time.sleep(0.02)
    print("matched", flush=True)

    def send(packet) -> None:
        msg = to_msg(packet)
        for attempt in range(200):
            try:
                pub.publish(msg)
                return
            except RCLError as exc:  # transient "cannot publish data" under load
                if attempt == 199:
                    raise
                print(f"retrying publish of seq {packet.seq}: {exc}", flush=True)
                time.sleep(0.01)

    send(full_packet())
    send(big_packet())
    for i in range(N_SMALL):
        send(small_packet(i))
    print("published", flush=True)
    acked = pub.wait_for_all_acked(Duration(seconds=120))
    print("acked" if acked else "ERROR: not all acknowledged", flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0 if acked else 3


# ---- the test -----------------------------------------------------------------

def test_stream_packet_round_trip_across_processes(spawn):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from schnitzel_core.codecs.ros import from_msg
    from schnitzel_msgs.msg import StreamPacket

    try:
        from rclpy.experimental.events_executor import EventsExecutor as Executor
    except ImportError:  # older rclpy
        Executor = SingleThreadedExecutor

    topic = f"/schnitzel_test/roundtrip_{uuid.uuid4().hex[:12]}"
    total = 2 + N_SMALL
    received = []
    ctx = rclpy.Context()  # own context: other tests in this process may use the default one
    rclpy.init(context=ctx)
    try:
        node = rclpy.create_node(f"roundtrip_sub_{os.getpid()}", context=ctx)
        node.create_subscription(StreamPacket, topic, lambda m: received.append(from_msg(m)), qos())
        executor = Executor(context=ctx)
        executor.add_node(node)

        pub = spawn.script(__file__, "publish", topic)
        t0 = time.monotonic()
        deadline = t0 + 240  # generous: a loaded 2-core machine
        while len(received) < total and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.2)
            if pub.poll() not in (None, 0):
                break
        elapsed = time.monotonic() - t0
        if len(received) < total and pub.poll() == 0:
            # The writer finished and every sample was acknowledged: drain what is queued.
            end = time.monotonic() + 10
            while len(received) < total and time.monotonic() < end:
                executor.spin_once(timeout_sec=0.2)
        assert pub.wait(timeout=150) == 0, f"publisher failed:\n{spawn.output(pub)}"
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=ctx)

    assert len(received) == total, (
        f"received {len(received)} of {total} packets in {elapsed:.1f}s; publisher said:\n{spawn.output(pub)}")

    # 1. every field preserved
    assert received[0] == full_packet()

    # 2. 1 MB payload intact
    big = received[1]
    assert len(big.payload) == BIG_SIZE
    assert hashlib.sha256(big.payload).hexdigest() == hashlib.sha256(big_payload()).hexdigest() == big.meta["sha256"]
    assert big == big_packet()

    # 3. 1,000 packets, none lost, none duplicated, in order, contents intact
    small = received[2:]
    assert [p.seq for p in small] == list(range(N_SMALL))
    assert all(p == small_packet(p.seq) for p in small)
    print(f"round trip: {total} packets (one of 1 MB) in {elapsed:.2f}s")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "publish":
        sys.exit(publish_main(sys.argv[2]))
    print(f"usage: {sys.argv[0]} publish TOPIC", file=sys.stderr)
    sys.exit(64)
