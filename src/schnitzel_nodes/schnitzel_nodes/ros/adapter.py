"""NodeAdapter: one rclpy lifecycle node hosting one plugin's NodeLogic.

Lifecycle (standard lifecycle_msgs services ``~/change_state``, ``~/get_state``…):

- configure: read the ROS parameters, check them against the plugin's schema,
  build the NodeContext, create the logic and call ``logic.configure()``;
  create the output publishers (lifecycle publishers, only for ports with a
  DDS edge) and the input subscriptions (DDS or the in-process bus).
- activate: enable publishers; ``logic.activate()``; start the timer
  (``logic.tick_period_s``), the logic's thread (``threaded = True`` ->
  ``run(stop)``) and, for compute nodes, the worker thread.
- deactivate: stop them, then process the inputs already accepted (the mailbox, at most
  DRAIN_TIMEOUT_S) before ``logic.deactivate()``; inputs arriving while inactive are dropped
  and counted.
- cleanup: ``logic.cleanup()``, destroy publishers and subscriptions.
- shutdown: from any state, does whatever of the above is still needed.

Failure isolation: every call into the logic is guarded. An exception is logged
with the node id and counted (``errors``, ``last_error``); after
``schnitzel.max_consecutive_errors`` consecutive failures the node takes itself
down: deactivate -> ErrorProcessing -> ``on_error`` releases the logic ->
unconfigured, and its status reads ``error`` until it is configured again.

Threads: logic callbacks of one node never run concurrently. Input packets,
ticks and acks go through a per-node mailbox (schnitzel_nodes.mailbox, bounded
per input port with that port's overflow policy) drained by whichever thread
finds it idle (no blocking between nodes, so inproc chains cannot deadlock);
live parameter changes are checked and applied under the same lock before the
parameter request is answered. Compute nodes instead keep the newest packet per
input port (latest-only, replacements counted as drops) and run on their own worker.
"""
from __future__ import annotations

import collections
import logging
import os
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue as DiagKeyValue
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult, IntegerRange
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter

from schnitzel_core import blackboard as bb
from schnitzel_core.codecs import ros as codec
from schnitzel_core.packet import Packet, now_ns
from schnitzel_core.plugin import Ack, Category, Direction, NodeContext, NodeLogic, PluginSpec
from schnitzel_msgs.msg import DeliveryAck, KeyValue, NodeStatus

from . import byref
from ..mailbox import DEFAULT_MAX_QUEUED, InputPolicy, Mailbox
from . import params as P
from .inproc import InprocBus
from .qos import QosError, to_profile
from .wire import IMAGE, Wire, wire_for

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE
ERROR = TransitionCallbackReturn.ERROR

#: Topic names a lifecycle node already uses under ``~/``; a port may not take them.
RESERVED_PORTS = ("transition_event",)
MAX_ERRORS_PARAM = P.RESERVED_PREFIX + "max_consecutive_errors"
DEFAULT_MAX_CONSECUTIVE_ERRORS = 10
MAILBOX_LIMIT = DEFAULT_MAX_QUEUED   # inputs queued per input port unless ports_json "inputs" says otherwise
#: On deactivate, how long the node may go on processing the inputs it had already accepted
#: (its mailbox) before the rest is dropped and counted; below the lifecycle manager's 3 s per
#: transition while stopping (docs/runtime.md, "Draining").
DRAIN_TIMEOUT_S = 2.5
LATENCY_WINDOW = 2048  # samples kept for p50/p95/p99
#: The heartbeat's counter ``latency_p95_recent_ms``: p95 over the packets of the last this many
#: seconds, what an autonomic controller judges a change by (docs/autonomic.md; the 2048-packet
#: window reacts in minutes at low rates)
RECENT_LATENCY_S = 2.0
#: QoS of /<graph>/_delivery/ack (publisher and subscription alike): reliable with a deep
#: history, so a burst of acknowledgements (a sink draining a batch, retry reports for a
#: whole buffer) is never overwritten before the queue has read it (docs/delivery.md)
ACK_QOS = {"reliability": "reliable", "durability": "volatile", "history": "keep_last", "depth": 10000}
_OUTCOME = {"delivered": DeliveryAck.OUTCOME_DELIVERED, "retry": DeliveryAck.OUTCOME_RETRY,
            "rejected": DeliveryAck.OUTCOME_REJECTED}
_OUTCOME_NAME = {v: k for k, v in _OUTCOME.items()}


class LoadError(ValueError):
    """A node that cannot be created as requested (bad ports_json, params, plugin)."""


# ---------------------------------------------------------------------------
# ports
class OutPort:
    __slots__ = ("name", "topic", "qos", "inproc", "dds", "pub", "wire", "lazy")

    def __init__(self, name: str, topic: str, qos: Any, transports: List[str]) -> None:
        self.name, self.topic, self.qos = name, topic, qos
        self.inproc = "inproc" in transports
        self.dds = "dds" in transports or "shm" in transports
        self.pub: Any = None
        self.wire: Optional[Wire] = None   # set for DDS outputs
        #: published on DDS only while someone subscribes (an Image output with no DDS edge)
        self.lazy = False


class InEdge:
    __slots__ = ("port", "topic", "qos", "transport", "handle", "wire")

    def __init__(self, port: str, topic: str, qos: Any, transport: str) -> None:
        self.port, self.topic, self.qos, self.transport = port, topic, qos, transport
        self.handle: Any = None  # subscription or bus token
        self.wire: Optional[Wire] = None   # set for DDS inputs


def parse_ports(spec: PluginSpec, ports: Optional[Mapping[str, Any]], base: str
                ) -> Tuple[Dict[str, OutPort], List[InEdge]]:
    """ports_json (docs/contracts.md) -> output ports and input edges; raises LoadError.

    Without ports_json every output publishes over DDS on ``<base>/<port>`` with the
    port's default QoS preset, and every input subscribes to ``<base>/<port>`` unless an
    output has the same name (remap it with LoadNode.remappings).
    """
    for port in spec.ports:
        if port.name in RESERVED_PORTS:
            raise LoadError(f"port name {port.name!r} clashes with a lifecycle node topic; rename the port")
    outs: Dict[str, OutPort] = {}
    ins: List[InEdge] = []
    if ports is None:
        for port in spec.outputs:
            outs[port.name] = OutPort(port.name, f"{base}/{port.name}", port.qos, ["dds"])
        for port in spec.inputs:
            if port.name not in outs:
                ins.append(InEdge(port.name, f"{base}/{port.name}", port.qos, "dds"))
        return outs, _check_ports(spec, outs, ins)
    if not isinstance(ports, Mapping):
        raise LoadError("ports_json must be a JSON object with keys 'in' and 'out'")
    unknown = set(ports) - {"in", "out", "inputs", "payload_ref"}
    if unknown:
        raise LoadError(f"ports_json has unknown keys {sorted(unknown)}; expected 'in', 'out', 'inputs' "
                        "and 'payload_ref'")
    for name, decl in (ports.get("out") or {}).items():
        port = spec.port(name)
        if port is None or port.direction != Direction.OUT:
            raise LoadError(f"ports_json names output {name!r}, but plugin {spec.name!r} has outputs "
                            f"{[p.name for p in spec.outputs]}")
        if not isinstance(decl, Mapping) or not isinstance(decl.get("topic"), str):
            raise LoadError(f"ports_json out.{name} must be an object with a 'topic' string")
        transports = decl.get("transports", ["dds"])
        if isinstance(transports, str):
            transports = [transports]
        bad = [t for t in transports if t not in ("inproc", "dds", "shm")]
        if bad:
            raise LoadError(f"ports_json out.{name}: unknown transport(s) {bad}; use inproc or dds")
        outs[name] = OutPort(name, decl["topic"], decl.get("qos", port.qos), list(transports))
    for name, edges in (ports.get("in") or {}).items():
        port = spec.port(name)
        if port is None or port.direction != Direction.IN:
            raise LoadError(f"ports_json names input {name!r}, but plugin {spec.name!r} has inputs "
                            f"{[p.name for p in spec.inputs]}")
        if isinstance(edges, Mapping):
            edges = [edges]
        for e in edges or []:
            if not isinstance(e, Mapping) or not isinstance(e.get("topic"), str):
                raise LoadError(f"ports_json in.{name} entries must be objects with a 'topic' string")
            transport = e.get("transport", "dds")
            if transport not in ("inproc", "dds", "shm"):
                raise LoadError(f"ports_json in.{name}: unknown transport {transport!r}; use inproc or dds")
            ins.append(InEdge(name, e["topic"], e.get("qos", port.qos), "inproc" if transport == "inproc" else "dds"))
    # Outputs with no edge still exist (emit is accepted and goes nowhere).
    for port in spec.outputs:
        outs.setdefault(port.name, OutPort(port.name, f"{base}/{port.name}", port.qos, []))
    # Image outputs are always visible to ROS tools (rviz, rqt_image_view) on their topic, even
    # without a DDS edge: best effort, keep last 1, converted only while someone subscribes.
    for port in spec.outputs:
        o = outs[port.name]
        if port.msg_type == IMAGE and not o.dds:
            o.dds, o.lazy, o.qos = True, True, "frames"   # (inproc edges, if any, keep their own path)
    return outs, _check_ports(spec, outs, ins)


def parse_input_policies(spec: PluginSpec, ports: Optional[Mapping[str, Any]]) -> Dict[str, InputPolicy]:
    """ports_json ``inputs`` -> {port: InputPolicy} (overflow policy per input port); raises LoadError."""
    decl = (ports or {}).get("inputs") if isinstance(ports, Mapping) else None
    if not decl:
        return {}
    if not isinstance(decl, Mapping):
        raise LoadError("ports_json 'inputs' must be an object {port: {overflow, max_queued}}")
    out: Dict[str, InputPolicy] = {}
    for name, d in decl.items():
        port = spec.port(name)
        if port is None or port.direction != Direction.IN:
            raise LoadError(f"ports_json inputs names {name!r}, but plugin {spec.name!r} has inputs "
                            f"{[p.name for p in spec.inputs]}")
        if spec.category == Category.COMPUTE:
            raise LoadError(f"ports_json inputs.{name}: compute nodes keep only the newest packet per input; "
                            "an overflow policy does not apply")
        try:
            out[name] = InputPolicy.parse(name, d)
        except ValueError as exc:
            raise LoadError(f"ports_json inputs: {exc}") from None
    return out


def _check_ports(spec: PluginSpec, outs: Dict[str, OutPort], ins: List[InEdge]) -> List[InEdge]:
    """QoS resolvable and a converter for every port that travels over DDS (raises LoadError)."""
    for o in outs.values():
        if o.dds:
            try:
                o.wire = wire_for(spec.port(o.name).msg_type, o.topic)
            except ValueError as exc:
                raise LoadError(f"output {o.name!r}: {exc}") from None
    for e in ins:
        if e.transport != "inproc":
            try:
                e.wire = wire_for(spec.port(e.port).msg_type, e.topic)
            except ValueError as exc:
                raise LoadError(f"input {e.port!r}: {exc}") from None
    for o in outs.values():
        try:
            to_profile(o.qos)
        except QosError as exc:
            raise LoadError(f"ports_json out.{o.name}: {exc}") from None
    for e in ins:
        try:
            to_profile(e.qos)
        except QosError as exc:
            raise LoadError(f"ports_json in.{e.port}: {exc}") from None
    return ins


# ---------------------------------------------------------------------------
class Stats:
    """Counters and the latency window of one node (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.packets_in = 0
        self.packets_out = 0
        self.drops = 0
        self.port_drops: Dict[str, int] = {}   # inputs dropped per input port (dropped_total.<port>)
        self.overflow_errors = 0               # inputs refused by a port with overflow: error
        self.errors = 0
        self.last_error = ""
        self._lat: List[float] = [0.0] * LATENCY_WINDOW
        self._lat_n = 0
        self._recent: "collections.deque[Tuple[float, float]]" = collections.deque(maxlen=LATENCY_WINDOW)

    def received(self, stamp_ns: int) -> None:
        with self.lock:
            self.packets_in += 1
            if stamp_ns > 0:
                lat = (now_ns() - stamp_ns) / 1e6
                self._lat[self._lat_n % LATENCY_WINDOW] = lat
                self._lat_n += 1
                self._recent.append((time.monotonic(), lat))

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
            self._lat_n = 0
            self._recent.clear()

    def dropped_input(self, port: str, n: int = 1) -> None:
        with self.lock:
            self.drops += n
            self.port_drops[port] = self.port_drops.get(port, 0) + n


class AdapterContext(NodeContext):
    """The NodeContext the adapter gives the logic: emit/ack go to ROS and the bus."""


class _RosLogHandler(logging.Handler):
    """Python logging records of a node's logic -> the node's ROS logger (and /rosout)."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__()
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            if record.levelno >= logging.ERROR:
                self.ros_logger.error(msg)
            elif record.levelno >= logging.WARNING:
                self.ros_logger.warning(msg)
            elif record.levelno >= logging.INFO:
                self.ros_logger.info(msg)
            else:
                self.ros_logger.debug(msg)
        except Exception:  # noqa: BLE001 - logging must never break the node
            self.handleError(record)


def _logic_logger(graph: str, node_id: str, ros_logger: Any) -> logging.Logger:
    log = logging.getLogger(f"schnitzel.{graph}.{node_id}")
    log.handlers = [h for h in log.handlers if not isinstance(h, _RosLogHandler)]
    log.addHandler(_RosLogHandler(ros_logger))
    log.propagate = False
    if log.level == logging.NOTSET:
        log.setLevel(logging.INFO)
    return log


class NodeAdapter(LifecycleNode):
    """A lifecycle node running one plugin (see the module docstring)."""

    def __init__(self, logic_cls: type, node_name: str, namespace: str = "/",
                 params: Optional[Mapping[str, Any]] = None, *, graph: str = "graph",
                 container: str = "", ports: Optional[Mapping[str, Any]] = None,
                 bus: Optional[InprocBus] = None, remappings: Optional[Mapping[str, str]] = None,
                 plugin_name: str = "", unique_id: int = 0,
                 max_consecutive_errors: int = DEFAULT_MAX_CONSECUTIVE_ERRORS,
                 context: Any = None, node_id: str = "", blackboard: Any = None,
                 handover: bool = False) -> None:
        spec: PluginSpec = logic_cls.spec
        given = dict(params or {})
        # Check before creating anything, so a bad request fails the load with the reason.
        try:
            checked = P.check_params(spec, given)
        except P.ParamError as exc:
            raise LoadError(str(exc)) from None
        if MAX_ERRORS_PARAM in given:
            max_consecutive_errors = given[MAX_ERRORS_PARAM]
        base = (namespace.rstrip("/") + "/" + node_name) if namespace not in ("", "/") else "/" + node_name
        self._outs, self._ins = parse_ports(spec, ports, base)
        try:   # large payloads by reference (ros/byref.py): DDS outputs externalise, inputs resolve
            self._refs = byref.blob_store(graph, ports)
        except ValueError as exc:
            raise LoadError(f"ports_json: {exc}") from None
        if self._refs is not None:
            for o in self._outs.values():
                if o.wire is not None:
                    o.wire = byref.externalising(o.wire, self._refs, self._ref_fallback)
        input_policies = parse_input_policies(spec, ports)
        cli_args = None
        if remappings:
            cli_args = ["--ros-args"]
            for src, dst in remappings.items():
                cli_args += ["-r", f"{src}:={dst}"]
        super().__init__(node_name, namespace=namespace, cli_args=cli_args, use_global_arguments=False,
                         context=context)
        self.logic_cls = logic_cls
        self.spec = spec
        self.plugin_name = plugin_name or spec.name
        # The graph node id; differs from the ROS name while a replacement runs as <id>__r<N>.
        self.node_id = node_id or node_name
        self.blackboard = blackboard if blackboard is not None else bb.MemoryBackend()
        self.watermarks = bb.Watermarks()
        self._handover = handover           # hold inputs between configure and activate
        self._hold: Optional[bb.InputHold] = None
        self._hold_lock = threading.Lock()
        self.graph = graph
        self.container = container
        self.unique_id = unique_id
        self.bus = bus or InprocBus()
        self.stats = Stats()
        self.logic: Optional[NodeLogic] = None
        self.ctx: Optional[AdapterContext] = None
        self.compute = spec.category == Category.COMPUTE
        self._active = False
        self._fault = False         # set when the node must go to the error state
        self._in_error = False      # status "error" until the next configure
        self._consecutive = 0
        self._tb_logged = 0
        self._run_lock = threading.RLock()     # logic callbacks never overlap
        self._mailbox = Mailbox(self._call, input_policies, on_drop=self.stats.dropped_input)
        self._flushing = False      # deactivating: processing what was accepted, outputs still open
        self._timer: Any = None
        self._timer_period: Optional[float] = None
        self._timer_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: List[threading.Thread] = []
        self._latest: Dict[str, Packet] = {}
        self._latest_cv = threading.Condition()
        self._ack_pub: Any = None
        self._ack_sub: Any = None
        self._declaring = True
        try:
            self._declare_params(checked, int(max_consecutive_errors))
            self.add_on_set_parameters_callback(self._on_set_params)
            # Executor-thread hook: a fault seen on any thread is acted on here.
            self._fault_gc = self.create_guard_condition(self._on_fault_signal)
        except Exception as exc:  # noqa: BLE001 - never leave a half-made node behind
            self.destroy_node()
            raise LoadError(f"node {node_name!r}: cannot declare its parameters: {exc}") from None
        finally:
            self._declaring = False
        #: Set by the container: publish this node's status soon (after the current callback,
        #: so a watcher sees the reason right after a refused transition's reply).
        self.status_hook: Optional[Callable[[], None]] = None

    # ------------------------------------------------------------------ params
    def _declare_params(self, values: Mapping[str, Any], max_errors: int) -> None:
        for p in self.spec.params:
            if p.name in values:
                self.declare_parameter(p.name, P.to_ros(p, values[p.name]), P.descriptor(p))
        d = ParameterDescriptor(
            name=MAX_ERRORS_PARAM, type=ParameterType.PARAMETER_INTEGER,
            description="consecutive callback failures after which the node goes to the error state",
            integer_range=[IntegerRange(from_value=1, to_value=1_000_000, step=0)])
        self.declare_parameter(MAX_ERRORS_PARAM, int(max_errors), d)

    def current_params(self) -> Dict[str, Any]:
        """The node's params as the logic sees them (ROS values decoded and checked)."""
        raw: Dict[str, Any] = {}
        for p in self.spec.params:
            if self.has_parameter(p.name):
                value = self.get_parameter(p.name).value
                if value is not None:
                    raw[p.name] = P.from_ros(p, value)
        return P.check_params(self.spec, raw)

    @property
    def max_consecutive_errors(self) -> int:
        return int(self.get_parameter(MAX_ERRORS_PARAM).value)

    def _on_set_params(self, parameters: List[Parameter]) -> SetParametersResult:
        """Answer a parameter request only once its outcome is known (docs/runtime.md, "Parameters").

        A configured node (inactive or active) takes only ``live`` parameters, and takes them
        at once: the plugin's ``check_params`` on the merged values, then ``on_params``, both
        serialised with its other callbacks, before the answer. Whatever either raises refuses
        the whole request with the reason, so the node, the ROS parameter store (rclpy stores
        nothing on a refusal) and whoever asked (``schnitzel replace``) see no change. An
        unconfigured node takes any parameter; ``configure`` reads it.
        """
        if self._declaring:
            return SetParametersResult(successful=True)
        logic = self.logic
        changed: Dict[str, Any] = {}
        for param in parameters:
            if param.name == MAX_ERRORS_PARAM:
                if not isinstance(param.value, int) or isinstance(param.value, bool) or param.value < 1:
                    return SetParametersResult(successful=False,
                                               reason=f"{MAX_ERRORS_PARAM} must be an integer >= 1")
                continue
            if param.name.startswith(P.RESERVED_PREFIX) or param.name in P.FOREIGN:
                continue
            spec_p = self.spec.param(param.name)
            if spec_p is None:
                return SetParametersResult(successful=False,
                                           reason=f"plugin {self.spec.name!r} has no parameter {param.name!r}")
            try:
                value = P.check_value(spec_p, P.from_ros(spec_p, param.value))
            except P.ParamError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
            if logic is not None and not spec_p.live:
                return SetParametersResult(
                    successful=False,
                    reason=(f"parameter {param.name!r} is not live: it cannot change while node "
                            f"{self.node_id!r} is configured (replace the node, or clean it up first)"))
            changed[param.name] = value
        if logic is None or not changed:
            return SetParametersResult(successful=True)
        try:
            self._apply_live(logic, changed)
        except Exception as exc:  # noqa: BLE001 - the plugin refused: nothing changes
            why = str(exc) or type(exc).__name__
            self.get_logger().warning(f"node {self.node_id!r}: parameter change refused: {why}")
            return SetParametersResult(successful=False, reason=f"node {self.node_id!r} refused the change: {why}")
        return SetParametersResult(successful=True)

    def _apply_live(self, logic: NodeLogic, changed: Dict[str, Any]) -> None:
        """check_params(merged) then on_params(changed), under the run lock; raises on refusal."""
        with self._run_lock:
            merged = dict(logic.params)
            merged.update(changed)
            logic.check_params(merged)
            before = dict(logic.params)
            try:
                logic.on_params(changed)
            except Exception:
                # an on_params that raised half way: put the values back (its own state is its job)
                logic.params.clear()
                logic.params.update(before)
                raise
        self._sync_timer()   # e.g. rate_hz: the new period applies from the next tick

    # --------------------------------------------------------------- lifecycle
    def state_label(self) -> str:
        if self._in_error:
            return "error"
        try:
            return str(self._state_machine.current_state[1])
        except Exception:  # noqa: BLE001 - a destroyed node has no state machine
            return "finalized"

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            params = self.current_params()
        except P.ParamError as exc:
            self._note_error(f"configure refused: {exc}")
            self._status_soon()
            return FAILURE
        self._in_error = False
        self._fault = False
        self._consecutive = 0
        self.stats.last_error = ""
        ctx = AdapterContext(self.node_id, params, graph=self.graph, emit=self._emit,
                             logger=_logic_logger(self.graph, self.node_id, self.get_logger()), clock=None,
                             blackboard=self.blackboard)
        self.watermarks = bb.Watermarks()
        ctx._ack = self._publish_ack
        ctx.ros_node = self
        ctx.payload_refs = self._refs   # a durable queue holds the blobs of the rows it stores
        self.ctx = ctx
        try:
            self.logic = self.logic_cls(ctx)
            with self._run_lock:
                self.logic.configure()
        except Exception as exc:  # noqa: BLE001 - the plugin's failure, reported with the reason
            self._note_error(f"configure failed: {type(exc).__name__}: {exc}", exc)
            self.logic = None
            self.ctx = None
            self._status_soon()
            return FAILURE
        try:
            self._create_io()
        except Exception as exc:  # noqa: BLE001
            self._note_error(f"configure failed creating topics: {exc}", exc)
            self._destroy_io()
            self._release_logic()
            self._status_soon()
            return FAILURE
        if self._handover:
            with self._hold_lock:
                self._hold = bb.InputHold()
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        logic = self.logic
        if logic is None:
            return FAILURE
        ret = super().on_activate(state)  # enables the lifecycle publishers
        record = None
        try:
            with self._run_lock:
                if self._hold is not None:
                    # hot replacement: take over the old node's state before starting
                    record = bb.restore_handover(self.blackboard, self.graph, self.node_id, logic)
                logic.activate()
        except Exception as exc:  # noqa: BLE001
            self._note_error(f"activate failed: {type(exc).__name__}: {exc}", exc)
            super().on_deactivate(state)
            self._drop_hold()
            self._status_soon()
            return FAILURE
        self.stats.reset()
        self._mailbox.reset_counts()
        self._stop = threading.Event()
        self._active = True
        self._release_hold(record)
        self._sync_timer()
        if getattr(logic, "threaded", False):
            self._start_thread(self._run_logic_thread, "run")
        if self.compute and self._ins:
            self._start_thread(self._compute_worker, "worker")
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_activity(drain=not self._fault)
        if self.spec.stateful and self.logic is not None and not self._fault:
            self._save_handover()
        ret = super().on_deactivate(state)
        if self._fault:
            return ERROR  # -> ErrorProcessing -> on_error -> unconfigured
        return ret

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._drop_hold()
        self._destroy_io()
        self._release_logic()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._drop_hold()
        self._stop_activity()
        self._destroy_io()
        self._release_logic()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._drop_hold()
        self._stop_activity()
        self._destroy_io()
        self._release_logic()
        self._in_error = True
        self.get_logger().error(f"node {self.node_id!r} is in the error state: {self.stats.last_error}")
        self._status_soon()
        return SUCCESS  # -> unconfigured; a manager may configure it again

    def _stop_activity(self, drain: bool = False) -> None:
        """Stop producing and taking inputs; with ``drain``, first process what was accepted.

        Draining (a deactivate: hot replacement, ordered shutdown) keeps the outputs open while
        the mailbox runs empty, for at most DRAIN_TIMEOUT_S; inputs arriving meanwhile are no
        longer accepted (counted drops; during a replacement the new node takes them). What
        is still queued after that is dropped and counted, never silently.
        """
        was_active = self._active
        self._flushing = drain and was_active
        self._active = False
        self._stop.set()
        with self._latest_cv:
            for port in self._latest:   # compute nodes: latest-only, the untaken one is dropped
                self.stats.dropped_input(port)
            self._latest.clear()
            self._latest_cv.notify_all()
        self._cancel_timer()
        me = threading.current_thread()
        for t in self._threads:
            if t is not me:
                t.join(timeout=5.0)
                if t.is_alive():
                    self.get_logger().error(f"node {self.node_id!r}: thread {t.name} did not stop within 5 s")
        self._threads = []
        if self._flushing and not self._mailbox.wait_idle(DRAIN_TIMEOUT_S) and len(self._mailbox):
            self.get_logger().warning(
                f"node {self.node_id!r}: still {len(self._mailbox)} queued call(s) after draining "
                f"{DRAIN_TIMEOUT_S:g} s on deactivate; dropping them (counted in drops)")
        self._flushing = False
        self._mailbox.clear()
        if was_active and self.logic is not None:
            try:
                with self._run_lock:
                    self.logic.deactivate()
            except Exception as exc:  # noqa: BLE001
                self._note_error(f"deactivate failed: {type(exc).__name__}: {exc}", exc)

    def _sync_timer(self) -> None:
        """The tick timer follows ``logic.tick_period_s`` (set at configure or by a live
        parameter such as rate_hz): created on activate, re-created when the period changes."""
        logic = self.logic
        period = getattr(logic, "tick_period_s", None) if logic is not None else None
        period = float(period) if period else None
        with self._timer_lock:
            if not self._active or period == self._timer_period:
                return
            if self._timer is not None:
                self.destroy_timer(self._timer)
                self._timer = None
            self._timer_period = period
            if period:
                self._timer = super().create_timer(period, self._on_timer)

    def _cancel_timer(self) -> None:
        with self._timer_lock:
            if self._timer is not None:
                self.destroy_timer(self._timer)
                self._timer = None
            self._timer_period = None

    def _release_logic(self) -> None:
        logic, self.logic = self.logic, None
        if logic is not None:
            try:
                with self._run_lock:
                    logic.cleanup()
            except Exception as exc:  # noqa: BLE001
                self._note_error(f"cleanup failed: {type(exc).__name__}: {exc}", exc)

    def _start_thread(self, target: Callable[[], None], what: str) -> None:
        t = threading.Thread(target=target, name=f"{self.node_id}.{what}", daemon=True)
        self._threads.append(t)
        t.start()

    # ------------------------------------------- the plugin's own ROS entities
    # Plugins that use ctx.ros_node (ros_topic_source/sink) create subscriptions and timers on
    # this node; their callbacks are guarded like every other logic callback: serialised with
    # them, failures logged with the node id and counted, never raised into the executor.
    def create_subscription(self, msg_type: Any, topic: str, callback: Callable[[Any], None],
                            qos_profile: Any, **kwargs: Any) -> Any:
        return super().create_subscription(msg_type, topic, self._guarded(callback), qos_profile, **kwargs)

    def create_timer(self, timer_period_sec: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        return super().create_timer(timer_period_sec, self._guarded(callback) if callback else callback,
                                    *args, **kwargs)

    def _guarded(self, callback: Callable[..., Any]) -> Callable[..., None]:
        def guarded(*args: Any) -> None:
            self._call(callback, *args)
        guarded.__name__ = getattr(callback, "__name__", "callback")
        return guarded

    # ---------------------------------------------------------------- topics
    def _create_io(self) -> None:
        for out in self._outs.values():
            if out.dds:
                out.pub = self.create_lifecycle_publisher(out.wire.msg_cls, out.topic, to_profile(out.qos))
        for edge in self._ins:
            port = edge.port
            if edge.transport == "inproc":
                edge.handle = self.bus.subscribe(edge.topic, lambda pkt, port=port: self._deliver(port, pkt))
            else:
                callback = (lambda msg, port=port, conv=edge.wire.from_msg: self._on_msg(port, msg, conv))
                edge.handle = super().create_subscription(edge.wire.msg_cls, edge.topic, callback,
                                                          to_profile(edge.qos))
        if self.spec.durable_queue:
            self._ack_sub = super().create_subscription(DeliveryAck, self.ack_topic, self._on_ack_msg,
                                                        to_profile(ACK_QOS))
        if self.spec.category == Category.SINK or self.spec.external:
            self._ensure_ack_pub()

    def _destroy_io(self) -> None:
        for out in self._outs.values():
            if out.pub is not None:
                self.destroy_lifecycle_publisher(out.pub)
                out.pub = None
        for edge in self._ins:
            if edge.handle is None:
                continue
            if edge.transport == "inproc":
                self.bus.unsubscribe(edge.handle)
            else:
                self.destroy_subscription(edge.handle)
            edge.handle = None
        if self._ack_sub is not None:
            self.destroy_subscription(self._ack_sub)
            self._ack_sub = None

    @property
    def ack_topic(self) -> str:
        return f"/{self.graph}/_delivery/ack"

    def _ensure_ack_pub(self) -> Any:
        if self._ack_pub is None:
            self._ack_pub = self.create_publisher(DeliveryAck, self.ack_topic, to_profile(ACK_QOS))
        return self._ack_pub

    # ------------------------------------------------------------ data path
    def _emit(self, port: str, packet: Packet) -> None:
        out = self._outs.get(port)
        if out is None:
            raise ValueError(f"node {self.node_id!r} has no output port {port!r} "
                             f"(outputs: {', '.join(self._outs) or 'none'})")
        if not isinstance(packet, Packet):
            raise TypeError(f"node {self.node_id!r} emitted {type(packet).__name__} on {port!r}; expected a Packet")
        if not (self._active or self._flushing):
            with self.stats.lock:
                self.stats.drops += 1
            return
        with self.stats.lock:
            self.stats.packets_out += 1
        if out.inproc:
            self.bus.publish(out.topic, packet)
        if out.pub is not None:
            if out.lazy and out.pub.get_subscription_count() == 0:
                return   # an Image output nobody watches: no conversion, no publish
            try:
                out.pub.publish(out.wire.to_msg(packet))
            except codec.CodecError:
                raise  # the logic's packet is malformed: counted as its error
            except Exception:  # noqa: BLE001 - RCLError "cannot publish data" under load, or torn down
                with self.stats.lock:
                    self.stats.drops += 1
                if self.ctx is not None:
                    self.ctx.count("publish_errors")

    def _on_msg(self, port: str, msg: Any, convert: Callable[[Any], Packet]) -> None:
        try:
            packet = convert(msg)
        except Exception as exc:  # noqa: BLE001
            self._failed(f"input {port!r}: cannot decode {type(msg).__name__}: {exc}", exc)
            return
        self._deliver(port, packet)

    def _deliver(self, port: str, packet: Packet) -> None:
        """An input packet (DDS or inproc, any thread)."""
        if self._refs is not None and packet.payload_ref is not None and not self.spec.durable_queue:
            packet = self._resolve_ref(packet)
            if packet is None:
                return
        if self._hold is not None:
            with self._hold_lock:
                if self._hold is not None:   # a replacement waiting for activate: keep it
                    self._hold.hold(port, packet)
                    return
        if not self._active or self._fault:   # (a failing node is on its way to the error state)
            self.stats.dropped_input(port)
            return
        self._deliver_now(port, packet)

    def _deliver_now(self, port: str, packet: Packet) -> None:
        if self.compute:
            self.stats.received(packet.stamp_ns)   # latest-only: counted on arrival, replacements as drops
            with self._latest_cv:
                if port in self._latest:
                    self.stats.dropped_input(port)   # latest-only: the older one is replaced
                self._latest[port] = packet
                self._latest_cv.notify()
            return
        logic = self.logic
        if logic is None:
            return
        # packets_in counts an input when the logic takes it (_run_on_packet), so a queue
        # that is still being worked off keeps the counter moving (the manager's drain waits)
        if self._mailbox.put(self._run_on_packet, logic, port, packet, port=port) == "overflow":
            pol = self._mailbox.policy(port)
            with self.stats.lock:
                self.stats.overflow_errors += 1
            self._failed(f"input {port!r} overflowed: {pol.max_queued} inputs queued and its policy is "
                         "overflow: error", fatal=True)
            # take no more and let the drainer go, so the thread it runs on (maybe the
            # executor's) gets to take the node to the error state
            self._mailbox.clear()

    def _ref_fallback(self, exc: OSError) -> None:
        """A blob could not be written: the packet went inline (counted, logged once)."""
        ctx = self.ctx
        if ctx is not None:
            if not ctx.counters.get("payload_ref_inline"):
                self.get_logger().warning(f"node {self.node_id!r}: payload blob not written ({exc}); "
                                          "sending large payloads inline")
            ctx.count("payload_ref_inline")

    def _resolve_ref(self, packet: Packet) -> Optional[Packet]:
        """A by-reference input made inline; None when its blob is missing or tampered with
        (counted: errors, last_error and the counter payload_ref_errors; never passed on)."""
        def failed(message: str, exc: Exception) -> None:
            self._note_error(message)
            if self.ctx is not None:
                self.ctx.count("payload_ref_errors")

        def reject(p: Packet, reason: str) -> None:
            self._publish_ack(Ack(p.meta[byref.META_QUEUE], self.node_id, p.idempotency_key,
                                  int(p.meta[byref.META_ROW]), "rejected", reason))
        return byref.resolve_input(self._refs, packet, failed, reject)

    def _submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` as a logic callback, serialised with the node's others (the mailbox)."""
        self._mailbox.put(fn, *args)

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            with self._run_lock:
                fn(*args)
        except Exception as exc:  # noqa: BLE001 - isolate the plugin's failure
            name = getattr(fn, "__name__", "callback")
            name = {"_run_on_packet": "on_packet", "_run_tick": "tick"}.get(name, name)
            self._failed(f"{name} raised {type(exc).__name__}: {exc}", exc)
        else:
            self._consecutive = 0

    def _run_on_packet(self, logic: NodeLogic, port: str, packet: Packet, count: bool = True) -> None:
        if count:
            self.stats.received(packet.stamp_ns)
        try:
            logic.on_packet(port, packet)
        finally:
            self.watermarks.note(packet)   # processed (its effect, if any, is in the state)

    def _on_timer(self) -> None:
        logic = self.logic
        if self._active and logic is not None:
            self._submit(self._run_tick, logic)

    def _run_tick(self, logic: NodeLogic) -> None:
        try:
            logic.tick()
        finally:
            if getattr(logic, "tick_period_s", None) != self._timer_period:
                self._sync_timer()   # the logic changed its own period

    def _run_logic_thread(self) -> None:
        logic, stop = self.logic, self._stop
        if logic is None:
            return
        try:
            logic.run(stop)
        except Exception as exc:  # noqa: BLE001
            self._failed(f"run() raised {type(exc).__name__}: {exc}", exc, fatal=True)
            return
        if not stop.is_set() and self._active:
            self.get_logger().warning(f"node {self.node_id!r}: run() returned while active; it produces no more")

    def _compute_worker(self) -> None:
        stop = self._stop
        while not stop.is_set():
            with self._latest_cv:
                while not self._latest and not stop.is_set():
                    self._latest_cv.wait(0.5)
                if stop.is_set():
                    return
                port = next(iter(self._latest))
                packet = self._latest.pop(port)
            logic = self.logic
            if logic is not None and self._active:
                self._submit(self._run_on_packet, logic, port, packet, False)
            elif logic is not None:
                self.stats.dropped_input(port)

    def _on_ack_msg(self, msg: DeliveryAck) -> None:
        if msg.queue_id != self.node_id or self.logic is None:
            return
        ack = Ack(queue_id=msg.queue_id, sink_id=msg.sink_id, idempotency_key=msg.idempotency_key,
                  row_id=int(msg.row_id), outcome=_OUTCOME_NAME.get(msg.outcome, "retry"), reason=msg.reason)
        self._submit(self.logic.on_ack, ack)

    def _publish_ack(self, ack: Ack) -> None:
        if ack.outcome not in _OUTCOME:
            raise ValueError(f"ack outcome must be one of {sorted(_OUTCOME)}, got {ack.outcome!r}")
        msg = DeliveryAck(queue_id=ack.queue_id, sink_id=ack.sink_id or self.node_id,
                          idempotency_key=ack.idempotency_key, row_id=int(ack.row_id),
                          outcome=_OUTCOME[ack.outcome], reason=ack.reason or "")
        self._ensure_ack_pub().publish(msg)

    # ------------------------------------------------------ hot replacement
    def _save_handover(self) -> None:
        try:
            with self._run_lock:
                bb.save_handover(self.blackboard, self.graph, self.node_id, self.logic, self.watermarks.as_dict())
        except Exception as exc:  # noqa: BLE001 - e.g. state that is not JSON: the new node starts empty
            self._note_error(f"could not save state for hand-over: {type(exc).__name__}: {exc}", exc)

    def _release_hold(self, record: Any) -> None:
        """Deliver held inputs newer than the old node's watermarks, in arrival order.

        Inputs arriving meanwhile are held too until the hold is empty, so order is kept.
        """
        if self._hold is None:
            return
        while True:
            with self._hold_lock:
                hold = self._hold
                if hold is None:
                    return
                items = hold.release(record)
                if not items:
                    skipped, dropped = hold.skipped, hold.dropped
                    self._hold = None
                    break
            for port, packet in items:
                self._deliver_now(port, packet)
        if dropped:
            with self.stats.lock:
                self.stats.drops += dropped
        if self.ctx is not None and skipped:
            self.ctx.count("handover_skipped", skipped)   # the old node had processed them

    def _drop_hold(self) -> None:
        with self._hold_lock:
            hold, self._hold = self._hold, None
        if hold is not None and len(hold):
            n = len(hold.release())
            with self.stats.lock:
                self.stats.drops += n

    # --------------------------------------------------------------- failures
    def _status_soon(self) -> None:
        hook = self.status_hook
        if hook is not None:
            try:
                hook()
            except Exception:  # noqa: BLE001 - status is best effort
                pass

    def _note_error(self, message: str, exc: Optional[BaseException] = None) -> None:
        with self.stats.lock:
            self.stats.errors += 1
            self.stats.last_error = message
        self.get_logger().error(f"node {self.node_id!r}: {message}")
        if exc is not None and self._tb_logged < 3:  # full tracebacks for the first few only
            self._tb_logged += 1
            self.get_logger().error("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))

    def _failed(self, message: str, exc: Optional[BaseException] = None, fatal: bool = False) -> None:
        self._note_error(message, exc)
        self._consecutive += 1
        if (fatal or self._consecutive >= self.max_consecutive_errors) and self._active and not self._fault:
            self._fault = True
            self.get_logger().error(
                f"node {self.node_id!r}: {self._consecutive} consecutive failures; going to the error state")
            self._fault_gc.trigger()

    def _on_fault_signal(self) -> None:
        if self._fault and self.state_label() == "active":
            self.trigger_deactivate()  # returns ERROR -> on_error -> unconfigured ("error")

    # ----------------------------------------------------------------- status
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
            if s.overflow_errors:
                own["overflow_errors"] = s.overflow_errors
        recent = s.recent_p95()
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


__all__ = ["LoadError", "NodeAdapter", "parse_ports", "RESERVED_PORTS", "MAX_ERRORS_PARAM"]
