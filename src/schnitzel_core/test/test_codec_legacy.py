"""Packets ⇄ legacy event JSON of event protocol v0.2 (schnitzel_core.codecs.legacy)."""
import json

import pytest

import schnitzel_core.packet as packet_mod
from schnitzel_core.codecs import CodecError
from schnitzel_core.codecs import legacy as lg
from schnitzel_core.packet import Packet, derive_key

FULL = {
    "event_id": "3f2a9c1e-8d4b-4a57-9f0e-2b7c6d1a5e90",
    "ts": "2024-05-01T12:00:00.250Z",
    "site_id": "plant-3",
    "camera_id": "cam0",
    "event_type": "intrusion",
    "severity": "high",
    "bbox": [10, 20.5, 110, 220],
    "confidence": 0.91,
    "zone": "dock",
    "track_id": 7,
    "object_type": "person",
    "sensor": {"range_m": 3.25, "imu": [0.1, 0.2, 9.8]},
}


def test_event_to_packet_mapping():
    p = lg.from_legacy(FULL)
    assert p.kind == "event" and p.schema == "legacy.event/0.2"
    assert p.content_type == "application/json"
    assert p.stream_id == "cam0"
    assert p.stamp_ns == 1_714_564_800_250_000_000
    assert p.idempotency_key == FULL["event_id"]  # a UUID is used as is
    assert p.packet_id == f"legacy/cam0/{FULL['event_id']}"
    assert p.meta == {"site_id": "plant-3", "camera_id": "cam0", "event_type": "intrusion",
                      "severity": "high", "zone": "dock", "object_type": "person", "track_id": "7"}
    assert p.json() == FULL


@pytest.mark.parametrize("event", [
    FULL,
    dict(FULL, extra_field={"nested": [1, 2, {"x": None}]}, vendor="acme"),  # unknown fields kept
    {"ts": 1714564800.25, "camera_id": "cam1", "event_type": "loitering"},   # numeric ts, no id
    {"ts": "2024-05-01 14:00:00.123456789+02:00", "event_id": 1234},          # offset, int id
    {"ts": 0, "site_id": "s1", "bbox": {"x": 1, "y": 2, "w": 3, "h": 4}, "confidence": None},
])
def test_event_packet_event_is_lossless(event):
    p = lg.from_legacy(event)
    assert lg.to_legacy(p) == event
    assert lg.to_legacy(lg.from_legacy(json.dumps(event))) == event
    assert lg.to_legacy(lg.from_legacy(json.dumps(event).encode())) == event


def test_packet_event_packet_keeps_identity_and_stamp():
    src = Packet.from_json("cam9", 41, "event", {"event_type": "fall", "track_id": 3},
                           epoch=2, stamp_ns=1_700_000_000_000_000_123, meta={"site_id": "s7", "severity": "low"})
    ev = lg.to_legacy(src)
    assert ev == {"event_type": "fall", "track_id": 3, "event_id": src.idempotency_key,
                  "ts": "2023-11-14T22:13:20.000000123Z", "camera_id": "cam9",
                  "site_id": "s7", "severity": "low"}
    back = lg.from_legacy(ev)
    assert back.idempotency_key == src.idempotency_key
    assert back.stamp_ns == src.stamp_ns
    assert (back.stream_id, back.meta["site_id"], back.meta["severity"]) == ("cam9", "s7", "low")
    assert json.loads(lg.to_legacy_json(src)) == ev
    assert lg.to_legacy_json(src) == lg.to_legacy_json(src)


def test_payload_fields_win_over_packet_fields():
    p = Packet.from_json("cam0", 1, "event", {"camera_id": "camX", "ts": "2020-01-01T00:00:00Z", "event_id": "e1"},
                         stamp_ns=5, meta={"zone": "meta-zone"})
    ev = lg.to_legacy(p)
    assert (ev["camera_id"], ev["ts"], ev["event_id"], ev["zone"]) == ("camX", "2020-01-01T00:00:00Z", "e1", "meta-zone")


def test_keys_are_deterministic_and_never_from_the_clock(monkeypatch):
    no_id = {k: v for k, v in FULL.items() if k != "event_id"}
    monkeypatch.setattr(packet_mod, "now_ns", lambda: 1)
    k1 = lg.from_legacy(no_id).idempotency_key
    monkeypatch.setattr(packet_mod, "now_ns", lambda: 10**19)
    reordered = dict(reversed(list(no_id.items())))
    k2 = lg.from_legacy(reordered).idempotency_key
    assert k1 == k2 and len(k1) == 32
    assert k1 == derive_key("legacy.event", "cam0", 1_714_564_800_250_000_000, "intrusion", 7, "person", "dock")
    # The same instant written another way is the same event.
    assert lg.from_legacy(dict(no_id, ts="2024-05-01T14:00:00.25+02:00")).idempotency_key == k1
    assert lg.from_legacy(dict(no_id, ts=1714564800.25)).idempotency_key == k1
    # A different identity gives a different key.
    assert lg.from_legacy(dict(no_id, track_id=8)).idempotency_key != k1
    assert lg.from_legacy(dict(no_id, ts="2024-05-01T12:00:00.251Z")).idempotency_key != k1
    # null and missing are the same; fields outside the identity (confidence) do not count.
    assert lg.from_legacy(dict(no_id, event_id=None, zone=None)).idempotency_key == \
        lg.from_legacy({k: v for k, v in no_id.items() if k != "zone"}).idempotency_key
    assert lg.from_legacy(dict(no_id, confidence=0.5)).idempotency_key == k1


def test_event_id_that_is_not_a_plain_token_is_hashed():
    p = lg.from_legacy({"ts": 1, "event_id": "event 42 / with spaces"})
    assert p.idempotency_key == derive_key("legacy.event", "event 42 / with spaces")
    assert lg.from_legacy({"ts": 2, "event_id": "event 42 / with spaces"}).idempotency_key == p.idempotency_key


def test_seq_epoch_and_meta_can_be_given():
    p = lg.from_legacy(FULL, seq=12, epoch=3, meta={"schnitzel.row_id": "9"})
    assert (p.seq, p.epoch, p.meta["schnitzel.row_id"], p.meta["zone"]) == (12, 3, "9", "dock")


@pytest.mark.parametrize("ts, ns", [
    ("2024-05-01T12:00:00Z", 1_714_564_800_000_000_000),
    ("2024-05-01T12:00:00", 1_714_564_800_000_000_000),  # no offset: UTC
    ("2024-05-01T12:00:00.5+00:00", 1_714_564_800_500_000_000),
    ("2024-05-01T13:00:00.000000001+01:00", 1_714_564_800_000_000_001),
    (1714564800, 1_714_564_800_000_000_000),
    ("1714564800.000001", 1_714_564_800_000_001_000),
    (0, 0),
])
def test_parse_ts(ts, ns):
    assert lg.parse_ts(ts) == ns


@pytest.mark.parametrize("ns, text", [
    (1_714_564_800_000_000_000, "2024-05-01T12:00:00Z"),
    (1_714_564_800_250_000_000, "2024-05-01T12:00:00.250Z"),
    (1_714_564_800_000_001_000, "2024-05-01T12:00:00.000001Z"),
    (1_714_564_800_000_000_001, "2024-05-01T12:00:00.000000001Z"),
])
def test_format_ts_round_trips(ns, text):
    assert lg.format_ts(ns) == text
    assert lg.parse_ts(text) == ns


@pytest.mark.parametrize("event, words", [
    ("[1, 2]", ["JSON object", "list"]),
    ("{not json", ["not valid JSON"]),
    (b"\xff\xfe", ["UTF-8"]),
    ({"camera_id": "c"}, ["no 'ts'"]),
    ({"ts": "yesterday"}, ["'yesterday'", "ISO 8601"]),
    ({"ts": float("inf")}, ["finite"]),
    ({"ts": True}, ["ts must be"]),
    ({"ts": 1, "bbox": [1, 2, 3]}, ["bbox", "four numbers"]),
    ({"ts": 1, "bbox": "1,2,3,4"}, ["bbox"]),
    ({"ts": 1, "confidence": "high"}, ["confidence must be a number"]),
    ({"ts": 1, "track_id": [1]}, ["track_id"]),
    ({"ts": 1, "camera_id": {"a": 1}}, ["camera_id", "text"]),
    ({"ts": 1, "when": object()}, ["JSON-serialisable"]),
])
def test_bad_events_give_a_clear_error(event, words):
    with pytest.raises(CodecError) as exc:
        lg.from_legacy(event)
    for w in words:
        assert w in str(exc.value)


@pytest.mark.parametrize("p, words", [
    (Packet.from_json("c", 1, "detections", {"boxes": []}), ["kind 'detections'", "only events"]),
    (Packet(stream_id="c", seq=1, kind="event", payload=b"\x89PNG"), ["not JSON"]),
    (Packet.from_json("c", 1, "event", [1, 2]), ["JSON object", "list"]),
    (Packet.from_json("c", 1, "event", {"bbox": "nope"}), ["bbox"]),
])
def test_bad_packets_give_a_clear_error(p, words):
    with pytest.raises(CodecError) as exc:
        lg.to_legacy(p)
    for w in words:
        assert w in str(exc.value)


def test_empty_event_packet_becomes_a_minimal_event():
    p = Packet(stream_id="cam3", seq=4, kind="event", stamp_ns=1_000_000_000)
    assert lg.to_legacy(p) == {"event_id": p.idempotency_key, "ts": "1970-01-01T00:00:01Z", "camera_id": "cam3"}


def test_stream_packet_message_round_trip():
    pytest.importorskip("schnitzel_msgs.msg", reason="schnitzel_msgs is not built (run scripts/setup.sh)")
    event = dict(FULL, extra="kept")
    m = lg.msg_from_legacy(event, seq=5)
    assert (m.kind, m.stream_id, m.seq, m.idempotency_key) == ("event", "cam0", 5, FULL["event_id"])
    assert (m.header.stamp.sec, m.header.stamp.nanosec) == (1_714_564_800, 250_000_000)
    assert lg.msg_to_legacy(m) == event


def test_fill_can_be_forced_for_a_wrapped_legacy_event():
    p = lg.from_legacy({"ts": 0, "site_id": "s1"})
    assert lg.to_legacy(p) == {"ts": 0, "site_id": "s1"}
    assert lg.to_legacy(p, fill=True) == {"ts": 0, "site_id": "s1", "camera_id": "s1",
                                          "event_id": p.idempotency_key}
