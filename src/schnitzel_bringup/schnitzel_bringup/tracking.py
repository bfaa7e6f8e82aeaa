"""What the lifecycle manager knows of each node, and how healthy the graph is: pure Python, no
rclpy, so the rules are tested without DDS.

``NodeTrack`` keeps one node's heartbeats and its counters over restarts (each incarnation's
counters start from zero; the totals add up), its latency histogram and per-port totals;
``health_problems`` / ``graph_health`` judge the running graph from the tracks.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from .delivery_health import CUMULATIVE
from .lifecycle_table import MState  # noqa: F401 - the graph state, re-exported
from .plan import PlanNode

#: Seconds without a heartbeat before a node counts as stale.
HEARTBEAT_TIMEOUT_S = 3.0




#: The adapter's own per-port and per-cause drop counters add up over incarnations too.
CUMULATIVE_PREFIXES = ("drops_by_cause.", "dropped_total.")


class NodeTrack:
    """What the manager knows of one node: its lifecycle state and its counters.

    Counters in NodeStatus restart from zero when a container is restarted;
    ``totals`` keeps what earlier incarnations counted so a run's figures add up.
    """

    COUNTERS = ("packets_in", "packets_out", "drops", "errors")

    def __init__(self, node: PlanNode) -> None:
        self.node = node
        self.state = "unknown"          # lifecycle label as last set or read by the manager
        self.loaded = False
        self.last: Dict[str, Any] = {}  # last heartbeat (NodeStatus fields)
        self.last_rx = 0.0              # monotonic time of the last heartbeat
        self.base = {k: 0 for k in self.COUNTERS}
        self.cbase: Dict[str, int] = {}  # plugin counters that add up (delivery_health.CUMULATIVE)
        self.hbase: List[int] = []       # latency bucket counts of earlier incarnations
        self.hsum_base = 0.0
        self.pbase: Dict[str, int] = {}  # input port -> packets of earlier incarnations
        self.incarnation_pid = 0
        self.failures = 0
        self.last_error = ""
        self.ros_name = node.id         # <id>, or <id>__r<N> after a hot replacement
        self.active_since = 0.0         # monotonic time of the last activation

    @property
    def full_name(self) -> str:
        return f"{self.node.namespace.rstrip('/')}/{self.ros_name}"

    def on_heartbeat(self, fields: Dict[str, Any], now: float) -> None:
        prev = self.last
        pid = int(fields.get("pid", 0) or 0)
        restarted = prev and (pid != self.incarnation_pid or any(
            int(fields.get(k, 0)) < int(prev.get(k, 0)) for k in ("packets_in", "packets_out")))
        if restarted:
            for k in self.COUNTERS:
                self.base[k] += int(prev.get(k, 0))
            self._rebase_counters()
        self.incarnation_pid = pid
        self.last = dict(fields)
        self.last_rx = now
        if fields.get("last_error"):
            self.last_error = str(fields["last_error"])

    def rebase(self) -> None:
        """Another incarnation serves from now on (a hot replacement): what this one counted
        stays in the totals, the next heartbeat starts the new one's counters."""
        for k in self.COUNTERS:
            self.base[k] += int(self.last.get(k, 0) or 0)
        self._rebase_counters()
        self.last = {}

    def _rebase_counters(self) -> None:
        last = self.last
        buckets = list(last.get("latency_buckets") or [])
        if buckets:
            if len(self.hbase) != len(buckets):
                self.hbase = [0] * len(buckets)
            self.hbase = [a + int(b) for a, b in zip(self.hbase, buckets)]
            self.hsum_base += float(last.get("latency_sum_s", 0.0) or 0.0)
        for port, (n, _newest) in (last.get("in_ports") or {}).items():
            self.pbase[port] = self.pbase.get(port, 0) + int(n)
        for k, v in (self.last.get("counters") or {}).items():
            if k in CUMULATIVE or k.startswith(CUMULATIVE_PREFIXES):
                try:
                    self.cbase[k] = self.cbase.get(k, 0) + int(float(v))
                except (TypeError, ValueError):
                    pass

    def counters_total(self) -> Dict[str, Any]:
        """The plugin counters, the cumulative ones summed over earlier incarnations."""
        out: Dict[str, Any] = dict(self.last.get("counters") or {})
        for k, b in self.cbase.items():
            try:
                out[k] = str(b + int(float(out.get(k, 0) or 0)))
            except (TypeError, ValueError):
                out[k] = str(b)
        return out

    def latency_total(self) -> Tuple[List[float], List[int], float]:
        """The latency histogram over every incarnation: (bounds, per-bucket counts, sum of seconds)."""
        bounds = list(self.last.get("latency_bounds_s") or [])
        cur = list(self.last.get("latency_buckets") or [])
        if not cur:
            cur = [0] * len(self.hbase)
        base = self.hbase if len(self.hbase) == len(cur) else [0] * len(cur)
        return bounds, [a + int(b) for a, b in zip(base, cur)], \
            self.hsum_base + float(self.last.get("latency_sum_s", 0.0) or 0.0)

    def ports_total(self) -> Dict[str, Tuple[int, float]]:
        """Input port -> (packets over every incarnation, source stamp of the newest packet, s)."""
        cur = self.last.get("in_ports") or {}
        out = {p: (n, 0.0) for p, n in self.pbase.items()}
        for p, (n, newest) in cur.items():
            out[p] = (self.pbase.get(p, 0) + int(n), float(newest))
        return out

    def total(self, key: str) -> int:
        return self.base[key] + int(self.last.get(key, 0) or 0)

    def age(self, now: float) -> float:
        return (now - self.last_rx) if self.last_rx else float("inf")

    def stale(self, now: float) -> bool:
        """No heartbeat for HEARTBEAT_TIMEOUT_S (counted from activation for a node that has
        not sent its first one yet)."""
        return now - max(self.last_rx, self.active_since) > HEARTBEAT_TIMEOUT_S

    def summary(self, now: float) -> Dict[str, Any]:
        last = self.last
        return {
            "node_id": self.node.id, "plugin": self.node.plugin, "container": self.node.container,
            "category": self.node.category, "state": self.state,
            "packets_in": self.total("packets_in"), "packets_out": self.total("packets_out"),
            "drops": self.total("drops"), "errors": self.total("errors"),
            "last_error": self.last_error,
            "age_s": round(self.age(now), 3) if self.last_rx else None,
            "latency_p50_ms": float(last.get("latency_p50_ms", 0.0) or 0.0),
            "latency_p95_ms": float(last.get("latency_p95_ms", 0.0) or 0.0),
            "latency_p99_ms": float(last.get("latency_p99_ms", 0.0) or 0.0),
            "pid": int(last.get("pid", 0) or 0),
            "counters": dict(last.get("counters", {}) or {}),
        }


def health_problems(tracks: Dict[str, NodeTrack], state: MState, now: float,
                    delivery: Any = (), grace: Optional[Callable[[str], float]] = None) -> Dict[str, str]:
    """Why a running graph is not ok right now: ``{key: sentence}``. ``delivery``: current delivery
    problems (delivery_health.delivery_problems); ``grace(node_id)``: seconds a source may stay
    silent after its activation (0: never checked; None: no source check)."""
    out: Dict[str, str] = {}
    if state != MState.ACTIVE:
        return out
    for nid, t in tracks.items():
        if t.state != "active":
            out[f"{nid}/state"] = f"node {nid} is {t.state}"
        elif t.stale(now):
            out[f"{nid}/stale"] = f"node {nid}: no heartbeat for {now - max(t.last_rx, t.active_since):.0f} s"
        elif grace is not None and t.node.category == "source" and t.active_since:
            g = grace(nid)
            # packets_out in a heartbeat counts since this activation
            if g > 0 and now - t.active_since >= g and not int(t.last.get("packets_out", 0) or 0):
                out[f"{nid}/silent"] = (f"source {nid} has sent nothing since its activation "
                                        f"(grace {g:g} s)")
    if isinstance(delivery, dict):
        out.update(delivery)
    else:
        out.update({f"delivery/{i}": txt for i, txt in enumerate(delivery)})
    return out


def graph_health(tracks: Dict[str, NodeTrack], state: MState, now: float,
                 delivery: Any = (), grace: Optional[Callable[[str], float]] = None) -> str:
    """ok / degraded / error for the graph as a whole; ``delivery``: current delivery problems
    (delivery_health.delivery_problems), which degrade a running graph, like a source silent past
    its grace period (``grace``, see health_problems)."""
    if state == MState.ERROR:
        return "error"
    if any(t.state == "error" for t in tracks.values()):
        return "error"
    if state == MState.RECOVERING:
        return "degraded"
    if state == MState.ACTIVE and health_problems(tracks, state, now, delivery, grace):
        return "degraded"
    if state in (MState.STOPPING, MState.FINISHED) and delivery:
        return "degraded"
    return "ok"
