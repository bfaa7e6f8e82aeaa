"""tracker, fusion, window, delay (LogicHarness, no DDS)."""
import pytest

from schnitzel_core.packet import Packet
from schnitzel_core.testing import LogicHarness
from schnitzel_nodes.plugins._common import ConfigError
from schnitzel_nodes.plugins.state import DelayLogic, FusionLogic, TrackerLogic, WindowLogic

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def dets(seq, boxes, stream="cam", stamp=None):
    return Packet.from_json(stream, seq, "detections", {"boxes": boxes, "width": 640, "height": 480},
                            stamp_ns=stamp or T0 + seq * 100 * MS)


def box(x, y, w=40, h=40, label="person", score=0.9):
    return {"x1": x, "y1": y, "x2": x + w, "y2": y + h, "label": label, "score": score}


# ---- tracker ----

def test_tracker_stable_ids_for_two_moving_objects():
    h = LogicHarness(TrackerLogic, {"iou_threshold": 0.3})
    ids = []
    for i in range(10):
        out = h.send("in", dets(i, [box(10 + 5 * i, 10), box(300 - 5 * i, 200)]))[0].json()["boxes"]
        ids.append([b["track_id"] for b in out])
    assert all(x == [1, 2] for x in ids)


def test_tracker_max_age_min_hits_and_labels():
    h = LogicHarness(TrackerLogic, {"max_age": 2, "min_hits": 2})
    assert h.send("in", dets(0, [box(10, 10)]))[0].json()["boxes"] == []  # not confirmed yet
    assert h.send("in", dets(1, [box(12, 10)]))[0].json()["boxes"][0]["track_id"] == 1
    for i in (2, 3):  # missed twice: still alive (max_age 2)
        assert h.send("in", dets(i, []))[0].json()["boxes"] == []
    assert h.send("in", dets(4, [box(14, 10)]))[0].json()["boxes"][0]["track_id"] == 1
    for i in (5, 6, 7):  # missed three times: gone
        h.send("in", dets(i, []))
    h.send("in", dets(8, [box(14, 10)]))
    assert h.send("in", dets(9, [box(14, 10)]))[0].json()["boxes"][0]["track_id"] == 2
    # a car at the same place is another track when labels must match
    out = h.send("in", dets(10, [box(14, 10), box(14, 10, label="car")]))[0].json()["boxes"]
    assert [b["track_id"] for b in out] == [2]  # the car is unconfirmed (min_hits 2)


def test_tracker_state_handover_and_streams_and_bad_input():
    h = LogicHarness(TrackerLogic)
    h.send("in", dets(0, [box(10, 10)]))
    h.send("in", dets(0, [box(10, 10)], stream="cam2"))
    state = h.logic.get_state()
    h2 = LogicHarness(TrackerLogic)
    h2.logic.set_state(state)
    assert h2.send("in", dets(1, [box(12, 10)]))[0].json()["boxes"][0]["track_id"] == 1
    assert h2.send("in", dets(1, [box(50, 50), box(12, 10)], stream="cam2"))[0].json()["boxes"][1]["track_id"] == 1
    h2.send("in", Packet.from_json("cam", 2, "detections", {"boxes": [{"x1": "a"}]}))
    assert h2.ctx.counters["invalid"] == 1 and "x1" in h2.out("error")[0].meta["schnitzel.error"]


# ---- fusion ----

def rng(seq, stamp, value):
    return Packet.from_json("range0", seq, "sensor.range", {"range_m": value}, stamp_ns=stamp)


def test_fusion_20hz_sensor_300ms_window_and_2s_gap():
    """Camera events at 10 Hz, a range sensor at 20 Hz (value = its own stamp in ms) with a
    2 s gap; each event carries the nearest sample, events in the gap carry none, and the main
    path never stalls (one output per input, emitted at once)."""
    h = LogicHarness(FusionLogic, {"window_ms": 300, "field": "range_m"})
    outs = []
    sensor_times = [t for t in range(0, 6000, 50) if not (2000 <= t < 4000)]
    si = 0
    for k in range(60):  # main stream: 0..5.9 s every 100 ms, offset 20 ms from the sensor grid
        t_main = k * 100 + 20
        while si < len(sensor_times) and sensor_times[si] <= t_main:
            assert h.send("aux", rng(si, T0 + sensor_times[si] * MS, float(sensor_times[si]))) == []
            si += 1
        got = h.send("in", dets(k, [box(1, 1)], stamp=T0 + t_main * MS))
        assert len(got) == 1  # emitted immediately
        outs.append((t_main, got[0]))
    for t_main, p in outs:
        s = p.json()["sensor"]
        in_gap = all(abs(st - t_main) > 300 for st in sensor_times if st <= t_main)
        if in_gap:
            assert s is None and p.meta["fusion"] == "miss"
        else:
            nearest = min((st for st in sensor_times if st <= t_main), key=lambda st: abs(st - t_main))
            assert s["value"] == float(nearest) and s["dt_ms"] == nearest - t_main
            assert p.meta["fusion"] == "hit"
    misses = [t for t, p in outs if p.meta["fusion"] == "miss"]
    assert misses and min(misses) >= 2300 and max(misses) < 4000  # 2 s gap minus the 300 ms window
    assert h.ctx.counters["misses"] == len(misses) and h.ctx.counters["fused"] == 60 - len(misses)


def test_fusion_interpolates_between_bracketing_samples():
    h = LogicHarness(FusionLogic, {"window_ms": 300, "field": "range_m", "interpolate": True})
    h.send("aux", rng(0, T0, 1.0))
    h.send("aux", rng(1, T0 + 100 * MS, 2.0))
    p = h.send("in", dets(0, [], stamp=T0 + 25 * MS))[0]
    s = p.json()["sensor"]
    assert s["interpolated"] and s["value"] == pytest.approx(1.25)
    # beyond the last sample: nearest only
    s = h.send("in", dets(1, [], stamp=T0 + 150 * MS))[0].json()["sensor"]
    assert s["value"] == 2.0 and not s["interpolated"] and s["dt_ms"] == -50


def test_fusion_non_json_main_gets_meta_and_state_handover():
    h = LogicHarness(FusionLogic, {"window_ms": 100})
    h.send("aux", Packet("r", 1, "sensor.range", payload=b"3.5", content_type="text/plain", stamp_ns=T0))
    frame = Packet("cam", 1, "video.frame", payload=b"\0" * 12,
                   content_type="image/raw;encoding=rgb8;width=2;height=2;step=6", stamp_ns=T0 + 10 * MS)
    out = h.send("in", frame)[0]
    assert out.payload == frame.payload and out.meta["fusion.value"] == "3.5"
    h2 = LogicHarness(FusionLogic, {"window_ms": 100})
    h2.logic.set_state(h.logic.get_state())
    assert h2.send("in", frame)[0].meta["fusion"] == "hit"


# ---- window ----

def val(seq, v, stamp_ms):
    return Packet.from_json("s", seq, "telemetry", {"value": v}, stamp_ns=T0 + stamp_ms * MS)


def test_window_count_tumbling_and_sliding():
    h = LogicHarness(WindowLogic, {"size": 3})
    out = [p.json() for i, v in enumerate([1, 2, 3, 4, 5, 6, 7]) for p in h.send("in", val(i, v, i))]
    assert [(o["count"], o["mean"], o["min"], o["max"], o["sum"]) for o in out] == [(3, 2.0, 1, 3, 6.0), (3, 5.0, 4, 6, 15.0)]
    h = LogicHarness(WindowLogic, {"size": 2, "sliding": True, "aggregates": ["max"]})
    out = [p.json() for i, v in enumerate([1, 5, 2]) for p in h.send("in", val(i, v, i))]
    assert [o["max"] for o in out] == [1, 5, 5] and "mean" not in out[0]


def test_window_time_tumbling_by_stamps_and_bad_values():
    h = LogicHarness(WindowLogic, {"mode": "time", "size": 1.0})
    outs = []
    for i, ms in enumerate([100, 500, 900, 1200, 1800, 3100]):
        outs += h.send("in", val(i, i, ms))
    docs = [p.json() for p in outs]
    assert [(d["count"], d["sum"]) for d in docs] == [(3, 3.0), (2, 7.0)]
    assert outs[0].stamp_ns == docs[0]["end_ns"] and docs[1]["start_ns"] - docs[0]["start_ns"] == 10 ** 9
    assert outs[0].kind == "telemetry"
    h.send("in", Packet.from_json("s", 9, "telemetry", {"value": "x"}, stamp_ns=T0))
    assert h.ctx.counters["invalid"] == 1 and "not a number" in h.out("error")[0].meta["schnitzel.error"]
    with pytest.raises(ConfigError):
        LogicHarness(WindowLogic, {"aggregates": ["median"]})


# ---- delay ----

def test_delay_steps_with_initial_value():
    h = LogicHarness(DelayLogic, {"steps": 2, "initial": {"v": 0}})
    outs = [h.send("in", val(i, i, i))[0] for i in range(5)]
    assert [o.json() for o in outs] == [{"v": 0}, {"v": 0}, {"value": 0}, {"value": 1}, {"value": 2}]
    assert outs[0].meta["delay.initial"] == "1" and outs[0].idempotency_key != outs[1].idempotency_key
    h2 = LogicHarness(DelayLogic, {"steps": 1})
    assert h2.send("in", val(0, 0, 0)) == [] and h2.send("in", val(1, 1, 1))[0].seq == 0
    assert DelayLogic.spec.delay is True


def test_delay_seconds_by_stamps_and_state():
    h = LogicHarness(DelayLogic, {"seconds": 0.5, "initial": 0})
    out = h.send("in", val(0, 0, 0))
    assert [o.json() for o in out] == [0]  # initial at once, the packet is held
    assert h.send("in", val(1, 1, 400)) == []
    assert [o.seq for o in h.send("in", val(2, 2, 950))] == [0, 1]
    h2 = LogicHarness(DelayLogic, {"seconds": 0.5, "initial": 0})
    h2.logic.set_state(h.logic.get_state())
    assert [o.seq for o in h2.send("in", val(3, 3, 1500))] == [2]


def test_state_of_every_stateful_node_is_json_safe():
    """Hot replacement may keep state in a durable blackboard: it must survive JSON."""
    import json

    h = LogicHarness(TrackerLogic)
    h.send("in", dets(0, [box(1, 1)]))
    f = LogicHarness(FusionLogic, {"field": "range_m"})
    f.send("aux", rng(0, T0, 1.5))
    w = LogicHarness(WindowLogic, {"size": 5})
    w.send("in", val(0, 1, 0))
    d = LogicHarness(DelayLogic, {"steps": 2})
    d.send("in", val(0, 1, 0))
    for hh in (h, f, w, d):
        assert hh.logic.spec.stateful
        state = json.loads(json.dumps(hh.logic.get_state()))
        fresh = LogicHarness(type(hh.logic), dict(hh.ctx.params))
        fresh.logic.set_state(state)
        assert fresh.logic.get_state() == hh.logic.get_state()
