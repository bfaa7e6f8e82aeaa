"""Compute: onnx_model (ONNX Runtime) and motion_detector (OpenCV MOG2).

Both read raw ``video.frame`` packets (schnitzel_core.codecs.image) and emit ``detections``
(docs/contracts.md), or ``tensor`` packets for onnx_model in tensor mode. numpy, cv2 and
onnxruntime are imported in ``configure``. The ROS adapter runs compute nodes off the
executor thread with latest-only input; the logic itself is synchronous.
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, In, Out, Param, PluginSpec

from ._common import BadPacket, Compute, ConfigError, spend_time, with_json

NS = 1_000_000_000


def _frame_rgb(packet: Packet, order: str) -> Any:
    """The frame as uint8 H x W x 3 in ``order`` ("rgb" or "bgr")."""
    from schnitzel_core.codecs.image import packet_image, parse_content_type

    from .transforms import convert_image

    enc = parse_content_type(packet.content_type)[1].get("encoding", "")
    img = packet_image(packet)
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise BadPacket("frame is empty (0 pixels)")
    return convert_image(img, enc, "rgb8" if order == "rgb" else "bgr8")


def letterbox(img: Any, width: int, height: int, pad: int = 114) -> Tuple[Any, float, int, int]:
    """Resize keeping aspect into width x height, padding the rest; returns (image, scale, pad_x, pad_y)."""
    import cv2
    import numpy as np

    ih, iw = img.shape[:2]
    s = min(width / iw, height / ih)
    tw, th = max(1, round(iw * s)), max(1, round(ih * s))
    resized = cv2.resize(img, (tw, th), interpolation=cv2.INTER_LINEAR) if (tw, th) != (iw, ih) else img
    canvas = np.full((height, width, img.shape[2]), pad, dtype=img.dtype)
    x0, y0 = (width - tw) // 2, (height - th) // 2
    canvas[y0:y0 + th, x0:x0 + tw] = resized
    return canvas, s, x0, y0


def nms(boxes: Any, scores: Any, iou_threshold: float) -> List[int]:
    """Greedy non-maximum suppression (numpy); boxes N x 4 as x1, y1, x2, y2. Indices kept, best first."""
    import numpy as np

    if len(boxes) == 0:
        return []
    b = np.asarray(boxes, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    areas = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    order = np.lexsort((np.arange(len(s)), -s))  # score desc, index asc: deterministic ties
    keep: List[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(b[i, 0], b[rest, 0])
        yy1 = np.maximum(b[i, 1], b[rest, 1])
        xx2 = np.minimum(b[i, 2], b[rest, 2])
        yy2 = np.minimum(b[i, 3], b[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        union = areas[i] + areas[rest] - inter
        ov = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        order = rest[ov <= iou_threshold]
    return keep


def decode_yolo(raw: Any, *, objectness: Any = "auto", box_format: str = "cxcywh",
                score_threshold: float = 0.25, iou_threshold: float = 0.45,
                max_detections: int = 100, num_classes: Optional[int] = None,
                class_agnostic: bool = False) -> List[Dict[str, Any]]:
    """Decode one image's YOLO-style output [N, 4+1+C] or [N, 4+C] (or transposed) into boxes.

    Returns dicts with x1, y1, x2, y2 (model input coordinates), score and class_id,
    best first, after NMS (per class unless ``class_agnostic``).
    """
    import numpy as np

    a = np.asarray(raw, dtype=np.float32)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise BadPacket(f"detector output must be [N, 4+1+C] or [N, 4+C], got shape {list(np.asarray(raw).shape)}")
    if a.shape[1] < 5 and a.shape[0] >= 5:
        a = a.T
    elif a.shape[0] < a.shape[1] and a.shape[0] >= 5 and num_classes is not None and a.shape[0] in (4 + num_classes, 5 + num_classes):
        a = a.T  # YOLOv8 style [4+C, N]
    if a.shape[1] < 5:
        raise BadPacket(f"detector output rows need at least 5 values (4 box + scores), got {a.shape[1]}")
    width = a.shape[1]
    if objectness == "auto":
        has_obj = num_classes is not None and width == 5 + num_classes
    else:
        has_obj = bool(objectness)
    if has_obj:
        cls_scores = a[:, 5:] if width > 5 else np.ones((len(a), 1), np.float32)
        obj = a[:, 4:5]
        scores_all = cls_scores * obj
    else:
        scores_all = a[:, 4:]
    class_id = np.argmax(scores_all, axis=1)
    score = scores_all[np.arange(len(a)), class_id]
    m = score >= score_threshold
    a, class_id, score = a[m], class_id[m], score[m]
    if box_format == "cxcywh":
        cx, cy, w, h = a[:, 0], a[:, 1], a[:, 2], a[:, 3]
        xyxy = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    else:
        xyxy = a[:, :4].copy()
    if class_agnostic or len(xyxy) == 0:
        keep = nms(xyxy, score, iou_threshold)
    else:
        # offset boxes per class so that NMS never suppresses across classes
        off = class_id.astype(np.float64)[:, None] * (float(np.abs(xyxy).max()) + 1.0)
        keep = nms(xyxy + off, score, iou_threshold)
    keep = keep[:max_detections]
    return [{"x1": float(xyxy[i, 0]), "y1": float(xyxy[i, 1]), "x2": float(xyxy[i, 2]),
             "y2": float(xyxy[i, 3]), "score": float(score[i]), "class_id": int(class_id[i])} for i in keep]


def _r(v: float) -> float:
    return round(float(v), 3)


class OnnxModelLogic(Compute):
    """Runs an ONNX model on frames: a YOLO-style detector or a generic tensor-out model."""

    spec = PluginSpec(
        name="onnx_model", category=Category.COMPUTE, version="1.0.0",
        description="ONNX Runtime inference on frames: detector (YOLO-style boxes + NMS) or tensor outputs.",
        ports=(In("in", ("video.frame",), qos="frames", description="raw frames; the runtime keeps this input latest-only"),
               Out("out", ("detections", "tensor"), qos="events", description="detections (detector mode) or tensor (tensor mode)"),
               Out("error", ("video.frame",), qos="events", description="frames that could not be decoded")),
        params=(
            Param("model", "str", description="path of the .onnx file (nothing is downloaded); live: the new model "
                  "is loaded and checked first, and a file that cannot serve is refused with the old one kept",
                  live=True),
            Param("mode", "str", "detector", "detector: decode YOLO-style boxes; tensor: emit the raw outputs",
                  enum=("detector", "tensor")),
            Param("provider", "str", "auto", "auto: a GPU provider (CUDA/TensorRT) when available, else CPU",
                  enum=("auto", "cpu", "cuda", "tensorrt")),
            Param("intra_op_threads", "int", 1, "ONNX Runtime intra-op threads (0: runtime default)", minimum=0, maximum=256),
            Param("inter_op_threads", "int", 1, "ONNX Runtime inter-op threads (0: runtime default)", minimum=0, maximum=256),
            Param("batch", "int", 1, "frames per inference; frames wait until the batch is full or max_wait_ms "
                  "of stamp time has passed; live (a model with a fixed batch takes only its own)",
                  minimum=1, maximum=64, live=True),
            Param("max_wait_ms", "float", 100.0, "batch > 1: run a partial batch when a frame is this much newer than the oldest waiting",
                  minimum=0.0),
            Param("input_width", "int", 0, "model input width (0: from the model)", minimum=0, maximum=8192),
            Param("input_height", "int", 0, "model input height (0: from the model)", minimum=0, maximum=8192),
            Param("letterbox", "bool", True, "keep aspect and pad (true) or stretch (false)"),
            Param("channel_order", "str", "rgb", "channel order the model expects", enum=("rgb", "bgr")),
            Param("layout", "str", "nchw", "input tensor layout", enum=("nchw", "nhwc")),
            Param("scale", "float", 1.0 / 255.0, "pixel values are multiplied by this first"),
            Param("mean", "list", [0.0, 0.0, 0.0], "subtracted per channel after scaling", items="number"),
            Param("std", "list", [1.0, 1.0, 1.0], "divided per channel after the mean", items="number"),
            Param("output", "str", "", "detector: name of the output holding the boxes (empty: the first)"),
            Param("box_format", "str", "cxcywh", "box encoding of the first 4 values", enum=("cxcywh", "xyxy")),
            Param("objectness", "str", "auto", "rows are [4 box, objectness, C classes] (true), [4 box, C classes] (false), "
                  "or decided from class_map's size (auto)", enum=("auto", "true", "false")),
            Param("normalized_boxes", "bool", False, "box values are 0..1 of the input size"),
            Param("score_threshold", "float", 0.25, "drop boxes scoring below", minimum=0.0, maximum=1.0, live=True),
            Param("nms_iou", "float", 0.45, "IoU above which a lower-scoring box of the same class is suppressed",
                  minimum=0.0, maximum=1.0, live=True),
            Param("class_agnostic_nms", "bool", False, "NMS across classes", live=True),
            Param("max_detections", "int", 100, "at most this many boxes per frame", minimum=1, live=True),
            Param("class_map", "any", None, "class id -> label: a list (index = id) or a mapping {\"0\": \"person\"}", live=True),
            Param("classes", "list", [], "keep only these labels (empty: all)", items="str", live=True),
            Param("tensor_outputs", "list", [], "tensor mode: output names to emit (empty: all)", items="str"),
        ),
    )

    def configure(self) -> None:
        import numpy as np

        p = self.params
        self.__dict__.update(self._open(p))
        if len(p["mean"]) != 3 or len(p["std"]) != 3 or any(float(s) == 0 for s in p["std"]):
            raise ConfigError("onnx_model: mean and std need 3 values each, std non-zero")
        self._mean = np.asarray(p["mean"], np.float32)
        self._std = np.asarray(p["std"], np.float32)
        self._labels = self._class_map(p.get("class_map"))
        self._pending: List[Tuple[Packet, Any, Tuple[int, int, float, int, int]]] = []
        self.last_latency_s = 0.0
        self._batch_timer(int(p["batch"]))

    def _batch_timer(self, batch: int) -> None:
        # a partial batch never waits longer than max_wait_ms of wall time either
        self.tick_period_s = max(0.01, float(self.params["max_wait_ms"]) / 1000.0) if batch > 1 else None

    def _open(self, p: Mapping[str, Any]) -> Dict[str, Any]:
        """A session for ``p["model"]`` and what the node derives from it (input name, size,
        dtype, fixed batch, outputs), checked against ``p``; ConfigError when it cannot serve."""
        import numpy as np
        import onnxruntime as ort

        path = p.get("model") or ""
        if not os.path.isfile(path):
            raise ConfigError(f"onnx_model: model file {path!r} does not exist (give the path of a .onnx file)")
        so = ort.SessionOptions()
        if int(p["intra_op_threads"]) > 0:
            so.intra_op_num_threads = int(p["intra_op_threads"])
        if int(p["inter_op_threads"]) > 0:
            so.inter_op_num_threads = int(p["inter_op_threads"])
        so.log_severity_level = 3
        available = ort.get_available_providers()
        want = p["provider"]
        if want == "cpu":
            providers = ["CPUExecutionProvider"]
        elif want == "auto":
            providers = [x for x in ("TensorrtExecutionProvider", "CUDAExecutionProvider") if x in available
                         and x != "TensorrtExecutionProvider"] + ["CPUExecutionProvider"]
        else:
            name = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[want]
            if name not in available:
                raise ConfigError(f"onnx_model: provider {want!r} is not available here (available: {', '.join(available)}); use provider: auto or cpu")
            providers = [name, "CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(path, sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ConfigError(f"onnx_model: cannot load {path!r}: {str(exc).splitlines()[0][:300]}") from None
        inp = session.get_inputs()[0]
        shape = list(inp.shape)
        if len(shape) != 4:
            raise ConfigError(f"onnx_model: the model's input {inp.name!r} has shape {shape}; a 4-D image input is needed")
        nchw = p["layout"] == "nchw"
        dim_h, dim_w = (shape[2], shape[3]) if nchw else (shape[1], shape[2])
        in_w = int(p["input_width"]) or (dim_w if isinstance(dim_w, int) else 0)
        in_h = int(p["input_height"]) or (dim_h if isinstance(dim_h, int) else 0)
        if in_w <= 0 or in_h <= 0:
            raise ConfigError(f"onnx_model: the model's input size is dynamic ({shape}); set input_width and input_height")
        fixed_batch = shape[0] if isinstance(shape[0], int) else None
        if fixed_batch is not None and fixed_batch != int(p["batch"]):
            raise ConfigError(f"onnx_model: the model takes batches of exactly {fixed_batch}; set batch: {fixed_batch}")
        outs = [o.name for o in session.get_outputs()]
        if p["output"] and p["output"] not in outs:
            raise ConfigError(f"onnx_model: output {p['output']!r} not in the model (outputs: {', '.join(outs)})")
        bad = [n for n in p["tensor_outputs"] if n not in outs]
        if bad:
            raise ConfigError(f"onnx_model: tensor_outputs {bad} not in the model (outputs: {', '.join(outs)})")
        return {"session": session, "providers": session.get_providers(), "input_name": inp.name,
                "in_w": in_w, "in_h": in_h, "fixed_batch": fixed_batch,
                "in_dtype": np.float16 if "float16" in inp.type else np.float32,
                "det_output": p["output"] or outs[0], "tensor_outputs": list(p["tensor_outputs"]) or outs}

    @staticmethod
    def _class_map(cm: Any) -> Dict[int, str]:
        if cm is None:
            return {}
        if isinstance(cm, list):
            return {i: str(v) for i, v in enumerate(cm)}
        if isinstance(cm, dict):
            try:
                return {int(k): str(v) for k, v in cm.items()}
            except (TypeError, ValueError):
                raise ConfigError("onnx_model: class_map keys must be class ids (integers)") from None
        raise ConfigError(f"onnx_model: class_map must be a list or a mapping, got {type(cm).__name__}")

    def on_params(self, changed: Mapping[str, Any]) -> None:
        labels = self._class_map(changed["class_map"]) if "class_map" in changed else self._labels
        if "model" in changed or "batch" in changed:
            # A model variant or batch size switched live (e.g. by an autonomic controller): the
            # new session is opened and checked before anything changes (a refusal keeps the old
            # one); frames already waiting for a batch are run on the old model first.
            opened = self._open({**self.params, **changed})
            if self._pending:
                self._send(self._run())
            self.__dict__.update(opened)
            self.ctx.count("model_switches")
        self._labels = labels
        self.params.update(changed)
        self._batch_timer(int(self.params["batch"]))

    def preprocess(self, packet: Packet) -> Tuple[Any, Tuple[int, int, float, int, int]]:
        import cv2
        import numpy as np

        img = _frame_rgb(packet, self.params["channel_order"])
        ih, iw = img.shape[:2]
        if self.params["letterbox"]:
            img, s, px, py = letterbox(img, self.in_w, self.in_h)
            geo = (iw, ih, s, px, py)
        else:
            img = cv2.resize(img, (self.in_w, self.in_h), interpolation=cv2.INTER_LINEAR)
            geo = (iw, ih, -1.0, 0, 0)
        x = img.astype(np.float32) * float(self.params["scale"])
        x = (x - self._mean) / self._std
        if self.params["layout"] == "nchw":
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x, dtype=self.in_dtype), geo

    def process(self, port: str, packet: Packet) -> Any:
        x, geo = self.preprocess(packet)
        self._pending.append((packet, x, geo))
        batch = int(self.params["batch"])
        oldest = self._pending[0][0].stamp_ns
        if len(self._pending) < batch and packet.stamp_ns - oldest < float(self.params["max_wait_ms"]) * 1e6:
            return None
        return self._run()

    def tick(self) -> None:
        if self._pending:
            self._send(self._run())

    def _run(self) -> List[Tuple[str, Packet]]:
        import numpy as np

        items, self._pending = self._pending, []
        xs = np.stack([x for _, x, _ in items])
        if self.fixed_batch is not None and len(items) < self.fixed_batch:
            xs = np.concatenate([xs, np.zeros((self.fixed_batch - len(items),) + xs.shape[1:], xs.dtype)])
        t0 = time.perf_counter()
        names = [self.det_output] if self.params["mode"] == "detector" else self.tensor_outputs
        try:
            outs = self.session.run(names, {self.input_name: xs})
        except Exception as exc:
            raise BadPacket(f"inference failed: {str(exc).splitlines()[0][:300]}") from None
        self.last_latency_s = time.perf_counter() - t0
        self.ctx.count("inferences")
        result = []
        for i, (packet, _, geo) in enumerate(items):
            if self.params["mode"] == "detector":
                result.append(("out", self._detections(packet, outs[0][i] if len(outs[0]) > i else outs[0], geo)))
            else:
                doc = {"outputs": {n: {"shape": list(o[i].shape), "dtype": str(o[i].dtype),
                                       "data": np.asarray(o[i]).ravel().tolist()} for n, o in zip(names, outs)}}
                result.append(("out", with_json(packet, doc, kind="tensor")))
        return result

    def _detections(self, packet: Packet, raw: Any, geo: Tuple[int, int, float, int, int]) -> Packet:
        p = self.params
        obj = {"auto": "auto", "true": True, "false": False}[str(p["objectness"]).lower()]
        boxes = decode_yolo(raw, objectness=obj, box_format=p["box_format"],
                            score_threshold=float(p["score_threshold"]), iou_threshold=float(p["nms_iou"]),
                            max_detections=int(p["max_detections"]),
                            num_classes=len(self._labels) or None, class_agnostic=bool(p["class_agnostic_nms"]))
        iw, ih, s, px, py = geo
        keep = set(p["classes"] or [])
        out = []
        for b in boxes:
            x1, y1, x2, y2 = b["x1"], b["y1"], b["x2"], b["y2"]
            if p["normalized_boxes"]:
                x1, x2, y1, y2 = x1 * self.in_w, x2 * self.in_w, y1 * self.in_h, y2 * self.in_h
            if s > 0:
                x1, x2, y1, y2 = (x1 - px) / s, (x2 - px) / s, (y1 - py) / s, (y2 - py) / s
            else:
                sx, sy = iw / self.in_w, ih / self.in_h
                x1, x2, y1, y2 = x1 * sx, x2 * sx, y1 * sy, y2 * sy
            x1, x2 = min(max(x1, 0.0), iw), min(max(x2, 0.0), iw)
            y1, y2 = min(max(y1, 0.0), ih), min(max(y2, 0.0), ih)
            if x2 <= x1 or y2 <= y1:
                continue
            label = self._labels.get(b["class_id"], str(b["class_id"]))
            if keep and label not in keep:
                continue
            out.append({"x1": _r(x1), "y1": _r(y1), "x2": _r(x2), "y2": _r(y2), "score": round(b["score"], 4),
                        "label": label, "class_id": b["class_id"]})
        return with_json(packet, {"boxes": out, "width": iw, "height": ih}, kind="detections")


class MotionDetectorLogic(Compute):
    """Background subtraction (OpenCV MOG2): boxes around moving blobs, no model needed."""

    spec = PluginSpec(
        name="motion_detector", category=Category.COMPUTE, version="1.0.0",
        description="Detect moving blobs with OpenCV MOG2 background subtraction (model-free).",
        ports=(In("in", ("video.frame",), qos="frames"),
               Out("out", ("detections",), qos="events", description="boxes labelled 'motion', score = foreground fraction"),
               Out("error", ("video.frame",), qos="events")),
        params=(
            Param("history", "int", 200, "frames in the background model", minimum=1, maximum=100000),
            Param("var_threshold", "float", 16.0, "MOG2 variance threshold (higher: less sensitive)", minimum=0.0),
            Param("detect_shadows", "bool", False, "mark shadows (they never count as motion)"),
            Param("learning_rate", "float", -1.0, "background learning rate (-1: automatic from history)", minimum=-1.0, maximum=1.0),
            Param("min_area", "int", 100, "smallest blob in pixels of the original frame", minimum=1, live=True),
            Param("process_width", "int", 320, "frames are downscaled to this width first (0: full size)", minimum=0, maximum=8192),
            Param("blur", "int", 5, "Gaussian blur kernel (odd, 0: none)", minimum=0, maximum=51),
            Param("dilate", "int", 2, "dilation iterations joining nearby blobs", minimum=0, maximum=20),
            Param("warmup_frames", "int", 5, "frames used to learn the background before boxes are reported", minimum=0, live=True),
        ),
    )

    def configure(self) -> None:
        import cv2

        p = self.params
        if int(p["blur"]) and int(p["blur"]) % 2 == 0:
            raise ConfigError(f"motion_detector: blur must be odd or 0, got {p['blur']}")
        self._cv2 = cv2
        self._new_model()

    def _new_model(self) -> None:
        p = self.params
        self.mog = self._cv2.createBackgroundSubtractorMOG2(history=int(p["history"]), varThreshold=float(p["var_threshold"]),
                                                            detectShadows=bool(p["detect_shadows"]))
        self.frames: Dict[str, int] = {}

    def process(self, port: str, packet: Packet) -> Packet:
        import numpy as np

        cv2 = self._cv2
        p = self.params
        img = _frame_rgb(packet, "bgr")
        ih, iw = img.shape[:2]
        pw = int(p["process_width"])
        s = pw / iw if pw and pw < iw else 1.0
        small = cv2.resize(img, (max(1, round(iw * s)), max(1, round(ih * s))), interpolation=cv2.INTER_AREA) if s != 1.0 else img
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        if int(p["blur"]):
            gray = cv2.GaussianBlur(gray, (int(p["blur"]), int(p["blur"])), 0)
        mask = self.mog.apply(gray, learningRate=float(p["learning_rate"]))
        _, mask = cv2.threshold(mask, 200, 255, cv2.THRESH_BINARY)  # shadows (127) are not motion
        if int(p["dilate"]):
            mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=int(p["dilate"]))
        n = self.frames.get(packet.stream_id, 0) + 1
        self.frames[packet.stream_id] = n
        boxes = []
        if n > int(p["warmup_frames"]):
            count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
            for i in range(1, count):
                x, y, w, h, area = (int(v) for v in stats[i])
                x1, y1, x2, y2 = x / s, y / s, (x + w) / s, (y + h) / s
                if (x2 - x1) * (y2 - y1) < int(p["min_area"]):
                    continue
                boxes.append({"x1": _r(x1), "y1": _r(y1), "x2": _r(min(x2, iw)), "y2": _r(min(y2, ih)),
                              "score": round(area / float(w * h), 4), "label": "motion"})
            boxes.sort(key=lambda b: (b["y1"], b["x1"]))
        return with_json(packet, {"boxes": boxes, "width": iw, "height": ih}, kind="detections")


class SyntheticModelLogic(Compute):
    """A stand-in for a model of known cost: waits ``latency_ms`` per packet, then emits
    detections (empty, or one fixed box). For load tests, demos and sizing a pipeline before
    the real model exists; the runtime treats it like any compute node (latest-only input,
    its own worker thread)."""

    spec = PluginSpec(
        name="synthetic_model", category=Category.COMPUTE, version="1.0.0",
        description="Simulated model: spends latency_ms per packet (sleep or busy CPU), emits detections.",
        ports=(In("in", ("*",), qos="frames", description="any packets (usually frames), latest-only"),
               Out("out", ("detections",), qos="events", description="one detections packet per input")),
        params=(
            Param("latency_ms", "float", 100.0, "time spent per packet", minimum=0.0, maximum=60000.0, live=True),
            Param("busy", "bool", False, "burn CPU for the time instead of sleeping", live=True),
            Param("box", "list", [], "a box [x1, y1, x2, y2] reported for every packet (empty: none)", items="number", live=True),
            Param("label", "str", "object", "label of that box", live=True),
        ),
    )

    def configure(self) -> None:
        self._check(self.params)

    @staticmethod
    def _check(p: Mapping[str, Any]) -> None:
        if len(p["box"]) not in (0, 4):
            raise ConfigError(f"synthetic_model: box must be [x1, y1, x2, y2] or empty, got {p['box']!r}")

    def check_params(self, params: Mapping[str, Any]) -> None:
        self._check(params)

    def process(self, port: str, packet: Packet) -> Packet:
        spend_time(float(self.params["latency_ms"]), bool(self.params["busy"]))
        b = self.params["box"]
        boxes = [{"x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3], "score": 1.0, "label": self.params["label"]}] if len(b) == 4 else []
        return with_json(packet, {"boxes": boxes}, kind="detections")


__all__ = ["OnnxModelLogic", "MotionDetectorLogic", "SyntheticModelLogic", "decode_yolo", "nms", "letterbox"]
