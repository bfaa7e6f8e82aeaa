"""The plain-Python packet model: the in-process twin of schnitzel_msgs/StreamPacket.

Node logic only ever sees :class:`Packet`. The ROS adapter converts it to and
from the StreamPacket message (``schnitzel_core.codecs.ros``); inside one
container the object itself is handed over without serialising.

Identity rules (DESIGN §3): ``packet_id`` and ``idempotency_key`` are derived
deterministically from stream, epoch and sequence (or an event identity), never
from the wall clock of processing, so a retry, a restart or a replay yields the
same key.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from typing import Any, Dict, Mapping, Optional

KEY_SEPARATOR = "\x1f"


def derive_key(*parts: Any) -> str:
    """A stable 32-hex-digit key from identity parts (same parts, same key)."""
    joined = KEY_SEPARATOR.join(str(p) for p in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


def now_ns() -> int:
    return time.time_ns()


@dataclasses.dataclass
class PayloadRef:
    """Out-of-band payload (file or shared memory) for payloads too large to copy."""

    uri: str = ""
    size: int = 0
    sha256: str = ""


@dataclasses.dataclass
class Packet:
    """One packet of any stream. Fields mirror StreamPacket.msg one to one."""

    stream_id: str
    seq: int
    kind: str
    payload: bytes = b""
    epoch: int = 0
    stamp_ns: int = 0  # capture/event time at the source, ns since the Unix epoch
    frame_id: str = ""
    schema: str = ""
    content_type: str = ""
    packet_id: str = ""
    idempotency_key: str = ""
    payload_ref: Optional[PayloadRef] = None
    meta: Dict[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.packet_id:
            self.packet_id = f"{self.stream_id}/{self.epoch}/{self.seq}"
        if not self.idempotency_key:
            self.idempotency_key = derive_key(self.stream_id, self.epoch, self.seq)
        if not self.stamp_ns:
            self.stamp_ns = now_ns()
        if isinstance(self.payload, (bytearray, memoryview)):
            self.payload = bytes(self.payload)

    # ---- JSON payloads -------------------------------------------------
    @classmethod
    def from_json(cls, stream_id: str, seq: int, kind: str, value: Any, **fields: Any) -> "Packet":
        """A packet whose payload is ``value`` encoded as compact UTF-8 JSON."""
        payload = json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")
        fields.setdefault("content_type", "application/json")
        return cls(stream_id=stream_id, seq=seq, kind=kind, payload=payload, **fields)

    def json(self) -> Any:
        """Decode a JSON payload (raises ValueError with the packet id if it is not JSON)."""
        try:
            return json.loads(self.payload.decode("utf-8")) if self.payload else None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"packet {self.packet_id}: payload is not JSON ({exc})") from None

    # ---- derivation ----------------------------------------------------
    def derive(self, *, kind: Optional[str] = None, payload: Optional[bytes] = None,
               key_parts: tuple = (), **changes: Any) -> "Packet":
        """A new packet derived from this one (same stream, seq, epoch and stamp).

        ``key_parts`` extend the identity, so several packets derived from one
        input (e.g. one event per track) get distinct but deterministic keys.
        """
        fields = dataclasses.asdict(self)
        fields["payload_ref"] = dataclasses.replace(self.payload_ref) if self.payload_ref else None
        fields["meta"] = dict(self.meta)
        if kind is not None:
            fields["kind"] = kind
        if payload is not None:
            fields["payload"] = payload
        fields.update(changes)
        if key_parts or kind is not None:
            fields["idempotency_key"] = derive_key(self.idempotency_key, fields["kind"], *key_parts)
            if "packet_id" not in changes:
                fields["packet_id"] = f"{self.packet_id}/{fields['kind']}" + "".join(f"/{p}" for p in key_parts)
        return Packet(**fields)

    def with_meta(self, **meta: Any) -> "Packet":
        new = dataclasses.replace(self, meta=dict(self.meta))
        new.meta.update({k: str(v) for k, v in meta.items()})
        return new

    def to_dict(self) -> Dict[str, Any]:
        """A JSON-safe dict (payload as text when JSON, else base64)."""
        import base64

        d = dataclasses.asdict(self)
        if self.content_type.startswith("application/json"):
            d["payload"] = self.json()
            d["payload_encoding"] = "json"
        else:
            d["payload"] = base64.b64encode(self.payload).decode("ascii")
            d["payload_encoding"] = "base64"
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Packet":
        import base64

        fields = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}
        enc = d.get("payload_encoding", "base64")
        if enc == "json":
            fields["payload"] = json.dumps(d.get("payload"), separators=(",", ":"), sort_keys=True).encode()
        else:
            fields["payload"] = base64.b64decode(d.get("payload", ""))
        if fields.get("payload_ref"):
            fields["payload_ref"] = PayloadRef(**fields["payload_ref"])
        return cls(**fields)

    @property
    def age_s(self) -> float:
        """Seconds since the source stamp."""
        return (now_ns() - self.stamp_ns) / 1e9
