"""The lifecycle manager: ``schnitzel_manager --plan PLAN.json``.

Modelled on nav2's lifecycle manager, with an explicit state machine: the graph's states and
the only moves between them are the table ``lifecycle_table.GRAPH_TRANSITIONS`` (a move outside
it raises ``IllegalTransition``), and the ROS lifecycle calls it makes on each node are
``lifecycle_table.NODE_TRANSITIONS``::

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

Where the pieces are: ``tracking`` (per-node counters over restarts, the health rules; no rclpy),
``manager_status`` (heartbeat intake, snapshot, GraphStatus, /diagnostics, the status file) and
``manager_views`` (metrics endpoint, live page, the controllers' audit) are mixed into
``LifecycleManager``; the names other code imports (NodeTrack, MState, graph_health, ...) are
re-exported here. What stays here (~800 lines) is the state machine itself: bring-up, the watch
and recovery, hot-swap bookkeeping and the ordered tear-down share the manager's lock, its service
calls and its state transitions, and reading them in one file is what keeps their ordering visible.
"""
from __future__ import annotations

import argparse
import collections
import signal
import sys
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from .manager_status import _REPLACED, ManagerStatus, graph_diagnostics  # noqa: F401 - re-exported
from .lifecycle_table import NODE_TRANSITIONS, graph_transition
from .manager_views import ManagerViews
from .metrics import Rates
from .plan import Plan, PlanError, PlanNode
# Per-node bookkeeping and the health rules (pure Python), re-exported: other code imports them
# from here.
from .tracking import (CUMULATIVE_PREFIXES, HEARTBEAT_TIMEOUT_S, MState, NodeTrack,  # noqa: F401
                       graph_health, health_problems)

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


# ---- the ROS node ---------------------------------------------------------------------------

def _service_prefix_candidates(plan: Plan, cid: str) -> List[str]:
    c = plan.container(cid)
    out = [c.full_name] if c else []
    out.append(f"/{plan.graph}/{cid}")
    out.append(f"/{cid}")
    return out


class LifecycleManager(ManagerStatus, ManagerViews):
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

    def _events_list(self) -> List[Dict[str, Any]]:
        """The kept events as a list (caller holds the lock); rebuilt only when one was added,
        so the status written several times a second does not copy the log each time."""
        if self._events_view[0] != self.events_total:
            self._events_view = (self.events_total, list(self.events))
        return self._events_view[1]

    def _set_state(self, state: MState, message: str = "") -> None:
        with self.lock:
            taken = graph_transition(self.state, state)
            if message and taken == state:    # (a sticky ERROR keeps its own message)
                self.message = message
            self.state = taken
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
    def _transition(self, n: PlanNode, verb: str, timeout: float = CALL_TIMEOUT_S) -> bool:
        """Ask node ``n`` for the lifecycle transition ``verb`` (a key of NODE_TRANSITIONS)."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState
        spec = NODE_TRANSITIONS[verb]
        req = ChangeState.Request()
        req.transition = Transition(id=spec.id)
        res = self._call(ChangeState, f"{self.tracks[n.id].full_name}/change_state", req, timeout=timeout,
                         wait=min(5.0, timeout))
        if res is None and self.state == MState.STOPPING:
            # no answer while stopping: its container is going down too; skip its other nodes
            with self.lock:
                self.container_state[n.container] = "down"
        if res is None or not res.success:
            return False
        with self.lock:
            self.tracks[n.id].state = spec.goal
            if spec.goal == "active":
                self.tracks[n.id].active_since = time.monotonic()
        self._event(f"{verb} {n.id}")
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
            if not self._transition(n, "configure"):
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
            if not self._transition(n, "activate"):
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
        if prev not in (MState.ACTIVE, MState.RECOVERING):
            return      # failed or stopping meanwhile: nothing to bring back
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
        if self.state == MState.RECOVERING:     # (an overflow may have failed the run meanwhile)
            self._set_state(MState.ACTIVE)

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

        def step(n: PlanNode, verb: str) -> None:
            """``verb`` on ``n`` when its container answers and the node is where the verb starts."""
            if self.container_state.get(n.container) == "up" and self.tracks[n.id].state == NODE_TRANSITIONS[verb].start:
                self._transition(n, verb, timeout=STOP_CALL_S)

        for n in sources:
            step(n, "deactivate")
        if any(self.container_state.get(n.container) == "up" for n in order):
            self._drain()
        for n in order:
            step(n, "deactivate")
        time.sleep(0.3)  # let the final heartbeats (with the final counters) arrive
        for n in order:
            step(n, "cleanup")
            step(n, "shutdown")
        # an error met while stopping (a node's overflow) keeps the run failed
        self._set_state(MState.ERROR if failed or self.state == MState.ERROR else MState.FINISHED)
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
