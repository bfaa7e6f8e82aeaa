"""The lifecycle manager's outward views: the Prometheus metrics and the live page (their data and
their servers) and the controllers' audit they count. A mixin of ``LifecycleManager``: it reads
the manager's bookkeeping (``tracks``, ``restarts``, ``events``...) under ``self.lock``."""
from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, Optional

from .delivery_health import is_queue
from .tracking import HEARTBEAT_TIMEOUT_S, MState


class ManagerViews:
    """metrics_view / serve_metrics / close_metrics, live_view / serve_live, take_audit."""

    def take_audit(self, line: str) -> None:
        """One record of a controller's audit (JSON, schnitzel_core.autonomic.Decision)."""
        try:
            rec = json.loads(line)
            c, knob, outcome = str(rec["controller"]), str(rec["knob"]), str(rec.get("outcome", "pending"))
            old, new = rec.get("old"), rec.get("new")   # None: suspend/resume; text: an enum knob, a mode
            # a mode switch sets several knobs: each one's [old, new]
            moved = {str(k): v[1] for k, v in (rec.get("changes") or {}).items()}
        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
            return
        kind = "changed" if outcome == "pending" else outcome
        with self.lock:
            self.control_counts[(c, knob, kind)] = self.control_counts.get((c, knob, kind), 0) + 1
            if kind != "kept":
                for k, v in ({knob: new} if not rec.get("changes") else moved).items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool):   # a gauge takes numbers
                        self.control_knobs[(c, k)] = float(v)
        if kind != "kept":
            def fmt(v: Any) -> str:
                return "none" if v is None else (f"{v:g}" if isinstance(v, (int, float)) else str(v))
            what = f"{knob} {fmt(old)} -> {fmt(new)}" if old is not None or new is not None else knob
            if rec.get("changes"):
                what += " (" + ", ".join(f"{k} {fmt(a)} -> {fmt(b)}" for k, (a, b) in rec["changes"].items()) + ")"
            self._event(f"controller {c}: {what} ({rec.get('rule', kind)})")

    def metrics_view(self) -> Dict[str, Any]:
        """What the metrics endpoint and the live page show (schnitzel_bringup.metrics): every
        node's totals over its incarnations, latency histogram, input ports; edges and their rates."""
        now = time.monotonic()
        with self.lock:
            sinks = {s for t in self.tracks.values() for s in (t.node.feeds_sinks or [])}
            nodes: Dict[str, Any] = {}
            for nid, t in self.tracks.items():
                bounds, buckets, lsum = t.latency_total()
                counters = t.counters_total()
                nodes[nid] = {
                    "plugin": t.node.plugin, "container": t.node.container, "category": t.node.category,
                    "state": t.state, "packets_in": t.total("packets_in"), "packets_out": t.total("packets_out"),
                    "drops": t.total("drops"), "errors": t.total("errors"),
                    "restarts": self.restarts.get(t.node.container, 0) + t.failures,
                    "age_s": round(t.age(now), 3) if t.last_rx else None,
                    "latency_bounds_s": bounds, "latency_buckets": buckets, "latency_sum_s": lsum,
                    "latency_p99_ms": float(t.last.get("latency_p99_ms", 0.0) or 0.0),
                    "in_ports": t.ports_total(), "counters": counters,
                    "is_queue": is_queue(t.node, counters),
                    "is_delivery_sink": nid in sinks or "breaker_state" in counters,
                }
            return {"graph": self.plan.graph, "state": self.state.value, "status": self._status_now,
                    "nodes": nodes, "edges": [(e.src, e.dst) for e in self.plan.edges],
                    "edge_rates": dict(self.rates.rates),
                    "control": {"counts": dict(self.control_counts), "knobs": dict(self.control_knobs)},
                    "containers": {cid: {"state": self.container_state[cid], "pid": self.container_pid[cid],
                                         "restarts": self.restarts[cid]} for cid in self.container_state},
                    "time": time.time()}

    def serve_metrics(self, port: int, host: str = "127.0.0.1") -> Optional[int]:
        """Serve Prometheus metrics at http://host:port/metrics (docs/observability.md); the port
        it listens on, or None when it cannot (said as an event; the graph runs on without)."""
        from .metrics import serve
        try:
            self.metrics_server, _thread, bound = serve(self.metrics_view, port, host)
        except OSError as exc:
            self._event(f"metrics endpoint: cannot listen on {host}:{port}: {exc.strerror or exc}")
            return None
        self._event(f"metrics endpoint: http://{host}:{bound}/metrics")
        return bound

    def close_metrics(self) -> None:
        srv, self.metrics_server = self.metrics_server, None
        if srv is not None:
            srv.shutdown()
            srv.server_close()
        live, self.live_server = self.live_server, None
        if live is not None:
            live.close()

    def live_view(self) -> Dict[str, Any]:
        """What the live page shows (schnitzel_bringup.live): metrics_view plus each node's health
        colour, each edge's label, the queues and the last events. A container whose process is
        gone (SIGKILLed) turns its nodes ``bad`` at once, before any heartbeat times out."""
        from .live import pid_alive
        v = self.metrics_view()
        for c in v["containers"].values():
            c["alive"] = pid_alive(int(c.get("pid") or 0))
        running = v["state"] in (MState.ACTIVE.value, MState.RECOVERING.value)
        nodes = {}
        for nid, n in v["nodes"].items():
            c = v["containers"].get(n["container"], {})
            if not c.get("alive", True) or c.get("state") == "down" or n["state"] in ("error", "unknown", "finalized"):
                health = "bad"
            elif n["state"] != "active":
                health = "bad" if running else "idle"
            elif n["age_s"] is None or n["age_s"] > HEARTBEAT_TIMEOUT_S:
                health = "warn"
            else:
                health = "active"
            nodes[nid] = {"plugin": n["plugin"], "container": n["container"], "state": n["state"],
                          "health": health, "container_alive": bool(c.get("alive", True)),
                          "packets_in": n["packets_in"], "packets_out": n["packets_out"],
                          "drops": n["drops"], "errors": n["errors"]}
        edges = {}
        for src, dst in v["edges"]:
            nid, _, port = dst.partition(".")
            packets, newest = (v["nodes"].get(nid, {}).get("in_ports") or {}).get(port) or (0, 0.0)
            edges[f"{src}->{dst}"] = {"rate": round(v["edge_rates"].get((src, dst), 0.0), 2), "packets": packets,
                                      "age_s": round(max(0.0, v["time"] - newest), 2) if newest else None,
                                      "drops": v["nodes"].get(nid, {}).get("drops", 0)}
        queues = []
        for nid, n in v["nodes"].items():
            if n["is_queue"]:
                c = n["counters"]
                num = lambda k: int(float(c.get(k, 0) or 0))  # noqa: E731
                queues.append({"node": nid, "depth": num("depth"), "oldest_age_s": num("oldest_age_ms") / 1000.0,
                               "dead": num("dead"), "bytes": num("bytes")})
        with self.lock:
            events = list(self.events)[-12:]
        return {"graph": v["graph"], "state": v["state"], "status": v["status"], "time": v["time"],
                "nodes_active": sum(1 for n in nodes.values() if n["state"] == "active"),
                "nodes_total": len(nodes), "nodes": nodes, "edges": edges, "queues": queues,
                "containers": v["containers"], "events": events}

    def serve_live(self, port: int, host: str = "127.0.0.1") -> Optional[int]:
        """Serve the live graph page at http://host:port/ (docs/observability.md); the port, or
        None when it cannot (said as an event). From anywhere but 127.0.0.1 a token is needed:
        $SCHNITZEL_UI_TOKEN, or one made up here and printed to the manager's log."""
        import secrets
        from .live import LiveServer
        token = os.environ.get("SCHNITZEL_UI_TOKEN") or secrets.token_urlsafe(18)
        try:
            self.live_server = LiveServer(lambda: self.plan, self.live_view, port, host, token)
        except OSError as exc:
            self._event(f"live page: cannot listen on {host}:{port}: {exc.strerror or exc}")
            return None
        self._event(f"live page: http://{host}:{self.live_server.port}/")
        if host != "127.0.0.1" and not os.environ.get("SCHNITZEL_UI_TOKEN"):
            self.log(f"manager: live page token (needed from anywhere but 127.0.0.1): {token}")
        return self.live_server.port
