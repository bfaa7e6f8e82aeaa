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

import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Mapping, Optional

from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from schnitzel_core import blackboard as bb
from schnitzel_core.codecs import ros as codec
from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, NodeContext, NodeLogic, PluginSpec
from schnitzel_msgs.msg import DeliveryAck

from . import byref
from ..mailbox import DEFAULT_MAX_QUEUED, Mailbox
from . import params as P
from .inproc import InprocBus
from .qos import to_profile
# The adapter's parts, one module each; their names stay importable from here.
from .byref import PayloadRefMixin
from .delivery import (ACK_QOS, OUTBOX_RESEND_BATCH, OUTBOX_TICK_S, _OUTCOME, _OUTCOME_NAME,  # noqa: F401
                       DeliveryMixin)
from .handover import HandoverMixin
from .live_params import MAX_ERRORS_PARAM, ParamsMixin
from .logs import _logic_logger, _RosLogHandler  # noqa: F401
from .ports import (RESERVED_PORTS, InEdge, LoadError, OutPort, _check_ports, parse_dds_readers,  # noqa: F401
                    parse_input_policies, unmatched_writers,
                    parse_ports)
from .stats import DROP_CAUSES, LATENCY_BOUNDS_S, LATENCY_WINDOW, RECENT_LATENCY_S, Stats  # noqa: F401
from .status import StatusMixin
from .zenoh_io import ZenohMixin

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE
ERROR = TransitionCallbackReturn.ERROR

DEFAULT_MAX_CONSECUTIVE_ERRORS = 10
#: How long activating waits for the writers to match their planned readers (then goes on, warned)
WRITER_MATCH_WAIT_S = 3.0
MAILBOX_LIMIT = DEFAULT_MAX_QUEUED   # inputs queued per input port unless ports_json "inputs" says otherwise
#: On deactivate, how long the node may go on processing the inputs it had already accepted
#: (its mailbox) before the rest is dropped and counted; below the lifecycle manager's 3 s per
#: transition while stopping (docs/runtime.md, "Draining").
DRAIN_TIMEOUT_S = 2.5


class AdapterContext(NodeContext):
    """The NodeContext the adapter gives the logic: emit/ack go to ROS and the bus."""


class NodeAdapter(ParamsMixin, StatusMixin, HandoverMixin, DeliveryMixin, ZenohMixin, PayloadRefMixin,
                  LifecycleNode):
    """A lifecycle node running one plugin (see the module docstring).

    Its parts live in their own modules: ports (ports.py), parameters (live_params.py),
    counters (stats.py), acks and outboxes (delivery.py), zenoh edges (zenoh_io.py), payloads
    by reference (byref.py), hand-over (handover.py) and status (status.py). The mixins keep
    their state on the node; each names the node attributes it uses.
    """

    def __init__(self, logic_cls: type, node_name: str, namespace: str = "/",
                 params: Optional[Mapping[str, Any]] = None, *, graph: str = "graph",
                 container: str = "", ports: Optional[Mapping[str, Any]] = None,
                 bus: Optional[InprocBus] = None, remappings: Optional[Mapping[str, str]] = None,
                 plugin_name: str = "", unique_id: int = 0,
                 max_consecutive_errors: int = DEFAULT_MAX_CONSECUTIVE_ERRORS,
                 context: Any = None, node_id: str = "", blackboard: Any = None,
                 handover: bool = False, dds_readers: str = "") -> None:
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
        self._ports_decl = ports   # its ``zenoh`` session settings, for zenoh edges
        self._dds_readers = parse_dds_readers(dds_readers, self._outs)
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
        self._mailbox = Mailbox(self._call, input_policies, on_drop=self.stats.dropped_input)   # (port, n, cause)
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
        self._outbox_timer: Any = None
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
            # A plugin refuses a configuration with ValueError (docs/plugin-api.md): the message
            # is the whole story, so no traceback; anything else is a bug and gets one.
            told = isinstance(exc, ValueError)
            self._note_error(f"configure failed: {type(exc).__name__}: {exc}", None if told else exc)
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
        self._wait_writers_matched()
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

    def _wait_writers_matched(self, timeout_s: float = WRITER_MATCH_WAIT_S) -> None:
        """Before the node may send: wait (bounded) until each output's DDS writer has matched
        the readers the plan connects to it (LoadNode option ``dds_readers``). The manager's own
        check sees the endpoints from its participant; this one is the writer's, the one that
        decides whether a first packet reaches a reader that was discovered late."""
        deadline = time.monotonic() + timeout_s
        missing = unmatched_writers(self._outs, self._dds_readers)
        while missing and time.monotonic() < deadline:
            time.sleep(0.01)
            missing = unmatched_writers(self._outs, self._dds_readers)
        if missing:
            self.get_logger().warning(
                "activating with DDS readers not yet matched (matched/wanted): "
                + ", ".join(f"{p} {v}" for p, v in sorted(missing.items())))

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
                self.stats.dropped_input(port, cause="stopped")
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
        self._create_zenoh_io()
        for edge in self._ins:
            port = edge.port
            if edge.transport == "zenoh":
                continue
            if edge.transport == "inproc":
                edge.handle = self.bus.subscribe(edge.topic, lambda pkt, port=port: self._deliver(port, pkt))
            else:
                callback = (lambda msg, port=port, conv=edge.wire.from_msg: self._on_msg(port, msg, conv))
                edge.handle = super().create_subscription(edge.wire.msg_cls, edge.topic, callback,
                                                          to_profile(edge.qos))
        boxes = self._open_outboxes()
        if self.spec.durable_queue or boxes:
            self._ack_sub = super().create_subscription(DeliveryAck, self.ack_topic, self._on_ack_msg,
                                                        to_profile(ACK_QOS))
        if boxes:
            self._outbox_timer = super().create_timer(OUTBOX_TICK_S, self._resend_due)
        if self.spec.category == Category.SINK or self.spec.external or self.spec.durable_queue:
            self._ensure_ack_pub()   # (a queue acknowledges its senders' outboxes) matched before the first ack

    def _destroy_io(self) -> None:
        self._destroy_zenoh_io()
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
        if self._outbox_timer is not None:
            self.destroy_timer(self._outbox_timer)
            self._outbox_timer = None
        self._close_outboxes()

    # ------------------------------------------------------------ data path
    def _emit(self, port: str, packet: Packet) -> None:
        out = self._outs.get(port)
        if out is None:
            raise ValueError(f"node {self.node_id!r} has no output port {port!r} "
                             f"(outputs: {', '.join(self._outs) or 'none'})")
        if not isinstance(packet, Packet):
            raise TypeError(f"node {self.node_id!r} emitted {type(packet).__name__} on {port!r}; expected a Packet")
        if not (self._active or self._flushing):
            self.stats.dropped("inactive")
            return
        with self.stats.lock:
            self.stats.packets_out += 1
        box = out.box
        if box is not None:   # kept until the queue acknowledges its commit (may drop the oldest)
            dropped = box.dropped
            packet = box.add(packet)
            if box.dropped != dropped and self.ctx is not None:
                self.ctx.count("outbox_dropped", box.dropped - dropped)
        self._send(out, packet)

    def _send(self, out: OutPort, packet: Packet) -> None:
        if out.inproc:
            self.bus.publish(out.topic, packet)
        self._send_zenoh(out, packet)
        if out.pub is not None:
            if out.lazy and out.pub.get_subscription_count() == 0:
                return   # an Image output nobody watches: no conversion, no publish
            try:
                out.pub.publish(out.wire.to_msg(packet))
            except codec.CodecError:
                raise  # the logic's packet is malformed: counted as its error
            except Exception:  # noqa: BLE001 - RCLError "cannot publish data" under load, or torn down
                self.stats.dropped("publish_error")
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
            self.stats.received(packet.stamp_ns, port)   # latest-only: counted on arrival, replacements as drops
            with self._latest_cv:
                if port in self._latest:
                    self.stats.dropped_input(port, cause="latest_only")   # the older one is replaced
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
            self._mailbox.clear("overflow")

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
            self.stats.received(packet.stamp_ns, port)
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


__all__ = ["LoadError", "NodeAdapter", "parse_ports", "RESERVED_PORTS", "MAX_ERRORS_PARAM"]
