"""annotate: draws boxes, track ids and zones onto frames (cv2, imported in configure).

Inputs: ``frames`` (raw video.frame) and ``detections``. The latest detections of each stream
are kept and drawn onto every frame of that stream whose stamp is within ``max_age_ms`` of
them. Output ``out`` is a raw video.frame StreamPacket; ``image`` carries the same frame for
the runtime to publish as sensor_msgs/msg/Image (rviz, rqt_image_view).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Tuple

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, In, Out, Param, PluginSpec

from ._common import ConfigError, Transform, detections_of
from .policy import parse_zones

IMAGE_MSG = "sensor_msgs/msg/Image"


def _color(i: int) -> Tuple[int, int, int]:
    palette = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
               (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]
    return palette[i % len(palette)]


class AnnotateLogic(Transform):
    spec = PluginSpec(
        name="annotate", category=Category.TRANSFORM, version="1.0.0",
        description="Draw boxes, labels, track ids and zones onto frames.",
        ports=(In("frames", ("video.frame",), qos="frames"),
               In("detections", ("detections",)),
               Out("out", ("video.frame",), qos="frames", description="annotated raw frame (StreamPacket)"),
               Out("image", ("video.frame",), qos="frames", msg_type=IMAGE_MSG,
                   description="the same frame for publishing as sensor_msgs/msg/Image (rviz, rqt)"),
               Out("error", ("*",))),
        params=(
            Param("zones", "list", [], "zones to draw (same format as the zones node)", live=True),
            Param("zones_file", "str", "", "zone file to draw (JSON/YAML; read at configure)"),
            Param("max_age_ms", "float", 500.0, "draw detections at most this much older/newer than the frame (0: always)",
                  minimum=0.0, live=True),
            Param("thickness", "int", 2, "line thickness in pixels", minimum=1, maximum=20, live=True),
            Param("labels", "bool", True, "write label, score and track id", live=True),
        ),
    )

    def configure(self) -> None:
        import cv2  # noqa: F401

        from .transforms import load_json_or_yaml

        p = self.params
        if p["zones"] and p["zones_file"]:
            raise ConfigError("annotate: give zones or zones_file, not both")
        self._zones = parse_zones(p["zones"], "annotate zones") if p["zones"] else []
        if p["zones_file"]:
            self._zones = parse_zones(load_json_or_yaml(p["zones_file"], "annotate: zones_file"), "annotate zones_file")
        self.latest: Dict[str, Tuple[int, Dict[str, Any]]] = {}

    def on_params(self, changed: Mapping[str, Any]) -> None:
        if "zones" in changed:
            self._zones = parse_zones(changed["zones"], "annotate zones")
        self.params.update(changed)

    def process(self, port: str, packet: Packet) -> Any:
        if port == "detections":
            self.latest[packet.stream_id] = (packet.stamp_ns, detections_of(packet))
            return None
        return self.draw(packet)

    def draw(self, packet: Packet) -> List[Tuple[str, Packet]]:
        import cv2
        import numpy as np
        from schnitzel_core.codecs.image import image_packet, packet_image, parse_content_type

        from .transforms import convert_image

        enc = parse_content_type(packet.content_type)[1].get("encoding", "")
        img = np.array(packet_image(packet), copy=True)
        if enc not in ("rgb8", "bgr8"):
            img, enc = convert_image(img, enc, "rgb8"), "rgb8"
        rgb = enc == "rgb8"

        def col(c: Tuple[int, int, int]) -> Tuple[int, int, int]:
            return c if rgb else (c[2], c[1], c[0])

        th = int(self.params["thickness"])
        h, w = img.shape[:2]
        for i, z in enumerate(self._zones):
            pts = [[x * w, y * h] if z["normalized"] else [x, y] for x, y in z["polygon"]]
            arr = np.round(np.asarray(pts)).astype(np.int32).reshape(-1, 1, 2)
            cv2.polylines(img, [arr], True, col((255, 255, 0)), th)
            if self.params["labels"]:
                cv2.putText(img, str(z["id"]), tuple(int(v) for v in arr[0, 0]), cv2.FONT_HERSHEY_SIMPLEX, 0.5, col((255, 255, 0)), 1)
        drawn = 0
        entry = self.latest.get(packet.stream_id)
        max_age = float(self.params["max_age_ms"]) * 1e6
        if entry is not None and (max_age == 0 or abs(packet.stamp_ns - entry[0]) <= max_age):
            for b in entry[1]["boxes"]:
                tid = b.get("track_id")
                c = col(_color(int(tid)) if isinstance(tid, int) else (0, 255, 0))
                p1 = (int(round(b["x1"])), int(round(b["y1"])))
                p2 = (int(round(b["x2"])), int(round(b["y2"])))
                cv2.rectangle(img, p1, p2, c, th)
                if self.params["labels"]:
                    text = " ".join(str(t) for t in (b.get("label"), f"#{tid}" if tid is not None else None,
                                                     f"{b['score']:.2f}" if isinstance(b.get("score"), (int, float)) else None) if t)
                    if text:
                        cv2.putText(img, text, (p1[0], max(12, p1[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, c, 1)
                drawn += 1
        new = image_packet(img, enc, packet.stream_id, packet.seq)
        out = packet.derive(payload=new.payload, content_type=new.content_type).with_meta(**{"annotate.boxes": str(drawn)})
        return [("out", out), ("image", out)]


__all__ = ["AnnotateLogic", "IMAGE_MSG"]
