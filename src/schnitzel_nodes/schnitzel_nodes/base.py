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

import os
import threading
import time
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


def state_dir() -> str:
    """Where schnitzel keeps small durable state of its own (the epoch ledger).

    ``SCHNITZEL_STATE_DIR``, else ``$XDG_STATE_HOME/schnitzel``, else ``~/.local/state/schnitzel``.
    """
    explicit = os.environ.get("SCHNITZEL_STATE_DIR")
    if explicit:
        return explicit
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "schnitzel")


class EpochLedger:
    """The last epoch each live stream used, on disk, so a restarted process never reuses one.

    A live camera restarted with the same epoch would restart ``seq`` at 1 and repeat the
    idempotency keys of the earlier run; the queue and the backend would then drop new
    events as duplicates. Keys are ``<graph>/<stream_id>``.
    """

    NAMESPACE = "epochs"

    def __init__(self, path: Optional[str] = None) -> None:
        from schnitzel_core.blackboard import SqliteBackend

        path = path or os.path.join(state_dir(), "epochs.db")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.path = path
        # NORMAL: an epoch lost to a power cut is caught by the floor in ``claim``.
        self._board = SqliteBackend(path=path, synchronous="NORMAL")

    def claim(self, stream: str, floor: int = 0) -> int:
        """Reserve and return an epoch greater than every epoch this stream used before."""
        for _ in range(100):  # compare-and-set: several processes may share the ledger
            last = self._board.get(self.NAMESPACE, stream)
            new = max(floor, 0 if last is None else int(last) + 1)
            if self._board.compare_and_set(self.NAMESPACE, stream, last, new):
                return new
        raise RuntimeError(f"epoch ledger {self.path}: could not reserve an epoch for {stream}")

    def record(self, stream: str, epoch: int) -> None:
        """Remember an epoch reached by a reconnect (never lowers the stored one)."""
        last = self._board.get(self.NAMESPACE, stream)
        if last is None or int(last) < epoch:
            self._board.put(self.NAMESPACE, stream, int(epoch))

    def close(self) -> None:
        self._board.close()


class SourceLogic(NodeLogic):
    """Produces packets; has no inputs.

    ``epoch`` is bumped on every reconnect; live sources also call :meth:`claim_live_epoch`
    in ``configure`` so a restarted process starts a new epoch. File replays keep the
    configured epoch on purpose: replaying a file must repeat its keys so the queue and
    the backend absorb the replay.
    """

    default_output: str = "out"

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.seq = 0
        self.epoch = int(ctx.params.get("epoch", 0) or 0)
        self.stream_id = str(ctx.params.get("stream_id") or ctx.node_id)
        self._ledger: Optional[EpochLedger] = None

    @property
    def _ledger_key(self) -> str:
        return f"{self.ctx.graph}/{self.stream_id}"

    def claim_live_epoch(self) -> None:
        """Start a new epoch, later than any this stream used in an earlier run."""
        if self._ledger is None:
            try:
                self._ledger = EpochLedger()
            except Exception as exc:  # noqa: BLE001 - an unwritable state dir must not stop a camera
                # Seconds since 1970 fit uint32 and only grow: still never reused across restarts.
                self.epoch = max(self.epoch, int(time.time()))
                self.ctx.logger.warning("%s: epoch ledger unavailable (%s); using epoch %d from the clock "
                                        "(set SCHNITZEL_STATE_DIR to a writable folder)",
                                        self.ctx.node_id, exc, self.epoch)
                return
        self.epoch = self._ledger.claim(self._ledger_key, floor=self.epoch)
        self.seq = 0

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
        if self._ledger is not None:
            try:
                self._ledger.record(self._ledger_key, self.epoch)
            except Exception as exc:  # noqa: BLE001 - keep streaming; the claim floor still holds
                self.ctx.logger.warning("%s: could not record epoch %d: %s", self.ctx.node_id, self.epoch, exc)

    def cleanup(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None


class SinkLogic(NodeLogic):
    """Consumes packets; has no outputs."""

    def on_packet(self, port: str, packet: Packet) -> None:
        self.write(packet)

    def write(self, packet: Packet) -> None: ...


__all__ = [
    "EpochLedger", "state_dir",
    "ComputeLogic", "ControlLogic", "PolicyLogic", "ProcessingLogic", "SinkLogic",
    "SourceLogic", "StateLogic", "TransformLogic", "threading",
]
