"""Category base classes for node logic (pure Python, no rclpy).

One base per category of DESIGN §4. They only add conveniences on top of
:class:`schnitzel_core.plugin.NodeLogic`; the ROS adapter
(``schnitzel_nodes.ros``) treats every plugin the same way.

- Transform/Compute/Policy/Control/State: implement ``process(port, packet)``
  returning ``None`` (drop), a packet (sent on ``default_output``), or an
  iterable of ``(port, packet)`` pairs.
- Source: implement ``tick`` (timer, set ``tick_period_s`` in ``configure``)
  or ``run(stop)`` with ``threaded = True``; ``next_packet`` numbers packets.
- Sink: implement ``write(packet)``; raise to count an error.
"""
from __future__ import annotations

import threading
from typing import Any, Iterable, Optional, Tuple, Union

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import NodeLogic

Emitted = Union[None, Packet, Iterable[Tuple[str, Packet]]]


class ProcessingLogic(NodeLogic):
    """Base for nodes with inputs and outputs: route ``process`` results to ports."""

    default_output: str = "out"

    def on_packet(self, port: str, packet: Packet) -> None:
        self._send(self.process(port, packet))

    def process(self, port: str, packet: Packet) -> Emitted:
        return packet

    def _send(self, result: Emitted) -> None:
        if result is None:
            return
        if isinstance(result, Packet):
            self.ctx.emit(self.default_output, result)
            return
        for port, pkt in result:
            self.ctx.emit(port, pkt)


class TransformLogic(ProcessingLogic):
    """Stateless packet-to-packet logic (sampler, resize, map, schema_validate)."""


class ComputeLogic(ProcessingLogic):
    """Costly computation (models); the adapter keeps its input latest-only."""


class PolicyLogic(ProcessingLogic):
    """Decisions over packets (zones, dedup, rules, event_builder)."""


class ControlLogic(ProcessingLogic):
    """Flow control (router, switch, duplicator)."""


class StateLogic(ProcessingLogic):
    """Nodes holding state across packets (tracker, fusion, window, delay).

    Override ``get_state``/``set_state`` so hot replacement hands state over.
    """


class SourceLogic(NodeLogic):
    """Produces packets; has no inputs.

    ``epoch`` should be bumped on every reconnect/restart so keys never repeat.
    """

    default_output: str = "out"

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.seq = 0
        self.epoch = int(ctx.params.get("epoch", 0) or 0)
        self.stream_id = str(ctx.params.get("stream_id") or ctx.node_id)

    def next_packet(self, kind: str, payload: bytes = b"", *, stamp_ns: Optional[int] = None,
                    **fields: Any) -> Packet:
        """A packet with the next sequence number of this stream and epoch."""
        self.seq += 1
        return Packet(stream_id=self.stream_id, seq=self.seq, epoch=self.epoch, kind=kind,
                      payload=payload, stamp_ns=stamp_ns or self.ctx.clock_ns(), **fields)

    def bump_epoch(self) -> None:
        """Start a new epoch (after a reconnect): sequence restarts, keys stay unique."""
        self.epoch += 1
        self.seq = 0


class SinkLogic(NodeLogic):
    """Consumes packets; has no outputs."""

    def on_packet(self, port: str, packet: Packet) -> None:
        self.write(packet)

    def write(self, packet: Packet) -> None: ...


__all__ = [
    "ComputeLogic", "ControlLogic", "PolicyLogic", "ProcessingLogic", "SinkLogic",
    "SourceLogic", "StateLogic", "TransformLogic", "threading",
]
