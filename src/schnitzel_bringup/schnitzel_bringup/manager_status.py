"""The lifecycle manager's status: heartbeats in (``/<graph>/_status/nodes``), the graph's status out
(``GraphStatus`` on ``/<graph>/_status/graph``, ``/diagnostics``, the ``--status-file`` JSON).
A mixin of ``LifecycleManager``; the health rules themselves are in ``tracking``."""
from __future__ import annotations

import os
import json
import re
import time
from typing import Any, Dict

from .delivery_health import delivery_problems
from .metrics import edge_counts
from .tracking import MState, NodeTrack, graph_health, health_problems

#: A node hot-replaced by schnitzel_bringup.replace runs as <id>__r<N>.
_REPLACED = re.compile(r"^(.+?)__r\d+$")


class ManagerStatus:
    """Heartbeat intake (_on_status), snapshot, the status file, GraphStatus and diagnostics."""

    # ---- heartbeats and status -------------------------------------------------------------
    def _on_status(self, msg: Any) -> None:
        ros_name = getattr(msg, "ros_name", "") or ""
        if ros_name:
            # The node says which ROS node it is: count a status only when it comes, under the
            # graph id, from the node the manager tracks (<id>, or <id>__r<N> once that serves).
            # A replacement loaded beside it, and the copies a container publishes under
            # <id>__r<N>, are ignored until the manager switches over to it.
            t = self.tracks.get(msg.node_id)
            if t is None or ros_name != t.ros_name:
                return
            self._take_status(t, msg, swapping=False)
            return
        # Older senders (no ros_name): tell the nodes apart by plugin, pid and counters.
        t = self.tracks.get(msg.node_id)
        twin = False
        if t is None:
            # a node loaded as <id>__r<N> also reports under that name: it counts once it serves
            m = _REPLACED.match(msg.node_id)
            t = self.tracks.get(m.group(1)) if m else None
            if t is None or t.ros_name != msg.node_id:
                return
            twin = True
        elif t.ros_name != t.node.id:
            return   # <id>__r<N> serves: its heartbeat under its own name counts, not this copy
        # While a replacement runs, its new node (loaded beside this one) also reports under the
        # graph id: another plugin, or the same pid with counters starting again from zero.
        swapping = not twin and self.swap_busy
        plugin = getattr(msg, "plugin", "")
        with self.lock:
            if swapping and plugin and plugin != t.node.plugin:
                return
            if swapping and t.last and int(msg.pid or 0) == t.incarnation_pid and any(
                    int(getattr(msg, k)) < int(t.last.get(k, 0)) for k in ("packets_in", "packets_out")):
                return
            self._take_status(t, msg, swapping)

    def _take_status(self, t: NodeTrack, msg: Any, swapping: bool) -> None:
        fields = {k: getattr(msg, k) for k in ("packets_in", "packets_out", "drops", "errors", "last_error",
                                                  "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
                                                  "pid", "state")}
        fields["counters"] = {kv.key: kv.value for kv in msg.counters}
        fields["latency_bounds_s"] = list(getattr(msg, "latency_bounds_s", []) or [])
        fields["latency_buckets"] = [int(x) for x in (getattr(msg, "latency_buckets", []) or [])]
        fields["latency_sum_s"] = float(getattr(msg, "latency_sum_s", 0.0) or 0.0)
        fields["in_ports"] = {p: (int(n), float(t)) for p, n, t in zip(
            getattr(msg, "in_ports", []) or [], getattr(msg, "in_port_packets", []) or [],
            getattr(msg, "in_port_newest_stamp_s", []) or [])}
        with self.lock:
            t.on_heartbeat(fields, time.monotonic())
            if msg.pid:
                self.container_pid[t.node.container] = int(msg.pid)
            if msg.state == "error" and t.state == "active" and not swapping:
                t.state = "error"   # (during a replacement it may be the new node failing: rolled back)
            overflowed = not self.fatal and str(fields["counters"].get("overflow_errors", "0")) not in ("", "0")
            if overflowed:
                self.fatal = (f"node {t.node.id}: {msg.last_error or 'an input overflowed'} "
                              "(inputs: overflow: error ends the run)")
        if overflowed:
            self._event(self.fatal)
            self._set_state(MState.ERROR, self.fatal)
            self.stop_requested.set()

    def _delivery(self) -> Dict[str, str]:
        """Current delivery problems; remembers each (its newest text) for the run report."""
        with self.lock:
            probs = delivery_problems(self.plan, {nid: t.counters_total() for nid, t in self.tracks.items()},
                                      stall_s=self.plan.delivery_stall_s)
            seen = self.__dict__.setdefault("delivery_seen", {})
            new = [txt for k, txt in probs.items() if k not in seen]
            seen.update(probs)
        for txt in new:
            self._event(f"delivery: {txt}")
        return probs

    def _health(self, now: float, delivery: Dict[str, str]) -> Dict[str, str]:
        """Current health problems; a silent source is recorded (once, as an event) for the report."""
        with self.lock:
            probs = health_problems(self.tracks, self.state, now, delivery, self.plan.source_grace_s)
            new = [txt for k, txt in probs.items() if k.endswith("/silent") and k not in self.sources_seen]
            self.sources_seen.update({k: txt for k, txt in probs.items() if k.endswith("/silent")})
        for txt in new:
            self._event(f"health: {txt}")
        return probs

    def snapshot(self) -> Dict[str, Any]:
        now = time.monotonic()
        delivery = self._delivery()
        problems = self._health(now, delivery)
        with self.lock:
            nodes = {nid: t.summary(now) for nid, t in self.tracks.items()}
            for nid, t in self.tracks.items():
                if t.cbase:
                    nodes[nid]["counters"] = t.counters_total()
            self._status_now = graph_health(self.tracks, self.state, now, delivery, self.plan.source_grace_s)
            return {
                "graph": self.plan.graph, "state": self.state.value, "message": self.message,
                "status": self._status_now,
                "problems": sorted(problems.values()),
                "source_problems_seen": sorted(self.sources_seen.values()),
                "delivery_problems": sorted(delivery.values()),
                "delivery_problems_seen": sorted(self.delivery_seen.values()),
                "nodes_active": sum(1 for t in self.tracks.values() if t.state == "active"),
                "nodes_total": len(self.tracks), "nodes": nodes,
                "containers": {cid: {"state": self.container_state[cid], "pid": self.container_pid[cid],
                                     "restarts": self.restarts[cid]} for cid in self.container_state},
                "hosts": self._hosts_state(),
                "ever_active": self.ever_active, "degraded_episodes": self.degraded_episodes,
                "events": self._events_list(), "events_dropped": self.events_total - len(self.events),
                "time": time.time(), "manager_pid": os.getpid(),
            }

    def _hosts_state(self) -> Dict[str, str]:
        """Per host of a multi-host graph (docs/multi-host.md): ``up`` when each of its containers
        answers, ``down`` when none does, ``partial`` otherwise, ``waiting`` before bring-up."""
        out: Dict[str, str] = {}
        for h in self.plan.hosts:
            states = [self.container_state.get(c.id, "waiting") for c in self.plan.containers_on(h["name"])]
            if not states:
                continue
            out[h["name"]] = ("up" if all(s == "up" for s in states) else "down" if all(s == "down" for s in states)
                              else "waiting" if all(s == "waiting" for s in states) else "partial")
        return out

    def _write_status(self) -> None:
        if not self.status_file:
            return
        with self._status_lock:   # written from the manager, executor and hot-swap threads
            snap = self.snapshot()
            tmp = f"{self.status_file}.tmp"
            try:
                with open(tmp, "w", encoding="utf-8") as f:
                    json.dump(snap, f)
                os.replace(tmp, self.status_file)
            except OSError as exc:
                self.log(f"manager: cannot write status file: {exc}")

    def _publish_status(self) -> None:
        view = self.metrics_view()
        self.rates.update(edge_counts(view))
        snap = self.snapshot()
        health = snap["status"]
        if self.ever_active and self.state in (MState.ACTIVE, MState.RECOVERING) and health != self._last_health:
            if health != "ok":
                self.degraded_episodes += 1
            self._event(f"graph status {self._last_health} -> {health}")
            self._last_health = health
            snap = self.snapshot()
        msg = self._GraphStatus()
        msg.stamp = self.node.get_clock().now().to_msg()
        msg.graph = snap["graph"]
        msg.status = snap["status"]
        msg.nodes_active = snap["nodes_active"]
        msg.nodes_total = snap["nodes_total"]
        from schnitzel_msgs.msg import KeyValue
        for nid, s in snap["nodes"].items():
            ns = self._NodeStatus()
            ns.stamp = msg.stamp
            ns.node_id = nid
            ns.plugin = s["plugin"]
            tr = self.tracks.get(nid)
            ns.ros_name = tr.ros_name if tr is not None else nid
            ns.plugin_version = tr.node.plugin_version if tr is not None else ""
            ns.container = s["container"]
            ns.state = s["state"]
            ns.packets_in, ns.packets_out = s["packets_in"], s["packets_out"]
            ns.drops, ns.errors = s["drops"], s["errors"]
            ns.last_error = s["last_error"]
            ns.age_s = float(s["age_s"]) if s["age_s"] is not None else -1.0
            ns.latency_p50_ms, ns.latency_p95_ms = s["latency_p50_ms"], s["latency_p95_ms"]
            ns.latency_p99_ms = s["latency_p99_ms"]
            ns.pid = s["pid"]
            ns.counters = [KeyValue(key=str(k), value=str(v)) for k, v in s["counters"].items()]
            mv = view["nodes"].get(nid)
            if mv is not None:   # totals over every incarnation, like the counters above
                ns.latency_bounds_s = [float(b) for b in mv["latency_bounds_s"]]
                ns.latency_buckets = [int(b) for b in mv["latency_buckets"]]
                ns.latency_sum_s = float(mv["latency_sum_s"])
                ports = sorted(mv["in_ports"])
                ns.in_ports = ports
                ns.in_port_packets = [int(mv["in_ports"][p][0]) for p in ports]
                ns.in_port_newest_stamp_s = [float(mv["in_ports"][p][1]) for p in ports]
            msg.nodes.append(ns)
        msg.containers = [f"{cid}:{c['pid']}:{c['state']}" for cid, c in snap["containers"].items()]
        try:
            self.pub.publish(msg)
            if self.diag_pub is not None:
                self.diag_pub.publish(graph_diagnostics(snap, msg.stamp))
        except Exception:  # noqa: BLE001 - shutting down
            pass
        self._write_status()

def graph_diagnostics(snap: Dict[str, Any], stamp: Any = None) -> Any:
    """The graph's health as a diagnostic_msgs/DiagnosticArray with one DiagnosticStatus named
    ``<graph>``: level OK / WARN (degraded) / ERROR, the message ``degraded: <reasons>``, and each
    current problem as a value (what rqt_robot_monitor shows)."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    status = snap.get("status", "ok")
    problems = list(snap.get("problems") or []) if status != "ok" else []
    level = {"ok": DiagnosticStatus.OK, "degraded": DiagnosticStatus.WARN}.get(status, DiagnosticStatus.ERROR)
    ds = DiagnosticStatus(level=level, name=str(snap.get("graph", "")),
                          hardware_id=f"schnitzel_manager:{snap.get('manager_pid', os.getpid())}",
                          message=status + (": " + "; ".join(problems) if problems else ""))
    ds.values = ([KeyValue(key="state", value=str(snap.get("state", ""))),
                  KeyValue(key="nodes_active", value=f"{snap.get('nodes_active', 0)}/{snap.get('nodes_total', 0)}")]
                 + [KeyValue(key=f"problem {i + 1}", value=p) for i, p in enumerate(problems)])
    arr = DiagnosticArray(status=[ds])
    if stamp is not None:
        arr.header.stamp = stamp
    return arr
