"""Payloads by reference in the adapter (docs/packet.md, "Payloads by reference").

Transparent to plugins: on a DDS output carrying StreamPacket, a payload above the graph's
``payload_ref.threshold_bytes`` is written as a blob (``schnitzel_core.payload_ref``) and
published as a reference; every input resolves a reference to one of the graph's blobs
(read, size and sha256 checked) before the plugin sees the packet. Inproc hand-off passes
the Packet object and never externalises. A durable queue is the one exception on input:
it stores the reference itself and holds the blob while a row needs it.

The settings reach the node in ports_json as ``{"payload_ref": {threshold_bytes, ttl_s,
dir}}`` (the compiler copies the graph's top-level ``payload_ref`` there).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from schnitzel_core.packet import Packet
from schnitzel_core.payload_ref import BlobStore, PayloadRefError, RefSettings
from schnitzel_core.plugin import STREAM_PACKET, Ack

from .wire import Wire

#: the meta a durable queue puts on the rows it forwards (plugins/delivery.py)
META_QUEUE, META_ROW = "schnitzel.queue", "schnitzel.row_id"


def blob_store(graph: str, ports: Optional[Mapping[str, Any]]) -> Optional[BlobStore]:
    """The graph's BlobStore when ports_json carries ``payload_ref``; None otherwise.
    Raises ValueError for bad settings or a directory that cannot be created."""
    raw = (ports or {}).get("payload_ref") if isinstance(ports, Mapping) else None
    if not raw:
        return None
    settings = RefSettings.from_dict(raw)
    try:
        store = BlobStore.for_settings(graph, settings)
    except OSError as exc:
        raise ValueError(f"payload_ref.dir {settings.dir!r}: cannot create the blob directory ({exc})") from None
    return store


def externalising(wire: Wire, store: BlobStore, on_fallback: Callable[[OSError], None] = lambda exc: None) -> Wire:
    """``wire`` whose ``to_msg`` sends payloads above the threshold by reference
    (StreamPacket wires only: a sensor_msgs/Image has no reference field). A blob that
    cannot be written (the directory full or gone) sends that packet inline instead,
    reported to ``on_fallback``: the stream goes on, slower, and the count shows why."""
    if wire.msg_type != STREAM_PACKET or store.threshold_bytes <= 0:
        return wire
    to_msg, threshold = wire.to_msg, store.threshold_bytes

    def to_msg_by_ref(packet: Packet) -> Any:
        try:
            packet = store.externalise(packet, threshold)
        except OSError as exc:
            on_fallback(exc)
        return to_msg(packet)
    return wire._replace(to_msg=to_msg_by_ref)


def resolve_input(store: BlobStore, packet: Packet, on_error: Callable[[str, PayloadRefError], None],
                  ack: Optional[Callable[[Packet, str], None]] = None) -> Optional[Packet]:
    """The inline packet for a plugin; None (after ``on_error``) when the blob is missing or
    does not match its reference. A durable-queue row that cannot be resolved is rejected
    back to its queue (``ack(packet, reason)``) so it is dead-lettered with the reason
    instead of re-sent forever."""
    if packet.payload_ref is None or not store.owns(packet.payload_ref):
        return packet
    try:
        out = store.resolve(packet)
    except PayloadRefError as exc:
        on_error(f"packet {packet.packet_id}: {exc}", exc)
        if ack is not None and packet.meta.get(META_QUEUE) and packet.meta.get(META_ROW):
            ack(packet, f"payload reference unresolvable ({exc.reason}): {exc}")
        return None
    store.maybe_sweep()
    return out


class PayloadRefMixin:
    """The NodeAdapter's side: a blob that could not be written, a reference resolved on input.

    Uses the node's ``ctx``, ``node_id``, ``_refs``, ``_note_error``, ``_publish_ack`` and
    ``get_logger``.
    """

    def _ref_fallback(self, exc: OSError) -> None:
        """A blob could not be written: the packet went inline (counted, logged once)."""
        ctx = self.ctx
        if ctx is not None:
            if not ctx.counters.get("payload_ref_inline"):
                self.get_logger().warning(f"node {self.node_id!r}: payload blob not written ({exc}); "
                                          "sending large payloads inline")
            ctx.count("payload_ref_inline")

    def _resolve_ref(self, packet: Packet) -> Optional[Packet]:
        """A by-reference input made inline; None when its blob is missing or tampered with
        (counted: errors, last_error and the counter payload_ref_errors; never passed on)."""
        def failed(message: str, exc: Exception) -> None:
            self._note_error(message)
            if self.ctx is not None:
                self.ctx.count("payload_ref_errors")

        def reject(p: Packet, reason: str) -> None:
            self._publish_ack(Ack(p.meta[META_QUEUE], self.node_id, p.idempotency_key,
                                  int(p.meta[META_ROW]), "rejected", reason))
        return resolve_input(self._refs, packet, failed, reject)


__all__ = ["blob_store", "externalising", "resolve_input", "META_QUEUE", "META_ROW", "PayloadRefMixin"]
