"""sampler, resize, convert, schema_validate, map (LogicHarness, no DDS)."""
import numpy as np
import pytest

from schnitzel_core.codecs.image import image_packet, packet_image
from schnitzel_core.packet import Packet
from schnitzel_core.testing import LogicHarness
from schnitzel_nodes.plugins._common import ConfigError
from schnitzel_nodes.plugins.transforms import (ConvertLogic, MapLogic, ResizeLogic,
                                                SamplerLogic, SchemaValidateLogic)

T0 = 1_700_000_000_000_000_000


def pkt(seq, stamp_ns, value=None, stream="s"):
    return Packet.from_json(stream, seq, "telemetry", value if value is not None else {"v": seq}, stamp_ns=stamp_ns)


# ---- sampler ----

def test_sampler_every_n_keeps_first_of_each_group():
    h = LogicHarness(SamplerLogic, {"mode": "every_n", "n": 3})
    kept = [p.seq for i in range(1, 11) for p in h.send("in", pkt(i, T0 + i))]
    assert kept == [1, 4, 7, 10]
    assert h.ctx.counters["dropped"] == 6


def test_sampler_fps_by_stamps_is_exact_and_speed_independent():
    # 24 fps for 3 s of stamps -> 10 fps target keeps exactly 30, whatever the arrival pace.
    stamps = [T0 + round(i * 1e9 / 24) for i in range(72)]
    h = LogicHarness(SamplerLogic, {"mode": "fps", "fps": 10.0})
    kept = [p.seq for i, s in enumerate(stamps) for p in h.send("in", pkt(i, s))]
    assert len(kept) == 30
    gaps = np.diff([stamps[k] for k in kept]) / 1e6
    assert gaps.min() >= 83 and gaps.max() <= 125  # never two in one 100 ms slot
    h2 = LogicHarness(SamplerLogic, {"mode": "fps", "fps": 10.0})
    assert [p.seq for i, s in enumerate(stamps) for p in h2.send("in", pkt(i, s))] == kept


def test_sampler_live_param_change_applies():
    h = LogicHarness(SamplerLogic, {"mode": "every_n", "n": 2})
    assert [p.seq for i in range(4) for p in h.send("in", pkt(i, T0 + i))] == [0, 2]
    h.logic.on_params({"n": 1})
    assert [p.seq for i in range(4, 7) for p in h.send("in", pkt(i, T0 + i))] == [4, 5, 6]
    with pytest.raises(ConfigError):
        h.logic.on_params({"mode": "bogus"})


# ---- resize / convert ----

def frame(w, h, enc="rgb8", seq=1):
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2] = (255, 0, 0)  # left half red (rgb)
    return image_packet(img, enc, "cam", seq, stamp_ns=T0)


def test_resize_stretch_fit_letterbox_sizes():
    src = frame(200, 100)
    out = LogicHarness(ResizeLogic, {"width": 50, "height": 50, "mode": "stretch"}).send("in", src)[0]
    assert packet_image(out).shape == (50, 50, 3)
    out = LogicHarness(ResizeLogic, {"width": 50, "height": 50, "mode": "fit"}).send("in", src)[0]
    assert packet_image(out).shape == (25, 50, 3)
    out = LogicHarness(ResizeLogic, {"width": 50, "height": 50, "mode": "letterbox"}).send("in", src)[0]
    img = packet_image(out)
    assert img.shape == (50, 50, 3)
    assert out.meta["resize.pad_y"] == "12" and tuple(img[0, 0]) == (114, 114, 114)
    assert tuple(img[25, 5]) == (255, 0, 0)  # content kept, left half still red
    out = LogicHarness(ResizeLogic, {"width": 100, "height": 0}).send("in", src)[0]
    assert packet_image(out).shape == (50, 100, 3)
    # same identity and stamp as the input frame
    assert out.idempotency_key == src.idempotency_key and out.stamp_ns == src.stamp_ns


def test_resize_bad_params_and_bad_frame():
    with pytest.raises(ConfigError, match="width and/or height"):
        LogicHarness(ResizeLogic, {"width": 0, "height": 0})
    h = LogicHarness(ResizeLogic, {"width": 10, "height": 10})
    bad = Packet("cam", 1, "video.frame", payload=b"xx", content_type="image/raw;encoding=rgb8;width=4;height=4;step=12")
    h.send("in", bad)  # no traceback
    assert h.out("out") == []
    assert h.ctx.counters["invalid"] == 1
    err = h.out("error")[0]
    assert "48" in err.meta["schnitzel.error"]  # says how many bytes were expected


def test_convert_swaps_channels_and_to_mono():
    src = frame(8, 4)
    bgr = LogicHarness(ConvertLogic, {"encoding": "bgr8"}).send("in", src)[0]
    assert "encoding=bgr8" in bgr.content_type and tuple(packet_image(bgr)[0, 0]) == (0, 0, 255)
    mono = LogicHarness(ConvertLogic, {"encoding": "mono8"}).send("in", src)[0]
    m = packet_image(mono)
    assert m.shape == (4, 8) and m[0, 0] == 76 and m[0, 7] == 0  # 0.299 * 255
    same = LogicHarness(ConvertLogic, {"encoding": "rgb8"}).send("in", src)[0]
    assert same is src


# ---- schema_validate ----

SCHEMA = {"type": "object", "required": ["range_m"],
          "properties": {"range_m": {"type": "number", "minimum": 0}}}


def test_schema_validate_routes_invalid_to_error_with_reason():
    h = LogicHarness(SchemaValidateLogic, {"schema": SCHEMA})
    h.send("in", pkt(1, T0, {"range_m": 1.5}))
    h.send("in", pkt(2, T0, {"range_m": -1}))
    h.send("in", pkt(3, T0, {"other": 1}))
    h.send("in", Packet("s", 4, "telemetry", payload=b"not json", content_type="application/json"))
    assert [p.seq for p in h.out("out")] == [1]
    errs = h.out("error")
    assert [p.seq for p in errs] == [2, 3, 4]
    assert "minimum" in errs[0].meta["schnitzel.error"] and errs[0].meta["schnitzel.error_path"] == "range_m"
    assert "'range_m' is a required property" in errs[1].meta["schnitzel.error"]
    assert "not valid JSON" in errs[2].meta["schnitzel.error"]
    assert h.ctx.counters["invalid"] == 3


def test_schema_validate_schema_file_and_bad_schema(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("type: object\nrequired: [a]\n")
    h = LogicHarness(SchemaValidateLogic, {"schema_file": str(f)})
    h.send("in", pkt(1, T0, {"a": 1}))
    h.send("in", pkt(2, T0, {"b": 1}))
    assert [p.seq for p in h.out("out")] == [1] and [p.seq for p in h.out("error")] == [2]
    with pytest.raises(ConfigError, match="not a valid JSON Schema"):
        LogicHarness(SchemaValidateLogic, {"schema": {"type": 12}})
    with pytest.raises(ConfigError, match="exactly one"):
        LogicHarness(SchemaValidateLogic, {})
    with pytest.raises(ConfigError, match="cannot be read"):
        LogicHarness(SchemaValidateLogic, {"schema_file": str(tmp_path / "missing.json")})


# ---- map ----

def test_map_rename_constants_meta_and_remove():
    h = LogicHarness(MapLogic, {
        "fields": {"sensor.range": "payload.r", "camera": "stream_id", "site": "meta.site", "first": "payload.list.0"},
        "constants": {"unit": "m", "sensor.kind": "lidar"},
        "remove": ["r"], "kind": "sensor.range"})
    p = pkt(1, T0, {"r": 2.5, "keep": True, "list": [7, 8]}).with_meta(site="plant-3")
    out = h.send("in", p)[0]
    assert out.json() == {"keep": True, "list": [7, 8], "sensor": {"range": 2.5, "kind": "lidar"},
                          "camera": "s", "site": "plant-3", "unit": "m", "first": 7}
    assert out.kind == "sensor.range" and out.stamp_ns == T0


def test_map_keep_false_and_missing_policies():
    h = LogicHarness(MapLogic, {"fields": {"a": "x", "b": "y"}, "keep": False})
    assert h.send("in", pkt(1, T0, {"x": 1, "z": 2}))[0].json() == {"a": 1}
    h = LogicHarness(MapLogic, {"fields": {"a": "x", "b": "y"}, "keep": False, "missing": "null"})
    assert h.send("in", pkt(1, T0, {"x": 1}))[0].json() == {"a": 1, "b": None}
    h = LogicHarness(MapLogic, {"fields": {"b": "y"}, "missing": "error"})
    h.send("in", pkt(1, T0, {"x": 1}))
    h.send("in", pkt(2, T0, [1, 2]))
    assert h.out("out") == [] and h.ctx.counters["invalid"] == 2
    assert "'y' is missing" in h.out("error")[0].meta["schnitzel.error"]
    assert "JSON object" in h.out("error")[1].meta["schnitzel.error"]
    with pytest.raises(ConfigError, match="empty component"):
        LogicHarness(MapLogic, {"fields": {"a..b": "x"}})


def test_docs_list_every_plugin_port_and_param():
    """docs/nodes.md must describe every port and parameter the specs declare."""
    import pathlib

    from schnitzel_nodes.plugins import annotate, compute, control, policy, state, transforms

    doc = (pathlib.Path(__file__).resolve().parents[3] / "docs" / "nodes.md")
    if not doc.exists():  # running from an installed copy
        pytest.skip("docs/nodes.md not found next to the sources")
    text = doc.read_text()
    mods = (transforms, compute, state, policy, control, annotate)
    classes = [c for m in mods for c in vars(m).values() if isinstance(c, type) and hasattr(c, "spec")
               and c.__module__ == m.__name__]
    assert len(classes) == 20
    for cls in classes:
        section = text.split(f"### `{cls.spec.name}`", 1)
        assert len(section) == 2, f"{cls.spec.name} is not documented"
        body = section[1].split("\n### ", 1)[0]
        for p in cls.spec.params:
            assert f"| `{p.name}` |" in body, f"{cls.spec.name}.{p.name} is not documented"
        for port in cls.spec.ports:
            assert f"| `{port.name}` |" in body, f"port {cls.spec.name}.{port.name} is not documented"
        assert "```yaml" in body, f"{cls.spec.name} has no example"
