"""The lifecycle manager: ``schnitzel_manager --plan PLAN.json``.

Modelled on nav2's lifecycle manager, with an explicit state machine::

    STARTING -> WAITING_CONTAINERS -> LOADING -> CONFIGURING -> ACTIVATING -> ACTIVE
    ACTIVE -> RECOVERING -> ACTIVE          (a container came back empty / a node failed)
    any    -> STOPPING -> FINISHED          (SIGINT / SIGTERM: ordered tear-down)
    any    -> ERROR                         (bring-up failed; nodes are torn down)

Bring-up: wait for every container's services, load each node (schnitzel_msgs
LoadNode on ``<container>/load_node``; skipped for nodes ``ros2 launch`` already
loaded), then ``configure`` every node and ``activate`` every node through the
standard lifecycle services (``/<graph>/<node>/change_state``), in the plan's
start order: sinks first, sources last, so nothing is sent before its consumer
is ready.

Watch: every node's ``schnitzel_msgs/NodeStatus`` heartbeat on
``/<graph>/_status/nodes`` and every container's ``list_nodes``. A container that
answers without our nodes was restarted (by the runner or by launch's respawn):
its nodes are loaded again and brought back to active. A node reporting the
``error`` state is unloaded and loaded again while its container's restart limit
allows.

Tear-down: deactivate sources first, wait until in-flight packets have drained
(every downstream node's input counter stops moving), deactivate the rest in
data-flow order, then clean up and shut down every node.

Hot replacement: once the graph is active the manager serves
``/<graph>/_manager/replace_node`` and ``/<graph>/_manager/apply_graph``
(:class:`schnitzel_bringup.replace.HotSwapServer`, own node and executor thread)
and keeps tracking what they changed: a replaced node under its ``<id>__r<N>``
name, added and removed nodes, and the current plan, which is what a restarted
container gets loaded again.

Status: ``schnitzel_msgs/GraphStatus`` on ``/<graph>/_status/graph`` (1 Hz, the
last one kept for late subscribers) and, with ``--status-file``, the same as JSON
for the built-in runner.
"""
from __future__ import annotations

import argparse
import collections
import enum
import json
import os
import re
import signal
import sys
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from .delivery_health import CUMULATIVE, delivery_problems, is_queue
from .metrics import Rates, edge_counts
from .plan import Plan, PlanError, PlanNode

#: A node hot-replaced by schnitzel_bringup.replace runs as <id>__r<N>.
_REPLACED = re.compile(r"^(.+?)__r\d+$")
#: Seconds without a heartbeat before a node counts as stale.
HEARTBEAT_TIMEOUT_S = 3.0
#: A container counts as not answering (``down``, its nodes ``unknown``) only after this many
#: ``list_nodes`` calls in a row went unanswered, spanning at least UNRESPONSIVE_S seconds: one
#: slow answer on a loaded machine is not a fault.
UNRESPONSIVE_MISSES = 3
UNRESPONSIVE_S = 3.0
LIST_TIMEOUT_S = 1.0      # per list_nodes call of the watch
SERVICE_WAIT_S = 60.0
CALL_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 5.0
MATCH_WAIT_S = 10.0
STOP_CALL_S = 3.0        # per transition while stopping
#: The manager keeps this many of its most recent events (status file, run report); older ones
#: are counted in ``events_dropped``. A long run with a flapping container must not grow without bound.
EVENTS_MAX = 1000


#: lifecycle_msgs/Transition ids -> the verb recorded in the manager's events.
TRANSITION_NAMES = {1: "configure", 2: "cleanup", 3: "activate", 4: "deactivate", 5: "shutdown",
                    6: "shutdown", 7: "shutdown"}


class MState(str, enum.Enum):
    STARTING = "starting"
    WAITING_CONTAINERS = "waiting_containers"
    LOADING = "loading"
    CONFIGURING = "configuring"
    ACTIVATING = "activating"
    ACTIVE = "active"
    RECOVERING = "recovering"
    STOPPING = "stopping"
    FINISHED = "finished"
    ERROR = "error"


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


# ---- the ROS node ---------------------------------------------------------------------------

def _service_prefix_candidates(plan: Plan, cid: str) -> List[str]:
    c = plan.container(cid)
    out = [c.full_name] if c else []
    out.append(f"/{plan.graph}/{cid}")
    out.append(f"/{cid}")
    return out


class LifecycleManager:
    """Owns the rclpy node; the bring-up/tear-down logic runs on the caller's thread while an
    executor thread serves callbacks (subscriptions, timers, service responses)."""

    def __init__(self, plan: Plan, status_file: Optional[str] = None, loaded_by_launch: bool = False,
                 log: Callable[[str], None] = print) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
        from schnitzel_msgs.msg import GraphStatus, NodeStatus

        self._init_state(plan, status_file, loaded_by_launch, log)
        if not rclpy.ok():
            rclpy.init(args=None, signal_handler_options=_no_signal_handlers())
        self._rclpy = rclpy
        m = plan.manager or {}
        self.node = Node(m.get("name", "schnitzel_manager"), namespace=m.get("namespace", plan.namespace))
        self._GraphStatus = GraphStatus
        self._NodeStatus = NodeStatus
        hb_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT,
                            durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)
        self.node.create_subscription(NodeStatus, plan.status_topics["nodes"], self._on_status, hb_qos)
        st_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL, history=HistoryPolicy.KEEP_LAST)
        self.pub = self.node.create_publisher(GraphStatus, plan.status_topics["graph"], st_qos)
        try:   # the graph as a whole on /diagnostics, beside each node's own status (the containers)
            from diagnostic_msgs.msg import DiagnosticArray
            self.diag_pub = self.node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        except ImportError:
            self.diag_pub = None
        self.node.create_timer(1.0, self._publish_status)
        if getattr(plan, "controllers", None):   # decisions into the metrics and the events (live page)
            from std_msgs.msg import String

            from .controller_node import audit_topic
            self.node.create_subscription(String, audit_topic(plan.namespace),
                                          lambda msg: self.take_audit(msg.data), 100)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self._spin_loop, name="manager-executor", daemon=True)
        self._spin.start()

    def _init_state(self, plan: Plan, status_file: Optional[str] = None, loaded_by_launch: bool = False,
                    log: Callable[[str], None] = print) -> None:
        """The manager's bookkeeping, with no rclpy (tests build a manager from this alone)."""
        self.plan = plan
        self.status_file = status_file
        self.loaded_by_launch = loaded_by_launch
        self.log = log
        self.state = MState.STARTING
        self.message = ""
        self.lock = threading.RLock()
        self.stop_requested = threading.Event()
        #: Why the run must end in error by itself (a node whose input has ``overflow: error``
        #: overflowed); run() then stops the graph and exits 1.
        self.fatal = ""
        self.tracks: Dict[str, NodeTrack] = {n.id: NodeTrack(n) for n in plan.nodes}
        self.container_state: Dict[str, str] = {c.id: "waiting" for c in plan.containers}
        self.container_pid: Dict[str, int] = {c.id: 0 for c in plan.containers}
        self.restarts: Dict[str, int] = {c.id: 0 for c in plan.containers}
        self.events: Deque[Dict[str, Any]] = collections.deque(maxlen=EVENTS_MAX)
        self.events_total = 0           # events ever recorded (events_total - len(events) were dropped)
        self._events_view: Tuple[int, List[Dict[str, Any]]] = (0, [])   # (events_total, list) for snapshots
        self.started_at = time.time()
        self.ever_active = False        # the whole graph reached active at least once
        self._last_health = "ok"
        self.degraded_episodes = 0      # times the running graph left "ok" (stale, down, restarting)
        self.hotswap: Any = None        # replace.HotSwapServer once the graph is active
        self._swap_gen = 0              # bumped by every change a hot replacement made
        self._status_lock = threading.Lock()
        self._misses: Dict[str, List[float]] = {}   # container id -> times of unanswered list_nodes in a row
        self.rates = Rates()            # edge packets per second (metrics, status, live page)
        # autonomic controllers' audit (docs/autonomic.md), as the metrics show it:
        # (controller, knob, changed|kept|rolled_back|override) -> records; (controller, knob) -> value
        self.control_counts: Dict[Tuple[str, str, str], int] = {}
        self.control_knobs: Dict[Tuple[str, str], float] = {}
        self._status_now = "ok"         # graph health as last judged (snapshot)
        self.metrics_server: Any = None
        self.live_server: Any = None
        self.delivery_seen: Dict[str, str] = {}     # delivery problems met during the run (newest text)
        self.sources_seen: Dict[str, str] = {}      # sources silent past their grace during the run
        self.diag_pub: Any = None
        self._clients: Dict[str, Any] = {}
        self._container_prefix: Dict[str, str] = {}

    # ---- plumbing ------------------------------------------------------------------------
    def _spin_loop(self) -> None:
        while self._rclpy.ok() and not getattr(self, "_closing", False):
            try:
                self.executor.spin_once(timeout_sec=0.1)
            except Exception as exc:  # noqa: BLE001 - keep the manager alive, report it
                if self._rclpy.ok() and not getattr(self, "_closing", False):
                    self.log(f"manager: executor error: {exc}")

    def _client(self, srv_type: Any, name: str) -> Any:
        with self.lock:
            cli = self._clients.get(name)
            if cli is None:
                cli = self.node.create_client(srv_type, name)
                self._clients[name] = cli
            return cli

    def _call(self, srv_type: Any, name: str, request: Any, timeout: float = CALL_TIMEOUT_S,
              wait: float = 0.0) -> Any:
        """Call a service from the manager thread; None on timeout or when no server answers."""
        cli = self._client(srv_type, name)
        if not cli.wait_for_service(timeout_sec=max(wait, 0.05)):
            return None
        done = threading.Event()
        fut = cli.call_async(request)
        fut.add_done_callback(lambda _f: done.set())
        if not done.wait(timeout):
            fut.cancel()
            return None
        try:
            return fut.result()
        except Exception:  # noqa: BLE001 - a failed call reads as "no answer"
            return None

    def _event(self, what: str) -> None:
        with self.lock:
            self.events.append({"t": round(time.time() - self.started_at, 3), "event": what})
            self.events_total += 1
        self.log(f"manager: {what}")

    def take_audit(self, line: str) -> None:
        """One record of a controller's audit (JSON, schnitzel_core.autonomic.Decision)."""
        try:
            rec = json.loads(line)
            c, knob, outcome = str(rec["controller"]), str(rec["knob"]), str(rec.get("outcome", "pending"))
            old = None if rec.get("old") is None else float(rec["old"])   # None: suspend/resume
            new = None if rec.get("new") is None else float(rec["new"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        kind = "changed" if outcome == "pending" else outcome
        with self.lock:
            self.control_counts[(c, knob, kind)] = self.control_counts.get((c, knob, kind), 0) + 1
            if kind != "kept" and new is not None:
                self.control_knobs[(c, knob)] = new
        if kind != "kept":
            what = f"{knob} {old:g} -> {new:g}" if old is not None and new is not None else knob
            self._event(f"controller {c}: {what} ({rec.get('rule', kind)})")

    def _events_list(self) -> List[Dict[str, Any]]:
        """The kept events as a list (caller holds the lock); rebuilt only when one was added,
        so the status written several times a second does not copy the log each time."""
        if self._events_view[0] != self.events_total:
            self._events_view = (self.events_total, list(self.events))
        return self._events_view[1]

    def _set_state(self, state: MState, message: str = "") -> None:
        with self.lock:
            self.state = state
            if message:
                self.message = message
        self._write_status()

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

    # ---- container services ----------------------------------------------------------------
    def _find_prefix(self, cid: str, timeout: float) -> Optional[str]:
        """The service prefix of container ``cid`` (``<prefix>/load_node``), waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        cands = _service_prefix_candidates(self.plan, cid)
        while not self.stop_requested.is_set():
            names = dict(self.node.get_service_names_and_types())
            for p in cands:
                if f"{p}/load_node" in names and f"{p}/list_nodes" in names:
                    return p
            for name, types in names.items():  # any schnitzel container whose name ends in the id
                if "schnitzel_msgs/srv/LoadNode" in types and name.endswith(f"/{cid}/load_node"):
                    return name[: -len("/load_node")]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)
        return None

    def _list(self, cid: str, timeout: float = 2.0) -> Optional[Dict[str, str]]:
        from schnitzel_msgs.srv import ListNodes
        prefix = self._container_prefix.get(cid)
        if not prefix:
            return None
        res = self._call(ListNodes, f"{prefix}/list_nodes", ListNodes.Request(), timeout=timeout, wait=0.2)
        if res is None:
            return None
        out = {}
        for i, full in enumerate(res.full_node_names):
            name = full.rsplit("/", 1)[-1]
            m = _REPLACED.match(name)
            nid = m.group(1) if m else name
            if nid in self.tracks and (m is None or nid not in out) and self.hotswap is None:
                with self.lock:
                    self.tracks[nid].ros_name = name
            out.setdefault(nid, res.states[i] if i < len(res.states) else "")
        return out

    def _load(self, n: PlanNode) -> bool:
        from schnitzel_msgs.msg import KeyValue
        from schnitzel_msgs.srv import LoadNode
        req = LoadNode.Request()
        req.plugin = n.plugin
        req.node_name = n.id
        req.node_namespace = n.namespace
        req.parameters_json = n.parameters_json()
        req.remappings = [KeyValue(key=a, value=b) for a, b in n.remappings]
        req.options = [KeyValue(key=k, value=v) for k, v in n.load_options(self.plan.graph).items()]
        prefix = self._container_prefix[n.container]
        res = self._call(LoadNode, f"{prefix}/load_node", req, timeout=30.0, wait=5.0)
        if res is None or not res.success:
            why = "no answer" if res is None else res.error_message
            self._fail_node(n.id, f"load into container {n.container!r} failed: {why}")
            return False
        with self.lock:
            self.tracks[n.id].loaded = True
            self.tracks[n.id].state = "unconfigured"
            self.tracks[n.id].ros_name = n.id
        self._event(f"load {n.id}")
        return True

    def _unload(self, n: PlanNode) -> None:
        from schnitzel_msgs.srv import UnloadNode
        prefix = self._container_prefix.get(n.container)
        if prefix:
            self._call(UnloadNode, f"{prefix}/unload_node",
                       UnloadNode.Request(node_name=self.tracks[n.id].ros_name), timeout=5.0)
        with self.lock:
            self.tracks[n.id].loaded = False
            self.tracks[n.id].state = "unknown"

    # ---- lifecycle -------------------------------------------------------------------------
    def _transition(self, n: PlanNode, transition_id: int, label: str, timeout: float = CALL_TIMEOUT_S) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState
        req = ChangeState.Request()
        req.transition = Transition(id=transition_id)
        res = self._call(ChangeState, f"{self.tracks[n.id].full_name}/change_state", req, timeout=timeout,
                         wait=min(5.0, timeout))
        if res is None and self.state == MState.STOPPING:
            # no answer while stopping: its container is going down too; skip its other nodes
            with self.lock:
                self.container_state[n.container] = "down"
        if res is None or not res.success:
            return False
        with self.lock:
            self.tracks[n.id].state = label
            if label == "active":
                self.tracks[n.id].active_since = time.monotonic()
        self._event(f"{TRANSITION_NAMES.get(transition_id, transition_id)} {n.id}")
        return True

    def get_state(self, n: PlanNode) -> Optional[str]:
        from lifecycle_msgs.srv import GetState
        res = self._call(GetState, f"{self.tracks[n.id].full_name}/get_state", GetState.Request(), timeout=3.0, wait=1.0)
        return None if res is None else res.current_state.label

    def _reason(self, n: PlanNode, wait_s: float = 2.5) -> str:
        """The node's own error message, from its next heartbeat (the container publishes 1/s)."""
        t = self.tracks[n.id]
        before = t.last_rx
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and not self.stop_requested.is_set():
            if t.last_rx > before and t.last.get("last_error"):
                return str(t.last["last_error"])
            time.sleep(0.05)
        return t.last_error or f"see the log of container {n.container!r}"

    def _fail_node(self, nid: str, why: str) -> None:
        with self.lock:
            t = self.tracks[nid]
            t.failures += 1
            t.last_error = why
        self._event(f"node {nid}: {why}")

    def _bring_up(self, ids: List[str], load: bool = True) -> bool:
        """Load (where missing), configure, then activate ``ids`` (given in start order)."""
        from lifecycle_msgs.msg import Transition
        nodes = [self.plan.node(i) for i in ids]
        if load:
            self._set_state(MState.LOADING if self.state != MState.RECOVERING else self.state)
            for n in nodes:
                if self.stop_requested.is_set():
                    return False
                if not self.tracks[n.id].loaded and not self._load(n):
                    return False
        if self.state != MState.RECOVERING:
            self._set_state(MState.CONFIGURING)
        for n in nodes:
            if self.stop_requested.is_set():
                return False
            st = self.get_state(n) or self.tracks[n.id].state
            if st in ("inactive", "active"):
                with self.lock:
                    self.tracks[n.id].state = st
                    if st == "active" and not self.tracks[n.id].active_since:
                        self.tracks[n.id].active_since = time.monotonic()
                continue
            if not self._transition(n, Transition.TRANSITION_CONFIGURE, "inactive"):
                self._fail_node(n.id, _prefixed("configure failed", self._reason(n)))
                with self.lock:
                    self.tracks[n.id].state = self.get_state(n) or "error"
                return False
        if self.state != MState.RECOVERING:
            self._set_state(MState.ACTIVATING)
        self._wait_matched(ids)
        for n in nodes:
            if self.stop_requested.is_set():
                return False
            if self.tracks[n.id].state == "active":
                continue
            if not self._transition(n, Transition.TRANSITION_ACTIVATE, "active"):
                self._fail_node(n.id, _prefixed("activate failed", self._reason(n)))
                with self.lock:
                    self.tracks[n.id].state = self.get_state(n) or "error"
                return False
        return True

    def _wait_matched(self, ids: List[str], timeout: float = MATCH_WAIT_S) -> None:
        """Before activating, wait until DDS discovery has matched every DDS edge touching
        ``ids`` (a reader per edge, a writer per topic): a packet published before its reader
        is matched is lost on a volatile topic."""
        want: Dict[str, int] = {}
        for e in self.plan.edges:
            if e.transport == "dds" and (e.src.split(".")[0] in ids or e.dst.split(".")[0] in ids):
                want[e.topic] = want.get(e.topic, 0) + 1
        deadline = time.monotonic() + timeout
        while want and time.monotonic() < deadline and not self.stop_requested.is_set():
            missing = {t: n for t, n in want.items()
                       if self.node.count_subscribers(t) < n or self.node.count_publishers(t) < 1}
            if not missing:
                return
            time.sleep(0.05)
        if want and not self.stop_requested.is_set():
            self._event("DDS discovery still incomplete after %.0f s (going on): %s"
                        % (timeout, ", ".join(sorted(t for t in want if self.node.count_subscribers(t) < want[t]
                                                      or self.node.count_publishers(t) < 1))))

    def start(self) -> bool:
        """Ordered bring-up of the whole plan. True when every node is active."""
        self._set_state(MState.WAITING_CONTAINERS)
        for c in self.plan.containers:
            prefix = self._find_prefix(c.id, SERVICE_WAIT_S)
            if prefix is None:
                if not self.stop_requested.is_set():
                    self._set_state(MState.ERROR, f"container {c.id!r} did not offer its services within "
                                                  f"{SERVICE_WAIT_S:.0f} s")
                return False
            self._container_prefix[c.id] = prefix
            with self.lock:
                self.container_state[c.id] = "up"
        if self.loaded_by_launch:
            # ros2 launch loads the nodes itself (ComposableNodeContainer); wait for them.
            deadline = time.monotonic() + 30.0
            while time.monotonic() < deadline and not self.stop_requested.is_set():
                missing = []
                for c in self.plan.containers:
                    listed = self._list(c.id) or {}
                    for nid in c.nodes:
                        if nid in listed:
                            self.tracks[nid].loaded = True
                        else:
                            missing.append(nid)
                if not missing:
                    break
                time.sleep(0.5)
        ok = self._bring_up(self.plan.start_order)
        if ok:
            self.ever_active = True
            self._set_state(MState.ACTIVE, "all nodes active")
            self._event(f"graph {self.plan.graph!r} active: {len(self.tracks)} node(s)")
        elif not self.stop_requested.is_set():
            failed = [f"{t.node.id}: {t.last_error}" for t in self.tracks.values() if t.last_error]
            self._set_state(MState.ERROR, "bring-up failed: " + "; ".join(failed))
        return ok

    # ---- hot replacement ------------------------------------------------------------------
    @property
    def swap_busy(self) -> bool:
        """A hot replacement or apply is loading / unloading nodes right now."""
        hs = self.hotswap
        return hs is not None and hs.hotswap.busy

    def serve_hotswap(self) -> bool:
        """Serve replace_node / apply_graph (called once the graph is active). A graph that
        cannot be served (no graph file, file changed since) runs on without them."""
        try:
            from .replace import HotSwapServer

            def service(cid: str, what: str) -> str:
                prefix = self._container_prefix.get(cid) or f"/{self.plan.graph}/_containers/{cid}"
                return f"{prefix}/{what}"

            self.hotswap = HotSwapServer(self.plan, on_change=self._on_hotswap, log=self.log,
                                         container_service=service)
        except Exception as exc:  # noqa: BLE001 - the graph keeps running without the services
            self._event(f"hot replacement is not available: {exc}")
            return False
        self._event(f"serving hot replacement: /{self.plan.graph}/_manager/replace_node, apply_graph")
        return True

    def _on_hotswap(self, ev: Dict[str, Any]) -> None:
        """What a replacement or apply changed (HotSwapServer's executor thread): the current
        plan, the node serving each changed id (``<id>__r<N>``), added and removed nodes."""
        plan: Plan = ev.get("plan") or self.plan
        serving = ev.get("serving") or {}
        removed = list(ev.get("removed") or [])
        added = list(ev.get("added") or [])
        now = time.monotonic()
        with self.lock:
            self.plan = plan
            self._swap_gen += 1
            for nid in removed:
                self.tracks.pop(nid, None)
            for n in plan.nodes:
                t = self.tracks.get(n.id)
                if t is None:
                    t = self.tracks[n.id] = NodeTrack(n)
                    t.loaded = True
                    t.state = "active" if n.id in serving else "unknown"
                    t.active_since = now
                else:
                    t.node = n
            for nid in [i for i in self.tracks if plan.node(i) is None]:
                self.tracks.pop(nid)   # not in the plan any more (a half-applied graph)
            for nid, ref in serving.items():
                t = self.tracks.get(nid)
                if t is None:
                    continue
                name = getattr(ref, "node_name", "") or nid
                if name != t.ros_name:
                    t.rebase()     # the new incarnation's counters start from zero
                    t.ros_name = name
                t.loaded = True
                t.state = "active"
                t.active_since = now
            for c in plan.containers:
                self.container_state.setdefault(c.id, "up" if c.id in self._container_prefix else "waiting")
                self.container_pid.setdefault(c.id, 0)
                self.restarts.setdefault(c.id, 0)
        for nid in added:
            self._event(f"hot swap: added {nid}")
        for nid in removed:
            self._event(f"hot swap: removed {nid}")
        for nid, ref in serving.items():
            if nid not in added:
                self._event(f"hot swap: {nid} served by {getattr(ref, 'node_name', nid)} "
                            f"({getattr(ref, 'plugin', '')})")
        self._write_status()

    def _hold_swaps(self, gen: int, why: str) -> bool:
        """Keep hot replacement out while the watch re-loads nodes; False when one is running or
        one changed the graph since ``gen`` (the watch looks again next round)."""
        hs = self.hotswap
        if hs is None:
            return True
        if not hs.hotswap.hold(why):
            return False
        if gen != self._swap_gen:
            hs.hotswap.release()
            return False
        return True

    def _release_swaps(self) -> None:
        if self.hotswap is not None:
            self.hotswap.hotswap.release()

    def close_hotswap(self, wait_s: float = 10.0) -> None:
        """Stop serving (first thing on shutdown); a replacement under way may finish first."""
        hs, self.hotswap = self.hotswap, None
        if hs is None:
            return
        deadline = time.monotonic() + wait_s
        while hs.hotswap.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            hs.close()
        except Exception as exc:  # noqa: BLE001 - best effort at exit
            self.log(f"manager: closing the hot-swap server: {exc}")

    # ---- watch ----------------------------------------------------------------------------
    def watch_once(self) -> None:
        """One round of the watch: containers that came back empty, nodes in error.
        Skipped while a hot replacement loads and unloads nodes. ``tracks`` is read under the
        lock, and a node a hot swap removed meanwhile is skipped (the swap pops it on its own
        thread)."""
        if self.swap_busy:
            return
        gen = self._swap_gen
        for c in list(self.plan.containers):
            if self.stop_requested.is_set() or self.swap_busy or gen != self._swap_gen:
                return
            asked = time.monotonic()
            listed = self._list(c.id, timeout=LIST_TIMEOUT_S)
            if gen != self._swap_gen or self.swap_busy:
                return   # a hot replacement changed nodes meanwhile: this listing may be stale
            with self.lock:
                mine = {nid: self.tracks[nid] for nid in c.nodes if nid in self.tracks}
            if listed is None:
                if any(t.last_rx > asked for t in mine.values()):
                    # its nodes' heartbeats (sent from the same executor) arrived meanwhile: it runs,
                    # it was only slow (e.g. a call sent while it was frozen, answered late)
                    self._misses.pop(c.id, None)
                    continue
                misses = self._misses.setdefault(c.id, [])
                misses.append(asked)
                if not self._unresponsive(misses, time.monotonic()):
                    continue    # one slow answer is not a fault: ask again next round
                if self.container_state.get(c.id) == "up":
                    self._event(f"container {c.id!r} stopped answering ({len(misses)} list_nodes calls "
                                f"in {time.monotonic() - misses[0]:.1f} s)")
                with self.lock:
                    self.container_state[c.id] = "down"
                    for t in mine.values():
                        t.state = "unknown"
                continue
            self._misses.pop(c.id, None)
            missing = [nid for nid in mine if nid not in listed]
            was_down = self.container_state.get(c.id) == "down"
            with self.lock:
                self.container_state[c.id] = "up"
            if missing:
                if not self._hold_swaps(gen, f"re-loading {', '.join(missing)}"):
                    return
                try:
                    with self.lock:
                        missing = [nid for nid in missing if nid in self.tracks]
                        self.restarts[c.id] = self.restarts.get(c.id, 0) + 1
                        for nid in missing:
                            self.tracks[nid].loaded = False
                            self.tracks[nid].state = "unknown"
                    if missing:
                        self._event(f"container {c.id!r} came back without {', '.join(missing)}; re-loading")
                        self._recover(missing)
                finally:
                    self._release_swaps()
            elif was_down:
                self._event(f"container {c.id!r} answers again")
            # States marked unknown while it did not answer: take them from its list again.
            for nid, t in mine.items():
                if nid in listed and t.state == "unknown" and t.loaded:
                    label = (listed.get(nid) or "").lower() or (self.get_state(t.node) or "unknown")
                    with self.lock:
                        t.state = label
        # A node that reports the error state is reloaded within its container's limit.
        with self.lock:
            failing = [t for t in self.tracks.values() if t.state == "error"]
        for t in failing:
            if self.container_state.get(t.node.container) == "up":
                c = self.plan.container(t.node.container)
                if c is None or c.restart.policy == "never" or t.failures >= c.restart.limit:
                    continue
                if not self._hold_swaps(gen, f"re-loading {t.node.id}"):
                    return
                try:
                    if t.node.id not in self.tracks:
                        continue          # removed by a hot swap meanwhile
                    self._event(f"node {t.node.id} is in error; re-loading it")
                    t.failures += 1
                    self._unload(t.node)
                    self._recover([t.node.id])
                finally:
                    self._release_swaps()

    @staticmethod
    def _unresponsive(misses: List[float], now: float) -> bool:
        """Unanswered list_nodes calls in a row (their start times) that make a container ``down``."""
        return len(misses) >= UNRESPONSIVE_MISSES and now - misses[0] >= UNRESPONSIVE_S

    def _recover(self, ids: List[str]) -> None:
        prev = self.state
        self._set_state(MState.RECOVERING)
        ordered = [i for i in self.plan.start_order if i in ids]
        ok = self._bring_up(ordered)
        if self.hotswap is not None:
            # re-loaded under its graph id, from the current plan: the next replacement starts there
            for nid in ordered:
                if self.tracks[nid].loaded:
                    self.hotswap.hotswap.reloaded(nid, self.plan.node(nid))
        if self.stop_requested.is_set():
            return
        self._event(("re-loaded and activated " if ok else "could not bring back ") + ", ".join(ordered))
        self._set_state(MState.ACTIVE if prev in (MState.ACTIVE, MState.RECOVERING) else prev)

    # ---- tear-down ------------------------------------------------------------------------
    def _drain(self, timeout: float = DRAIN_TIMEOUT_S) -> None:
        """Wait until no non-source node's input counter moves between two heartbeats."""
        others = [i for i in self.plan.stop_order if i not in self.plan.sources]
        if not others:
            return
        deadline = time.monotonic() + timeout

        def counts() -> Dict[str, Any]:
            with self.lock:
                return {i: (self.tracks[i].total("packets_in"), self.tracks[i].last_rx) for i in others}

        prev = counts()
        while time.monotonic() < deadline:
            time.sleep(0.25)
            cur = counts()
            fresh = all(cur[i][1] > prev[i][1] or self.tracks[i].age(time.monotonic()) > HEARTBEAT_TIMEOUT_S
                        for i in others)
            if not fresh:
                continue
            if all(cur[i][0] == prev[i][0] for i in others):
                return
            prev = cur

    def _answers(self, cid: str) -> bool:
        """Whether a container is alive enough for an ordered tear-down.

        A fresh heartbeat from any of its nodes is enough; otherwise ``list_nodes`` gets a
        few tries. One slow answer on a loaded machine (e.g. a container catching up after a
        freeze) must not cost its nodes their ordered shutdown.
        """
        now = time.monotonic()
        with self.lock:
            mine = [t for t in self.tracks.values() if t.node.container == cid]
        if any(t.age(now) < HEARTBEAT_TIMEOUT_S for t in mine):
            return True
        return any(self._list(cid, timeout=1.5) is not None for _ in range(3))

    def stop(self) -> None:
        """Ordered tear-down: sources first, drain, the rest in data-flow order, then shut down."""
        from lifecycle_msgs.msg import Transition
        failed = self.state == MState.ERROR
        self._set_state(MState.STOPPING, self.message)
        # Only containers that still answer get an ordered tear-down (the runner may be
        # going down with them); a dead one would cost a timeout per transition.
        reachable = set()
        for c in self.plan.containers:
            if self.container_state.get(c.id) == "up" and self._answers(c.id):
                reachable.add(c.id)
            else:
                with self.lock:
                    self.container_state[c.id] = "down"
        order = [self.plan.node(i) for i in self.plan.stop_order]
        order = [n for n in order if n.container in reachable and self.tracks[n.id].loaded]
        sources = [n for n in order if n.is_source]

        def up(n: PlanNode) -> bool:
            return self.container_state.get(n.container) == "up"

        for n in sources:
            if up(n) and self.tracks[n.id].state == "active":
                self._transition(n, Transition.TRANSITION_DEACTIVATE, "inactive", timeout=STOP_CALL_S)
        if any(up(n) for n in order):
            self._drain()
        for n in order:
            if up(n) and self.tracks[n.id].state == "active":
                self._transition(n, Transition.TRANSITION_DEACTIVATE, "inactive", timeout=STOP_CALL_S)
        time.sleep(0.3)  # let the final heartbeats (with the final counters) arrive
        for n in order:
            if up(n) and self.tracks[n.id].state == "inactive":
                self._transition(n, Transition.TRANSITION_CLEANUP, "unconfigured", timeout=STOP_CALL_S)
            if up(n) and self.tracks[n.id].state == "unconfigured":
                self._transition(n, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN, "finalized", timeout=STOP_CALL_S)
        self._set_state(MState.ERROR if failed else MState.FINISHED)
        self._event("graph shut down")
        self._write_status()

    def close(self) -> None:
        self._closing = True
        self._spin.join(timeout=2.0)
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass
        if self._rclpy.ok():
            self._rclpy.shutdown()


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


def _prefixed(prefix: str, reason: str) -> str:
    return reason if reason.startswith(prefix) else f"{prefix}: {reason}"


def _no_signal_handlers() -> Any:
    # The manager installs its own SIGINT/SIGTERM handlers (ordered tear-down).
    from rclpy.signals import SignalHandlerOptions
    return SignalHandlerOptions.NO


def run(plan: Plan, status_file: Optional[str] = None, loaded_by_launch: bool = False,
        watch_period_s: float = 0.5, metrics_port: Optional[int] = None) -> int:
    """Bring the plan up, watch it until SIGINT/SIGTERM, tear it down. Exit code: 0, 1 when the
    manager itself failed (an exception, reported once), 2 when the bring-up failed.

    The ordered tear-down (``stop``) and ``close`` run in ``finally`` blocks: whatever goes
    wrong in the bring-up or the watch, the nodes are still shut down in order."""
    mgr = LifecycleManager(plan, status_file=status_file, loaded_by_launch=loaded_by_launch,
                           log=lambda m: print(m, file=sys.stderr, flush=True))

    def on_signal(signum: int, _frame: Any) -> None:
        mgr.stop_requested.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    port = plan.runtime.get("metrics_port", 0) if metrics_port is None else metrics_port
    if port:
        mgr.serve_metrics(int(port), str(plan.runtime.get("metrics_host") or "127.0.0.1"))
    if plan.runtime.get("ui_port"):
        mgr.serve_live(int(plan.runtime["ui_port"]), str(plan.runtime.get("ui_host") or "127.0.0.1"))
    try:
        try:
            ok = mgr.start()
            if not ok and not mgr.stop_requested.is_set():
                code = 2
            if ok and not mgr.stop_requested.is_set():
                mgr.serve_hotswap()
            while ok and not mgr.stop_requested.is_set():
                mgr.watch_once()
                mgr.stop_requested.wait(watch_period_s)
        except Exception as exc:  # noqa: BLE001 - a manager bug: report it once, still tear down
            code = 1
            why = f"the lifecycle manager failed: {type(exc).__name__}: {exc}"
            mgr._event(why)
            mgr._set_state(MState.ERROR, why)
        finally:
            try:
                mgr.close_hotswap()
                mgr.stop()
            finally:
                mgr.close_hotswap(wait_s=0.0)
                mgr.close_metrics()
                mgr.close()
        if mgr.fatal:   # a node's overflow: error ended the run
            code = 1
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return code


def main(argv: Optional[List[str]] = None) -> int:
    from schnitzel_core.lifetime import die_with_parent
    die_with_parent()   # launch or the runner gone (SIGTERM/SIGKILL): SIGTERM -> ordered tear-down, exit
    from rclpy.utilities import remove_ros_args
    args_in = remove_ros_args(list(sys.argv if argv is None else ["schnitzel_manager", *argv]))[1:]
    ap = argparse.ArgumentParser(prog="schnitzel_manager", description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", required=True, help="plan file written by `schnitzel compile`")
    ap.add_argument("--status-file", help="write the graph status here as JSON (for the runner)")
    ap.add_argument("--loaded-by-launch", action="store_true",
                    help="ros2 launch loads the nodes; only wait for them and manage their lifecycle")
    ap.add_argument("--metrics-port", type=int, default=None,
                    help="serve Prometheus metrics on this port (overrides the graph's runtime: metrics_port; 0: off)")
    a = ap.parse_args(args_in)
    try:
        plan = Plan.read(a.plan)
    except PlanError as exc:
        print(f"schnitzel_manager: {exc}", file=sys.stderr)
        return 1
    return run(plan, status_file=a.status_file, loaded_by_launch=a.loaded_by_launch, metrics_port=a.metrics_port)


if __name__ == "__main__":
    sys.exit(main())
