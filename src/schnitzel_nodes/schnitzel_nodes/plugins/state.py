"""State: tracker, fusion, window, delay. Each hands its state over on hot replacement
(``get_state``/``set_state`` return and take JSON-safe values). Event time only: every
decision uses packet stamps, never the wall clock, so a replay at any speed gives the same output.
"""
from __future__ import annotations

import bisect
import math
from typing import Any, Dict, List, Optional, Tuple

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, In, Out, Param, PluginSpec

from ._common import (BadPacket, ConfigError, FieldRef, State, detections_of, iou, json_body,
                      with_json)

NS = 1_000_000_000


# ---- tracker ---------------------------------------------------------------------

class TrackerLogic(State):
    """Greedy IoU association with stable track ids, per stream.

    Each frame's boxes are matched to live tracks by descending IoU (ties broken by track id
    then box index, so the result is deterministic). A track is confirmed after ``min_hits``
    matched frames and removed after ``max_age`` frames without a match. Confirmed boxes carry
    ``track_id``; unconfirmed ones are dropped unless ``emit_unconfirmed``.
    """

    spec = PluginSpec(
        name="tracker", category=Category.STATE, version="1.0.0", stateful=True,
        description="IoU tracker: detections in, detections with stable track_id out.",
        ports=(In("in", ("detections",)), Out("out", ("detections",)), Out("error", ("*",))),
        params=(
            Param("iou_threshold", "float", 0.3, "minimum IoU to continue a track", minimum=0.0, maximum=1.0, live=True),
            Param("max_age", "int", 5, "frames a track survives without a match", minimum=0, maximum=100000, live=True),
            Param("min_hits", "int", 1, "matched frames before a track is reported", minimum=1, maximum=1000, live=True),
            Param("match_labels", "bool", True, "only associate boxes with tracks of the same label", live=True),
            Param("emit_unconfirmed", "bool", False, "also output boxes of tracks not yet confirmed (without track_id)", live=True),
        ),
    )

    def configure(self) -> None:
        self.streams: Dict[str, Dict[str, Any]] = {}

    def _stream(self, sid: str) -> Dict[str, Any]:
        st = self.streams.get(sid)
        if st is None:
            st = self.streams[sid] = {"next_id": 1, "tracks": []}
        return st

    def process(self, port: str, packet: Packet) -> Packet:
        doc = detections_of(packet)
        p = self.params
        st = self._stream(packet.stream_id)
        tracks: List[Dict[str, Any]] = st["tracks"]
        boxes = doc["boxes"]
        thr = float(p["iou_threshold"])
        pairs = []
        for ti, t in enumerate(tracks):
            for bi, b in enumerate(boxes):
                if p["match_labels"] and str(t.get("label")) != str(b.get("label")):
                    continue
                v = iou(t["box"], b)
                if v >= thr and v > 0:
                    pairs.append((-v, t["id"], bi, ti))
        pairs.sort()
        used_t, used_b, match = set(), set(), {}
        for _, _, bi, ti in pairs:
            if ti in used_t or bi in used_b:
                continue
            used_t.add(ti)
            used_b.add(bi)
            match[bi] = ti
        for ti, t in enumerate(tracks):
            if ti not in used_t:
                t["missed"] += 1
        out_boxes = []
        for bi, b in enumerate(boxes):
            if bi in match:
                t = tracks[match[bi]]
                t["hits"] += 1
                t["missed"] = 0
            else:
                t = {"id": st["next_id"], "hits": 1, "missed": 0, "label": b.get("label")}
                st["next_id"] += 1
                tracks.append(t)
            t["box"] = {k: float(b[k]) for k in ("x1", "y1", "x2", "y2")}
            nb = dict(b)
            if t["hits"] >= int(p["min_hits"]):
                nb["track_id"] = t["id"]
                out_boxes.append(nb)
            elif p["emit_unconfirmed"]:
                nb.pop("track_id", None)
                out_boxes.append(nb)
        st["tracks"] = [t for t in tracks if t["missed"] <= int(p["max_age"])]
        doc["boxes"] = out_boxes
        return with_json(packet, doc)

    def get_state(self) -> Any:
        return {"streams": self.streams}

    def set_state(self, state: Any) -> None:
        if isinstance(state, dict) and isinstance(state.get("streams"), dict):
            self.streams = state["streams"]


# ---- fusion ----------------------------------------------------------------------

class FusionLogic(State):
    """Joins each main packet with the nearest ``aux`` sample within ``window_ms`` (event time).

    Never waits: a main packet is emitted at once with whatever samples have arrived; when
    none is within the window it carries ``null`` and meta ``fusion=miss`` (counted
    ``misses``), so a silent sensor never stalls the main stream. With ``interpolate`` and
    samples on both sides of the main stamp inside the window, numeric values are linearly
    interpolated.
    """

    spec = PluginSpec(
        name="fusion", category=Category.STATE, version="1.0.0", stateful=True,
        description="Attach the nearest sample of a second stream (e.g. a range sensor) within a time window.",
        ports=(In("in", ("*",), description="main stream (detections, events, ...), emitted immediately"),
               In("aux", ("*",), qos="sensor", description="the sensor stream whose samples are attached"),
               Out("out", ("*",), description="main packets with the sample attached"),
               Out("error", ("*",))),
        params=(
            Param("window_ms", "float", 300.0, "largest |main stamp - sample stamp| accepted", minimum=0.0, live=True),
            Param("interpolate", "bool", False, "linear interpolation between the samples bracketing the main stamp", live=True),
            Param("field", "str", "", "path of the value in the aux packet (empty: the whole JSON payload)"),
            Param("target", "str", "sensor", "payload key of JSON object main packets receiving the sample"),
            Param("max_samples", "int", 2000, "aux samples kept (oldest dropped first)", minimum=2, maximum=1000000),
        ),
    )

    def configure(self) -> None:
        self._field = FieldRef(self.params["field"]) if self.params["field"] else None
        self.samples: List[Tuple[int, Any, str]] = []  # (stamp_ns, value, stream_id), sorted by stamp

    def _value(self, packet: Packet) -> Any:
        if self._field is not None:
            return self._field.get(packet)
        body = json_body(packet, required=False)
        if body is None and packet.payload:
            try:
                return float(packet.payload.decode("utf-8").strip())
            except (UnicodeDecodeError, ValueError):
                raise BadPacket("aux payload is neither JSON nor a number") from None
        return body

    def process(self, port: str, packet: Packet) -> Any:
        if port == "aux":
            v = self._value(packet)
            item = (packet.stamp_ns, v, packet.stream_id)
            keys = [s[0] for s in self.samples]
            self.samples.insert(bisect.bisect_right(keys, packet.stamp_ns), item)
            if len(self.samples) > int(self.params["max_samples"]):
                del self.samples[0:len(self.samples) - int(self.params["max_samples"])]
            return None
        return [("out", self._fuse(packet))]

    def lookup(self, t: int) -> Optional[Dict[str, Any]]:
        win = float(self.params["window_ms"]) * 1e6
        keys = [s[0] for s in self.samples]
        i = bisect.bisect_left(keys, t)
        before = self.samples[i - 1] if i > 0 else None
        after = self.samples[i] if i < len(self.samples) else None
        cands = [s for s in (before, after) if s is not None and abs(s[0] - t) <= win]
        if not cands:
            return None
        if (self.params["interpolate"] and before is not None and after is not None and len(cands) == 2
                and after[0] != before[0] and _is_num(before[1]) and _is_num(after[1])):
            f = (t - before[0]) / (after[0] - before[0])
            value = before[1] + f * (after[1] - before[1])
            return {"value": value, "stamp_ns": t, "dt_ms": 0.0, "interpolated": True,
                    "stream_id": before[2]}
        best = min(cands, key=lambda s: (abs(s[0] - t), s[0]))
        return {"value": best[1], "stamp_ns": best[0], "dt_ms": round((best[0] - t) / 1e6, 3),
                "interpolated": False, "stream_id": best[2]}

    def _fuse(self, packet: Packet) -> Packet:
        sample = self.lookup(packet.stamp_ns)
        if sample is None:
            self.ctx.count("misses")
            meta = {"fusion": "miss"}
        else:
            self.ctx.count("fused")
            meta = {"fusion": "hit", "fusion.dt_ms": f"{sample['dt_ms']:g}"}
            if _is_num(sample["value"]) or isinstance(sample["value"], str):
                meta["fusion.value"] = str(sample["value"])
        body = json_body(packet, required=False)
        if isinstance(body, dict):
            body[self.params["target"]] = sample
            return with_json(packet, body).with_meta(**meta)
        return packet.with_meta(**meta)

    def get_state(self) -> Any:
        return {"samples": [list(s) for s in self.samples]}

    def set_state(self, state: Any) -> None:
        if isinstance(state, dict) and isinstance(state.get("samples"), list):
            self.samples = sorted(tuple(s) for s in state["samples"])


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# ---- window ----------------------------------------------------------------------

AGGS = ("count", "mean", "min", "max", "sum")


class WindowLogic(State):
    """Count or time windows over a numeric field, emitting count/mean/min/max/sum.

    - ``mode: count``: every ``size`` packets (tumbling) or, with ``sliding``, on every packet
      over the last ``size`` packets.
    - ``mode: time``: tumbling windows of ``size`` seconds aligned to the epoch of the packet
      stamps (a window is emitted when the first packet of a later window arrives), or, with
      ``sliding``, on every packet over the packets of the last ``size`` seconds.
    Output: kind ``telemetry``, JSON ``{"field", "count", "mean", "min", "max", "sum",
    "start_ns", "end_ns", "group"?}`` stamped with the window end.
    """

    spec = PluginSpec(
        name="window", category=Category.STATE, version="1.0.0", stateful=True,
        description="Count or time window aggregates (count, mean, min, max, sum) of a numeric field.",
        ports=(In("in", ("*",)), Out("out", ("telemetry",)), Out("error", ("*",))),
        params=(
            Param("field", "str", "value", "path of the numeric value (payload.x, meta.k, ...; no root: payload)"),
            Param("mode", "str", "count", "count: size packets; time: size seconds of stamp time", enum=("count", "time")),
            Param("size", "float", 10.0, "window size: packets (count) or seconds (time)", minimum=0.001),
            Param("sliding", "bool", False, "emit on every packet over the trailing window instead of tumbling windows"),
            Param("aggregates", "list", list(AGGS), "which aggregates to output", items="str"),
            Param("group_by", "str", "", "path of a field; one window per distinct value (empty: per stream)"),
        ),
    )

    def configure(self) -> None:
        p = self.params
        self._field = FieldRef(p["field"])
        self._group = FieldRef(p["group_by"]) if p["group_by"] else None
        bad = [a for a in p["aggregates"] if a not in AGGS]
        if bad or not p["aggregates"]:
            raise ConfigError(f"window: aggregates must be a non-empty subset of {', '.join(AGGS)}, got {p['aggregates']!r}")
        if p["mode"] == "count" and float(p["size"]) != int(float(p["size"])):
            raise ConfigError(f"window: count windows need a whole number size, got {p['size']}")
        self.size_n = max(1, int(float(p["size"])))
        self.size_ns = int(float(p["size"]) * NS)
        self.windows: Dict[str, Dict[str, Any]] = {}

    def process(self, port: str, packet: Packet) -> Any:
        v = self._field.get(packet)
        if not _is_num(v):
            raise BadPacket(f"field {self.params['field']!r} is {v!r}, not a number")
        key = packet.stream_id if self._group is None else str(self._group.get(packet))
        w = self.windows.setdefault(key, {"items": [], "bucket": None})
        t = packet.stamp_ns
        p = self.params
        out = []
        if p["mode"] == "count":
            w["items"].append([t, v])
            if p["sliding"]:
                w["items"] = w["items"][-self.size_n:]
                out.append(self._emit(packet, key, w["items"]))
            elif len(w["items"]) >= self.size_n:
                out.append(self._emit(packet, key, w["items"]))
                w["items"] = []
        elif p["sliding"]:
            w["items"].append([t, v])
            w["items"] = [it for it in w["items"] if it[0] > t - self.size_ns]
            out.append(self._emit(packet, key, w["items"]))
        else:
            bucket = t // self.size_ns
            if w["bucket"] is not None and bucket != w["bucket"] and w["items"]:
                start = w["bucket"] * self.size_ns
                out.append(self._emit(packet, key, w["items"], start, start + self.size_ns))
                w["items"] = []
            w["bucket"] = bucket
            w["items"].append([t, v])
        return [("out", o) for o in out]

    def _emit(self, packet: Packet, key: str, items: List[List[Any]], start: Optional[int] = None,
              end: Optional[int] = None) -> Packet:
        vals = [it[1] for it in items]
        start = items[0][0] if start is None else start
        end = items[-1][0] if end is None else end
        full = {"count": len(vals), "sum": float(sum(vals)), "min": min(vals), "max": max(vals),
                "mean": float(sum(vals)) / len(vals)}
        doc: Dict[str, Any] = {k: full[k] for k in self.params["aggregates"]}
        doc.update({"field": self.params["field"], "start_ns": start, "end_ns": end})
        if self._group is not None:
            doc["group"] = key
        return with_json(packet, doc, kind="telemetry", key_parts=("window", key, start, end), stamp_ns=end)

    def get_state(self) -> Any:
        return {"windows": self.windows}

    def set_state(self, state: Any) -> None:
        if isinstance(state, dict) and isinstance(state.get("windows"), dict):
            self.windows = state["windows"]


# ---- delay -----------------------------------------------------------------------

class DelayLogic(State):
    """Delays packets by ``steps`` packets (or ``seconds`` of stamp time); the only node a
    graph cycle may pass through, provided ``initial`` is set.

    Steps: output n is input n - steps; the first ``steps`` outputs carry ``initial`` (a JSON
    value) in a packet derived from the input that triggered them (meta ``delay.initial=1``).
    Seconds: a packet is released when a later input's stamp reaches its stamp + seconds
    (event time, so replay gives the same result); with ``initial`` set, the first input also
    emits the initial value at once so a cycle can start.
    """

    spec = PluginSpec(
        name="delay", category=Category.STATE, version="1.0.0", stateful=True, delay=True,
        description="Hold packets for N steps or seconds of stamp time, with an initial value (breaks cycles).",
        ports=(In("in", ("*",)), Out("out", ("*",))),
        params=(
            Param("steps", "int", 1, "delay in packets (used when seconds is 0)", minimum=0, maximum=100000),
            Param("seconds", "float", 0.0, "delay in seconds of packet stamp time (0: use steps)", minimum=0.0),
            Param("initial", "any", None, "JSON value emitted while the delay fills (required for a node inside a cycle)"),
            Param("initial_kind", "str", "", "kind of initial packets (empty: the triggering input's kind)"),
        ),
    )

    def configure(self) -> None:
        self.buffer: List[Packet] = []
        self.started = False

    def _initial(self, trigger: Packet, n: int) -> Packet:
        kind = self.params["initial_kind"] or trigger.kind
        return with_json(trigger, self.params["initial"], kind=kind, key_parts=("delay.initial", n)).with_meta(**{"delay.initial": "1"})

    def process(self, port: str, packet: Packet) -> Any:
        p = self.params
        out: List[Tuple[str, Packet]] = []
        has_initial = p["initial"] is not None
        if float(p["seconds"]) > 0:
            if has_initial and not self.started:
                out.append(("out", self._initial(packet, 0)))
            self.started = True
            self.buffer.append(packet)
            due = packet.stamp_ns - int(float(p["seconds"]) * NS)
            while self.buffer and self.buffer[0].stamp_ns <= due:
                out.append(("out", self.buffer.pop(0)))
            return out
        steps = int(p["steps"])
        if steps == 0:
            return [("out", packet)]
        self.buffer.append(packet)
        if len(self.buffer) > steps:
            out.append(("out", self.buffer.pop(0)))
        elif has_initial:
            out.append(("out", self._initial(packet, len(self.buffer))))
        return out

    def get_state(self) -> Any:
        return {"buffer": [b.to_dict() for b in self.buffer], "started": self.started}

    def set_state(self, state: Any) -> None:
        if isinstance(state, dict) and isinstance(state.get("buffer"), list):
            self.buffer = [Packet.from_dict(d) for d in state["buffer"]]
            self.started = bool(state.get("started"))


__all__ = ["TrackerLogic", "FusionLogic", "WindowLogic", "DelayLogic"]
