"""Helpers shared by the logic/compute/state/policy/control plugins (no heavy imports).

- Field paths: ``payload.a.b``, ``meta.key``, ``kind``, ``stream_id``, ``seq``, ``epoch``,
  ``stamp_ns``, ``frame_id``, ``schema``; a path with no known root is a payload path.
- ``BadPacket``: raised by logic for input it cannot use; the guarded bases turn it into a
  counted, logged drop (or an ``error`` port packet) instead of a traceback.
- ``ConfigError``: raised from ``configure`` for bad parameters, with a message naming the
  parameter and what would fix it.
- Detections documents (docs/contracts.md): ``{"boxes": [{"x1","y1","x2","y2","score","label",
  "track_id"?}], "width", "height"}``.
"""
from __future__ import annotations

import copy
import json
import time
from typing import Any, Dict, List, Mapping, Optional, Tuple

from schnitzel_core.packet import Packet
from schnitzel_nodes.base import (ComputeLogic, ControlLogic, PolicyLogic, StateLogic,
                                  TransformLogic)


class BadPacket(ValueError):
    """A packet this node cannot process; the message says why."""


class ConfigError(ValueError):
    """Invalid node parameters; the message names the parameter and the fix."""


MISSING = object()
PACKET_ROOTS = ("kind", "stream_id", "seq", "epoch", "stamp_ns", "frame_id", "schema",
                "content_type", "packet_id", "idempotency_key")


# ---- dotted paths --------------------------------------------------------------

def split_path(path: str) -> List[str]:
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"field path must be non-empty text, got {path!r}")
    parts = path.strip().split(".")
    if any(not p for p in parts):
        raise ConfigError(f"field path {path!r} has an empty component (check the dots)")
    return parts


def get_path(obj: Any, parts: List[str], default: Any = MISSING) -> Any:
    cur = obj
    for p in parts:
        if isinstance(cur, Mapping) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and p.lstrip("-").isdigit() and -len(cur) <= int(p) < len(cur):
            cur = cur[int(p)]
        else:
            return default
    return cur


def set_path(obj: Dict[str, Any], parts: List[str], value: Any) -> None:
    cur = obj
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


def del_path(obj: Any, parts: List[str]) -> bool:
    cur = get_path(obj, parts[:-1]) if len(parts) > 1 else obj
    if isinstance(cur, dict) and parts[-1] in cur:
        del cur[parts[-1]]
        return True
    return False


class FieldRef:
    """A compiled field path over a packet (see module doc)."""

    def __init__(self, path: str) -> None:
        parts = split_path(path)
        self.path = path
        if parts[0] == "payload":
            self.root, self.parts = "payload", parts[1:]
        elif parts[0] == "meta":
            if len(parts) < 2:
                raise ConfigError(f"field path {path!r}: name the meta key, e.g. meta.zone")
            self.root, self.parts = "meta", [".".join(parts[1:])]
        elif parts[0] in PACKET_ROOTS and len(parts) == 1:
            self.root, self.parts = parts[0], []
        else:
            self.root, self.parts = "payload", parts

    def get(self, packet: Packet, body: Any = MISSING, default: Any = None) -> Any:
        if self.root == "payload":
            if body is MISSING:
                body = json_body(packet, required=False)
            return get_path(body, self.parts, default) if self.parts else body
        if self.root == "meta":
            return packet.meta.get(self.parts[0], default)
        return getattr(packet, self.root, default)


# ---- payloads ------------------------------------------------------------------

def json_body(packet: Packet, required: bool = True) -> Any:
    """The decoded JSON payload; BadPacket when it is not JSON (None when not required)."""
    ct = packet.content_type or ""
    if ct and not ct.startswith("application/json") and not ct.endswith("+json"):
        if required:
            raise BadPacket(f"payload is {ct!r}, not application/json")
        return None
    if not packet.payload:
        if required:
            raise BadPacket("payload is empty, expected a JSON document")
        return None
    try:
        return json.loads(packet.payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        if required:
            raise BadPacket(f"payload is not valid JSON ({exc})") from None
        return None


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def with_json(packet: Packet, value: Any, kind: Optional[str] = None, key_parts: Tuple = (),
              **changes: Any) -> Packet:
    """A packet derived from ``packet`` carrying ``value`` as its JSON payload."""
    changes.setdefault("content_type", "application/json")
    return packet.derive(kind=kind, payload=dumps(value), key_parts=key_parts, **changes)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def detections_of(packet: Packet) -> Dict[str, Any]:
    """The detections document of ``packet`` with its boxes checked (BadPacket otherwise)."""
    doc = json_body(packet)
    if not isinstance(doc, dict):
        raise BadPacket(f"detections payload must be a JSON object, got {type(doc).__name__}")
    boxes = doc.get("boxes", [])
    if not isinstance(boxes, list):
        raise BadPacket("detections 'boxes' must be a list")
    for i, b in enumerate(boxes):
        if not isinstance(b, dict):
            raise BadPacket(f"detections box {i} must be an object, got {type(b).__name__}")
        for k in ("x1", "y1", "x2", "y2"):
            if not _num(b.get(k)):
                raise BadPacket(f"detections box {i} needs a number {k!r}, got {b.get(k)!r}")
    doc["boxes"] = boxes
    return doc


def deepcopy_json(value: Any) -> Any:
    return copy.deepcopy(value)


# ---- guarded bases -------------------------------------------------------------

class Guarded:
    """``on_packet`` that turns BadPacket/CodecError into a counted drop, never a traceback.

    When the node's spec declares an ``error`` output port, the rejected packet goes there
    with the reason in meta ``schnitzel.error``.
    """

    def on_packet(self, port: str, packet: Packet) -> None:  # type: ignore[override]
        from schnitzel_core.codecs import CodecError

        try:
            result = self.process(port, packet)  # type: ignore[attr-defined]
        except (BadPacket, CodecError) as exc:
            self.reject(packet, str(exc))
            return
        self._send(result)  # type: ignore[attr-defined]

    def reject(self, packet: Packet, reason: str) -> None:
        ctx = self.ctx  # type: ignore[attr-defined]
        ctx.count("invalid")
        ctx.logger.warning("%s: dropped packet %s: %s", ctx.node_id, packet.packet_id, reason)
        if self.spec.port("error") is not None:  # type: ignore[attr-defined]
            ctx.emit("error", packet.with_meta(**{"schnitzel.error": reason[:500],
                                                  "schnitzel.error_node": ctx.node_id}))


class Transform(Guarded, TransformLogic):
    pass


class Compute(Guarded, ComputeLogic):
    pass


class Policy(Guarded, PolicyLogic):
    pass


class State(Guarded, StateLogic):
    pass


class Control(Guarded, ControlLogic):
    pass


def check_live(spec: Any, changed: Mapping[str, Any]) -> None:
    for name in changed:
        p = spec.param(name)
        if p is None:
            raise ConfigError(f"{spec.name}: unknown parameter {name!r}")


def iou(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    ix = min(a["x2"], b["x2"]) - max(a["x1"], b["x1"])
    iy = min(a["y2"], b["y2"]) - max(a["y1"], b["y1"])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    area_a = max(0.0, a["x2"] - a["x1"]) * max(0.0, a["y2"] - a["y1"])
    area_b = max(0.0, b["x2"] - b["x1"]) * max(0.0, b["y2"] - b["y1"])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def spend_time(latency_ms: float, busy: bool) -> None:
    """What a synthetic compute stage costs per packet: sleep, or burn the CPU for that long."""
    delay = latency_ms / 1000.0
    if busy:
        end = time.perf_counter() + delay
        while time.perf_counter() < end:
            pass
    elif delay > 0:
        time.sleep(delay)
