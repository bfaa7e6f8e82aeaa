"""A node's mailbox: its logic callbacks in arrival order, inputs bounded per port.

Pure Python (no rclpy), used by the ROS adapter (schnitzel_nodes.ros.adapter) and testable
on its own. Every call into a node's logic (``on_packet``, ``tick``, ``on_ack``) goes through
it, so the logic's callbacks never overlap: whichever thread finds the mailbox idle runs
what is queued (the *drainer*); other threads only enqueue, so nodes never wait on each
other across an in-process chain.

Inputs are bounded per input port (``max_queued``, default 1000). What happens to an input
that finds its port full is the port's ``overflow`` policy (docs/graph-spec.md, ``inputs``):

- ``drop_oldest`` (default): the oldest queued input of that port is dropped, the new one queued;
- ``drop_new``: the new input is dropped, the queued ones kept;
- ``error``: the new input is refused and :meth:`Mailbox.put` reports ``"overflow"``; the
  adapter then fails the node and the run ends with a failure status.

Every dropped input is counted per port (:attr:`Mailbox.dropped`). Ticks, acks and other
calls are never dropped by an overflow.
"""
from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Any, Callable, Deque, Dict, Mapping, Optional, Tuple

# one definition for the graph model, the validator and the runtime
from schnitzel_core.graph import DEFAULT_MAX_QUEUED, DEFAULT_OVERFLOW, INPUT_KEYS, OVERFLOW_POLICIES



@dataclasses.dataclass(frozen=True)
class InputPolicy:
    """How one input port's queue behaves when it is full."""

    overflow: str = DEFAULT_OVERFLOW
    max_queued: int = DEFAULT_MAX_QUEUED

    def __post_init__(self) -> None:
        if self.overflow not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow must be one of {', '.join(OVERFLOW_POLICIES)}, got {self.overflow!r}")
        if not isinstance(self.max_queued, int) or isinstance(self.max_queued, bool) or self.max_queued < 1:
            raise ValueError(f"max_queued must be an integer >= 1, got {self.max_queued!r}")

    @classmethod
    def parse(cls, port: str, decl: Any) -> "InputPolicy":
        """``{overflow?, max_queued?}`` -> InputPolicy (raises ValueError naming the port)."""
        if not isinstance(decl, Mapping):
            raise ValueError(f"input {port!r}: expected a mapping {{overflow, max_queued}}, got {decl!r}")
        unknown = sorted(set(decl) - set(INPUT_KEYS))
        if unknown:
            raise ValueError(f"input {port!r}: unknown key(s) {unknown}; use overflow, max_queued")
        try:
            return cls(decl.get("overflow", DEFAULT_OVERFLOW), decl.get("max_queued", DEFAULT_MAX_QUEUED))
        except ValueError as exc:
            raise ValueError(f"input {port!r}: {exc}") from None


# (fn, args, input port or None for a call that is not an input)
_Item = Tuple[Callable[..., Any], tuple, Optional[str]]


class Mailbox:
    """See the module docstring. ``run(fn, *args)`` executes one queued call (the adapter
    passes its guarded caller, which serialises with the node's other callbacks)."""

    def __init__(self, run: Callable[..., None], policies: Optional[Mapping[str, InputPolicy]] = None,
                 on_drop: Optional[Callable[[str, int], None]] = None) -> None:
        self._run = run
        self._on_drop = on_drop                    # (port, n, cause): called for every dropped input
        self.policies: Dict[str, InputPolicy] = dict(policies or {})
        self._items: Deque[_Item] = collections.deque()
        self._queued: Dict[str, int] = {}          # inputs queued per port
        self.dropped: Dict[str, int] = {}          # inputs dropped per port (overflow, clear)
        self._cv = threading.Condition(threading.Lock())
        self._drainer: Optional[int] = None        # ident of the thread running the queue

    def policy(self, port: str) -> InputPolicy:
        return self.policies.get(port) or _DEFAULT_POLICY

    # ------------------------------------------------------------------ put
    def put(self, fn: Callable[..., Any], *args: Any, port: Optional[str] = None) -> str:
        """Queue ``fn(*args)`` and run the queue if no other thread does.

        ``port``: the input port when this call delivers an input (bounded by its policy).
        Returns "queued", "dropped" (drop_new: this input was dropped) or "overflow"
        (overflow: error; nothing was queued).
        """
        dropped = False
        with self._cv:
            if port is not None:
                pol = self.policy(port)
                if self._queued.get(port, 0) >= pol.max_queued:
                    if pol.overflow == "error":
                        return "overflow"
                    self.dropped[port] = self.dropped.get(port, 0) + 1
                    dropped = True
                    if pol.overflow == "drop_new":
                        fn = None  # type: ignore[assignment]
                    else:
                        self._remove_oldest(port)
            if fn is not None:
                if port is not None:
                    self._queued[port] = self._queued.get(port, 0) + 1
                self._items.append((fn, args, port))
            run_now = fn is not None and self._drainer is None
            if run_now:
                self._drainer = threading.get_ident()
        if dropped and self._on_drop is not None:
            self._on_drop(port, 1, "overflow")
        if fn is None:
            return "dropped"
        if run_now:
            self._drain()
        return "queued"

    def _remove_oldest(self, port: str) -> None:
        for i, item in enumerate(self._items):
            if item[2] == port:
                del self._items[i]
                self._queued[port] -= 1
                return

    def _drain(self) -> None:
        while True:
            with self._cv:
                if not self._items:
                    self._drainer = None
                    self._cv.notify_all()
                    return
                fn, args, port = self._items.popleft()
                if port is not None:
                    self._queued[port] -= 1
            try:
                self._run(fn, *args)
            except BaseException:
                # the runner guards the logic; should anything escape, hand the queue over
                with self._cv:
                    self._drainer = None
                    self._cv.notify_all()
                raise

    # ---------------------------------------------------------------- drain
    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything queued has run (True) or ``timeout`` passed (False).

        Called on deactivate, so what the node accepted is processed before it stops. From
        the drainer's own thread it cannot wait for itself and returns False at once.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cv:
            while self._items or self._drainer is not None:
                if self._drainer == threading.get_ident():
                    return False
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def clear(self, cause: str = "stopped") -> Dict[str, int]:
        """Drop everything still queued; returns the inputs dropped per port (also counted)."""
        gone: Dict[str, int] = {}
        with self._cv:
            for _, _, port in self._items:
                if port is not None:
                    gone[port] = gone.get(port, 0) + 1
                    self.dropped[port] = self.dropped.get(port, 0) + 1
            self._items.clear()
            self._queued.clear()
        if self._on_drop is not None:
            for port, n in gone.items():
                self._on_drop(port, n, cause)
        return gone

    def queued(self) -> Dict[str, int]:
        """Inputs waiting per port (a snapshot)."""
        with self._cv:
            return {p: n for p, n in self._queued.items() if n}

    def __len__(self) -> int:
        with self._cv:
            return len(self._items)

    def reset_counts(self) -> None:
        with self._cv:
            self.dropped = {}


_DEFAULT_POLICY = InputPolicy()

__all__ = ["DEFAULT_MAX_QUEUED", "DEFAULT_OVERFLOW", "InputPolicy", "Mailbox", "OVERFLOW_POLICIES"]
