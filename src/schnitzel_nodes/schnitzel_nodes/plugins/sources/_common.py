"""Helpers shared by the IO sources: reconnect backoff and small param checks."""
from __future__ import annotations

import random
import threading
from typing import Any, Mapping, Optional


class Backoff:
    """Exponential backoff with jitter for reconnect loops.

    Delay n (0-based) is ``min(max_s, min_s * factor**n)`` scaled by a random factor in
    ``[1 - jitter, 1]`` ("equal jitter" style: never longer than the cap, never zero), so
    many sources that lost the same camera do not retry in lock-step. ``reset()`` after a
    success.
    """

    def __init__(self, min_s: float, max_s: float, factor: float = 2.0, jitter: float = 0.5,
                 rng: Optional[random.Random] = None) -> None:
        if min_s <= 0 or max_s < min_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s (got {min_s}, {max_s})")
        self.min_s, self.max_s, self.factor, self.jitter = float(min_s), float(max_s), factor, jitter
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        base = min(self.max_s, self.min_s * (self.factor ** self.attempt))
        self.attempt += 1
        return base * (1.0 - self.jitter * self._rng.random())

    def wait(self, stop: threading.Event) -> bool:
        """Sleep the next delay; True when ``stop`` was set meanwhile."""
        return stop.wait(self.next_delay())

    def reset(self) -> None:
        self.attempt = 0


def check_range(node: str, params: Mapping[str, Any], name: str, lo: Optional[float] = None,
                hi: Optional[float] = None) -> float:
    """A numeric param, checked against [lo, hi]; ValueError with a clear message otherwise."""
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{node}: param {name!r} must be a number, got {value!r}")
    if lo is not None and value < lo:
        raise ValueError(f"{node}: param {name!r} must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{node}: param {name!r} must be <= {hi}, got {value}")
    return value


def check_enum(node: str, params: Mapping[str, Any], name: str, allowed) -> Any:
    value = params.get(name)
    if value not in allowed:
        raise ValueError(f"{node}: param {name!r} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value
