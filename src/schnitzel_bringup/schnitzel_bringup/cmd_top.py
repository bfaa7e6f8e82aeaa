"""``schnitzel top GRAPH``: a running graph in the terminal, over ROS (no HTTP).

It subscribes to the lifecycle manager's ``schnitzel_msgs/GraphStatus`` on
``/<graph>/_status/graph`` (once a second, transient local) and shows, per node: state,
packets/s in and out (from two consecutive statuses), p99 latency, drops, errors and a durable
queue's depth. ``--once --format json`` prints one JSON document for scripts and exits.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Any, Dict, List, Optional

import typer

STATUS_TOPIC = "/{graph}/_status/graph"


def status_dict(msg: Any) -> Dict[str, Any]:
    """A GraphStatus as plain data (what ``rows`` reads)."""
    nodes = []
    for ns in msg.nodes:
        counters = {kv.key: kv.value for kv in ns.counters}
        nodes.append({"node": ns.node_id, "plugin": ns.plugin, "container": ns.container, "state": ns.state,
                      "packets_in": int(ns.packets_in), "packets_out": int(ns.packets_out),
                      "drops": int(ns.drops), "errors": int(ns.errors), "p99_ms": float(ns.latency_p99_ms),
                      "age_s": float(ns.age_s), "counters": counters})
    return {"graph": msg.graph, "status": msg.status, "nodes_active": int(msg.nodes_active),
            "nodes_total": int(msg.nodes_total), "stamp": msg.stamp.sec + msg.stamp.nanosec / 1e9,
            "nodes": nodes, "containers": list(msg.containers)}


def rows(cur: Dict[str, Any], prev: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """What top shows: the current status with each node's rates since ``prev`` (None without one)."""
    dt = (cur["stamp"] - prev["stamp"]) if prev else 0.0
    before = {n["node"]: n for n in prev["nodes"]} if prev else {}
    out = []
    for n in cur["nodes"]:
        p = before.get(n["node"])
        rate = (lambda k: round(max(0.0, (n[k] - p[k]) / dt), 2)) if p and dt > 0 else (lambda k: None)
        depth = n["counters"].get("depth")
        out.append({"node": n["node"], "plugin": n["plugin"], "container": n["container"], "state": n["state"],
                    "in_per_s": rate("packets_in"), "out_per_s": rate("packets_out"),
                    "packets_in": n["packets_in"], "packets_out": n["packets_out"],
                    "p99_ms": round(n["p99_ms"], 3), "drops": n["drops"], "errors": n["errors"],
                    "queue_depth": int(float(depth)) if depth not in (None, "") else None})
    return {"graph": cur["graph"], "status": cur["status"], "nodes_active": cur["nodes_active"],
            "nodes_total": cur["nodes_total"], "containers": cur["containers"], "nodes": out}


def table(view: Dict[str, Any]) -> Any:
    from rich.table import Table

    colour = {"ok": "green", "degraded": "yellow", "error": "red"}.get(view["status"], "white")
    t = Table(title=f"{view['graph']}: [{colour}]{view['status']}[/] — active {view['nodes_active']}/"
                    f"{view['nodes_total']}", expand=False)
    for col, just in (("node", "left"), ("plugin", "left"), ("state", "left"), ("in/s", "right"),
                      ("out/s", "right"), ("p99 ms", "right"), ("drops", "right"), ("errors", "right"),
                      ("queue", "right")):
        t.add_column(col, justify=just)
    fmt = lambda v: "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    for n in view["nodes"]:
        st = n["state"] if n["state"] == "active" else f"[red]{n['state']}[/]"
        t.add_row(n["node"], n["plugin"], st, fmt(n["in_per_s"]), fmt(n["out_per_s"]), fmt(n["p99_ms"]),
                  str(n["drops"]), str(n["errors"]), fmt(n["queue_depth"]))
    return t


class StatusWatch:
    """A short-lived ROS node subscribed to the manager's GraphStatus."""

    def __init__(self, graph: str) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from rclpy.signals import SignalHandlerOptions
        from schnitzel_msgs.msg import GraphStatus

        self._rclpy = rclpy
        self.ctx = Context()
        rclpy.init(context=self.ctx, signal_handler_options=SignalHandlerOptions.NO)
        import os
        self.node = rclpy.create_node(f"schnitzel_top_{os.getpid()}", context=self.ctx)
        self.msgs: List[Dict[str, Any]] = []
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)
        self.node.create_subscription(GraphStatus, STATUS_TOPIC.format(graph=graph),
                                      lambda m: self.msgs.append(status_dict(m)), qos)
        self.ex = SingleThreadedExecutor(context=self.ctx)
        self.ex.add_node(self.node)

    def next(self, timeout: float) -> Optional[Dict[str, Any]]:
        """The next status (in arrival order) within ``timeout`` s, or None."""
        deadline = time.monotonic() + timeout
        while not self.msgs and time.monotonic() < deadline:
            self.ex.spin_once(timeout_sec=0.1)
        return self.msgs.pop(0) if self.msgs else None

    def close(self) -> None:
        self.ex.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self._rclpy.shutdown(context=self.ctx)


def register(app: typer.Typer) -> None:
    @app.command("top")
    def top_cmd(
        graph: str = typer.Argument(..., help="running graph: its name or its graph file"),
        once: bool = typer.Option(False, "--once", help="print one view and exit"),
        fmt: str = typer.Option("table", "--format", help="table or json"),
        wait: float = typer.Option(10.0, "--wait", min=0.5, help="seconds to wait for the graph's status"),
    ) -> None:
        """Show a running graph: per node state, packets/s, p99 latency, drops, queue depth (over ROS).

        Exit code: 0, 2 bad usage, 3 no status from GRAPH within --wait seconds (is it running?
        ROS_DOMAIN_ID must match).
        """
        from .cmd_replace import CliError, resolve_graph

        if fmt not in ("table", "json"):
            print(f"schnitzel top: --format must be table or json, not {fmt!r}", file=sys.stderr)
            raise typer.Exit(2)
        try:
            name, _g = resolve_graph(graph)
        except CliError as exc:
            print(f"schnitzel top: {exc}", file=sys.stderr)
            raise typer.Exit(exc.code)
        watch = StatusWatch(name)
        try:
            first = watch.next(wait)
            if first is None:
                print(f"schnitzel top: no status from graph {name!r} on {STATUS_TOPIC.format(graph=name)} within "
                      f"{wait:g} s; is it running? ROS_DOMAIN_ID must match the running graph's", file=sys.stderr)
                raise typer.Exit(3)
            # a second status (about a second later) gives the rates
            second = watch.next(3.0)
            prev, cur = (first, second) if second is not None else (None, first)
            if once:
                view = rows(cur, prev)
                if fmt == "json":
                    print(json.dumps(view, indent=2))
                else:
                    from rich.console import Console
                    Console().print(table(view))
                return
            from rich.live import Live
            with Live(table(rows(cur, prev)), refresh_per_second=2, screen=False) as live:
                while True:
                    nxt = watch.next(5.0)
                    if nxt is None:
                        continue
                    prev, cur = cur, nxt
                    live.update(table(rows(cur, prev)))
        except KeyboardInterrupt:
            pass
        finally:
            watch.close()
