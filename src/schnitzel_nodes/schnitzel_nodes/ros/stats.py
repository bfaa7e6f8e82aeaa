"""A node's counters: packets in/out, drops by input port and by cause, errors, the latency
window (p50/p95/p99) and histogram, per-input-port counts (NodeStatus; docs/observability.md).
Pure Python (no rclpy).
"""
from __future__ import annotations

import bisect
import collections
import threading
import time
from typing import Dict, List, Optional, Tuple

from schnitzel_core.packet import now_ns

LATENCY_WINDOW = 2048  # samples kept for p50/p95/p99
#: The heartbeat's counter ``latency_p95_recent_ms``: p95 over the packets of the last this many
#: seconds, what an autonomic controller judges a change by (docs/autonomic.md; the 2048-packet
#: window reacts in minutes at low rates)
RECENT_LATENCY_S = 2.0
#: Why a node dropped a packet (NodeStatus counters drops_by_cause.<cause>; docs/observability.md).
DROP_CAUSES = ("overflow", "latest_only", "inactive", "stopped", "publish_error", "handover")
#: Upper bounds (s) of the latency histogram's buckets (NodeStatus latency_buckets; a +Inf bucket follows).
LATENCY_BOUNDS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Stats:
    """Counters and the latency window of one node (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.packets_in = 0
        self.packets_out = 0
        self.drops = 0
        self.port_drops: Dict[str, int] = {}   # inputs dropped per input port (dropped_total.<port>)
        self.causes: Dict[str, int] = {}       # drops by cause (drops_by_cause.<cause>, DROP_CAUSES)
        self.overflow_errors = 0               # inputs refused by a port with overflow: error
        self.errors = 0
        self.last_error = ""
        self._lat: List[float] = [0.0] * LATENCY_WINDOW
        self._lat_n = 0
        # Latency histogram (bucket counts add up across processes, unlike percentiles) and
        # per-input-port counts and newest source stamp: the manager's metrics (docs/observability.md).
        self.buckets: List[int] = [0] * (len(LATENCY_BOUNDS_S) + 1)
        self.lat_sum_s = 0.0
        self.port_in: Dict[str, List[float]] = {}   # port -> [packets, newest stamp (s)]
        self._recent: "collections.deque[Tuple[float, float]]" = collections.deque(maxlen=LATENCY_WINDOW)

    def received(self, stamp_ns: int, port: str = "") -> None:
        with self.lock:
            self.packets_in += 1
            pc = self.port_in.get(port)
            if pc is None:
                pc = self.port_in[port] = [0, 0.0]
            pc[0] += 1
            if stamp_ns > 0:
                lat_s = (now_ns() - stamp_ns) / 1e9
                self._lat[self._lat_n % LATENCY_WINDOW] = lat_s * 1e3
                self._lat_n += 1
                self._recent.append((time.monotonic(), lat_s * 1e3))
                self.buckets[bisect.bisect_left(LATENCY_BOUNDS_S, lat_s)] += 1
                self.lat_sum_s += lat_s
                pc[1] = max(pc[1], stamp_ns / 1e9)

    def percentiles(self) -> Tuple[float, float, float]:
        with self.lock:
            n = min(self._lat_n, LATENCY_WINDOW)
            if n == 0:
                return 0.0, 0.0, 0.0
            vals = sorted(self._lat[:n])

        def pick(q: float) -> float:
            return vals[min(n - 1, int(q * n))]
        return pick(0.50), pick(0.95), pick(0.99)

    def recent_p95(self, window_s: float = RECENT_LATENCY_S) -> Optional[float]:
        """p95 latency (ms) of the packets received in the last ``window_s``; None when none."""
        with self.lock:
            since = time.monotonic() - window_s
            while self._recent and self._recent[0][0] < since:
                self._recent.popleft()
            vals = sorted(v for _, v in self._recent)
        if not vals:
            return None
        return vals[min(len(vals) - 1, int(0.95 * len(vals)))]

    def reset(self) -> None:
        with self.lock:
            self.packets_in = self.packets_out = self.drops = 0
            self.port_drops = {}
            self.causes = {}
            self._lat_n = 0
            self._recent.clear()
            self.buckets = [0] * (len(LATENCY_BOUNDS_S) + 1)
            self.lat_sum_s = 0.0
            self.port_in = {}

    def dropped_input(self, port: str, n: int = 1, cause: str = "inactive") -> None:
        with self.lock:
            self.drops += n
            self.port_drops[port] = self.port_drops.get(port, 0) + n
            self.causes[cause] = self.causes.get(cause, 0) + n

    def dropped(self, cause: str, n: int = 1) -> None:
        """A drop that is no input's (an output while inactive, a failed publish, a hand-over)."""
        with self.lock:
            self.drops += n
            self.causes[cause] = self.causes.get(cause, 0) + n


__all__ = ["Stats", "DROP_CAUSES", "LATENCY_BOUNDS_S", "LATENCY_WINDOW"]
