"""What the store hands out (Row, the results, Stats) and how a packet is stored: the
columns of a loose or dead row, the fields of a segment row."""

from __future__ import annotations

import dataclasses
import json
import operator
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..packet import Packet, PayloadRef


@dataclasses.dataclass(slots=True)
class Row:
    """One queued (or dead-lettered) row."""

    id: int
    key: str
    packet: Packet
    sinks: Tuple[str, ...]          # sinks still to confirm; ("*",) = any one sink
    attempts: int
    enq_ns: int
    size: int
    last_error: str = ""
    reason: str = ""                # dead-letter reason (dead rows only)
    dead_ns: int = 0


@dataclasses.dataclass
class EnqueueResult:
    accepted: int = 0
    duplicates: int = 0             # key already queued or delivered (ledger): a no-op
    rejected: int = 0               # refused: capacity full with reject_new
    dropped: int = 0                # older rows dropped to make room (drop_oldest)


@dataclasses.dataclass
class AckResult:
    done: int = 0                   # rows fully delivered and removed
    partial: int = 0                # fan-out rows still waiting for other sinks
    unknown: int = 0                # row not found (already done, purged) - harmless


@dataclasses.dataclass
class Stats:
    depth: int
    bytes: int
    leased: int
    dead: int
    oldest_age_s: float
    oldest_id: Optional[int]
    ledger: int
    counters: Dict[str, int]
    path: str
    schema_version: int
    synchronous: str

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


_new_packet = object.__new__
_PLAIN_TAIL = (None, None)


def _encode_extra(f: Tuple[Any, ...]) -> Tuple[Any, Any]:
    return (json.dumps(f[11], separators=(",", ":")) if f[11] else None,
            # a PayloadRef, or the dict a segment keeps it as (a segment row moving to queue/dead)
            json.dumps(f[12] if isinstance(f[12], dict) else dataclasses.asdict(f[12])) if f[12] else None)


_FIELD_NAMES = ("idempotency_key", "stream_id", "seq", "epoch", "kind", "schema", "content_type", "stamp_ns",
                "frame_id", "packet_id", "payload", "meta", "payload_ref")
_PACKET_FIELDS = operator.attrgetter(*_FIELD_NAMES)
_DICT_FIELDS = operator.itemgetter(*_FIELD_NAMES)


def _fields_of(pk: List[Packet]) -> List[Tuple[Any, ...]]:
    """Each packet's fields (_FIELD_NAMES order) as a tuple. Read from the instance dicts
    (a dataclass keeps every field there; a third faster than getattr per field), by
    attribute if one is not."""
    try:
        return list(map(_DICT_FIELDS, map(vars, pk)))
    except (KeyError, TypeError):
        return list(map(_PACKET_FIELDS, pk))


def _decode(r: Sequence[Any]) -> Packet:
    # r follows _ROW_COLS. The stored fields are complete (written from a Packet), so the
    # dataclass __init__/__post_init__ defaulting is skipped: decoding is on the hot path.
    p = _new_packet(Packet)
    p.__dict__ = {"stream_id": r[2] or "", "seq": r[3] or 0, "kind": r[5] or "", "payload": r[11] or b"",
                  "epoch": r[4] or 0, "stamp_ns": r[8] or 0, "frame_id": r[9] or "", "schema": r[6] or "",
                  "content_type": r[7] or "", "packet_id": r[10] or "", "idempotency_key": r[1],
                  "payload_ref": PayloadRef(**json.loads(r[13])) if r[13] else None,
                  "meta": json.loads(r[12]) if r[12] else {}}
    return p


def _row(r: Sequence[Any]) -> Row:
    return Row(id=r[0], key=r[1], packet=_decode(r), size=r[14], sinks=tuple(r[15].split(",")),
               enq_ns=r[16], attempts=r[17], last_error=r[18] or "")


def _mp_default(o: Any) -> Any:
    if isinstance(o, PayloadRef):
        return dataclasses.asdict(o)
    raise TypeError(f"cannot store a {type(o).__name__} in a packet")


def _seg_packet(f: Sequence[Any]) -> Packet:
    """A Packet from its fields as a segment stores them (_PACKET_FIELDS order)."""
    p = _new_packet(Packet)
    p.__dict__ = {"stream_id": f[1], "seq": f[2], "kind": f[4], "payload": f[10], "epoch": f[3],
                  "stamp_ns": f[7], "frame_id": f[8], "schema": f[5], "content_type": f[6], "packet_id": f[9],
                  "idempotency_key": f[0], "payload_ref": PayloadRef(**f[12]) if f[12] else None,
                  "meta": dict(f[11]) if f[11] else {}}
    return p
