"""A NodeAdapter's status: the NodeStatus message and its DiagnosticStatus
(docs/observability.md).

A mixin of NodeAdapter: it uses the node's ``stats``, ``ctx``, ``logic``, ``spec``,
``node_id``, ``plugin_name``, ``graph``, ``container``, ``_outs``, ``_ins``, ``state_label``
and ``get_name``.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Optional

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue as DiagKeyValue
from schnitzel_msgs.msg import KeyValue, NodeStatus

from .stats import LATENCY_BOUNDS_S


class StatusMixin:
    """status_msg(), diagnostic() and describe() of a node."""

    def status_msg(self, stamp: Any = None) -> NodeStatus:
        s = self.stats
        p50, p95, p99 = s.percentiles()
        msg = NodeStatus()
        if stamp is not None:
            msg.stamp = stamp
        msg.node_id = self.node_id
        msg.ros_name = self.get_name()
        msg.plugin = self.plugin_name
        msg.plugin_version = str(self.spec.version)
        msg.container = self.container
        msg.state = self.state_label()
        with s.lock:
            msg.packets_in, msg.packets_out = s.packets_in, s.packets_out
            msg.drops, msg.errors, msg.last_error = s.drops, s.errors, s.last_error
            # inputs dropped per input port (overflow, latest-only, inactive, left at a stop)
            own = {f"dropped_total.{p}": n for p, n in s.port_drops.items()}
            own.update({f"drops_by_cause.{c}": n for c, n in s.causes.items()})
            if s.overflow_errors:
                own["overflow_errors"] = s.overflow_errors
            msg.latency_bounds_s = list(LATENCY_BOUNDS_S)
            msg.latency_buckets = list(s.buckets)
            msg.latency_sum_s = s.lat_sum_s
            ports = sorted(s.port_in)
            msg.in_ports = ports
            msg.in_port_packets = [int(s.port_in[p][0]) for p in ports]
            msg.in_port_newest_stamp_s = [float(s.port_in[p][1]) for p in ports]
        recent = s.recent_p95()   # outside the lock above: it takes it itself
        if recent is not None:
            own["latency_p95_recent_ms"] = round(recent, 1)
        h = self._logic_health()  # (delivery) e.g. "refusing new packets: ... disk is full"
        if h.get("level") == "error" and not msg.last_error:
            msg.last_error = str(h.get("message", ""))
        msg.latency_p50_ms, msg.latency_p95_ms, msg.latency_p99_ms = p50, p95, p99
        msg.pid = os.getpid()
        ctx = self.ctx
        if ctx is not None:
            with ctx._lock:
                own.update(ctx.counters)
        msg.counters = [KeyValue(key=k, value=str(v)) for k, v in sorted(own.items())]
        return msg

    def _logic_health(self) -> Dict[str, Any]:
        """The logic's optional ``health()`` -> {"level": "ok"|"warn"|"error", "message": ...}
        (durable_queue, http_sink, jsonl_sink); {} when absent or failing."""
        fn = getattr(self.logic, "health", None)
        if not callable(fn):
            return {}
        try:
            h = fn()
        except Exception:  # noqa: BLE001 - health reporting must never break status
            return {}
        return h if isinstance(h, dict) else {}

    def diagnostic(self, status: Optional[NodeStatus] = None, last_errors: int = 0) -> DiagnosticStatus:
        st = status or self.status_msg()
        d = DiagnosticStatus(name=f"{self.graph}/{self.node_id}", hardware_id=f"{self.container}:{st.pid}")
        if st.state == "error":
            d.level, d.message = DiagnosticStatus.ERROR, f"error: {st.last_error}"
        elif st.state != "active":
            d.level, d.message = DiagnosticStatus.WARN, st.state
        elif st.errors > last_errors:
            d.level, d.message = DiagnosticStatus.WARN, f"active; errors: {st.last_error}"
        else:
            d.level, d.message = DiagnosticStatus.OK, "active"
        # (delivery) a logic may report its own health, e.g. a durable queue whose disk is full
        h = self._logic_health() if st.state == "active" else {}
        if h.get("level") == "error":
            d.level, d.message = DiagnosticStatus.ERROR, f"error: {h.get('message', '')}"
        elif h.get("level") == "warn" and d.level == DiagnosticStatus.OK:
            d.level, d.message = DiagnosticStatus.WARN, f"active; {h.get('message', '')}"
        values = [("plugin", f"{st.plugin} {st.plugin_version}"), ("state", st.state),
                  ("packets_in", st.packets_in), ("packets_out", st.packets_out), ("drops", st.drops),
                  ("errors", st.errors), ("last_error", st.last_error),
                  ("latency_p50_ms", f"{st.latency_p50_ms:.3f}"), ("latency_p95_ms", f"{st.latency_p95_ms:.3f}"),
                  ("latency_p99_ms", f"{st.latency_p99_ms:.3f}")]
        values += [(kv.key, kv.value) for kv in st.counters]
        d.values = [DiagKeyValue(key=k, value=str(v)) for k, v in values]
        return d

    def describe(self) -> Dict[str, Any]:
        """Ports as wired (for list/debug output)."""
        return {"out": {o.name: {"topic": o.topic, "inproc": o.inproc, "dds": o.dds} for o in self._outs.values()},
                "in": [{"port": e.port, "topic": e.topic, "transport": e.transport} for e in self._ins]}
