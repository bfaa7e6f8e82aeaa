"""``synthetic_source``: test patterns and simulated sensors for demos and tests.

Modes:

- ``counter``: JSON ``{"n": seq}`` (kind ``telemetry``).
- ``pattern``: video frames, a box moving over a colour gradient; frame ``seq`` depends only on
  ``seq``, width, height and encoding (kind ``video.frame``).
- ``sensor``: one value per tick, ``offset + amplitude * waveform(t / period_s)`` plus gaussian
  noise (``noise_std``, seeded by ``seed``); JSON ``{field: value}`` (kind ``sensor.range``).
  ``min_value``/``max_value`` clamp it like a real range sensor.
- ``imu``: a slowly yawing body at rest: JSON with ``orientation`` (quaternion),
  ``angular_velocity`` and ``linear_acceleration`` (gravity on z), plus noise (kind ``sensor.imu``).

Timing: one packet per tick of ``1 / rate_hz`` (``rate_hz`` is live). The sample time ``t``
advances by the tick period, not the wall clock, so values depend only on the sequence; with
``deterministic_stamps`` the stamps are ``start_ns + t`` too, and two runs with the same
params give byte-identical packets. ``count`` > 0 stops after that many packets.
``silence_at_s``/``silence_s`` simulate a sensor that goes quiet for a while (no packets for
ticks whose sample time falls in that window; seq keeps counting only emitted packets).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Mapping

from schnitzel_core.plugin import Category, Out, Param, PluginSpec
from schnitzel_nodes.base import SourceLogic

from ._common import check_enum, check_range

NODE = "synthetic_source"
MODES = ("counter", "pattern", "sensor", "imu")
DEFAULT_KIND = {"counter": "telemetry", "pattern": "video.frame", "sensor": "sensor.range",
                "imu": "sensor.imu"}
WAVEFORMS = ("sine", "square", "saw", "triangle", "constant")


def waveform(name: str, phase: float) -> float:
    """Value in [-1, 1] of ``name`` at ``phase`` (cycles)."""
    frac = phase - math.floor(phase)
    if name == "sine":
        return math.sin(2 * math.pi * phase)
    if name == "square":
        return 1.0 if frac < 0.5 else -1.0
    if name == "saw":
        return 2.0 * frac - 1.0
    if name == "triangle":
        return 4.0 * frac - 1.0 if frac < 0.5 else 3.0 - 4.0 * frac
    return 0.0


def pattern_frame(seq: int, width: int, height: int, encoding: str = "rgb8", _cache: Dict = {}):
    """The test-pattern frame number ``seq``: a box moving over a gradient (deterministic)."""
    import numpy as np

    key = (width, height, encoding)
    base = _cache.get(key)
    if base is None:
        xs = np.linspace(0, 255, width, dtype=np.float32)[None, :]
        ys = np.linspace(0, 255, height, dtype=np.float32)[:, None]
        r = np.broadcast_to(xs, (height, width))
        g = np.broadcast_to(ys, (height, width))
        b = np.full((height, width), 64, np.float32)
        base = np.stack([r, g, b], axis=2).astype(np.uint8)
        if encoding == "bgr8":
            base = base[:, :, ::-1].copy()
        elif encoding == "mono8":
            base = base.mean(axis=2).astype(np.uint8)
        if len(_cache) > 8:
            _cache.clear()
        _cache[key] = base
    frame = base.copy()
    bw, bh = max(1, width // 8), max(1, height // 8)
    span_x, span_y = max(1, width - bw), max(1, height - bh)
    # Bounce: position is a triangle wave of seq.
    px, py = (seq * 4) % (2 * span_x), (seq * 3) % (2 * span_y)
    x = px if px < span_x else 2 * span_x - px
    y = py if py < span_y else 2 * span_y - py
    frame[y:y + bh, x:x + bw] = 255
    return frame


class SyntheticSourceLogic(SourceLogic):
    spec = PluginSpec(
        name=NODE,
        category=Category.SOURCE,
        version="1.0.0",
        description="Test patterns and simulated sensors (counter, video pattern, waveform "
                    "sensor with noise, IMU), deterministic given the seed.",
        ports=(
            Out("out", ("*",), qos="sensor",
                description="The generated packets (kind per mode, or the kind param)."),
        ),
        params=(
            Param("mode", "str", "counter", "What to generate.", enum=MODES),
            Param("rate_hz", "float", 10.0, "Packets per second.", minimum=0.01, maximum=10000.0,
                  live=True),
            Param("count", "int", 0, "Stop after this many packets (0 = unbounded).", minimum=0),
            Param("kind", "str", "", "Packet kind (default: telemetry, video.frame, sensor.range "
                  "or sensor.imu by mode)."),
            Param("seed", "int", 0, "Seed of the noise generator."),
            Param("width", "int", 320, "pattern: frame width.", minimum=8, maximum=8192),
            Param("height", "int", 240, "pattern: frame height.", minimum=8, maximum=8192),
            Param("encoding", "str", "rgb8", "pattern: pixel encoding.", enum=("rgb8", "bgr8", "mono8")),
            Param("waveform", "str", "sine", "sensor: waveform.", enum=WAVEFORMS),
            Param("amplitude", "float", 1.0, "sensor: waveform amplitude.", live=True),
            Param("offset", "float", 2.0, "sensor: value around which the waveform swings.", live=True),
            Param("period_s", "float", 5.0, "sensor: waveform period in seconds.", minimum=0.001),
            Param("noise_std", "float", 0.0, "sensor/imu: standard deviation of gaussian noise.",
                  minimum=0.0, live=True),
            Param("min_value", "float", -1e300, "sensor: clamp values below this."),
            Param("max_value", "float", 1e300, "sensor: clamp values above this."),
            Param("field", "str", "range", "sensor: JSON field holding the value."),
            Param("deterministic_stamps", "bool", False, "Stamp = start_ns + sample time instead "
                  "of the wall clock at emission."),
            Param("start_ns", "int", 0, "Stamp of the first sample with deterministic_stamps "
                  "(0 = wall clock at activation)."),
            Param("silence_at_s", "float", -1.0, "Simulated gap: start (sample time, s); < 0 = none."),
            Param("silence_s", "float", 0.0, "Simulated gap: length in seconds.", minimum=0.0),
            Param("stream_id", "str", "", "Stream id of the packets (default: the node id)."),
            Param("frame_id", "str", "", "frame_id (sensor frame) of the packets."),
            Param("epoch", "int", 0, "Epoch of the packets.", minimum=0),
        ),
    )

    def configure(self) -> None:
        p = self.params
        self.mode = check_enum(NODE, p, "mode", MODES)
        check_range(NODE, p, "rate_hz", 0.01, 10000.0)
        check_range(NODE, p, "count", 0)
        check_range(NODE, p, "period_s", 0.001)
        check_range(NODE, p, "noise_std", 0.0)
        check_enum(NODE, p, "waveform", WAVEFORMS)
        check_enum(NODE, p, "encoding", ("rgb8", "bgr8", "mono8"))
        if self.mode == "pattern":
            check_range(NODE, p, "width", 8, 8192)
            check_range(NODE, p, "height", 8, 8192)
            import numpy  # noqa: F401  (fail here, not in the first tick)
        self.kind = str(p.get("kind") or DEFAULT_KIND[self.mode])
        self.tick_period_s = 1.0 / float(p["rate_hz"])
        import random

        self._rng = random.Random(int(p.get("seed") or 0))
        self.t = 0.0          # sample time of the next tick, s
        self.ticks = 0
        self.start_ns = 0
        self.done = False

    def activate(self) -> None:
        self.start_ns = int(self.params.get("start_ns") or 0) or self.ctx.clock_ns()

    def on_params(self, changed: Mapping[str, Any]) -> None:
        super().on_params(changed)
        if "rate_hz" in changed:
            self.tick_period_s = 1.0 / float(self.params["rate_hz"])

    # ---- generation ------------------------------------------------------------
    def _noise(self) -> float:
        std = float(self.params.get("noise_std") or 0.0)
        return self._rng.gauss(0.0, std) if std > 0 else 0.0

    def sensor_value(self, t: float) -> float:
        p = self.params
        v = float(p["offset"]) + float(p["amplitude"]) * waveform(p["waveform"], t / float(p["period_s"]))
        v += self._noise()
        return min(float(p["max_value"]), max(float(p["min_value"]), v))

    def imu_sample(self, t: float) -> Dict[str, Any]:
        yaw_rate = 0.1  # rad/s
        yaw = yaw_rate * t
        n = self._noise
        return {
            "orientation": {"x": 0.0, "y": 0.0, "z": math.sin(yaw / 2), "w": math.cos(yaw / 2)},
            "angular_velocity": {"x": n(), "y": n(), "z": yaw_rate + n()},
            "linear_acceleration": {"x": n(), "y": n(), "z": 9.80665 + n()},
        }

    def tick(self) -> None:
        if self.done:
            return
        p = self.params
        t = self.t
        self.t += self.tick_period_s
        self.ticks += 1
        silence_at, silence = float(p.get("silence_at_s", -1.0)), float(p.get("silence_s", 0.0))
        if silence_at >= 0 and silence > 0 and silence_at <= t < silence_at + silence:
            self.ctx.count("silenced")
            return
        stamp = self.start_ns + int(round(t * 1e9)) if p.get("deterministic_stamps") else self.ctx.clock_ns()
        frame_id = str(p.get("frame_id") or "")
        if self.mode == "pattern":
            from schnitzel_core.codecs.image import image_packet

            self.seq += 1
            arr = pattern_frame(self.seq, int(p["width"]), int(p["height"]), p["encoding"])
            pkt = image_packet(arr, p["encoding"], self.stream_id, self.seq, kind=self.kind,
                               epoch=self.epoch, stamp_ns=stamp, frame_id=frame_id)
        else:
            if self.mode == "counter":
                value: Any = {"n": self.seq + 1}
            elif self.mode == "sensor":
                value = {str(p.get("field") or "value"): self.sensor_value(t)}
            else:
                value = self.imu_sample(t)
            self.seq += 1
            from schnitzel_core.packet import Packet

            pkt = Packet.from_json(self.stream_id, self.seq, self.kind, value, epoch=self.epoch,
                                   stamp_ns=stamp, frame_id=frame_id)
        self.emit("out", pkt)
        count = int(p.get("count") or 0)
        if count and self.seq >= count:
            self.done = True
