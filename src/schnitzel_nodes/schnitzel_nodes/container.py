"""schnitzel_container: a process hosting several schnitzel nodes on one executor.

Command line::

    schnitzel_container --graph NAME --container ID [--executor single|multi]
                        [--log-level info] [--ros-args ...]
    # also: python -m schnitzel_nodes.container ...;  ros2 run schnitzel_nodes schnitzel_container ...

The container itself is the ROS node ``/<NAME>/_containers/<ID>`` and serves
(types from schnitzel_msgs/srv):

=====================================================  ==============================
``/<NAME>/_containers/<ID>/load_node``                 LoadNode
``/<NAME>/_containers/<ID>/unload_node``               UnloadNode
``/<NAME>/_containers/<ID>/list_nodes``                ListNodes
``/<NAME>/_containers/<ID>/_container/load_node``      composition_interfaces/srv/LoadNode
``/<NAME>/_containers/<ID>/_container/unload_node``    composition_interfaces/srv/UnloadNode
``/<NAME>/_containers/<ID>/_container/list_nodes``     composition_interfaces/srv/ListNodes
=====================================================  ==============================

ROS arguments apply to the container node only: launch_ros's ComposableNodeContainer
passes ``--ros-args -r __node:=NAME -r __ns:=NS``, which renames it (and moves its
services to ``NS/NAME/...``); give it name ID and namespace ``/<NAME>/_containers``
to keep the names above. (The ``_container/*`` services only where composition_interfaces is importable:
``ros2 component load /<NAME>/_containers/<ID> schnitzel_nodes <plugin>`` and
launch_ros's LoadComposableNodes work against them).

LoadNode request: ``plugin`` (registered name, or "module:Class"), ``node_name``
(graph node id), ``node_namespace`` (``/<graph>``; default ``/<NAME>``),
``parameters_json`` (params after defaults and interpolation), ``remappings``
(from -> to), ``options`` keys:

- ``ports_json``: ports and edges (docs/contracts.md);
- ``graph``: graph name (default NAME); ``container``: container id (default ID);
- ``autostart``: ``configure`` or ``activate`` to run those transitions right after
  loading (default: stay unconfigured; the lifecycle manager drives it);
- ``max_consecutive_errors``: failures in a row before the node goes to the error state;
- ``node_id``: the graph node id when the ROS name differs (hot replacement loads
  ``<id>__r<N>``): status, diagnostics, acks and ``ctx.node_id`` use it;
- ``handover``: ``1`` for a stateful replacement: inputs are held from configure to
  activate; activate restores the old node's state from the blackboard and replays the
  held inputs newer than its watermarks (docs/hot-replacement.md);
- ``dds_readers``: JSON ``{output port: readers}``, the DDS readers the plan connects to each
  output (one per edge, plus the recorder's): activating waits up to 3 s until each port's
  writer has matched that many, so a node's first packets reach readers discovered late.

Blackboard: one per container (``--state-backend memory`` by default, or ``sqlite`` with
``--state-path FILE``), given to every node as ``ctx.blackboard``.

Each loaded node is a lifecycle node ``/<graph>/<node>`` with the standard lifecycle
and parameter services. Once a second the container publishes one
schnitzel_msgs/NodeStatus per node on ``/<graph>/_status/nodes`` (the nodes'
heartbeat) and one diagnostic_msgs/DiagnosticArray on ``/diagnostics`` (a status
per node, name ``<graph>/<node>``).

SIGINT/SIGTERM: every node is shut down (deactivate, cleanup, shutdown), the
process exits 0. A second signal exits at once.
"""
from __future__ import annotations

# argparse, not typer (the `schnitzel` CLI): this is no `schnitzel` subcommand but a ROS
# executable that launch_ros and the runner start with `--ros-args ...` appended; like other rclpy
# executables it strips them with rclpy.utilities.remove_ros_args and parses the rest with the
# stdlib parser. Users do not type its command line, so typer's help and completion buy nothing.
import argparse
import copy
import itertools
import json
import os
import signal
import sys
import threading
import time
from typing import Any, Dict, List, Mapping, Optional

STATUS_PERIOD_S = 1.0
EXECUTORS = ("single", "multi")
#: After SIGINT, how long the container keeps serving while its graph's lifecycle manager tears
#: the nodes down in order (sources first, drain, the rest). Under `ros2 launch`, Ctrl-C reaches
#: every process at once; launch escalates to SIGTERM after 5 s, so this stays below that.
MANAGER_GRACE_S = 4.0
#: The lifecycle manager's node, /<graph>/schnitzel_manager (schnitzel_bringup.plan.MANAGER_NODE_NAME).
MANAGER_NODE_NAME = "schnitzel_manager"
#: LoadNode option keys this container understands ("replaces" is informational).
KNOWN_OPTIONS = {"ports_json", "graph", "container", "autostart", "max_consecutive_errors", "node_id",
                 "handover", "replaces", "dds_readers"}


def container_node_name(graph: str, container: str) -> str:
    """The container's fully qualified node name (its services live under it)."""
    return f"/{graph}/_containers/{container}"


class Container:
    """The container's ROS node, its services and the nodes it hosts."""

    def __init__(self, graph: str, container_id: str, executor: Any, registry: Any = None,
                 context: Any = None, blackboard: Any = None) -> None:
        from rclpy.node import Node
        from diagnostic_msgs.msg import DiagnosticArray
        from schnitzel_msgs.msg import NodeStatus
        from schnitzel_msgs.srv import ListNodes, LoadNode, UnloadNode

        from .ros.inproc import InprocBus
        from .ros.qos import to_profile

        self.graph = graph
        self.id = container_id
        self.executor = executor
        self.registry = registry
        self.context = context
        self.bus = InprocBus()
        if blackboard is None:
            from schnitzel_core.blackboard import MemoryBackend
            blackboard = MemoryBackend()
        # One blackboard per container: every node's ctx.blackboard, and hot-replacement hand-over.
        self.blackboard = blackboard
        self.log_level: Any = None   # rclpy LoggingSeverity for the container and every node it loads
        self.nodes: Dict[int, Any] = {}
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        # Global ROS arguments apply to the container node only (adapters ignore them), so
        # launch_ros's `-r __node:=NAME -r __ns:=NS` renames it and its services follow.
        # No parameter services: the container has no parameters, and every service is one more
        # entity the Python executor scans on each wake-up (per-packet cost on DDS inputs).
        self.node = Node(container_id, namespace=f"/{graph}/_containers", context=context,
                         start_parameter_services=False)
        n = self.node
        n.create_service(LoadNode, "~/load_node", self._srv_load)
        n.create_service(UnloadNode, "~/unload_node", self._srv_unload)
        n.create_service(ListNodes, "~/list_nodes", self._srv_list)
        self._NodeStatus = NodeStatus
        self._status_qos = to_profile({"reliability": "reliable", "durability": "volatile",
                                       "history": "keep_last", "depth": 100})
        self._status_pubs: Dict[str, Any] = {}
        self._diag_pub = n.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._DiagnosticArray = DiagnosticArray
        self._last_errors: Dict[int, int] = {}
        self._status_timer = n.create_timer(STATUS_PERIOD_S, self.publish_status)
        self._status_pending: set = set()
        self._status_gc = n.create_guard_condition(self._publish_pending)
        self.composition = self._serve_composition()
        executor.add_node(n)

    # ------------------------------------------------------------------ load
    def load(self, plugin: str, node_name: str, namespace: str = "", params: Optional[Mapping[str, Any]] = None,
             remappings: Optional[Mapping[str, str]] = None, options: Optional[Mapping[str, str]] = None) -> Any:
        """Create a node; returns the adapter. Raises LoadError/PluginError with the reason."""
        from rclpy.validate_namespace import validate_namespace
        from rclpy.validate_node_name import validate_node_name

        from .ros.adapter import DEFAULT_MAX_CONSECUTIVE_ERRORS, LoadError, NodeAdapter
        from .ros.plugins import resolve_plugin

        options = dict(options or {})
        unknown = sorted(set(options) - KNOWN_OPTIONS)
        if unknown:  # not an error: a newer manager may send options this container ignores
            self.node.get_logger().warning(f"load_node {node_name!r}: ignoring unknown options {unknown}")
        graph = options.get("graph") or self.graph
        namespace = namespace or f"/{graph}"
        try:
            validate_node_name(node_name)
            validate_namespace(namespace)
        except Exception as exc:  # noqa: BLE001 - rclpy's Invalid*Exception carry the reason
            raise LoadError(f"invalid node name or namespace: {exc}") from None
        full = namespace.rstrip("/") + "/" + node_name
        with self._lock:
            if any(a.get_fully_qualified_name() == full for a in self.nodes.values()):
                raise LoadError(f"a node named {full} is already loaded in container {self.id!r}")
        ports = None
        if options.get("ports_json"):
            try:
                ports = json.loads(options["ports_json"])
            except json.JSONDecodeError as exc:
                raise LoadError(f"options.ports_json is not valid JSON: {exc}") from None
        try:
            max_errors = int(options.get("max_consecutive_errors") or DEFAULT_MAX_CONSECUTIVE_ERRORS)
        except ValueError:
            raise LoadError("options.max_consecutive_errors must be an integer") from None
        autostart = (options.get("autostart") or "").strip().lower()
        if autostart in ("true", "1", "yes"):
            autostart = "activate"
        if autostart not in ("", "none", "false", "0", "no", "configure", "activate"):
            raise LoadError(f"options.autostart must be configure or activate, got {autostart!r}")
        cls = resolve_plugin(plugin, self.registry)
        uid = next(self._ids)
        node_id = options.get("node_id") or node_name
        try:
            validate_node_name(node_id)
        except Exception as exc:  # noqa: BLE001
            raise LoadError(f"options.node_id: {exc}") from None
        adapter = NodeAdapter(cls, node_name, namespace, params or {}, graph=graph,
                              container=options.get("container") or self.id, ports=ports, bus=self.bus,
                              remappings=remappings, plugin_name=cls.spec.name, unique_id=uid,
                              max_consecutive_errors=max_errors, context=self.context, node_id=node_id,
                              blackboard=self.blackboard,
                              handover=str(options.get("handover", "")).strip().lower() in ("1", "true", "yes"),
                              dds_readers=options.get("dds_readers", ""))
        adapter.status_hook = lambda uid=uid: self.request_status(uid)
        if self.log_level is not None:
            from rclpy.logging import set_logger_level
            set_logger_level(adapter.get_logger().name, self.log_level)
        with self._lock:
            self.nodes[uid] = adapter
        self.executor.add_node(adapter)
        if autostart in ("configure", "activate"):
            from rclpy.lifecycle import TransitionCallbackReturn as T
            if adapter.trigger_configure() != T.SUCCESS:
                self.unload(uid)
                raise LoadError(f"node {full} failed to configure: {adapter.stats.last_error}")
            if autostart == "activate" and adapter.trigger_activate() != T.SUCCESS:
                self.unload(uid)
                raise LoadError(f"node {full} failed to activate: {adapter.stats.last_error}")
        adapter.get_logger().info(f"loaded plugin {plugin!r} as {full} (id {uid})")
        return adapter

    def unload(self, unique_id: int = 0, node_name: str = "") -> None:
        from .ros.adapter import LoadError

        with self._lock:
            uid = unique_id
            if not uid:
                for k, a in self.nodes.items():
                    if node_name in (a.get_name(), a.get_fully_qualified_name()):
                        uid = k
                        break
            adapter = self.nodes.pop(uid, None)
        if adapter is None:
            what = f"id {unique_id}" if unique_id else f"name {node_name!r}"
            raise LoadError(f"no node with {what} in container {self.id!r}")
        self._shutdown_node(adapter)

    def _shutdown_node(self, adapter: Any) -> None:
        try:
            if adapter.state_label() not in ("finalized",):
                adapter.trigger_shutdown()
        except Exception as exc:  # noqa: BLE001 - must still destroy it
            adapter.get_logger().warning(f"shutdown of {adapter.get_fully_qualified_name()} failed: {exc}")
        try:
            self.executor.remove_node(adapter)
        except Exception:  # noqa: BLE001
            pass
        adapter.destroy_node()

    def shutdown_all(self) -> None:
        with self._lock:
            adapters = list(self.nodes.values())
            self.nodes.clear()
        # Sources first, so downstream nodes see the last packets before they stop.
        adapters.sort(key=lambda a: 0 if not a.spec.inputs else 1)
        for a in adapters:
            self._shutdown_node(a)

    # -------------------------------------------------------------- services
    def _srv_load(self, req: Any, resp: Any) -> Any:
        from .ros import params as P

        try:
            params = P.parse_parameters_json(req.parameters_json)
            adapter = self.load(req.plugin, req.node_name, req.node_namespace, params,
                                {kv.key: kv.value for kv in req.remappings},
                                {kv.key: kv.value for kv in req.options})
        except Exception as exc:  # noqa: BLE001 - every failure becomes the reply's reason
            resp.success = False
            resp.error_message = str(exc) or type(exc).__name__
            self.node.get_logger().error(f"load_node {req.plugin!r} as {req.node_name!r} failed: {resp.error_message}")
            return resp
        resp.success = True
        resp.full_node_name = adapter.get_fully_qualified_name()
        resp.unique_id = adapter.unique_id
        return resp

    def _srv_unload(self, req: Any, resp: Any) -> Any:
        try:
            self.unload(int(req.unique_id), req.node_name)
            resp.success = True
        except Exception as exc:  # noqa: BLE001
            resp.success = False
            resp.error_message = str(exc)
        return resp

    def _srv_list(self, req: Any, resp: Any) -> Any:
        with self._lock:
            items = sorted(self.nodes.items())
        resp.full_node_names = [a.get_fully_qualified_name() for _, a in items]
        resp.unique_ids = [uid for uid, _ in items]
        resp.plugins = [a.plugin_name for _, a in items]
        resp.states = [a.state_label() for _, a in items]
        return resp

    # ---------------------------------------------- composition_interfaces
    def _serve_composition(self) -> bool:
        try:
            from composition_interfaces.srv import ListNodes, LoadNode, UnloadNode
        except ImportError:
            return False
        n = self.node
        n.create_service(LoadNode, "~/_container/load_node", self._comp_load)
        n.create_service(UnloadNode, "~/_container/unload_node", self._comp_unload)
        n.create_service(ListNodes, "~/_container/list_nodes", self._comp_list)
        return True

    def _comp_load(self, req: Any, resp: Any) -> Any:
        """composition_interfaces/LoadNode: plugin_name -> plugin, parameters -> params
        (or extra argument parameters_json when given), extra_arguments (ports_json, graph,
        autostart, …) -> options."""
        from rclpy.parameter import parameter_value_to_python

        try:
            params = {p.name: parameter_value_to_python(p.value) for p in req.parameters}
            options = {p.name: str(parameter_value_to_python(p.value)) for p in req.extra_arguments}
            remaps = {}
            for rule in req.remap_rules:
                src, sep, dst = rule.partition(":=")
                if not sep:
                    raise ValueError(f"remap rule {rule!r} must read from:=to")
                remaps[src] = dst
            if options.get("parameters_json"):
                # schnitzel's own launch files repeat the params as exact JSON (types kept)
                from .ros import params as P
                params = P.parse_parameters_json(options.pop("parameters_json"))
            else:
                params = self._json_params(req.plugin_name, params)
            adapter = self.load(req.plugin_name, req.node_name or req.plugin_name.split("::")[-1],
                                req.node_namespace, params, remaps, options)
        except Exception as exc:  # noqa: BLE001
            resp.success = False
            resp.error_message = str(exc) or type(exc).__name__
            return resp
        resp.success = True
        resp.full_node_name = adapter.get_fully_qualified_name()
        resp.unique_id = adapter.unique_id
        return resp

    def _json_params(self, plugin: str, params: Dict[str, Any]) -> Dict[str, Any]:
        """ROS parameter values for list/dict params arrive as JSON text: decode them."""
        from .ros import params as P
        from .ros.plugins import resolve_plugin

        spec = resolve_plugin(plugin, self.registry).spec
        out = {}
        for k, v in params.items():
            p = spec.param(k)
            out[k] = P.from_ros(p, v) if p is not None else v
        return out

    def _comp_unload(self, req: Any, resp: Any) -> Any:
        try:
            self.unload(int(req.unique_id))
            resp.success = True
        except Exception as exc:  # noqa: BLE001
            resp.success = False
            resp.error_message = str(exc)
        return resp

    def _comp_list(self, req: Any, resp: Any) -> Any:
        with self._lock:
            items = sorted(self.nodes.items())
        resp.full_node_names = [a.get_fully_qualified_name() for _, a in items]
        resp.unique_ids = [uid for uid, _ in items]
        return resp

    # ---------------------------------------------------------------- status
    def request_status(self, uid: int) -> None:
        """Publish node ``uid``'s status on the next executor cycle (any thread)."""
        with self._lock:
            self._status_pending.add(uid)
        self._status_gc.trigger()

    def _publish_pending(self) -> None:
        with self._lock:
            pending, self._status_pending = self._status_pending, set()
            items = [(uid, self.nodes[uid]) for uid in sorted(pending) if uid in self.nodes]
        stamp = self.node.get_clock().now().to_msg()
        for _, a in items:
            try:
                self._publish_node_status(a, a.status_msg(stamp))
            except Exception as exc:  # noqa: BLE001
                self.node.get_logger().warning(f"status of {a.node_id!r} failed: {exc}")

    def _publish_node_status(self, a: Any, st: Any) -> None:
        pub = self._status_pubs.get(a.graph)
        if pub is None:
            pub = self.node.create_publisher(self._NodeStatus, f"/{a.graph}/_status/nodes", self._status_qos)
            self._status_pubs[a.graph] = pub
        pub.publish(st)
        if a.get_name() != a.node_id:
            # A replacement (<id>__r<N>) also reports under its ROS name, so a watcher can tell it
            # from the node it replaces (the manager tracks the graph id and ignores this one).
            twin = copy.copy(st)
            twin.node_id = a.get_name()
            pub.publish(twin)

    def publish_status(self) -> None:
        stamp = self.node.get_clock().now().to_msg()
        with self._lock:
            items = list(self.nodes.items())
        diag = self._DiagnosticArray()
        diag.header.stamp = stamp
        for uid, a in items:
            try:
                st = a.status_msg(stamp)
                self._publish_node_status(a, st)
                diag.status.append(a.diagnostic(st, self._last_errors.get(uid, 0)))
                self._last_errors[uid] = st.errors
            except Exception as exc:  # noqa: BLE001 - one node's status must not stop the others'
                self.node.get_logger().warning(f"status of {a.node_id!r} failed: {exc}")
        if diag.status:
            self._diag_pub.publish(diag)

    def awaits_manager(self) -> bool:
        """A node here is not shut down yet and its graph's lifecycle manager is running (so the
        manager's ordered tear-down will reach it)."""
        with self._lock:
            graphs = {a.graph for a in self.nodes.values() if a.state_label() != "finalized"}
        if not graphs:
            return False
        try:
            running = set(self.node.get_node_names_and_namespaces())
        except Exception:  # noqa: BLE001 - no graph information: do not wait
            return False
        return any((MANAGER_NODE_NAME, f"/{g}") in running for g in graphs)

    def destroy(self) -> None:
        self.shutdown_all()
        try:
            self.executor.remove_node(self.node)
        except Exception:  # noqa: BLE001
            pass
        self.node.destroy_node()


def make_executor(kind: str, context: Any = None) -> Any:
    """single (default) or multi.

    Not rclpy.experimental.EventsExecutor: with the Kilted wheels its spin() did not
    dispatch service requests, spin_once() refused guard conditions ("Guard conditions not
    supported") and a lifecycle node added while spinning never had its services served
    (measured; see docs/runtime.md, "Executor"). A container needs all three.
    """
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

    if kind == "multi":
        return MultiThreadedExecutor(num_threads=max(2, os.cpu_count() or 2), context=context)
    return SingleThreadedExecutor(context=context)


#: glibc malloc settings for large payloads (docs/runtime.md, "Large payloads").
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=134217728:glibc.malloc.trim_threshold=2147483648"


def _tune_malloc() -> None:
    """Re-execute this process once with MALLOC_TUNABLES unless GLIBC_TUNABLES is already set.

    Every DDS hop of a megabyte payload allocates fresh megabyte buffers; with glibc's default
    (mmap for anything over 128 KiB) each one costs page faults, which dominated the cost of
    1 MB packets (measured: p50 47-128 ms -> 9-11 ms through a 3-hop DDS chain at 100/s). The
    settings take effect only at process start, hence the exec (same PID). Opt out with
    SCHNITZEL_MALLOC_TUNING=0 or by setting GLIBC_TUNABLES yourself.
    """
    import platform

    if os.environ.get("GLIBC_TUNABLES") is not None or os.environ.get("SCHNITZEL_MALLOC_TUNING", "1") == "0":
        return
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return
    argv = list(getattr(sys, "orig_argv", []) or [])
    if not argv:
        return
    env = dict(os.environ, GLIBC_TUNABLES=MALLOC_TUNABLES)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, argv, env)
    except OSError:
        return  # carry on untuned rather than not at all


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="schnitzel_container",
                                 description="Host schnitzel nodes; load them through ~/load_node.")
    ap.add_argument("--graph", required=True, help="graph name (the ROS namespace of its nodes)")
    ap.add_argument("--container", required=True, help="container id (its node name)")
    ap.add_argument("--executor", choices=EXECUTORS, default="single")
    ap.add_argument("--log-level", default="info", choices=("debug", "info", "warn", "error"))
    ap.add_argument("--state-backend", default="memory",
                    help="blackboard backend shared by the container's nodes (memory, sqlite, or an installed one)")
    ap.add_argument("--state-path", default="", help="file of a durable blackboard backend (sqlite)")
    try:
        from rclpy.utilities import remove_ros_args
        import schnitzel_msgs.srv  # noqa: F401 - fail here, with a hint, not at the first request
    except ImportError as exc:
        print(f"schnitzel_container: ROS 2 is not importable ({exc}); enter the environment first: "
              "source scripts/env.sh (or your ROS 2 setup and install/local_setup.bash)", file=sys.stderr)
        return 2

    argv = sys.argv[1:] if argv is None else list(argv)
    args = ap.parse_args(remove_ros_args(["schnitzel_container", *argv])[1:])
    _tune_malloc()
    from schnitzel_core.lifetime import die_with_parent, parent_gone
    # Whoever started us (ros2 launch, the runner, a supervisor) exits, even by SIGKILL: we get
    # SIGTERM and shut our nodes down in order, never left running on our own.
    parent = os.getppid()
    die_with_parent()
    from rclpy.validate_namespace import validate_namespace
    from rclpy.validate_node_name import validate_node_name
    try:
        validate_namespace(f"/{args.graph}/_containers")
        validate_node_name(args.container)
    except Exception as exc:  # noqa: BLE001
        print(f"schnitzel_container: invalid --graph or --container: {exc}", file=sys.stderr)
        return 2

    import rclpy
    from rclpy.logging import LoggingSeverity, set_logger_level
    from rclpy.signals import SignalHandlerOptions

    # Our own handlers: rclpy's would shut the context down before the nodes could be
    # deactivated and cleaned up.
    rclpy.init(args=["schnitzel_container", *argv], signal_handler_options=SignalHandlerOptions.NO)
    stop = threading.Event()
    signals_seen = []

    def on_signal(signum: int, _frame: Any) -> None:
        signals_seen.append(signum)
        if len(signals_seen) > 1:
            os._exit(1)  # second signal: the user insists
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    from schnitzel_core.blackboard import BlackboardError, open_backend

    try:
        board = open_backend(args.state_backend, **({"path": args.state_path} if args.state_path else {}))
    except BlackboardError as exc:
        print(f"schnitzel_container: cannot open the blackboard: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = make_executor(args.executor)
    try:
        container = Container(args.graph, args.container, executor, blackboard=board)
    except Exception as exc:  # noqa: BLE001
        print(f"schnitzel_container: cannot start: {exc}", file=sys.stderr)
        board.close()
        rclpy.try_shutdown()
        return 1
    level = {"debug": LoggingSeverity.DEBUG, "info": LoggingSeverity.INFO,
             "warn": LoggingSeverity.WARN, "error": LoggingSeverity.ERROR}[args.log_level]
    set_logger_level(container.node.get_logger().name, level)
    container.log_level = level
    container.node.get_logger().info(
        f"container {container.node.get_fully_qualified_name()} ready (pid {os.getpid()}, "
        f"executor {args.executor}, composition services {'on' if container.composition else 'off'})")
    rc = 0
    failures = 0
    # Spin in the main thread in short slices, so Python signal handlers run promptly.
    while not stop.is_set() and rclpy.ok():
        try:
            executor.spin_once(timeout_sec=0.1)
        except Exception as exc:  # noqa: BLE001 - a callback outside any node's guard: keep serving
            if not rclpy.ok():
                break
            failures += 1
            if failures <= 5 or failures % 1000 == 0:
                import traceback
                container.node.get_logger().error(
                    f"a callback raised (#{failures}; the container keeps running): "
                    + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    if signals_seen and (signals_seen[0] == signal.SIGINT or parent_gone(parent)):
        # Ctrl-C under `ros2 launch` also reached the manager, or launch went away (SIGTERM) and
        # the manager got the same parent-death SIGTERM: let it tear our nodes down in order.
        t0 = time.monotonic()
        while time.monotonic() - t0 < MANAGER_GRACE_S and rclpy.ok() and container.awaits_manager():
            try:
                executor.spin_once(timeout_sec=0.1)
            except Exception:  # noqa: BLE001 - stop waiting; the nodes are shut down below
                break
        if time.monotonic() - t0 > 0.2:
            print(f"schnitzel_container {args.container}: served {time.monotonic() - t0:.2f} s more for the "
                  "lifecycle manager's tear-down", file=sys.stderr)
    t0 = time.monotonic()
    container.destroy()
    if signals_seen:
        print(f"schnitzel_container {args.container}: stopped all nodes in {time.monotonic() - t0:.2f} s",
              file=sys.stderr)
    executor.shutdown()
    board.close()
    rclpy.try_shutdown()
    return rc


if __name__ == "__main__":
    sys.exit(main())
