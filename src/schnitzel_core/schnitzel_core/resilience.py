"""Retry and circuit-breaker primitives (pure Python, thread-safe, injectable clock).

- :class:`Backoff`: exponential backoff with full jitter
  (``delay = uniform(0, min(cap, base * factor ** attempt))``, AWS architecture blog).
- :class:`CircuitBreaker`: closed -> open after ``failure_threshold`` consecutive
  failures; while open, one probe is allowed every ``probe_interval_s`` (half-open);
  a successful probe closes it, a failed one re-opens it for another interval.
"""
from __future__ import annotations

import enum
import random
import threading
import time
from typing import Callable, Optional


class Backoff:
    def __init__(self, base_s: float = 0.1, cap_s: float = 5.0, factor: float = 2.0,
                 rng: Optional[random.Random] = None) -> None:
        if base_s <= 0 or cap_s < base_s or factor < 1:
            raise ValueError("backoff needs base_s > 0, cap_s >= base_s and factor >= 1")
        self.base_s = float(base_s)
        self.cap_s = float(cap_s)
        self.factor = float(factor)
        self.rng = rng or random.Random()

    def ceiling(self, attempt: int) -> float:
        """Upper bound of the delay before retry number ``attempt`` (0-based)."""
        try:
            return min(self.cap_s, self.base_s * self.factor ** max(0, attempt))
        except OverflowError:
            return self.cap_s

    def delay(self, attempt: int) -> float:
        """Full jitter: uniform in [0, ceiling(attempt)]."""
        return self.rng.uniform(0.0, self.ceiling(attempt))


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Per-sink circuit breaker.

    Use: ``if breaker.allow(): try send; breaker.success() / breaker.failure()``.
    ``allow()`` is False while open, except for one probe per ``probe_interval_s``
    (the state is then half-open until that probe reports).
    """

    def __init__(self, failure_threshold: int = 5, probe_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Optional[Callable[[BreakerState, BreakerState], None]] = None) -> None:
        if failure_threshold < 1 or probe_interval_s <= 0:
            raise ValueError("circuit breaker needs failure_threshold >= 1 and probe_interval_s > 0")
        self.failure_threshold = int(failure_threshold)
        self.probe_interval_s = float(probe_interval_s)
        self.clock = clock
        self.on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._next_probe = 0.0
        self._lock = threading.Lock()
        self.opens = 0          # times it opened
        self.probes = 0         # probes let through
        self.rejected = 0       # calls refused while open

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state

    def _set(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if old != new and self.on_change:
            self.on_change(old, new)

    def allow(self) -> bool:
        with self._lock:
            if self._state == BreakerState.CLOSED:
                return True
            now = self.clock()
            if self._state == BreakerState.OPEN and now >= self._next_probe:
                self._set(BreakerState.HALF_OPEN)
                self._next_probe = now + self.probe_interval_s
                self.probes += 1
                return True
            if self._state == BreakerState.HALF_OPEN and now >= self._next_probe:
                # the previous probe never reported (e.g. it hung): allow another one
                self._next_probe = now + self.probe_interval_s
                self.probes += 1
                return True
            self.rejected += 1
            return False

    def time_to_probe(self) -> float:
        """Seconds until ``allow()`` would let a probe through (0 when closed)."""
        with self._lock:
            if self._state == BreakerState.CLOSED:
                return 0.0
            return max(0.0, self._next_probe - self.clock())

    def success(self) -> None:
        with self._lock:
            self._failures = 0
            self._set(BreakerState.CLOSED)

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            now = self.clock()
            if self._state == BreakerState.HALF_OPEN or (
                    self._state == BreakerState.CLOSED and self._failures >= self.failure_threshold):
                if self._state == BreakerState.CLOSED:
                    self.opens += 1
                    self._opened_at = now
                self._set(BreakerState.OPEN)
                self._next_probe = now + self.probe_interval_s
