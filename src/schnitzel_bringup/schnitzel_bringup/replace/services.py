"""The lifecycle manager's hot-swap services: ``~/replace_node`` and ``~/apply_graph``.

:class:`HotSwap` is their logic for one running graph (validate, compile, run the protocol,
track what runs; no ROS), :class:`HotSwapServer` serves it from its own rclpy node and
executor thread.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .apply import apply_actions
from .protocol import (OPT_HANDOVER, OPT_NODE_ID, OPT_REPLACES, NodeRef, ReplaceError, ReplaceProtocol,
                       ReplaceResult, ReplaceTransport, load_from_plan_node, merge_params, validate_replacement)
from .ros_transport import RosTransport

class HotSwap:
    """ReplaceNode / ApplyGraph logic for one running graph (no ROS here; see HotSwapServer).

    Holds the running graph (``Graph``), its compiled ``Plan`` and what runs for each node
    (``refs``: node id -> NodeRef). ``on_change(event)`` tells the owner (the lifecycle
    manager) what changed after each request: ``{"plan": new Plan, "serving": {id: NodeRef},
    "removed": [ids], "added": [ids]}``.
    """

    def __init__(self, plan: Any, graph: Any, registry: Any, transport: ReplaceTransport, *,
                 on_change: Optional[Callable[[Dict[str, Any]], None]] = None,
                 containers: Optional[Mapping[str, Callable[[str], None]]] = None,
                 log: Optional[Callable[[str], None]] = None, **protocol_options: Any) -> None:
        self.plan = plan
        self.graph = graph
        self.registry = registry
        self.transport = transport
        self.on_change = on_change
        self.containers = containers or {}
        self.log = log
        self.protocol_options = protocol_options
        self._busy = threading.Lock()
        self.refs: Dict[str, NodeRef] = {}
        for n in plan.nodes:
            entry = registry.get(n.plugin) if registry is not None else None
            spec = getattr(entry, "spec", None)
            self.refs[n.id] = NodeRef(n.id, n.container, n.id, n.namespace, 0, n.plugin, dict(n.params),
                                      dict(n.load_options(plan.graph)), bool(getattr(spec, "stateful", False)))

    @property
    def busy(self) -> bool:
        """True while a request is being carried out (a manager should not recover nodes then)."""
        return self._busy.locked()

    def hold(self, reason: str) -> bool:
        """Keep requests out while the owner changes nodes itself (the manager re-loading a
        restarted container's nodes): True when held (call :meth:`release`), False when a
        request is being carried out. Requests meanwhile are refused with ``reason``."""
        if not self._busy.acquire(blocking=False):
            return False
        self._held = reason
        return True

    def release(self) -> None:
        self._held = ""
        self._busy.release()

    def _refused(self) -> str:
        held = getattr(self, "_held", "")
        return (f"the lifecycle manager is busy ({held}); try again in a few seconds" if held else
                "another replacement or apply is in progress; try again when it has finished")

    def reloaded(self, node_id: str, plan_node: Any = None) -> None:
        """The owner loaded ``node_id`` again under its graph id (e.g. after its container was
        restarted): the next replacement starts from that node, not from a ``<id>__r<N>``."""
        ref = self.refs.get(node_id)
        if ref is None:
            return
        opts = dict(plan_node.load_options(self.plan.graph)) if plan_node is not None else {
            k: v for k, v in ref.options.items() if k not in (OPT_NODE_ID, OPT_REPLACES, OPT_HANDOVER)}
        self.refs[node_id] = dataclasses.replace(ref, node_name=node_id, unique_id=0, options=opts)

    def _proto(self, timeout_s: float = 0.0) -> ReplaceProtocol:
        opts = dict(self.protocol_options)
        if timeout_s and timeout_s > 0:
            opts["timeout_s"] = timeout_s
        return ReplaceProtocol(self.transport, log=self.log, **opts)

    def _spec(self, plugin: str) -> Any:
        entry = self.registry.get(plugin) if self.registry is not None else None
        return getattr(entry, "spec", None)

    def _compile(self, graph: Any) -> Any:
        from ..compiler import compile_graph
        from ..record_proc import as_recorded

        plan = compile_graph(graph, self.registry, graph_file=getattr(self.plan, "graph_file", "") or None)
        return as_recorded(plan, self.plan, self.registry)

    def _changed(self, plan: Any, graph: Any, serving: Mapping[str, NodeRef], removed: Sequence[str],
                 added: Sequence[str]) -> None:
        self.refs.update(serving)
        for nid in removed:
            self.refs.pop(nid, None)
        if plan is not None:
            self.plan, self.graph = plan, graph
        if self.on_change:
            self.on_change({"plan": self.plan, "serving": dict(serving), "removed": list(removed),
                            "added": list(added)})

    # -- ReplaceNode ------------------------------------------------------------------
    def replace_node(self, node_id: str, plugin: str = "", parameters_json: str = "",
                     timeout_s: float = 0.0) -> ReplaceResult:
        if not self._busy.acquire(blocking=False):
            return ReplaceResult(False, self._refused(), [], "replace", None)
        try:
            return self._replace_node(node_id, plugin, parameters_json, timeout_s)
        finally:
            self._busy.release()

    def _replace_node(self, node_id: str, plugin: str, parameters_json: str, timeout_s: float) -> ReplaceResult:
        old = self.refs.get(node_id)
        decl = self.graph.node(node_id) if self.graph is not None else None
        if old is None or decl is None:
            return ReplaceResult(False, f"graph {self.plan.graph!r} has no node {node_id!r} (nodes: "
                                        f"{', '.join(sorted(self.refs))})", [], "replace", None)
        given: Optional[Dict[str, Any]] = None
        if parameters_json.strip():
            try:
                given = json.loads(parameters_json)
            except json.JSONDecodeError as exc:
                return ReplaceResult(False, f"parameters_json is not valid JSON: {exc}", [], "replace", old)
            if not isinstance(given, dict):
                return ReplaceResult(False, "parameters_json must be a JSON object", [], "replace", old)
        new_plugin = plugin or decl.plugin
        params = merge_params(decl.params, given, plugin_changed=new_plugin != decl.plugin)
        new_graph, errors = validate_replacement(self.graph, node_id, new_plugin, params, self.registry)
        if errors:
            return ReplaceResult(False, "the change would make the graph invalid; nothing was changed: "
                                        + "; ".join(errors), [], "replace", old)
        try:
            new_plan = self._compile(new_graph)
        except Exception as exc:  # noqa: BLE001 - reported, nothing changed
            return ReplaceResult(False, f"cannot compile the changed graph: {exc}", [], "replace", old)
        load = load_from_plan_node(new_plan.node(node_id), self.plan.graph, self._spec(new_plugin))
        res = self._proto(timeout_s).update(old, load)
        if res.success and res.serving is not None:
            self._changed(new_plan, new_graph, {node_id: res.serving}, [], [])
        elif res.serving is not None and res.serving is not old:
            # the new node serves but the old one was not unloaded: track the new one
            self._changed(new_plan, new_graph, {node_id: res.serving}, [], [])
        return res

    # -- ApplyGraph --------------------------------------------------------------------
    def apply_graph(self, graph_yaml: str, graph_path: str = "", dry_run: bool = False
                    ) -> Tuple[bool, str, List[str], List[str]]:
        """(success, message, changes, step lines)."""
        if not self._busy.acquire(blocking=False):
            return False, self._refused(), [], []
        try:
            return self._apply_graph(graph_yaml, graph_path or "<new graph>", dry_run)
        finally:
            self._busy.release()

    def _apply_graph(self, text: str, path: str, dry_run: bool) -> Tuple[bool, str, List[str], List[str]]:
        from schnitzel_core.graph_diff import (GraphDiffError, describe_plan, diff_graphs,
                                               nodes_with_changed_ports, plan_application)
        from schnitzel_validator import validate_text

        report = validate_text(text, file=path, registry=self.registry)
        if not report.valid or report.graph is None:
            return False, f"{path} is not valid; nothing was changed:\n{report.format_text()}", [], []
        new_graph = report.graph
        try:
            diff = diff_graphs(self.graph, new_graph, self.registry)
            new_plan = self._compile(new_graph)
            actions = plan_application(diff, self.registry, nodes_with_changed_ports(self.plan, new_plan))
        except GraphDiffError as exc:
            return False, f"{exc}; nothing was changed", [], []
        except Exception as exc:  # noqa: BLE001
            return False, f"cannot compile {path}: {exc}; nothing was changed", [], []
        changes = diff.lines()
        if dry_run or not actions:
            what = "\n".join(describe_plan(actions)) if actions else "no changes to apply"
            return True, ("dry run, nothing was changed:\n" if dry_run else "") + what, changes, []
        loads = {n.id: load_from_plan_node(n, self.plan.graph, self._spec(n.plugin)) for n in new_plan.nodes}
        res = apply_actions(self._proto(), actions, self.refs, loads, new_plan.namespace, self.containers)
        added = [a.target for a in actions if a.action == "load" and a.target in res.serving]
        if res.success:
            self._changed(new_plan, new_graph, res.serving, res.removed, added)
        elif res.serving or res.removed:
            # stopped half way: what was done stays done; track the graph that runs now
            mixed_graph, mixed_plan = self._partial(new_graph, res.serving, res.removed)
            self._changed(mixed_plan, mixed_graph, res.serving, res.removed, added)
        return res.success, res.message, changes, res.step_lines()

    def _partial(self, new_graph: Any, serving: Mapping[str, NodeRef], removed: Sequence[str]) -> Tuple[Any, Any]:
        """The graph (and plan) that runs after an apply that stopped half way: the old graph
        without the removed nodes, with the new declarations of the nodes loaded, replaced or
        changed, and each node's inputs as its running incarnation was loaded with."""
        old = self.graph
        changed = set(serving)
        g = copy.deepcopy(old)
        keep = {n.id for n in old.nodes} - set(removed)
        g.nodes = [n for n in copy.deepcopy(old.nodes) if n.id in keep and n.id not in changed]
        g.nodes += [n for n in copy.deepcopy(new_graph.nodes) if n.id in changed]
        ids = {n.id for n in g.nodes}
        g.edges = [e for e in copy.deepcopy(old.edges) if e.dst_node not in changed]
        g.edges += [e for e in copy.deepcopy(new_graph.edges) if e.dst_node in changed]
        g.edges = [e for e in g.edges if e.src_node in ids and e.dst_node in ids]
        cids = {n.container for n in g.nodes}
        g.containers = [c for c in copy.deepcopy(old.containers) if c.id in cids]
        g.containers += [c for c in copy.deepcopy(new_graph.containers)
                         if c.id in cids and c.id not in {x.id for x in g.containers}]
        try:
            return g, self._compile(g)
        except Exception as exc:  # noqa: BLE001 - keep the old model rather than none
            if self.log:
                self.log(f"cannot model the half-applied graph ({exc}); keeping the old one")
            return None, None


def _check_same_graph(plan: Any, graph: Any, registry: Any) -> None:
    """Refuse a graph file that no longer describes the running plan (edited after the start):
    differences would be computed against the wrong graph."""
    from ..compiler import compile_graph
    from ..record_proc import as_recorded

    try:
        now = as_recorded(compile_graph(graph, registry, graph_file=plan.graph_file), plan, registry)
    except Exception as exc:  # noqa: BLE001
        raise ReplaceError(f"graph file {plan.graph_file} no longer compiles: {exc}") from None

    def shape(p: Any) -> Any:
        return (sorted((n.id, n.plugin, n.container, json.dumps(n.params, sort_keys=True, default=str),
                        json.dumps(n.ports, sort_keys=True, default=str)) for n in p.nodes),
                sorted((e.src, e.dst, e.transport) for e in p.edges))

    if shape(now) != shape(plan):
        raise ReplaceError(f"graph file {plan.graph_file} was changed after the graph started; hot "
                           "replacement needs the file the running graph was compiled from")


class HotSwapServer:
    """Serves ``/<graph>/_manager/replace_node`` and ``/<graph>/_manager/apply_graph``.

    It has its own rclpy node (``/<graph>/_manager``) and executor thread, so a replacement
    that takes seconds never blocks the lifecycle manager's own executor (heartbeats keep
    being processed)::

        server = HotSwapServer(plan, registry, on_change=manager_callback, log=manager.log)
        ...
        server.close()
    """

    def __init__(self, plan: Any, registry: Any = None, graph: Any = None, *, context: Any = None,
                 container_service: Optional[Callable[[str, str], str]] = None,
                 on_change: Optional[Callable[[Dict[str, Any]], None]] = None,
                 containers: Optional[Mapping[str, Callable[[str], None]]] = None,
                 log: Optional[Callable[[str], None]] = None, **protocol_options: Any) -> None:
        from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node
        from schnitzel_msgs.srv import ApplyGraph, ReplaceNode

        if registry is None:
            from schnitzel_core.registry import load_registry

            registry = load_registry()
        if graph is None:
            from schnitzel_core.graph_loader import load_graph

            if not getattr(plan, "graph_file", ""):
                raise ReplaceError("the plan names no graph file; hot replacement needs the running graph")
            graph = load_graph(plan.graph_file)
            _check_same_graph(plan, graph, registry)
        self.log = log or (lambda _m: None)
        # use_global_arguments=False: under `ros2 launch` the manager process gets
        # `--ros-args -r __node:=schnitzel_manager -r __ns:=/<graph>`, which would otherwise rename
        # this node too (a second /<graph>/schnitzel_manager, services under its name).
        self.node = Node("_manager", namespace=f"/{plan.graph}", context=context, use_global_arguments=False)
        self._serve_group = MutuallyExclusiveCallbackGroup()   # one request at a time
        self._io_group = ReentrantCallbackGroup()              # transport replies while a request waits
        transport = RosTransport(self.node, plan.graph, container_service=container_service,
                                 callback_group=self._io_group)
        self.hotswap = HotSwap(plan, graph, registry, transport, on_change=on_change, containers=containers,
                               log=self.log, **protocol_options)
        self.node.create_service(ReplaceNode, "~/replace_node", self._on_replace, callback_group=self._serve_group)
        self.node.create_service(ApplyGraph, "~/apply_graph", self._on_apply, callback_group=self._serve_group)
        self.executor = MultiThreadedExecutor(num_threads=3, context=context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, name="hotswap-executor", daemon=True)
        self._thread.start()

    def _on_replace(self, req: Any, resp: Any) -> Any:
        self.log(f"replace_node {req.node_id!r} plugin={req.plugin or '(same)'} params={req.parameters_json or '(same)'}")
        try:
            res = self.hotswap.replace_node(req.node_id, req.plugin, req.parameters_json, req.timeout_s)
            resp.success, resp.message, resp.steps = bool(res.success), res.message, res.step_lines()
        except Exception as exc:  # noqa: BLE001 - a reply with the reason, never a dead service
            resp.success, resp.message, resp.steps = False, f"replace failed: {type(exc).__name__}: {exc}", []
        self.log(resp.message)
        return resp

    def _on_apply(self, req: Any, resp: Any) -> Any:
        self.log(f"apply_graph {req.graph_path or '(text)'} dry_run={req.dry_run}")
        try:
            ok, message, changes, steps = self.hotswap.apply_graph(req.graph_yaml, req.graph_path, req.dry_run)
            resp.success, resp.changes = bool(ok), changes
            resp.message = message + ("\n" + "\n".join(steps) if steps else "")
        except Exception as exc:  # noqa: BLE001
            resp.success, resp.message, resp.changes = False, f"apply failed: {type(exc).__name__}: {exc}", []
        self.log(resp.message.splitlines()[0] if resp.message else "")
        return resp

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
