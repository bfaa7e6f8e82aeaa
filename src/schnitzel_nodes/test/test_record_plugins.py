"""recorder and replay_source logic (no DDS), and the pure CDR codec against rclpy's."""
import threading
import time

from rclpy.serialization import deserialize_message, serialize_message

from schnitzel_core import recording as rec
from schnitzel_core.codecs import ros as codec
from schnitzel_core.packet import Packet, PayloadRef
from schnitzel_core.testing import LogicHarness
from schnitzel_msgs.msg import StreamPacket
from schnitzel_nodes.plugins.record import RecorderLogic, ReplaySourceLogic


def pk(i, stream="cam0"):
    return Packet.from_json(stream, i, "event", {"n": i}, epoch=1, stamp_ns=1_700_000_000_000_000_000 + i * 10_000_000)


def test_cdr_codec_matches_rclpy_serialization():
    for p in (pk(3), Packet("x", 2 ** 40, "video.frame", bytes(range(256)) * 3, stamp_ns=5,
                            payload_ref=PayloadRef("file:///x", 123, "ab"), meta={"k": "v", "z": "ü"}),
              Packet("", 0, "", b"", stamp_ns=1)):
        ours = rec.encode_packet(p)
        theirs = serialize_message(codec.to_msg(p))
        assert len(ours) == len(theirs)
        # byte for byte up to alignment padding (Fast CDR leaves padding bytes unset)
        assert codec.from_msg(deserialize_message(ours, StreamPacket)) == p
        assert rec.decode_packet(theirs) == p


def _record(path, n=20):
    h = LogicHarness(RecorderLogic, {"path": str(path), "topic": "/g/cam/out"}, node_id="rec", graph="g")
    for i in range(1, n + 1):
        h.send("in", pk(i))
    h.stop()


def test_recorder_writes_one_channel_replay_source_feeds_it_back_unchanged(tmp_path):
    path = tmp_path / "r.mcap"
    _record(path)
    meta = rec.info(str(path))
    assert meta["topics"]["/g/cam/out"]["count"] == 20

    h = LogicHarness(ReplaySourceLogic, {"path": str(path), "rate": 0.0}, node_id="cam", graph="g")
    h.logic.run(threading.Event())
    assert h.out("out") == [pk(i) for i in range(1, 21)]   # stamps, ids and keys as recorded


def test_replay_window_and_pacing(tmp_path):
    path = tmp_path / "r.mcap"
    # log times 0.1 s apart
    with rec.Recorder(str(path)) as r:
        for i in range(1, 11):
            r.write_packet("/g/cam/out", pk(i), log_time_ns=1_000_000_000 + i * 100_000_000)
    h = LogicHarness(ReplaySourceLogic, {"path": str(path), "rate": 1.0, "start_s": 0.25, "end_s": 0.65},
                     node_id="cam", graph="g")
    t0 = time.monotonic()
    h.logic.run(threading.Event())
    took = time.monotonic() - t0
    assert [p.seq for p in h.out()] == [4, 5, 6, 7]   # 0.3 .. 0.6 s after the first message
    assert took >= 0.29   # paced: 3 gaps of 0.1 s at rate 1


def test_replay_source_names_the_missing_topic(tmp_path):
    path = tmp_path / "r.mcap"
    _record(path, 2)
    try:
        LogicHarness(ReplaySourceLogic, {"path": str(path), "topics": ["/nope"]}, node_id="cam")
    except ValueError as exc:
        assert "/nope" in str(exc) and "/g/cam/out" in str(exc)
    else:
        raise AssertionError("configure accepted a topic the recording does not have")


def test_jsonl_sink_output_has_no_queue_bookkeeping(tmp_path):
    """Row ids depend on group-commit batching and attempts on retries: with them in the file, the
    same packets replayed at another rate gave different bytes."""
    from schnitzel_core.testing import wait_for
    from schnitzel_nodes.plugins.delivery import JsonlSinkLogic

    path = tmp_path / "out.jsonl"
    h = LogicHarness(JsonlSinkLogic, {"path": str(path)}, node_id="file")
    h.send("in", pk(1).with_meta(**{"schnitzel.queue": "q", "schnitzel.row_id": 65536, "schnitzel.attempt": 2,
                                   "schnitzel.sinks": "file", "zone": "A"}))
    assert wait_for(lambda: len(h.ctx.acks) == 1)
    h.stop()
    import json
    [line] = path.read_text().splitlines()
    assert json.loads(line)["meta"] == {"zone": "A"}
