"""Hot replacement in a NodeAdapter (docs/runtime.md, "Hot replacement"): the old node saves
its state and watermarks on deactivate; the new one holds its inputs from configure to
activate, restores the state, then delivers the held inputs the old node had not processed.

A mixin of NodeAdapter: it uses the node's ``blackboard``, ``graph``, ``node_id``, ``logic``,
``ctx``, ``stats``, ``watermarks``, ``_hold``, ``_hold_lock``, ``_run_lock``, ``_note_error``
and ``_deliver_now``.
"""
from __future__ import annotations

from typing import Any

from schnitzel_core import blackboard as bb


class HandoverMixin:
    """Save the state on deactivate; hold, then release, inputs around activate."""

    def _save_handover(self) -> None:
        try:
            with self._run_lock:
                bb.save_handover(self.blackboard, self.graph, self.node_id, self.logic, self.watermarks.as_dict())
        except Exception as exc:  # noqa: BLE001 - e.g. state that is not JSON: the new node starts empty
            self._note_error(f"could not save state for hand-over: {type(exc).__name__}: {exc}", exc)

    def _release_hold(self, record: Any) -> None:
        """Deliver held inputs newer than the old node's watermarks, in arrival order.

        Inputs arriving meanwhile are held too until the hold is empty, so order is kept.
        """
        if self._hold is None:
            return
        while True:
            with self._hold_lock:
                hold = self._hold
                if hold is None:
                    return
                items = hold.release(record)
                if not items:
                    skipped, dropped = hold.skipped, hold.dropped
                    self._hold = None
                    break
            for port, packet in items:
                self._deliver_now(port, packet)
        if dropped:
            self.stats.dropped("handover", dropped)
        if self.ctx is not None and skipped:
            self.ctx.count("handover_skipped", skipped)   # the old node had processed them

    def _drop_hold(self) -> None:
        with self._hold_lock:
            hold, self._hold = self._hold, None
        if hold is not None and len(hold):
            n = len(hold.release())
            self.stats.dropped("stopped", n)
