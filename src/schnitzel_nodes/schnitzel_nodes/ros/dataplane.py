"""The data plane: DDS input subscriptions taken on their own thread, outside the executor.

rclpy's Python executors rebuild their wait set from every entity of every node on each
wake-up. A lifecycle node carries a dozen services (lifecycle, parameters) and several QoS
event handlers, so in a container that scan, not the message, dominated the cost of a small
packet (bench/RESULTS.md: ~1 ms per wake-up, a 200 B DDS chain at 10x raw rclpy). The data
plane waits only on the nodes' data subscriptions and takes their messages itself, the way
the executor would (``take_message`` then the callback), in one thread per context.

The subscriptions still belong to their adapter node (``ros2 node info`` and graph
introspection show them there) and keep their QoS event handlers on the executor; they are
only moved to a callback group the executor never runs (:class:`DataGroup`).

``SCHNITZEL_DATA_PLANE=0`` turns it off (subscriptions then run on the executor as usual).
"""
from __future__ import annotations

import contextlib
import os
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

from rclpy.callback_groups import CallbackGroup
from rclpy.exceptions import InvalidHandle
from rclpy.guard_condition import GuardCondition
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.utilities import get_default_context

WAIT_TIMEOUT_NS = 500_000_000   # wake at least twice a second to notice shutdown
MAX_TAKE_PER_WAKE = 64          # per subscription per wake-up, so one busy topic cannot starve others


def enabled() -> bool:
    return os.environ.get("SCHNITZEL_DATA_PLANE", "1") != "0"


class DataGroup(CallbackGroup):
    """A callback group the rclpy executor never executes: the data plane takes its entities."""

    def can_execute(self, entity: Any) -> bool:
        return False

    def beginning_execution(self, entity: Any) -> bool:
        return False

    def ending_execution(self, entity: Any) -> None:
        pass


class DataPlane:
    """One thread waiting on the data subscriptions of every node of one context."""

    _planes: "weakref.WeakKeyDictionary[Any, DataPlane]" = weakref.WeakKeyDictionary()
    _planes_lock = threading.Lock()

    def __init__(self, context: Any) -> None:
        self.context = context
        self.group = DataGroup()
        self._subs: Dict[int, Tuple[Any, Callable[[Any], None]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = GuardCondition(None, None, context=context)
        self._thread: Optional[threading.Thread] = None
        self.errors = 0

    @classmethod
    def for_context(cls, context: Any = None) -> "DataPlane":
        """The plane of ``context`` (the default context when None), started on first use."""
        context = context or get_default_context()
        with cls._planes_lock:
            plane = cls._planes.get(context)
            if plane is None or plane._stop.is_set():
                plane = cls._planes[context] = DataPlane(context)
            return plane

    @classmethod
    def stop_for(cls, context: Any = None) -> None:
        """Stop the plane of ``context`` if one runs (container shutdown)."""
        context = context or get_default_context()
        with cls._planes_lock:
            plane = cls._planes.get(context)
        if plane is not None:
            plane.stop()

    # ------------------------------------------------------------------ entities
    def adopt(self, sub: Any, callback: Callable[[Any], None]) -> None:
        """Take ``sub``'s messages on the data thread and hand each to ``callback``."""
        sub.callback_group = self.group   # the executor skips it from now on
        with self._lock:
            self._subs[id(sub)] = (sub, callback)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="schnitzel.dataplane", daemon=True)
                self._thread.start()
        self._wake.trigger()

    def release(self, sub: Any) -> None:
        """Stop taking ``sub`` (call before destroying it)."""
        with self._lock:
            self._subs.pop(id(sub), None)
        self._wake.trigger()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        try:
            self._wake.trigger()
        except Exception:  # noqa: BLE001 - context already gone
            pass
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout)
        with self._planes_lock:
            if self._planes.get(self.context) is self:
                del self._planes[self.context]

    # ------------------------------------------------------------------ thread
    def _run(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            with self._lock:
                subs: List[Tuple[Any, Callable[[Any], None]]] = list(self._subs.values())
            try:
                ready = self._wait(subs)
            except InvalidHandle:
                continue      # a subscription was destroyed meanwhile: rebuild
            except Exception:  # noqa: BLE001 - context shut down under us
                if self._stop.is_set() or not self.context.ok():
                    return
                raise
            for sub, callback in ready:
                self._take(sub, callback)

    def _wait(self, subs: List[Tuple[Any, Callable[[Any], None]]]) -> List[Tuple[Any, Callable[[Any], None]]]:
        with contextlib.ExitStack() as stack:
            handles = []
            for sub, callback in subs:
                try:
                    stack.enter_context(sub.handle)   # keeps it alive while we wait on it
                    handles.append((sub, callback))
                except InvalidHandle:
                    self.release(sub)
            stack.enter_context(self._wake.handle)
            stack.enter_context(self.context.handle)
            ws = _rclpy.WaitSet(len(handles), 1, 0, 0, 0, 0, self.context.handle)
            ws.clear_entities()
            for sub, _ in handles:
                ws.add_subscription(sub.handle)
            ws.add_guard_condition(self._wake.handle)
            ws.wait(WAIT_TIMEOUT_NS)
            ready = set(ws.get_ready_entities("subscription"))
            return [(s, cb) for s, cb in handles if s.handle.pointer in ready]

    def _take(self, sub: Any, callback: Callable[[Any], None]) -> None:
        for _ in range(MAX_TAKE_PER_WAKE):
            try:
                with sub.handle:
                    taken = sub.handle.take_message(sub.msg_type, sub.raw)
            except InvalidHandle:
                return
            if taken is None:
                return
            try:
                callback(taken[0])
            except Exception:  # noqa: BLE001 - the adapter's callbacks guard themselves; count the rest
                self.errors += 1


__all__ = ["DataGroup", "DataPlane", "enabled"]
