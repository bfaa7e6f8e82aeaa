"""Helpers shared by the IO sources: reconnect backoff and small param checks."""
from __future__ import annotations

import random
import threading
from typing import Any, Mapping, Optional


class Backoff:
    """Reconnect delays: exponential backoff with full jitter, tracking the attempt count.

    Delay n (0-based) is uniform in ``[0, min(max_s, min_s * factor**n)]``
    (``schnitzel_core.resilience.Backoff``), so many sources that lost the same camera do not
    retry in lock-step. ``reset()`` after a success.
    """

    def __init__(self, min_s: float, max_s: float, factor: float = 2.0,
                 rng: Optional[random.Random] = None) -> None:
        from schnitzel_core.resilience import Backoff as _Core

        if min_s <= 0 or max_s < min_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s (got {min_s}, {max_s})")
        self._core = _Core(base_s=min_s, cap_s=max_s, factor=factor, rng=rng)
        self.attempt = 0

    def next_delay(self) -> float:
        delay = self._core.delay(self.attempt)
        self.attempt += 1
        return delay

    def ceiling(self) -> float:
        return self._core.ceiling(self.attempt)

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
