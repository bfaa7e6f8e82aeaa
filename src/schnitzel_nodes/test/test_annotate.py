"""annotate (LogicHarness, no DDS)."""
import numpy as np
import pytest

from schnitzel_core.codecs.image import image_packet, packet_image
from schnitzel_core.packet import Packet
from schnitzel_core.testing import LogicHarness
from schnitzel_nodes.plugins._common import ConfigError
from schnitzel_nodes.plugins.annotate import IMAGE_MSG, AnnotateLogic

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def frame(seq, stamp_ms, enc="rgb8"):
    return image_packet(np.zeros((100, 120, 3), np.uint8), enc, "cam", seq, stamp_ns=T0 + stamp_ms * MS)


def dets(stamp_ms, boxes):
    return Packet.from_json("cam", 1, "detections", {"boxes": boxes, "width": 120, "height": 100},
                            stamp_ns=T0 + stamp_ms * MS)


def test_annotate_draws_boxes_and_zones():
    zones = [{"id": "z", "polygon": [[0.5, 0.5], [0.9, 0.5], [0.9, 0.9], [0.5, 0.9]], "normalized": True}]
    h = LogicHarness(AnnotateLogic, {"zones": zones, "labels": False, "thickness": 1})
    assert h.send("detections", dets(0, [{"x1": 10, "y1": 10, "x2": 40, "y2": 30, "track_id": 1, "label": "p"}])) == []
    out = h.send("frames", frame(1, 40))
    assert [port for port, _ in h.ctx.emitted] == ["out", "image"]
    img = packet_image(out[0])
    assert img.shape == (100, 120, 3) and out[0].meta["annotate.boxes"] == "1"
    assert img[10, 25].any() and img[30, 25].any() and img[20, 10].any()   # box edges drawn
    assert not img[20, 25].any()                                           # inside untouched
    assert img[50, 80].any() and not img[70, 80].any()                    # zone edge, zone inside
    assert not img[5, 5].any()
    assert out[0].stamp_ns == T0 + 40 * MS and out[0].idempotency_key == frame(1, 40).idempotency_key


def test_annotate_stale_detections_not_drawn_and_image_port_type():
    h = LogicHarness(AnnotateLogic, {"max_age_ms": 100})
    h.send("detections", dets(0, [{"x1": 10, "y1": 10, "x2": 40, "y2": 30}]))
    out = h.send("frames", frame(1, 500))
    assert out[0].meta["annotate.boxes"] == "0" and not packet_image(out[0]).any()
    assert AnnotateLogic.spec.port("image").msg_type == IMAGE_MSG == "sensor_msgs/msg/Image"


def test_annotate_mono_input_and_bad_input():
    h = LogicHarness(AnnotateLogic)
    mono = image_packet(np.zeros((10, 10), np.uint8), "mono8", "cam", 1, stamp_ns=T0)
    assert "encoding=rgb8" in h.send("frames", mono)[0].content_type
    h.send("frames", Packet("cam", 2, "video.frame", payload=b"x", content_type="image/jpeg"))
    h.send("detections", Packet.from_json("cam", 3, "detections", {"boxes": "nope"}))
    assert h.ctx.counters["invalid"] == 2
    with pytest.raises(ConfigError):
        LogicHarness(AnnotateLogic, {"zones": [{"id": "a", "polygon": [[0, 0]]}]})
