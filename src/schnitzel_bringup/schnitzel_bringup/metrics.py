"""Prometheus metrics of a running graph (docs/observability.md).

The lifecycle manager already receives every node's heartbeat (NodeStatus) and keeps each
node's counters summed over container restarts (``NodeTrack``); this module turns its view of
the graph into Prometheus metric families, and serves them over HTTP with prometheus-client
(``runtime: metrics_port`` / ``schnitzel run --metrics-port``, bound to 127.0.0.1 unless
``runtime: metrics_host`` says otherwise).

``families(view)`` is pure (no rclpy, no HTTP): the manager's ``metrics_view()`` in, metric
families out. Latency is a histogram built from the bucket counts every node reports (counts
add up across container processes and restarts, percentiles would not).
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

#: Lifecycle state labels a node can report (schnitzel_node_state has one series per label).
NODE_STATES = ("unconfigured", "inactive", "active", "finalized", "error", "unknown")
GRAPH_STATUSES = ("ok", "degraded", "error")
BREAKER_STATES = ("closed", "half_open", "open")   # sinks' "breaker_state" gauge: 0, 1, 2
#: A sink's attempt results: its counter -> the ``result`` label.
SINK_RESULTS = (("delivered", "delivered"), ("retries", "retry"), ("rejected", "rejected"))
#: Durable queue gauges: counter -> (metric suffix, scale to base units, help).
QUEUE_GAUGES = (
    ("depth", "depth_rows", 1.0, "rows waiting in the durable queue (not yet acknowledged by every sink)"),
    ("oldest_age_ms", "oldest_age_seconds", 1e-3, "age of the oldest waiting row"),
    ("dead", "dead_letter_rows", 1.0, "rows in the dead-letter table (earlier runs included)"),
    ("bytes", "bytes", 1.0, "bytes the queue's database takes on disk"),
    ("leased", "leased_rows", 1.0, "rows handed to a sink and not yet acknowledged"),
)


def _num(counters: Mapping[str, Any], key: str) -> Optional[float]:
    if key not in counters:
        return None
    try:
        return float(counters[key])
    except (TypeError, ValueError):
        return None


class Rates:
    """Packets per second of each edge, from the counters sampled about once a second."""

    def __init__(self, min_dt: float = 0.5) -> None:
        self.min_dt = min_dt
        self._prev: Dict[Any, Tuple[float, float]] = {}
        self.rates: Dict[Any, float] = {}
        self._lock = threading.Lock()

    def update(self, counts: Mapping[Any, float], now: Optional[float] = None) -> Dict[Any, float]:
        now = time.monotonic() if now is None else now
        with self._lock:
            for key, c in counts.items():
                prev = self._prev.get(key)
                if prev is None:
                    self._prev[key] = (now, c)
                    self.rates.setdefault(key, 0.0)
                elif now - prev[0] >= self.min_dt:
                    self.rates[key] = max(0.0, (c - prev[1]) / (now - prev[0]))
                    self._prev[key] = (now, c)
            return dict(self.rates)


def edge_counts(view: Mapping[str, Any]) -> Dict[Tuple[str, str], float]:
    """(src "node.port", dst "node.port") -> packets that arrived at the edge's input port."""
    out = {}
    nodes = view.get("nodes", {})
    for src, dst in view.get("edges", []):
        nid, _, port = dst.partition(".")
        ports = (nodes.get(nid) or {}).get("in_ports") or {}
        out[(src, dst)] = float((ports.get(port) or (0, 0.0))[0])
    return out


def families(view: Mapping[str, Any]) -> List[Any]:
    """The graph's metric families (prometheus_client.core) from the manager's ``metrics_view()``."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    g = str(view.get("graph", ""))
    now_wall = float(view.get("time", time.time()))
    fams: List[Any] = []

    def gauge(name: str, doc: str, labels: Iterable[str]) -> Any:
        f = GaugeMetricFamily(f"schnitzel_{name}", doc, labels=["graph", *labels])
        fams.append(f)
        return f

    def counter(name: str, doc: str, labels: Iterable[str]) -> Any:
        # prometheus_client appends _total to a counter's samples
        f = CounterMetricFamily(f"schnitzel_{name}", doc, labels=["graph", *labels])
        fams.append(f)
        return f

    status = gauge("graph_status", "1 for the graph's current health (ok, degraded, error), 0 for the others",
                   ["status"])
    for s in GRAPH_STATUSES:
        status.add_metric([g, s], 1.0 if view.get("status") == s else 0.0)
    gauge("graph_nodes", "nodes in the graph", []).add_metric([g], float(len(view.get("nodes", {}))))
    gauge("graph_nodes_active", "nodes in the active lifecycle state", []).add_metric(
        [g], float(sum(1 for n in view.get("nodes", {}).values() if n.get("state") == "active")))

    nodes: Mapping[str, Mapping[str, Any]] = view.get("nodes", {})
    p_in = counter("node_packets_in", "packets a node received on all its input ports", ["node"])
    p_out = counter("node_packets_out", "packets a node published on all its output ports", ["node"])
    drops = counter("node_drops", "packets a node dropped (overflow, latest-only replacement, inactive, "
                    "publish failure)", ["node"])
    by_cause = counter("node_drops_by_cause", "the same drops by cause: overflow (an input queue over its "
                       "max_queued), latest_only (a newer input replaced it), inactive (arrived or emitted while "
                       "not active), stopped (left queued at a stop), publish_error, handover", ["node", "cause"])
    errors = counter("node_errors", "exceptions raised by a node's callbacks", ["node"])
    restarts = counter("node_restarts", "times a node was brought back: its container restarted, or it was "
                       "re-loaded after the error state", ["node"])
    state = gauge("node_state", "1 for a node's current lifecycle state, 0 for the others", ["node", "state"])
    hb_age = gauge("node_heartbeat_age_seconds", "seconds since a node's last heartbeat", ["node"])
    lat = HistogramMetricFamily("schnitzel_node_latency_seconds",
                                "latency from the packet's source stamp to a node's input", labels=["graph", "node"])
    for nid, n in nodes.items():
        p_in.add_metric([g, nid], float(n.get("packets_in", 0)))
        p_out.add_metric([g, nid], float(n.get("packets_out", 0)))
        drops.add_metric([g, nid], float(n.get("drops", 0)))
        for key, value in sorted((n.get("counters") or {}).items()):
            if key.startswith("drops_by_cause."):
                by_cause.add_metric([g, nid, key.split(".", 1)[1]], float(value))
        errors.add_metric([g, nid], float(n.get("errors", 0)))
        restarts.add_metric([g, nid], float(n.get("restarts", 0)))
        cur = n.get("state", "unknown")
        for s in NODE_STATES:
            state.add_metric([g, nid, s], 1.0 if cur == s else 0.0)
        if n.get("age_s") is not None:
            hb_age.add_metric([g, nid], float(n["age_s"]))
        bounds, buckets = n.get("latency_bounds_s") or [], n.get("latency_buckets") or []
        if bounds and len(buckets) == len(bounds) + 1:
            cum, acc = [], 0
            for b, c in zip([*bounds, math.inf], buckets):
                acc += int(c)
                cum.append(("+Inf" if b == math.inf else repr(float(b)), float(acc)))
            lat.add_metric([g, nid], cum, float(n.get("latency_sum_s", 0.0)))
    fams.append(lat)

    e_total = counter("edge_packets", "packets that arrived over an edge (counted at its input port; an input "
                      "fed by several edges counts them all)", ["node", "port", "from_node", "from_port"])
    e_rate = gauge("edge_rate_packets_per_second", "packets per second over an edge, over the last second or so",
                   ["node", "port", "from_node", "from_port"])
    e_age = gauge("edge_newest_packet_age_seconds", "age of the newest packet that arrived over an edge, from "
                  "its source stamp", ["node", "port", "from_node", "from_port"])
    rates = view.get("edge_rates", {})
    for src, dst in view.get("edges", []):
        nid, _, port = dst.partition(".")
        fnode, _, fport = src.partition(".")
        labels = [g, nid, port, fnode, fport]
        packets, newest = ((nodes.get(nid) or {}).get("in_ports") or {}).get(port) or (0, 0.0)
        e_total.add_metric(labels, float(packets))
        e_rate.add_metric(labels, float(rates.get((src, dst), 0.0)))
        if newest:
            e_age.add_metric(labels, max(0.0, now_wall - float(newest)))

    queues = [(nid, n) for nid, n in nodes.items() if n.get("is_queue")]
    for key, suffix, scale, doc in QUEUE_GAUGES:
        f = gauge(f"queue_{suffix}", doc, ["node"])
        for nid, n in queues:
            v = _num(n.get("counters", {}), key)
            if v is not None:
                f.add_metric([g, nid], v * scale)
    dl = counter("queue_dead_lettered", "rows a durable queue moved to its dead-letter table during this run",
                 ["node"])
    for nid, n in queues:
        dl.add_metric([g, nid], _num(n.get("counters", {}), "dead_lettered") or 0.0)

    sinks = [(nid, n) for nid, n in nodes.items() if n.get("is_delivery_sink")]
    attempts = counter("sink_attempts", "a delivery sink's attempts by result: delivered, retry, rejected",
                       ["sink", "result"])
    breaker = gauge("sink_breaker_state", "1 for a delivery sink's current circuit breaker state, 0 for the others",
                    ["sink", "state"])
    opened = counter("sink_breaker_opened", "times a delivery sink's circuit breaker opened", ["sink"])
    for nid, n in sinks:
        c = n.get("counters", {})
        for key, result in SINK_RESULTS:
            attempts.add_metric([g, nid, result], _num(c, key) or 0.0)
        code = int(_num(c, "breaker_state") or 0)
        for i, s in enumerate(BREAKER_STATES):
            breaker.add_metric([g, nid, s], 1.0 if code == i else 0.0)
        opened.add_metric([g, nid], _num(c, "breaker_open") or 0.0)

    control = view.get("control") or {}
    if control.get("counts") or control.get("knobs"):   # a graph with controllers: (docs/autonomic.md)
        dec = counter("controller_decisions", "audit records of an autonomic controller per knob: changed (a "
                      "new value set), kept or rolled_back (the judgement of a change), override (operator)",
                      ["controller", "knob", "outcome"])
        for (c, knob, outcome), n in sorted(control.get("counts", {}).items()):
            dec.add_metric([g, c, knob, outcome], float(n))
        kv = gauge("controller_knob_value", "the value a controller last set a knob to", ["controller", "knob"])
        for (c, knob), v in sorted(control.get("knobs", {}).items()):
            kv.add_metric([g, c, knob], float(v))

    c_up = gauge("container_up", "1 while a container's process answers the manager", ["container"])
    c_rs = counter("container_restarts", "times a container came back (restarted by the runner or launch)",
                   ["container"])
    for cid, c in (view.get("containers") or {}).items():
        c_up.add_metric([g, cid], 1.0 if c.get("state") == "up" else 0.0)
        c_rs.add_metric([g, cid], float(c.get("restarts", 0)))
    return fams


class _Collector:
    def __init__(self, view_fn: Any) -> None:
        self.view_fn = view_fn

    def collect(self) -> Iterable[Any]:
        return families(self.view_fn())

    def describe(self) -> Iterable[Any]:
        return []   # families vary with the graph: no registration-time check


def serve(view_fn: Any, port: int, host: str = "127.0.0.1") -> Tuple[Any, Any, int]:
    """Serve ``families(view_fn())`` at http://host:port/metrics; returns (server, thread, port)."""
    from prometheus_client import CollectorRegistry, start_http_server
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(view_fn))
    server, thread = start_http_server(port, addr=host, registry=reg)
    return server, thread, int(server.server_address[1])
