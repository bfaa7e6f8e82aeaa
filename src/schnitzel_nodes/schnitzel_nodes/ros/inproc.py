"""The in-process transport: a container-wide bus keyed by topic.

``publish(topic, packet)`` calls every subscriber of ``topic`` with the *same*
Packet object: no copy, no serialisation. Subscribers are the adapters' input
handlers, which run the receiving node's logic in the publishing thread (or
hand the packet to a compute node's worker), so a hop costs a few function
calls. Because the object is shared, logic must not mutate a packet it
received (``Packet.derive`` / ``with_meta`` make new ones).
"""
from __future__ import annotations

import itertools
import threading
from typing import Callable, Dict, Tuple

from schnitzel_core.packet import Packet

Handler = Callable[[Packet], None]


class InprocBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Copy-on-write tuples: publish() reads without taking the lock.
        self._subs: Dict[str, Tuple[Tuple[int, Handler], ...]] = {}
        self._ids = itertools.count(1)

    def subscribe(self, topic: str, handler: Handler) -> int:
        """Register ``handler`` for ``topic``; returns a token for :meth:`unsubscribe`."""
        with self._lock:
            token = next(self._ids)
            self._subs[topic] = self._subs.get(topic, ()) + ((token, handler),)
            return token

    def unsubscribe(self, token: int) -> None:
        with self._lock:
            for topic, subs in list(self._subs.items()):
                kept = tuple(s for s in subs if s[0] != token)
                if len(kept) != len(subs):
                    if kept:
                        self._subs[topic] = kept
                    else:
                        del self._subs[topic]

    def publish(self, topic: str, packet: Packet) -> int:
        """Hand ``packet`` to every subscriber of ``topic``; returns how many got it.

        Subscriber handlers isolate their own failures (the adapter counts them),
        so one broken receiver never stops delivery to the others.
        """
        subs = self._subs.get(topic, ())
        for _, handler in subs:
            handler(packet)
        return len(subs)

    def subscribers(self, topic: str) -> int:
        return len(self._subs.get(topic, ()))


__all__ = ["InprocBus"]
