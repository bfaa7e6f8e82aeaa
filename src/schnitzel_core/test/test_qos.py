"""QoS presets, resolution and the ROS 2 request/offer compatibility rules."""
import pytest

from schnitzel_core import qos
from schnitzel_core.qos import PRESETS, QoS, QosError, compatibility, edge_qos, resolve


def test_presets_match_the_contract():
    assert PRESETS["frames"] == QoS("best_effort", "volatile", "keep_last", 1)
    assert (PRESETS["sensor"].reliability, PRESETS["sensor"].depth) == ("best_effort", 10)
    assert (PRESETS["events"].reliability, PRESETS["events"].durability, PRESETS["events"].depth) == \
        ("reliable", "volatile", 100)
    assert (PRESETS["state"].reliability, PRESETS["state"].durability, PRESETS["state"].depth) == \
        ("reliable", "transient_local", 1)


def test_mapping_merges_over_the_base():
    base = PRESETS["frames"]
    q = resolve({"depth": 5}, base)
    assert q.reliability == "best_effort" and q.depth == 5
    q = resolve({"preset": "state", "depth": 3}, base)
    assert q.durability == "transient_local" and q.depth == 3
    assert resolve(None, base) is base
    assert resolve({"deadline_ms": 0}).deadline_ms is None   # 0 = no deadline, as in ROS 2
    assert resolve({"deadline_ms": 50}).to_dict()["deadline_ms"] == 50


@pytest.mark.parametrize("spec, key, fragment", [
    ("fast", None, "unknown QoS preset"),
    ({"reliability": "maybe"}, "reliability", "reliable, best_effort"),
    ({"durability": "forever"}, "durability", "volatile"),
    ({"history": "all"}, "history", "keep_last"),
    ({"depth": 0}, "depth", ">= 1"),
    ({"depth": 1.5}, "depth", "integer"),
    ({"depth": True}, "depth", "integer"),
    ({"deadline_ms": -1}, "deadline_ms", ">= 0"),
    ({"lifespan_ms": "soon"}, "lifespan_ms", "number"),
    ({"dept": 3}, "dept", "unknown qos key"),
    (["frames"], None, "preset name or a mapping"),
])
def test_bad_qos_is_refused_with_the_key(spec, key, fragment):
    with pytest.raises(QosError) as ei:
        resolve(spec)
    assert ei.value.key == key
    assert fragment in str(ei.value)
    assert ei.value.hint


def test_unknown_key_suggests_the_closest():
    with pytest.raises(QosError) as ei:
        resolve({"dept": 3})
    assert "depth" in ei.value.hint


def test_compatibility_rules():
    be, rel = PRESETS["frames"], PRESETS["events"]
    assert [p.rule for p in compatibility(be, rel)] == ["reliability"]
    assert compatibility(rel, be) == []          # a best-effort reader on a reliable writer connects
    vol, tl = PRESETS["events"], PRESETS["state"]
    assert [p.rule for p in compatibility(vol, tl)] == ["durability"]
    assert compatibility(tl, vol) == []
    # deadline: the writer must offer a deadline no longer than the reader requests
    w = resolve({"deadline_ms": 100}, rel)
    assert compatibility(w, resolve({"deadline_ms": 200}, rel)) == []
    assert compatibility(w, resolve({"deadline_ms": 100}, rel)) == []
    assert [p.rule for p in compatibility(w, resolve({"deadline_ms": 50}, rel))] == ["deadline"]
    assert [p.rule for p in compatibility(rel, resolve({"deadline_ms": 50}, rel))] == ["deadline"]
    assert compatibility(resolve({"deadline_ms": 50}, rel), rel) == []   # reader without deadline
    # several at once
    assert {p.rule for p in compatibility(be, resolve({"preset": "state", "deadline_ms": 5}))} == \
        {"reliability", "durability", "deadline"}


def test_every_preset_connects_to_itself():
    for q in PRESETS.values():
        assert compatibility(q, q) == []


def test_edge_qos_writer_from_port_then_node_then_edge_reader():
    w, r = edge_qos("frames", None, None)
    assert w == r == PRESETS["frames"]
    w, r = edge_qos("frames", "events", None)
    assert w == PRESETS["events"] and r == w
    w, r = edge_qos("frames", None, {"depth": 4})
    assert r.reliability == "best_effort" and r.depth == 4
    w, r = edge_qos("no_such_preset", None, "state")
    assert w == PRESETS[qos.DEFAULT_PRESET] and r == PRESETS["state"]
