"""The autonomic controllers' host process (docs/autonomic.md): the control plane of one graph.

Started by ``schnitzel run`` beside the lifecycle manager when the graph declares
``controllers:``. It reads what the manager already publishes (``GraphStatus`` on
``/<graph>/_status/graph``: per-node counters, latency, pid), steps each controller on its own
timer (:class:`schnitzel_core.autonomic.Controller`) and sets knobs through the nodes' ROS
parameter services (``/<graph>/<node>/set_parameters``), where the adapter checks a live change
with the plugin before taking it. It never subscribes to a data topic.

Audit: every decision as a JSON line in ``<run dir>/control-audit.jsonl`` and as JSON text on
``/<graph>/_control/audit`` (std_msgs/String); on exit a summary in
``<run dir>/control-summary.json`` (the run report reads it).
Override: ``schnitzel_msgs/srv/ControlOverride`` on ``/<graph>/_control/override``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from schnitzel_core.autonomic import (ControlError, Controller, Decision, Knob, MetricReader,
                                      spec_from_dict, DEFAULT_INTERVAL_S)

from .plan import Plan

#: a status older than this is not judged on (the manager publishes once a second)
STALE_STATUS_S = 3.5
SET_TIMEOUT_S = 2.0
AUDIT_FILE = "control-audit.jsonl"
SUMMARY_FILE = "control-summary.json"


def override_service(namespace: str) -> str:
    return f"{namespace.rstrip('/')}/_control/override"


def audit_topic(namespace: str) -> str:
    return f"{namespace.rstrip('/')}/_control/audit"


def cpu_seconds(pid: int) -> Optional[float]:
    """utime + stime of a process (and its reaped children) from /proc, in seconds."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tick = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / tick
    except (OSError, ValueError, IndexError):
        return None


def _fmt(v: Any) -> str:
    """A knob's value (or a mode's name) for the log: numbers short, text as is, None as none."""
    if v is None:
        return "none"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _json_safe(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


class ControlHost:
    def __init__(self, node: Any, plan: Plan, run_dir: Optional[Path]) -> None:
        from rclpy.callback_groups import ReentrantCallbackGroup
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rcl_interfaces.srv import SetParameters
        from schnitzel_msgs.msg import GraphStatus
        from schnitzel_msgs.srv import ControlOverride
        from std_msgs.msg import String

        self.node = node
        self.plan = plan
        self.ns = plan.namespace.rstrip("/")
        self.audit_path = (run_dir / AUDIT_FILE) if run_dir else None
        self.summary_path = (run_dir / SUMMARY_FILE) if run_dir else None
        self._lock = threading.Lock()
        self._String = String
        self._SetParameters = SetParameters
        self.group = ReentrantCallbackGroup()
        self.reader = MetricReader()
        self.metrics: Dict[str, float] = {}
        self.states: Dict[str, str] = {}
        self.metrics_at = 0.0
        self.records: List[Dict[str, Any]] = []
        self.clients: Dict[str, Any] = {}
        self.controllers: Dict[str, Controller] = {}
        self.float_params: set = set()   # knobs of a float parameter (an enum's whole values go as floats)
        self.audit_pub = node.create_publisher(String, audit_topic(plan.namespace), 100)
        for entry in plan.controllers:
            spec = spec_from_dict(entry["spec"], entry.get("integer_params", ()))
            initial = {}
            for k in spec.knobs:
                pn = plan.node(k.node)
                if pn is None or k.param not in pn.params:
                    raise ControlError(f"controller {spec.name!r}: knob {k.key} is not in the plan")
                v = pn.params[k.param]
                initial[k.key] = v if k.enum else float(v)
                if isinstance(v, float):
                    self.float_params.add(k.key)
            c = Controller(spec, initial, apply=self._apply, audit=self._audit)
            self.controllers[spec.name] = c
            interval = float(entry["spec"].get("interval_s", DEFAULT_INTERVAL_S))
            node.create_timer(interval, lambda c=c: self._step(c), callback_group=self.group)
        st_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)
        node.create_subscription(GraphStatus, plan.status_topics["graph"], self._on_status, st_qos,
                                 callback_group=self.group)
        node.create_service(ControlOverride, override_service(plan.namespace), self._on_override,
                            callback_group=self.group)

    # ----------------------------------------------------------------- metrics
    def _on_status(self, msg: Any) -> None:
        nodes = {}
        pids = set()
        for n in msg.nodes:
            nodes[n.node_id] = {"packets_in": n.packets_in, "drops": n.drops, "pid": n.pid,
                                "counters": {kv.key: kv.value for kv in n.counters}}
            if n.pid:
                pids.add(int(n.pid))
        cpu = {p: v for p in pids if (v := cpu_seconds(p)) is not None}
        now = time.monotonic()
        with self._lock:
            self.metrics = self.reader.feed(now, nodes, cpu)
            self.states = {n.node_id: n.state for n in msg.nodes}
            self.metrics_at = now

    def _step(self, c: Controller) -> None:
        now = time.monotonic()
        with self._lock:
            fresh = now - self.metrics_at <= STALE_STATUS_S
            # judge only a running graph: every knob's node active
            running = all(self.states.get(k.node) == "active" for k in c.spec.knobs)
            metrics = dict(self.metrics) if fresh and running else {}
        try:
            c.step(now, metrics)
        except Exception as exc:  # noqa: BLE001 - one bad step must not stop the control plane
            self.node.get_logger().error(f"controller {c.spec.name!r}: step failed: {exc}")

    # ----------------------------------------------------------------- knobs
    def _apply(self, knob: Knob, value: float) -> bool:
        from rclpy.parameter import Parameter

        name = f"{self.ns}/{knob.node}/set_parameters"
        client = self.clients.get(name)
        if client is None:
            client = self.node.create_client(self._SetParameters, name, callback_group=self.group)
            self.clients[name] = client
        if not client.wait_for_service(timeout_sec=SET_TIMEOUT_S):
            self.node.get_logger().warning(f"{name} is not available; {knob.key} stays")
            return False
        req = self._SetParameters.Request()
        v: Any
        if knob.enum:    # the listed value as it is (ROS parameters keep their type)
            v = float(value) if knob.key in self.float_params and isinstance(value, int) else value
        else:
            v = int(round(value)) if knob.integer else float(value)
        req.parameters = [Parameter(knob.param, value=v).to_parameter_msg()]
        done = threading.Event()
        fut = client.call_async(req)
        fut.add_done_callback(lambda _f: done.set())
        if not done.wait(SET_TIMEOUT_S) or fut.result() is None:
            self.node.get_logger().warning(f"{name} did not answer; {knob.key} stays")
            return False
        res = fut.result().results[0]
        if not res.successful:
            self.node.get_logger().warning(f"node {knob.node!r} refused {knob.param}={v}: {res.reason}")
        return bool(res.successful)

    # ----------------------------------------------------------------- audit
    def _audit(self, d: Decision) -> None:
        rec = _json_safe({"wall": time.time(), **d.to_json()})
        line = json.dumps(rec, sort_keys=True)
        with self._lock:
            self.records.append(rec)
            if self.audit_path is not None:
                with open(self.audit_path, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
        self.audit_pub.publish(self._String(data=line))
        what = f"{d.knob} {_fmt(d.old)} -> {_fmt(d.new)}"
        if d.changes:
            what += " (" + ", ".join(f"{k} {_fmt(a)} -> {_fmt(b)}" for k, (a, b) in d.changes.items()) + ")"
        self.node.get_logger().info(f"controller {d.controller}: {what} ({d.rule}, {d.outcome})")

    def summary(self) -> Dict[str, Any]:
        with self._lock:
            records = list(self.records)
        out: Dict[str, Any] = {}
        for name, c in self.controllers.items():
            mine = [r for r in records if r["controller"] == name]
            changes = [r for r in mine if r["ref"] is None and not r["rule"].startswith("override")]
            out[name] = {"values": dict(c.values), "pinned": dict(c.pinned), "suspended": c.suspended,
                         "mode": c.modes.active, "mode_forced": c.modes.forced,
                         "changes": len(changes), "reversals": c.reversals,
                         "rolled_back": sum(1 for r in mine if r["rule"] == "rollback"),
                         "overrides": sum(1 for r in mine if r["rule"].startswith("override"))}
        return {"controllers": out, "decisions": records[-200:]}

    def write_summary(self) -> None:
        if self.summary_path is not None:
            tmp = self.summary_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.summary(), indent=1, sort_keys=True), encoding="utf-8")
            tmp.replace(self.summary_path)

    # ----------------------------------------------------------------- override
    def _on_override(self, req: Any, resp: Any) -> Any:
        c = self.controllers.get(req.controller)
        resp.ok = False
        if c is None:
            resp.message = (f"no controller {req.controller!r} in graph {self.plan.graph!r} "
                            f"(controllers: {', '.join(sorted(self.controllers)) or 'none'})")
            return resp
        now = time.monotonic()
        try:
            if req.action == "pin":
                c.pin(req.knob, req.text if req.text else req.value, now)
                resp.message = f"{req.knob} pinned at {_fmt(c.values[req.knob])}"
            elif req.action == "release":
                c.release(req.knob, now)
                resp.message = f"{req.knob} released (at {_fmt(c.values[req.knob])})"
            elif req.action in ("mode", "mode_release"):
                d = c.modes.force(req.text, now) if req.action == "mode" else c.modes.release(now)
                moved = ", ".join(f"{k} {_fmt(a)} -> {_fmt(b)}" for k, (a, b) in (d.changes or {}).items())
                resp.message = (f"mode {req.text!r} forced" if req.action == "mode" else
                                f"mode {d.old!r} released") + f" ({moved or 'no knob moved'})"
            elif req.action == "suspend":
                c.suspend(now)
                resp.message = f"controller {c.spec.name!r} suspended"
            elif req.action == "resume":
                c.resume(now)
                resp.message = f"controller {c.spec.name!r} resumed"
            else:
                resp.message = f"unknown action {req.action!r} (pin, release, suspend, resume, mode, mode_release)"
                return resp
        except ControlError as exc:
            resp.message = str(exc)
            return resp
        resp.ok = True
        self.write_summary()
        return resp


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="schnitzel_controller", description=__doc__.splitlines()[0])
    ap.add_argument("--plan", required=True)
    ap.add_argument("--run-dir", default="")
    args, ros_args = ap.parse_known_args(argv)
    from schnitzel_core.lifetime import die_with_parent

    die_with_parent(signal.SIGTERM)
    import rclpy
    from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

    plan = Plan.read(args.plan)
    rclpy.init(args=["schnitzel_controller"] + ros_args, signal_handler_options=_no_signals())
    node = rclpy.create_node("_control", namespace=plan.namespace)
    try:
        host = ControlHost(node, plan, Path(args.run_dir) if args.run_dir else None)
    except ControlError as exc:
        print(f"schnitzel_controller: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: stop.set())
    ex = MultiThreadedExecutor(num_threads=3)
    ex.add_node(node)
    t = threading.Thread(target=_spin, args=(ex, ExternalShutdownException), daemon=True)
    t.start()
    last = 0.0
    while not stop.wait(0.5):
        if time.monotonic() - last > 5.0:
            host.write_summary()
            last = time.monotonic()
    host.write_summary()
    ex.shutdown(timeout_sec=1.0)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


def _spin(ex: Any, shutdown_exc: type) -> None:
    try:
        ex.spin()
    except (shutdown_exc, Exception):  # noqa: BLE001 - shutting down
        pass


def _no_signals() -> Any:
    from rclpy.signals import SignalHandlerOptions

    return SignalHandlerOptions.NO


if __name__ == "__main__":
    sys.exit(main())
