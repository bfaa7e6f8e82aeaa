"""zones, dedup, rules, event_builder (LogicHarness, no DDS)."""
import http.server
import json
import os
import threading
import time

import pytest

from schnitzel_core.codecs import legacy
from schnitzel_core.packet import Packet, derive_key
from schnitzel_core.testing import LogicHarness
from schnitzel_nodes.plugins._common import ConfigError
from schnitzel_nodes.plugins.expr import Expression
from schnitzel_nodes.plugins.policy import (DedupLogic, EventBuilderLogic, RulesLogic, ZonesLogic,
                                            point_in_polygon)

T0 = 1_700_000_000_000_000_000
MS = 1_000_000
SQUARE = [[100, 100], [200, 100], [200, 200], [100, 200]]
ZONES = [{"id": "dock", "polygon": SQUARE}]


def dets(seq, boxes, stream="cam", stamp_ms=None):
    return Packet.from_json(stream, seq, "detections", {"boxes": boxes, "width": 640, "height": 480},
                            stamp_ns=T0 + (seq * 100 if stamp_ms is None else stamp_ms) * MS)


def box(x1, y1, x2, y2, tid=None, label="person"):
    b = {"x1": x1, "y1": y1, "x2": x2, "y2": y2, "score": 0.9, "label": label}
    if tid is not None:
        b["track_id"] = tid
    return b


# ---- geometry ----

@pytest.mark.parametrize("pt,inside", [
    ((150, 150), True), ((100, 150), True), ((200, 200), True), ((150, 100), True),  # interior, edge, vertex
    ((200.0001, 150), False), ((99.9, 150), False), ((150, 250), False)])
def test_point_in_polygon_edges_count_as_inside(pt, inside):
    assert point_in_polygon(*pt, SQUARE) is inside


def test_point_in_concave_polygon():
    u = [[0, 0], [30, 0], [30, 30], [20, 30], [20, 10], [10, 10], [10, 30], [0, 30]]
    assert point_in_polygon(5, 20, u) and not point_in_polygon(15, 20, u) and point_in_polygon(15, 10, u)


# ---- zones ----

def test_zones_rules_bottom_center_vs_bbox_center_and_edges():
    # bottom centre (150, 200) is on the zone's bottom edge -> inside; bbox centre (150, 150) inside too
    b_edge = box(130, 160, 170, 200)
    # feet inside, centre outside the zone
    b_feet = box(130, 40, 170, 150)
    h = LogicHarness(ZonesLogic, {"zones": ZONES, "emit": []})
    out = h.send("in", dets(0, [b_edge, b_feet]))[0].json()["boxes"]
    assert [b["zones"] for b in out] == [["dock"], ["dock"]]
    h = LogicHarness(ZonesLogic, {"zones": ZONES, "rule": "bbox_center", "emit": []})
    out = h.send("in", dets(0, [b_edge, b_feet]))[0].json()["boxes"]
    assert [b["zones"] for b in out] == [["dock"], []]


def test_zones_enter_exit_events_per_track_and_empty_detections():
    h = LogicHarness(ZonesLogic, {"zones": ZONES, "emit": ["enter", "exit"]})
    assert h.send("in", dets(0, []))[0].json()["boxes"] == []
    seq_boxes = [box(0, 0, 40, 40, tid=7), box(120, 120, 160, 160, tid=7), box(125, 120, 165, 160, tid=7),
                 box(300, 300, 340, 340, tid=7)]
    for i, b in enumerate(seq_boxes, 1):
        h.send("in", dets(i, [b]))
    ev = [(p.seq, p.json()["event_type"], p.json()["zone"], p.json()["track_id"]) for p in h.out("events")]
    assert ev == [(2, "zone_enter", "dock", 7), (4, "zone_exit", "dock", 7)]
    e = h.out("events")[0]
    assert e.kind == "event" and e.meta["zone"] == "dock" and e.json()["bbox"] == [120, 120, 160, 160]


def test_zones_track_missing_for_a_frame_does_not_reenter_but_is_forgotten_later():
    h = LogicHarness(ZonesLogic, {"zones": ZONES, "emit": ["enter"], "forget_s": 1.0})
    inside = box(120, 120, 160, 160, tid=3)
    h.send("in", dets(0, [inside]))
    h.send("in", dets(1, []))            # detector missed it for a frame (100 ms)
    h.send("in", dets(2, [inside]))
    assert len(h.out("events")) == 1
    h.send("in", dets(30, []))           # 2.8 s later: forgotten
    h.send("in", dets(31, [inside]))
    assert [p.seq for p in h.out("events")] == [0, 31]


def test_zones_labels_normalized_and_inside_events():
    zones = [{"id": "n", "polygon": [[0, 0], [0.5, 0], [0.5, 0.5], [0, 0.5]], "normalized": True, "labels": ["car"]}]
    h = LogicHarness(ZonesLogic, {"zones": zones, "emit": ["inside"], "drop_outside": True})
    out = h.send("in", dets(0, [box(10, 10, 50, 50, label="car"), box(10, 10, 50, 50, label="person")]))
    assert [b["label"] for b in out[0].json()["boxes"]] == ["car"]
    assert [p.json()["event_type"] for p in h.out("events")] == ["zone_inside"]


def test_zones_file_reload_on_change_and_bad_edit_keeps_previous(tmp_path):
    f = tmp_path / "zones.yaml"
    f.write_text("zones:\n  - id: a\n    polygon: [[0, 0], [100, 0], [100, 100], [0, 100]]\n")
    h = LogicHarness(ZonesLogic, {"zones_file": str(f), "emit": []})
    b = box(140, 100, 160, 150)
    assert h.send("in", dets(0, [b]))[0].json()["boxes"][0]["zones"] == []
    f.write_text("zones:\n  - id: b\n    polygon: [[100, 100], [200, 100], [200, 200], [100, 200]]\n")
    os.utime(f, (time.time() + 5, time.time() + 5))  # make sure the mtime differs
    assert h.send("in", dets(1, [b]))[0].json()["boxes"][0]["zones"] == ["b"]
    f.write_text("zones: [ {id: broken")  # a half-saved edit
    os.utime(f, (time.time() + 10, time.time() + 10))
    assert h.send("in", dets(2, [b]))[0].json()["boxes"][0]["zones"] == ["b"]
    assert h.ctx.counters["zone_reloads"] == 2 and h.ctx.counters["zone_reload_errors"] == 1


def test_zones_unknown_are_flagged_not_outside(tmp_path):
    h = LogicHarness(ZonesLogic, {"zones_file": str(tmp_path / "later.json"), "emit": ["enter", "exit"]})
    out = h.send("in", dets(0, [box(120, 120, 160, 160, tid=1)]))
    assert len(out) == 1
    assert out[0].meta["zones_unknown"] == "1" and out[0].json()["zones_unknown"] is True
    assert "zones" not in out[0].json()["boxes"][0]
    (tmp_path / "later.json").write_text(json.dumps(ZONES))
    h.send("in", dets(1, [box(120, 120, 160, 160, tid=1)]))
    assert [p.json()["event_type"] for p in h.out("events")] == ["zone_enter"]


class _ZoneHandler(http.server.BaseHTTPRequestHandler):
    body = json.dumps({"zones": ZONES}).encode()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *a):
        pass


def test_zones_from_http_with_cached_fallback(tmp_path):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ZoneHandler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/zones"
    cache = tmp_path / "zones.cache.json"
    params = {"zones_url": url, "cache_file": str(cache), "timeout_s": 1.0, "refresh_s": 3600, "emit": []}
    try:
        h = LogicHarness(ZonesLogic, params)
        assert h.logic.zones_source == "url"
        assert h.send("in", dets(0, [box(120, 120, 160, 160)]))[0].json()["boxes"][0]["zones"] == ["dock"]
        h.stop()
    finally:
        srv.shutdown()
        srv.server_close()
    assert json.loads(cache.read_text())["zones"][0]["id"] == "dock"
    # endpoint gone: the cache is used
    h = LogicHarness(ZonesLogic, params)
    assert h.logic.zones_source == "cache"
    assert h.send("in", dets(0, [box(120, 120, 160, 160)]))[0].json()["boxes"][0]["zones"] == ["dock"]
    h.stop()
    # endpoint gone and no cache: zones unknown, packets flagged
    cache.unlink()
    h = LogicHarness(ZonesLogic, params)
    out = h.send("in", dets(0, [box(120, 120, 160, 160)]))[0]
    assert out.meta["zones_unknown"] == "1" and h.ctx.counters["zone_fetch_errors"] == 1
    h.stop()


def test_zones_disabled_zone_never_fires_and_enabled_must_be_a_bool(tmp_path):
    zones = [{"id": "dock", "polygon": SQUARE, "enabled": False},
             {"id": "yard", "polygon": SQUARE, "enabled": True}]
    h = LogicHarness(ZonesLogic, {"zones": zones, "emit": ["enter", "exit", "inside"]})
    out = h.send("in", dets(0, [box(120, 120, 160, 160, tid=1)]))[0]
    h.send("in", dets(1, [box(300, 300, 340, 340, tid=1)]))
    assert out.json()["boxes"][0]["zones"] == ["yard"]
    assert {p.json()["zone"] for p in h.out("events")} == {"yard"}
    # the same in a zone file (YAML), and a typo'd value is refused, never read as "enabled"
    f = tmp_path / "zones.yaml"
    f.write_text("- id: dock\n  enabled: false\n  polygon: [[100, 100], [200, 100], [200, 200], [100, 200]]\n")
    h = LogicHarness(ZonesLogic, {"zones_file": str(f), "emit": ["inside"]})
    assert h.send("in", dets(0, [box(120, 120, 160, 160)]))[0].json()["boxes"][0]["zones"] == []
    assert h.out("events") == []
    with pytest.raises(ConfigError, match="enabled must be true or false"):
        LogicHarness(ZonesLogic, {"zones": [{"id": "x", "polygon": SQUARE, "enabled": "no"}]})


def test_zones_bad_config():
    with pytest.raises(ConfigError, match="at least 3"):
        LogicHarness(ZonesLogic, {"zones": [{"id": "x", "polygon": [[0, 0], [1, 1]]}]})
    with pytest.raises(ConfigError, match="twice"):
        LogicHarness(ZonesLogic, {"zones": [{"id": "x", "polygon": SQUARE}] * 2})
    with pytest.raises(ConfigError, match="give zones"):
        LogicHarness(ZonesLogic, {})


# ---- dedup ----

def ev(seq, stamp_ms, track=1, zone="dock", etype="zone_enter", severity="low"):
    return Packet.from_json("cam", seq, "event", {"track_id": track, "zone": zone, "event_type": etype,
                                                  "severity": severity}, stamp_ns=T0 + stamp_ms * MS)


def test_dedup_cooldown_by_event_time_and_severity_escalation():
    h = LogicHarness(DedupLogic, {"cooldown_s": 5})
    stream = [ev(0, 0), ev(1, 1000), ev(2, 1000, track=2), ev(3, 2000, severity="high"),
              ev(4, 3000), ev(5, 5999, severity="low"), ev(6, 7000), ev(7, 7100, etype="loiter")]
    passed = [p.seq for e in stream for p in h.send("in", e)]
    # 0 first; 1 suppressed; 2 other track; 3 higher severity; 4 suppressed (high passed at 2 s);
    # 5 suppressed (< 5 s after 3); 6 passes (5 s after 3 at 2 s); 7 other event type
    assert passed == [0, 2, 3, 6, 7]
    assert h.ctx.counters["suppressed"] == 3


def _replay(speed, events):
    h = LogicHarness(DedupLogic, {"cooldown_s": 0.5}, clock_ns=time.time_ns)
    out = []
    prev = events[0].stamp_ns
    for e in events:
        time.sleep((e.stamp_ns - prev) / 1e9 / speed)
        prev = e.stamp_ns
        out += [(p.seq, p.idempotency_key) for p in h.send("in", e)]
    return out


def test_dedup_replay_at_10x_speed_gives_same_output():
    # 1 s of stamps replayed in real time, at 10x speed and instantly (wall clock running meanwhile)
    events = [ev(i, i * 100, track=i % 2) for i in range(10)]
    real = _replay(1.0, events)
    fast = _replay(10.0, events)
    instant = _replay(1e9, events)
    assert real == fast == instant
    # per track (even/odd seq), every 200 ms; cooldown 0.5 s passes 0, 6 (600 ms) and 1, 7
    assert [s for s, _ in real] == [0, 1, 6, 7]


def test_dedup_state_handover_and_replay_restart():
    h = LogicHarness(DedupLogic, {"cooldown_s": 10})
    h.send("in", ev(0, 0))
    h2 = LogicHarness(DedupLogic, {"cooldown_s": 10})
    h2.logic.set_state(h.logic.get_state())
    assert h2.send("in", ev(1, 1000)) == []
    assert h2.send("in", ev(2, 60_000)) != []
    assert h2.send("in", ev(3, 0)) != []  # stamps jumped back by more than the cooldown: a replay restarting


# ---- rules / expressions ----

def tel(seq, value, **meta):
    return Packet.from_json("s", seq, "telemetry", value, stamp_ns=T0, meta=meta)


def test_rules_emit_route_drop_in_order():
    rules = [{"when": "payload.temp > 80 and meta.site == 'plant-3'", "action": "route", "port": "out1",
              "set_meta": {"alarm": "hot"}},
             {"when": "payload.temp < 0 or not payload.ok", "action": "drop"},
             {"when": "len(payload.tags) >= 2", "action": "route", "port": "out2"}]
    h = LogicHarness(RulesLogic, {"rules": rules, "default": "emit"})
    h.send("in", tel(1, {"temp": 90, "ok": True}, site="plant-3"))
    h.send("in", tel(2, {"temp": 90, "ok": True}, site="other"))
    h.send("in", tel(3, {"temp": -5, "ok": True}))
    h.send("in", tel(4, {"temp": 20, "ok": True, "tags": ["a", "b"]}))
    h.send("in", tel(5, {"temp": 20}))  # ok missing -> None -> not None -> dropped
    assert [p.seq for p in h.out("out1")] == [1] and h.out("out1")[0].meta["alarm"] == "hot"
    assert [p.seq for p in h.out("out")] == [2]
    assert [p.seq for p in h.out("out2")] == [4]
    assert h.ctx.counters["dropped"] == 2


def test_expressions_are_safe_and_total():
    p = tel(1, {"a": {"b": [1, 2, 3]}, "s": "Hello"}, zone="dock")
    assert Expression("payload.a.b[1] * 2 + 1")(p) == 5
    assert Expression("meta['zone'] in ['dock', 'gate'] and kind == 'telemetry'")(p) is True
    assert Expression("lower(payload.s) == 'hello' and startswith(stream_id, 's')")(p) is True
    assert Expression("payload.missing.deeper > 3")(p) is False  # missing field: None, comparison false
    assert Expression("payload.s + 1")(p) is None  # type error -> None, no exception
    assert Expression("payload.__class__")(p) is None
    assert Expression("payload.s * 1000000000")(p) is None  # no string repetition
    assert Expression("payload.a.b[0] / 0")(p) is None
    for bad in ["__import__('os').system('true')", "open('x')", "(lambda: 1)()", "payload.s.upper()",
                "[x for x in payload]", "payload[1:2]", "os", "a ** 2"]:
        with pytest.raises(ConfigError):
            Expression(bad)
    with pytest.raises(ConfigError, match="syntax error"):
        Expression("payload.a >")
    with pytest.raises(ConfigError, match="rule 0"):
        LogicHarness(RulesLogic, {"rules": [{"when": "exec('1')"}]})


# ---- event_builder ----

def test_event_builder_v02_shape_and_deterministic_ids():
    z = Packet.from_json("cam0", 42, "event", {"event_type": "zone_enter", "zone": "dock", "track_id": 7,
                                               "object_type": "person", "bbox": [1, 2, 3, 4], "confidence": 0.9},
                         stamp_ns=1714564800_250_000_000, epoch=3)
    h = LogicHarness(EventBuilderLogic, {"site_id": "plant-3", "severity_by_type": {"person": "high"}})
    out = h.send("in", z)[0]
    e = out.json()
    assert e == {"event_id": derive_key("cam0", 3, 42, 7, "dock", "zone_enter"), "ts": "2024-05-01T12:00:00.250Z",
                 "site_id": "plant-3", "camera_id": "cam0", "event_type": "zone_enter", "severity": "high",
                 "bbox": [1, 2, 3, 4], "confidence": 0.9, "zone": "dock", "track_id": 7, "object_type": "person"}
    assert out.kind == "event" and out.schema == legacy.SCHEMA and out.idempotency_key == e["event_id"]
    assert legacy.to_legacy(out) == e  # a valid v0.2 event
    again = LogicHarness(EventBuilderLogic, {"site_id": "plant-3", "severity_by_type": {"person": "high"}}).send("in", z)[0]
    assert again.payload == out.payload and again.idempotency_key == out.idempotency_key


def test_event_builder_from_detections_one_event_per_box():
    d = Packet.from_json("cam0", 5, "detections", {"boxes": [
        {"x1": 0, "y1": 0, "x2": 5, "y2": 5, "score": 0.8, "label": "car", "track_id": 1, "zones": ["a", "b"]},
        {"x1": 0, "y1": 0, "x2": 5, "y2": 5, "score": 0.1, "label": "car"},
        {"x1": 9, "y1": 9, "x2": 15, "y2": 15, "score": 0.7, "label": "person"}]}, stamp_ns=T0)
    h = LogicHarness(EventBuilderLogic, {"event_type": "detection", "min_confidence": 0.5})
    evs = [p.json() for p in h.send("in", d)]
    assert [(e["track_id"] if "track_id" in e else None, e.get("zone")) for e in evs] == [(1, "a"), (1, "b"), (None, None)]
    assert len({e["event_id"] for e in evs}) == 3
    h.send("in", Packet("cam0", 6, "event", payload=b"[1]", content_type="application/json"))
    assert h.ctx.counters["invalid"] == 1


def test_zones_live_emit_change_is_checked_before_it_is_applied():
    h = LogicHarness(ZonesLogic, {"zones": ZONES, "emit": ["enter"]})
    with pytest.raises(ConfigError, match="emit may contain enter, exit, inside"):
        h.logic.check_params({**h.logic.params, "emit": ["entre"]})
    h.logic.on_params({"emit": ["inside"]})
    h.send("in", dets(0, [box(120, 120, 160, 160)]))
    assert [p.json()["event_type"] for p in h.out("events")] == ["zone_inside"]
