"""onnx_model and motion_detector (LogicHarness, no DDS). Models are built here with `onnx`."""
import numpy as np
import pytest

from schnitzel_core.codecs.image import image_packet
from schnitzel_core.packet import Packet
from schnitzel_core.testing import LogicHarness
from schnitzel_nodes.plugins._common import ConfigError
from schnitzel_nodes.plugins.compute import (MotionDetectorLogic, OnnxModelLogic,
                                             SyntheticModelLogic, decode_yolo, nms)
from schnitzel_nodes.plugins.testmodels import brightest_spot_detector, frame_with_square

T0 = 1_700_000_000_000_000_000


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return brightest_spot_detector(str(tmp_path_factory.mktemp("m") / "det.onnx"), 64, 48, box=20)


def fpkt(img, seq, enc="rgb8", stream="cam"):
    return image_packet(img, enc, stream, seq, stamp_ns=T0 + seq * 41_666_667)


def test_detector_output_follows_image_content(model):
    h = LogicHarness(OnnxModelLogic, {"model": model, "class_map": ["person", "car"]})
    boxes = []
    for i, (x, y) in enumerate([(10, 10), (60, 30), (90, 50)]):
        out = h.send("in", fpkt(frame_with_square(128, 96, x, y, box=40), i))
        assert len(out) == 1 and out[0].kind == "detections"
        doc = out[0].json()
        assert doc["width"] == 128 and doc["height"] == 96
        boxes.append(doc["boxes"])
    # letterbox 128x96 -> 64x48 (scale 0.5): the box maps back onto the 40 px square
    assert [(b[0]["x1"], b[0]["y1"], b[0]["x2"], b[0]["y2"]) for b in boxes] == [
        (10, 10, 50, 50), (60, 30, 100, 70), (90, 50, 128, 90)]  # last one clipped at the frame edge
    assert boxes[0][0]["label"] == "person" and boxes[0][0]["score"] == 1.0
    assert h.ctx.counters["inferences"] == 3


def test_detector_score_threshold_and_bgr_input(model):
    h = LogicHarness(OnnxModelLogic, {"model": model, "class_map": ["person", "car"], "score_threshold": 0.5})
    dim = frame_with_square(64, 48, 5, 5, box=20)
    dim[dim == 255] = 100  # peak 100/255 < 0.5
    assert h.send("in", fpkt(dim, 1))[0].json()["boxes"] == []
    h.logic.on_params({"score_threshold": 0.3})  # live
    assert len(h.send("in", fpkt(dim, 2))[0].json()["boxes"]) == 1
    bgr = frame_with_square(64, 48, 5, 5, box=20)
    assert h.send("in", fpkt(bgr, 3, enc="bgr8"))[0].json()["boxes"][0]["x1"] == 5


def test_detector_class_filter_and_tensor_mode(model):
    h = LogicHarness(OnnxModelLogic, {"model": model, "class_map": {"0": "person", "1": "car"}, "classes": ["car"]})
    assert h.send("in", fpkt(frame_with_square(64, 48, 5, 5), 1))[0].json()["boxes"] == []
    t = LogicHarness(OnnxModelLogic, {"model": model, "mode": "tensor"})
    out = t.send("in", fpkt(frame_with_square(64, 48, 4, 6), 1))[0]
    assert out.kind == "tensor"
    det = out.json()["outputs"]["detections"]
    assert det["shape"] == [1, 7] and det["data"][:4] == [14.0, 16.0, 20.0, 20.0]


def test_detector_bad_input_and_bad_params(model, tmp_path):
    h = LogicHarness(OnnxModelLogic, {"model": model})
    h.send("in", Packet("cam", 1, "video.frame", payload=b"abc", content_type="image/raw;encoding=rgb8;width=2;height=2"))
    assert h.out("out") == [] and h.ctx.counters["invalid"] == 1
    with pytest.raises(ConfigError, match="does not exist"):
        LogicHarness(OnnxModelLogic, {"model": str(tmp_path / "nope.onnx")})
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot load"):
        LogicHarness(OnnxModelLogic, {"model": str(junk)})
    with pytest.raises(ConfigError, match="batches of exactly 1"):
        LogicHarness(OnnxModelLogic, {"model": model, "batch": 4})
    with pytest.raises(ConfigError, match="not available"):
        LogicHarness(OnnxModelLogic, {"model": model, "provider": "tensorrt"})


def test_detector_batches_frames_by_count_and_by_stamp_age(tmp_path):
    model = brightest_spot_detector(str(tmp_path / "dyn.onnx"), 64, 48, box=20, dynamic_batch=True)
    h = LogicHarness(OnnxModelLogic, {"model": model, "batch": 3, "max_wait_ms": 500, "class_map": ["a", "b"]})
    frames = [fpkt(frame_with_square(64, 48, 4 * i, 10), i) for i in range(5)]  # 41.7 ms apart
    assert h.send("in", frames[0]) == [] and h.send("in", frames[1]) == []
    out = h.send("in", frames[2])  # batch full: three results, each for its own frame
    assert [p.seq for p in out] == [0, 1, 2]
    assert [p.json()["boxes"][0]["x1"] for p in out] == [0, 4, 8]
    assert h.ctx.counters["inferences"] == 1
    assert h.send("in", frames[3]) == []
    late = fpkt(frame_with_square(64, 48, 40, 20), 20)  # 700 ms after frame 3: run what waits
    assert [p.seq for p in h.send("in", late)] == [3, 20]
    h.send("in", frames[4])
    assert [p.seq for p in h.tick()] == [4]  # a timer tick flushes a partial batch too


def test_model_variant_and_batch_switch_live_and_a_bad_variant_is_refused_keeping_the_old(tmp_path):
    """What an autonomic controller's enum knob over model variants does (docs/autonomic.md)."""
    big = brightest_spot_detector(str(tmp_path / "big.onnx"), 64, 48, box=20, dynamic_batch=True)
    small = brightest_spot_detector(str(tmp_path / "small.onnx"), 64, 48, box=10, dynamic_batch=True)
    h = LogicHarness(OnnxModelLogic, {"model": big, "class_map": ["a", "b"]})

    def width(seq):
        [b] = h.send("in", fpkt(frame_with_square(64, 48, 20, 20), seq))[0].json()["boxes"]
        return b["x2"] - b["x1"]
    assert width(1) == 20
    h.logic.on_params({"model": small})
    assert width(2) == 10 and h.ctx.counters["model_switches"] == 1
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot load"):
        h.logic.on_params({"model": str(junk)})
    assert h.logic.params["model"] == small and width(3) == 10       # refused: the old model serves
    # batch 1 -> 2: from then on two frames per inference; 2 -> 1 runs a waiting frame first
    h.logic.on_params({"batch": 2})
    assert h.send("in", fpkt(frame_with_square(64, 48, 4, 4), 4)) == []
    assert [p.seq for p in h.send("in", fpkt(frame_with_square(64, 48, 4, 4), 5))] == [4, 5]
    assert h.send("in", fpkt(frame_with_square(64, 48, 4, 4), 6)) == []
    before = h.ctx.counters["inferences"]
    h.logic.on_params({"batch": 1})
    assert [p.seq for p in h.out("out")][-1] == 6 and h.ctx.counters["inferences"] == before + 1
    fixed = LogicHarness(OnnxModelLogic, {"model": brightest_spot_detector(str(tmp_path / "f.onnx"), 64, 48)})
    with pytest.raises(ConfigError, match="batches of exactly 1"):
        fixed.logic.on_params({"batch": 4})
    assert fixed.logic.params["batch"] == 1


def test_decode_yolo_nms_per_class_and_formats():
    rows = np.array([
        [50, 50, 20, 20, 0.9, 1.0, 0.0],   # person
        [51, 51, 20, 20, 0.8, 1.0, 0.0],   # same person, lower: suppressed
        [51, 51, 20, 20, 0.7, 0.0, 1.0],   # a car at the same place: kept (per-class NMS)
        [10, 10, 4, 4, 0.1, 1.0, 0.0],     # below threshold
    ], np.float32)
    boxes = decode_yolo(rows[None], objectness=True, score_threshold=0.25, iou_threshold=0.5)
    assert [(round(b["score"], 2), b["class_id"]) for b in boxes] == [(0.9, 0), (0.7, 1)]
    assert boxes[0]["x1"] == 40 and boxes[0]["y2"] == 60
    agn = decode_yolo(rows, objectness=True, iou_threshold=0.5, class_agnostic=True)
    assert len(agn) == 1
    # [4+C] rows, transposed YOLOv8 layout [4+C, N], xyxy boxes
    v8 = np.array([[0, 0, 10, 10, 0.2, 0.9], [20, 20, 30, 30, 0.6, 0.1]], np.float32).T
    b = decode_yolo(v8[None], objectness=False, box_format="xyxy", num_classes=2)
    assert [(x["class_id"], x["x1"]) for x in b] == [(1, 0.0), (0, 20.0)]
    assert decode_yolo(np.zeros((0, 7), np.float32), objectness=True) == []


def test_nms_ties_are_deterministic():
    boxes = [[0, 0, 10, 10], [0, 0, 10, 10], [100, 100, 110, 110]]
    assert nms(boxes, [0.5, 0.5, 0.5], 0.5) == [0, 2]


def test_motion_detector_boxes_moving_square_only():
    h = LogicHarness(MotionDetectorLogic, {"warmup_frames": 3, "min_area": 50, "process_width": 0})
    bg = np.full((120, 160, 3), 40, np.uint8)
    for i in range(20):
        assert h.send("in", fpkt(bg, i))[0].json()["boxes"] == []  # static scene: nothing
    found = []
    for i in range(20, 24):
        img = bg.copy()
        x = 10 + (i - 20) * 35
        img[50:80, x:x + 30] = 230
        boxes = h.send("in", fpkt(img, i))[0].json()["boxes"]
        assert len(boxes) == 1 and boxes[0]["label"] == "motion"
        found.append(boxes[0])
    b = found[-1]
    x = 10 + 3 * 35
    assert b["x1"] <= x + 2 and b["x2"] >= x + 28 and b["y1"] <= 52 and b["y2"] >= 78


def test_motion_detector_min_area_and_bad_param():
    h = LogicHarness(MotionDetectorLogic, {"warmup_frames": 1, "min_area": 5000, "process_width": 0})
    bg = np.full((120, 160, 3), 40, np.uint8)
    h.send("in", fpkt(bg, 0))
    img = bg.copy()
    img[10:20, 10:20] = 255
    assert h.send("in", fpkt(img, 1))[0].json()["boxes"] == []
    with pytest.raises(ConfigError, match="odd"):
        LogicHarness(MotionDetectorLogic, {"blur": 4})


def test_synthetic_model_spends_its_latency_and_reports_its_box():
    import time

    h = LogicHarness(SyntheticModelLogic, {"latency_ms": 30, "box": [1, 2, 3, 4], "label": "x"})
    t = time.perf_counter()
    out = h.send("in", fpkt(np.zeros((4, 4, 3), np.uint8), 1))
    assert time.perf_counter() - t >= 0.03
    assert out[0].kind == "detections" and out[0].json()["boxes"][0]["x2"] == 3
    h.logic.on_params({"latency_ms": 0, "box": []})
    assert h.send("in", fpkt(np.zeros((4, 4, 3), np.uint8), 2))[0].json()["boxes"] == []
    with pytest.raises(ConfigError, match="x1, y1, x2, y2"):
        LogicHarness(SyntheticModelLogic, {"box": [1, 2]})
