"""Packets ⇄ the legacy event JSON of event protocol v0.2 (the original platform's events).

A v0.2 event is one JSON object with these fields (all optional except ``ts``)::

    {"event_id": "e-42", "ts": "2024-05-01T12:00:00.250Z", "site_id": "plant-3",
     "camera_id": "cam0", "event_type": "intrusion", "severity": "high",
     "bbox": [10, 20, 110, 220], "confidence": 0.91, "zone": "dock",
     "track_id": 7, "object_type": "person", "sensor": {...}}

Mapping (event → packet, :func:`from_legacy`):

================  =============================================================
packet field      from the event
================  =============================================================
payload           the whole event object, compact JSON with sorted keys
                  (unknown extra fields included, so nothing is lost)
content_type      ``application/json``
kind / schema     ``event`` / ``legacy.event/0.2``
stream_id         ``camera_id`` (else ``site_id``, else ``legacy``)
stamp_ns          ``ts``: ISO 8601 text (``Z`` or an offset; no offset means UTC) or a
                  number of seconds since the Unix epoch; exact to the nanosecond
frame_id          ``sensor`` when it is a string, else empty
seq / epoch       0 / 0 unless given (v0.2 events carry no sequence)
idempotency_key   ``event_id`` itself when it is a plain token (letters, digits,
                  ``._:-/``, at most 128 characters, as UUIDs and schnitzel keys are),
                  else ``derive_key("legacy.event", event_id)``; without an event_id,
                  ``derive_key("legacy.event", camera_id, ts in ns, event_type,
                  track_id, object_type, zone)``. Never the wall clock.
packet_id         ``legacy/<stream_id>/<idempotency_key>``
meta              the scalar fields ``site_id``, ``camera_id``, ``event_type``,
                  ``severity``, ``zone``, ``object_type``, ``track_id`` as text (for
                  routing; the payload stays authoritative)
================  =============================================================

Packet → event (:func:`to_legacy`): the packet's JSON payload object is the event. A packet
that came from a legacy event (schema ``legacy.event/0.2``) is given back verbatim, so
``to_legacy(from_legacy(e)) == e`` for every event. Any other ``event`` packet (built by a
schnitzel node) has the fields its payload lacks filled from the packet: ``event_id`` ←
idempotency_key, ``ts`` ← stamp_ns (ISO 8601 UTC with ``Z``, as many fraction digits as
needed: 0, 3, 6 or 9), ``camera_id`` ← stream_id, and ``site_id``, ``event_type``,
``severity``, ``zone``, ``object_type`` ← the same-named meta keys; fields present in the
payload are never overwritten. ``from_legacy(to_legacy(p))`` keeps the packet's idempotency
key (the filled event_id is that key) and its stamp to the nanosecond. ``fill=True/False``
forces either behaviour.

Bad input (not a JSON object, an unparseable ``ts``, a ``bbox`` that is not four numbers or
an object of numbers, a non-numeric ``confidence``) raises :class:`CodecError`.
"""
from __future__ import annotations

import datetime as _dt
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Dict, Mapping, Optional, Union

from ..packet import Packet, derive_key
from . import CodecError

PROTOCOL_VERSION = "0.2"
SCHEMA = "legacy.event/0.2"
EVENT_KIND = "event"
FIELDS = ("event_id", "ts", "site_id", "camera_id", "event_type", "severity", "bbox",
          "confidence", "zone", "track_id", "object_type", "sensor")
META_FIELDS = ("site_id", "camera_id", "event_type", "severity", "zone", "object_type", "track_id")
_FILL_FROM_META = ("site_id", "event_type", "severity", "zone", "object_type")
_TOKEN = re.compile(r"[A-Za-z0-9._:/-]{1,128}")
_FRACTION = re.compile(r"^(.*[T ]\d{2}:\d{2}:\d{2})[.,](\d+)(.*)$")
_NUMBER = re.compile(r"-?\d+(\.\d*)?")
_NS = 1_000_000_000
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


# ---- time stamps ---------------------------------------------------------------

def parse_ts(ts: Any) -> int:
    """Nanoseconds since the Unix epoch for a v0.2 ``ts`` (ISO 8601 text or epoch seconds)."""
    if isinstance(ts, bool) or ts is None:
        raise CodecError(f"event ts must be ISO 8601 text or seconds since the epoch, got {ts!r}")
    if isinstance(ts, (int, float)):
        try:
            # Decimal of the repr: 1714564800.25 gives exactly ...250000000 ns.
            return int(Decimal(repr(ts)) * _NS)
        except (InvalidOperation, ValueError, OverflowError):
            raise CodecError(f"event ts {ts!r} is not a finite number") from None
    if not isinstance(ts, str):
        raise CodecError(f"event ts must be ISO 8601 text or a number, got {type(ts).__name__}")
    text = ts.strip()
    if _NUMBER.fullmatch(text):  # epoch seconds written as text
        return int(Decimal(text) * _NS)
    frac_ns = 0
    m = _FRACTION.match(text)
    if m:  # parse the fraction ourselves: datetime stops at microseconds
        digits = m.group(2)
        frac_ns = int((digits + "000000000")[:9])
        text = m.group(1) + m.group(3)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        when = _dt.datetime.fromisoformat(text)
    except ValueError:
        raise CodecError(f"event ts {ts!r} is not ISO 8601 (e.g. 2024-05-01T12:00:00.250Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)  # v0.2 stamps without an offset are UTC
    delta = when - _EPOCH
    return (delta.days * 86400 + delta.seconds) * _NS + delta.microseconds * 1000 + frac_ns


def format_ts(stamp_ns: int) -> str:
    """ISO 8601 UTC text with ``Z`` and as many fraction digits as the stamp needs (0/3/6/9)."""
    secs, ns = divmod(int(stamp_ns), _NS)
    base = (_EPOCH + _dt.timedelta(seconds=secs)).strftime("%Y-%m-%dT%H:%M:%S")
    if ns == 0:
        return base + "Z"
    if ns % 1_000_000 == 0:
        return f"{base}.{ns // 1_000_000:03d}Z"
    if ns % 1000 == 0:
        return f"{base}.{ns // 1000:06d}Z"
    return f"{base}.{ns:09d}Z"


# ---- validation ---------------------------------------------------------------

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _load(event: Union[Mapping[str, Any], str, bytes, bytearray]) -> Dict[str, Any]:
    if isinstance(event, (bytes, bytearray)):
        try:
            event = event.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"legacy event is not UTF-8 text ({exc})") from None
    if isinstance(event, str):
        try:
            event = json.loads(event)
        except json.JSONDecodeError as exc:
            raise CodecError(f"legacy event is not valid JSON ({exc})") from None
    if not isinstance(event, Mapping):
        raise CodecError(f"legacy event must be a JSON object, got {type(event).__name__}")
    try:
        json.dumps(event)
    except (TypeError, ValueError) as exc:  # a value JSON cannot hold, e.g. a datetime object
        raise CodecError(f"legacy event is not JSON-serialisable ({exc})") from None
    return dict(event)


def validate_event(event: Mapping[str, Any]) -> None:
    """Raise CodecError naming the first v0.2 field with a wrong shape."""
    if "ts" not in event:
        raise CodecError("legacy event has no 'ts' (the event time, ISO 8601 or epoch seconds)")
    parse_ts(event["ts"])
    for name in ("event_id", "site_id", "camera_id", "event_type", "zone", "object_type"):
        v = event.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (str, int))):
            raise CodecError(f"legacy event field {name!r} must be text, got {v!r}")
    bbox = event.get("bbox")
    if bbox is not None:
        ok = (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(x) for x in bbox)) or (
            isinstance(bbox, Mapping) and all(_is_number(x) for x in bbox.values()))
        if not ok:
            raise CodecError(f"legacy event bbox must be four numbers [x1, y1, x2, y2] or an object of numbers, got {bbox!r}")
    conf = event.get("confidence")
    if conf is not None and not _is_number(conf):
        raise CodecError(f"legacy event confidence must be a number, got {conf!r}")
    track = event.get("track_id")
    if track is not None and (isinstance(track, bool) or not isinstance(track, (int, str))):
        raise CodecError(f"legacy event track_id must be an integer or text, got {track!r}")


# ---- keys ----------------------------------------------------------------------

def event_key(event: Mapping[str, Any]) -> str:
    """The deterministic idempotency key of a v0.2 event (see the module doc)."""
    eid = event.get("event_id")
    if eid is not None and eid != "":
        text = str(eid)
        return text if _TOKEN.fullmatch(text) else derive_key("legacy.event", text)
    # A field given as null and a missing field are the same identity.
    part = [("" if event.get(k) is None else event[k])
            for k in ("camera_id", "event_type", "track_id", "object_type", "zone")]
    return derive_key("legacy.event", part[0], parse_ts(event["ts"]), *part[1:])


# ---- conversions ---------------------------------------------------------------

def from_legacy(event: Union[Mapping[str, Any], str, bytes], seq: int = 0, epoch: int = 0,
                **fields: Any) -> Packet:
    """A ``kind=event`` packet carrying a v0.2 event (dict or JSON text) losslessly."""
    ev = _load(event)
    validate_event(ev)
    stamp_ns = parse_ts(ev["ts"])
    stream_id = str(ev.get("camera_id") or ev.get("site_id") or "legacy")
    key = event_key(ev)
    meta = {k: str(ev[k]) for k in META_FIELDS if isinstance(ev.get(k), (str, int)) and not isinstance(ev.get(k), bool)}
    meta.update(fields.pop("meta", {}) or {})
    sensor = ev.get("sensor")
    fields.setdefault("frame_id", sensor if isinstance(sensor, str) else "")
    fields.setdefault("schema", SCHEMA)
    fields.setdefault("packet_id", f"legacy/{stream_id}/{key}")
    fields.setdefault("idempotency_key", key)
    p = Packet.from_json(stream_id, seq, EVENT_KIND, ev, epoch=epoch, stamp_ns=stamp_ns,
                         meta=meta, **fields)
    p.stamp_ns = stamp_ns  # keep an epoch-zero ts (Packet() would replace 0 with "now")
    return p


def to_legacy(packet: Packet, fill: Optional[bool] = None) -> Dict[str, Any]:
    """The v0.2 event of an ``event`` packet (see the module doc for what ``fill`` does)."""
    if not isinstance(packet, Packet):
        raise CodecError(f"expected a schnitzel_core.packet.Packet, got {type(packet).__name__}")
    if packet.kind != EVENT_KIND:
        raise CodecError(f"packet {packet.packet_id}: kind {packet.kind!r} is not {EVENT_KIND!r}; only events map to legacy v0.2 JSON")
    if packet.payload:
        try:
            body = packet.json()
        except ValueError as exc:
            raise CodecError(str(exc)) from None
    else:
        body = {}
    if not isinstance(body, dict):
        raise CodecError(f"packet {packet.packet_id}: event payload must be a JSON object, got {type(body).__name__}")
    ev = dict(body)
    if fill is None:
        fill = packet.schema != SCHEMA  # a wrapped legacy event is returned as it came
    if fill:
        ev.setdefault("event_id", packet.idempotency_key)
        ev.setdefault("ts", format_ts(packet.stamp_ns))
        ev.setdefault("camera_id", packet.stream_id)
        for name in _FILL_FROM_META:
            if name not in ev and name in packet.meta:
                ev[name] = packet.meta[name]
    validate_event(ev)
    return ev


def to_legacy_json(packet: Packet, fill: Optional[bool] = None) -> str:
    """:func:`to_legacy` as compact JSON text with sorted keys (stable bytes for the same input)."""
    return json.dumps(to_legacy(packet, fill), separators=(",", ":"), sort_keys=True)


# ---- StreamPacket messages (via codecs.ros; message classes imported lazily) ----

def msg_from_legacy(event: Union[Mapping[str, Any], str, bytes], **fields: Any) -> Any:
    """A schnitzel_msgs/StreamPacket carrying a v0.2 event."""
    from .ros import to_msg

    return to_msg(from_legacy(event, **fields))


def msg_to_legacy(msg: Any) -> Dict[str, Any]:
    """The v0.2 event of a schnitzel_msgs/StreamPacket of kind ``event``."""
    from .ros import from_msg

    return to_legacy(from_msg(msg))


__all__ = ["CodecError", "FIELDS", "SCHEMA", "PROTOCOL_VERSION", "parse_ts", "format_ts",
           "validate_event", "event_key", "from_legacy", "to_legacy", "to_legacy_json",
           "msg_from_legacy", "msg_to_legacy"]
