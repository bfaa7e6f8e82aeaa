"""Delivery acknowledgements and outboxes of a NodeAdapter (docs/delivery.md).

Acks travel on ``/<graph>/_delivery/ack``: a sink or external plugin acknowledges what a
durable queue sent it (``ctx.ack``), a queue acknowledges its commit to the sender's outbox
(outcome ``accepted``). An outbox (schnitzel_core.outbox) keeps what an output sent into a
durable queue until that acknowledgement, and a timer sends again what is overdue.

A mixin of NodeAdapter: it uses the node's ``graph``, ``node_id``, ``logic``, ``ctx``,
``_outs``, ``_active``, ``_ack_pub``, ``_send`` and ``_submit``.
"""
from __future__ import annotations

import os
from typing import Any

from schnitzel_core import outbox as obx
from schnitzel_core.plugin import Ack
from schnitzel_msgs.msg import DeliveryAck

from .qos import to_profile

#: QoS of /<graph>/_delivery/ack (publisher and subscription alike): reliable with a deep
#: history, so a burst of acknowledgements (a sink draining a batch, retry reports for a
#: whole buffer) is never overwritten before the queue has read it (docs/delivery.md)
ACK_QOS = {"reliability": "reliable", "durability": "volatile", "history": "keep_last", "depth": 10000}
_OUTCOME = {"delivered": DeliveryAck.OUTCOME_DELIVERED, "retry": DeliveryAck.OUTCOME_RETRY,
            "rejected": DeliveryAck.OUTCOME_REJECTED, "accepted": DeliveryAck.OUTCOME_ACCEPTED}
OUTBOX_TICK_S = 0.1     # how often outboxes are checked for packets due again
OUTBOX_RESEND_BATCH = 50  # the most re-sent per port and tick (under the 'events' QoS depth of 100)
_OUTCOME_NAME = {v: k for k, v in _OUTCOME.items()}


class DeliveryMixin:
    """Acks in and out, and the outboxes of the outputs that feed durable queues."""

    @property
    def ack_topic(self) -> str:
        return f"/{self.graph}/_delivery/ack"

    def _ensure_ack_pub(self) -> Any:
        if self._ack_pub is None:
            self._ack_pub = self.create_publisher(DeliveryAck, self.ack_topic, to_profile(ACK_QOS))
        return self._ack_pub

    def _on_ack_msg(self, msg: DeliveryAck) -> None:
        if msg.queue_id != self.node_id:
            return
        if msg.outcome == DeliveryAck.OUTCOME_ACCEPTED:   # a queue committed what our outbox sent
            for out in self._outs.values():
                box = out.box
                if box is not None and box.sender_id == msg.idempotency_key:
                    box.ack(msg.sink_id, msg.seq_ranges)
            return
        if self.logic is None:
            return
        ack = Ack(queue_id=msg.queue_id, sink_id=msg.sink_id, idempotency_key=msg.idempotency_key,
                  row_id=int(msg.row_id), outcome=_OUTCOME_NAME.get(msg.outcome, "retry"), reason=msg.reason)
        self._submit(self.logic.on_ack, ack)

    def _publish_ack(self, ack: Ack) -> None:
        if ack.outcome not in _OUTCOME:
            raise ValueError(f"ack outcome must be one of {sorted(_OUTCOME)}, got {ack.outcome!r}")
        msg = DeliveryAck(queue_id=ack.queue_id, sink_id=ack.sink_id or self.node_id,
                          idempotency_key=ack.idempotency_key, row_id=int(ack.row_id),
                          outcome=_OUTCOME[ack.outcome], reason=ack.reason or "",
                          seq_ranges=[int(x) for x in ack.seqs])
        self._ensure_ack_pub().publish(msg)

    def _open_outboxes(self) -> int:
        """Make the outbox of every output that feeds a durable queue (at configure)."""
        from ..base import state_dir

        n = 0
        for out in self._outs.values():
            if out.outbox_cfg is None or out.box is not None:
                continue
            name = out.name
            path = lambda name=name: os.path.join(state_dir(), "outbox", self.graph, f"{self.node_id}.{name}.db")
            out.box = obx.from_config(f"{self.node_id}/{name}", dict(out.outbox_cfg), path)
            n += 1
        return n

    def _resend_due(self) -> None:
        """Outbox timer: send again what no queue acknowledged within resend_s (while active,
        and over DDS only once the queue is matched again)."""
        if not self._active:
            return
        resent = pending = 0
        for out in self._outs.values():
            box = out.box
            if box is None:
                continue
            pending += box.pending
            if out.pub is not None and not out.inproc and out.pub.get_subscription_count() == 0:
                continue   # the queue is down: nobody to send to yet
            for packet in box.due(OUTBOX_RESEND_BATCH):
                self._send(out, packet)
                resent += 1
        ctx = self.ctx
        if ctx is not None:
            with ctx._lock:
                if resent:
                    ctx.counters["outbox_resent"] = ctx.counters.get("outbox_resent", 0) + resent
                ctx.counters["outbox_pending"] = pending   # a gauge

    def _close_outboxes(self) -> None:
        for out in self._outs.values():
            box, out.box = out.box, None
            if box is not None:
                box.close()
