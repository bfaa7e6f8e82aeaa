"""MCAP recordings in rosbag2's layout (schnitzel_core.recording): what a file holds, that a
SIGKILLed writer leaves every finished chunk readable, and that recover copies exactly those."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import yaml

from schnitzel_core import recording as rec
from schnitzel_core.packet import Packet, PayloadRef


def pk(i, stream="cam0", **kw):
    return Packet.from_json(stream, i, "event", {"n": i}, epoch=2, stamp_ns=1_700_000_000_000_000_000 + i * 1000,
                            meta={"zone": "A"}, **kw)


def test_cdr_round_trip_keeps_every_field():
    p = Packet(stream_id="cam0", seq=2 ** 40 + 3, kind="video.frame", payload=bytes(range(256)) * 3, epoch=7,
               stamp_ns=1_700_000_000_123_456_789, frame_id="cam0_optical", schema="s/1",
               content_type="image/raw;encoding=mono8;width=16;height=48;step=16",
               payload_ref=PayloadRef("file:///x/y", 768, "ab" * 32), meta={"a": "b", "ü": "ö"})
    q = rec.decode_packet(rec.encode_packet(p))
    assert q == p
    assert rec.cdr_stamp_ns(rec.encode_packet(p)) == p.stamp_ns


def test_cdr_rejects_truncated_bytes():
    data = rec.encode_packet(pk(1))
    with pytest.raises(rec.CdrError):
        rec.decode_packet(data[:-5])


def test_recording_has_rosbag2_layout(tmp_path):
    path = str(tmp_path / "r.mcap")
    events = {"reliability": "reliable", "durability": "volatile", "history": "keep_last", "depth": 100}
    with rec.Recorder(path, chunk_size=2048) as r:
        r.add_topic("/g/src/out", rec.STREAM_PACKET, events)
        r.add_topic("/g/det/events", rec.STREAM_PACKET,
                    {"reliability": "best_effort", "durability": "volatile", "history": "keep_last", "depth": 1})
        for i in range(1, 41):
            r.write_packet("/g/src/out", pk(i), log_time_ns=2_000 + i)
        for i in range(1, 6):
            r.write_packet("/g/det/events", pk(i, "det"), log_time_ns=3_000 + i)
    meta = rec.info(path)
    assert meta["profile"] == "ros2"
    assert meta["chunks"] > 1    # chunked
    assert {t: d["count"] for t, d in meta["topics"].items()} == {"/g/src/out": 40, "/g/det/events": 5}
    for d in meta["topics"].values():
        assert d["type"] == "schnitzel_msgs/msg/StreamPacket" and d["message_encoding"] == "cdr"
        qos = yaml.safe_load(d["metadata"]["offered_qos_profiles"])
        assert isinstance(qos, list) and set(qos[0]) == {
            "history", "depth", "reliability", "durability", "deadline", "lifespan", "liveliness",
            "liveliness_lease_duration", "avoid_ros_namespace_conventions"}
    qos = yaml.safe_load(meta["topics"]["/g/src/out"]["metadata"]["offered_qos_profiles"])[0]
    assert (qos["reliability"], qos["durability"], qos["history"], qos["depth"]) == ("reliable", "volatile",
                                                                                    "keep_last", 100)
    bag = yaml.safe_load(meta["metadata"]["rosbag2"]["serialized_metadata"])
    assert bag["version"] == 9 and bag["storage_identifier"] == "mcap" and bag["message_count"] == 45
    assert {t["topic_metadata"]["name"]: t["message_count"] for t in bag["topics_with_message_count"]} == {
        "/g/src/out": 40, "/g/det/events": 5}
    assert bag["compression_format"] == ""   # chunk compression is the storage's own, not rosbag2's

    from mcap.reader import make_reader
    with open(path, "rb") as f:
        reader = make_reader(f)
        assert reader.get_header().profile == "ros2"
        schemas = reader.get_summary().schemas.values()
        [schema] = schemas
        assert schema.name == "schnitzel_msgs/msg/StreamPacket" and schema.encoding == "ros2msg"
        text = schema.data.decode()
        for dep in ("std_msgs/Header", "builtin_interfaces/Time", "schnitzel_msgs/PayloadRef",
                    "schnitzel_msgs/KeyValue"):
            assert "=" * 80 + f"\nMSG: {dep}\n" in text
        assert {c.compression for c in reader.get_summary().chunk_indexes} == {"zstd"}
    msgs = list(rec.read_messages(path, ["/g/src/out"]))
    assert [rec.decode_packet(m.data) for m in msgs] == [pk(i) for i in range(1, 41)]
    assert [m.publish_time_ns for m in msgs] == [pk(i).stamp_ns for i in range(1, 41)]
    assert [m.log_time_ns for m in msgs] == [2_000 + i for i in range(1, 41)]


WRITER = textwrap.dedent("""
    import sys, time
    from schnitzel_core import recording as rec
    from schnitzel_core.packet import Packet
    r = rec.Recorder(sys.argv[1], chunk_size=1 << 30, flush_interval_s=3600)
    for i in range(1, 51):
        r.write_packet("/g/src/out", Packet.from_json("s", i, "event", {"n": i}, stamp_ns=10**18 + i))
        if i % 10 == 0:
            r.flush_interval_s = 0
            r.tick()                     # closes a chunk of 10
            r.flush_interval_s = 3600
    for i in range(51, 56):              # an open chunk: never written
        r.write_packet("/g/src/out", Packet.from_json("s", i, "event", {"n": i}, stamp_ns=10**18 + i))
    print("READY", flush=True)
    time.sleep(60)
""")


def test_sigkilled_writer_leaves_every_finished_chunk_and_recover_copies_them(tmp_path):
    path = tmp_path / "killed.mcap"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    with pytest.raises(rec.RecordingError, match="recover"):
        rec.info(str(path))               # no summary: the writer never finished
    out = tmp_path / "clean.mcap"
    res = rec.recover(str(path), str(out))
    assert res["chunks"] == 5 and res["messages"] == 50
    meta = rec.info(str(out))
    assert meta["messages"] == 50 and meta["topics"]["/g/src/out"]["count"] == 50
    assert "offered_qos_profiles" in meta["topics"]["/g/src/out"]["metadata"]
    got = [rec.decode_packet(m.data).seq for m in rec.read_messages(str(out))]
    assert got == list(range(1, 51))


def test_recover_stops_at_a_torn_chunk(tmp_path):
    path = tmp_path / "r.mcap"
    with rec.Recorder(str(path), chunk_size=1024) as r:
        for i in range(1, 201):
            r.write_packet("/t", pk(i))
    data = path.read_bytes()
    whole = rec.info(str(path))["chunks"]
    # cut inside the last chunk (the summary and the last chunk's tail go)
    from mcap.reader import make_reader
    with open(path, "rb") as f:
        last = max(make_reader(f).get_summary().chunk_indexes, key=lambda c: c.chunk_start_offset)
    (tmp_path / "torn.mcap").write_bytes(data[:last.chunk_start_offset + last.chunk_length // 2])
    res = rec.recover(str(tmp_path / "torn.mcap"), str(tmp_path / "ok.mcap"))
    assert res["chunks"] == whole - 1 and res["problem"]
    seqs = [rec.decode_packet(m.data).seq for m in rec.read_messages(str(tmp_path / "ok.mcap"))]
    assert seqs == list(range(1, len(seqs) + 1)) and 0 < len(seqs) < 200
