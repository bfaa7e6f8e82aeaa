"""Hot replacement: swap a node of a running graph with no restart and no packet missed.

The lifecycle manager calls this module; it talks to containers and nodes only
through a :class:`ReplaceTransport` (the ROS implementation is :class:`RosTransport`),
so the protocol runs against fakes in unit tests.

Protocol (docs/hot-replacement.md has the why and the guarantees)::

    proto = ReplaceProtocol(transport)
    result = proto.update(old=NodeRef(...), new=NodeLoad(...))   # live params or replace
    result.success, result.message, result.step_lines()          # -> ReplaceNode response

Stateless node (overlap; downstream may see a packet twice, never miss one)::

    load new as <id>__r<N> beside the old one (same container, same ports_json topics)
    configure new            -- failure: unload new, old keeps serving (rollback)
    wait until new's inputs are matched
    activate new             -- failure: unload new, old keeps serving (rollback)
    overlap (both active)    -- a packet in flight is processed by at least one of them
    deactivate old, drain old, cleanup old, unload old

Stateful node (``spec.stateful``; state goes old.get_state -> blackboard -> new.set_state)::

    load new with option handover=1, configure new (it holds its inputs from now on)
    wait until new's inputs are matched
    deactivate old           -- the adapter saves old's state (and per-stream watermarks)
    activate new             -- the adapter restores the state, then replays the held
                                inputs newer than the watermarks; failure: unload new,
                                activate old again (rollback)
    drain old, cleanup old, unload old

Live parameters: when only parameters the plugin declares ``live`` change (same
plugin, same ports, same container), they are set in place with the node's
standard ``~/set_parameters_atomically`` service: all or nothing, no replacement.
"""
from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import json
import re
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

#: LoadNode option keys this protocol sets (the adapter reads them; docs/hot-replacement.md).
OPT_NODE_ID = "node_id"          # graph node id of a node loaded under a temporary name
OPT_REPLACES = "replaces"        # full name of the node being replaced (informational)
OPT_HANDOVER = "handover"        # "1": restore handed-over state on activate, hold inputs until then

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_OVERLAP_S = 0.3
DEFAULT_DRAIN_S = 0.5
_TEMP_RE = re.compile(r"^(?P<base>.+?)__r(?P<n>\d+)$")


class ReplaceError(Exception):
    """A request that cannot be carried out at all (bad arguments); nothing was changed."""


class StepFailed(Exception):
    """A transport call that failed; the message is the reason shown to the user."""


# ---------------------------------------------------------------- data
@dataclasses.dataclass
class NodeRef:
    """A node as it runs now."""

    node_id: str                       # graph node id
    container: str                     # container id
    node_name: str = ""                # ROS node name: the id, or <id>__r<N> after a replacement
    namespace: str = ""                # "/<graph>"
    unique_id: int = 0                 # container-local id (0: unload by name)
    plugin: str = ""
    params: Dict[str, Any] = dataclasses.field(default_factory=dict)
    options: Dict[str, str] = dataclasses.field(default_factory=dict)   # LoadNode options it was loaded with
    stateful: bool = False

    def __post_init__(self) -> None:
        self.node_name = self.node_name or self.node_id

    @property
    def full_name(self) -> str:
        return f"{self.namespace.rstrip('/')}/{self.node_name}"


@dataclasses.dataclass
class NodeLoad:
    """What to run instead (usually from the new plan's PlanNode: see :func:`load_from_plan_node`)."""

    plugin: str
    params: Dict[str, Any]
    options: Dict[str, str] = dataclasses.field(default_factory=dict)   # ports_json, graph, container
    container: str = ""                # "" = the old node's container
    stateful: bool = False             # the new plugin hands state over (spec.stateful)
    live_params: Tuple[str, ...] = ()  # params of the plugin declared live=True
    remappings: Dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Step:
    name: str                          # load | configure | activate | deactivate | ...
    target: str                        # full node name (or container)
    ok: bool
    t_ns: int                          # wall clock at the start of the step
    duration_ms: float = 0.0
    detail: str = ""

    def line(self) -> str:
        t = _dt.datetime.fromtimestamp(self.t_ns / 1e9, tz=_dt.timezone.utc)
        stamp = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
        text = f"{stamp} {self.name} {self.target}: {'ok' if self.ok else 'FAILED'} ({self.duration_ms:.1f} ms)"
        return text + (f": {self.detail}" if self.detail else "")


@dataclasses.dataclass
class ReplaceResult:
    success: bool
    message: str
    steps: List[Step]
    mode: str                          # "replace" | "live_params" | "noop"
    serving: Optional[NodeRef] = None  # the node that serves afterwards
    rolled_back: bool = False

    def step_lines(self) -> List[str]:
        """The ReplaceNode response's ``steps``."""
        return [s.line() for s in self.steps]


# ---------------------------------------------------------------- transport
class ReplaceTransport:
    """What the protocol needs from the running graph. Every method raises
    :class:`StepFailed` (or any exception; its text becomes the reason) on failure."""

    def load_node(self, container: str, plugin: str, node_name: str, namespace: str,
                  parameters_json: str, options: Mapping[str, str], remappings: Mapping[str, str],
                  timeout_s: float) -> Tuple[str, int]:
        """Load a node; returns ``(full_node_name, unique_id)``."""
        raise NotImplementedError

    def unload_node(self, container: str, unique_id: int, node_name: str, timeout_s: float) -> None:
        raise NotImplementedError

    def list_nodes(self, container: str, timeout_s: float) -> List[str]:
        """Full names of the nodes the container hosts."""
        raise NotImplementedError

    def change_state(self, full_node_name: str, transition: str, timeout_s: float) -> None:
        """Lifecycle transition: configure | activate | deactivate | cleanup."""
        raise NotImplementedError

    def set_parameters(self, full_node_name: str, params: Mapping[str, Any], timeout_s: float) -> None:
        """Set parameters all-or-nothing; raise with the node's reason when refused."""
        raise NotImplementedError

    def wait_inputs_matched(self, full_node_name: str, ports_json: str, timeout_s: float) -> str:
        """Wait until the node's DDS input subscriptions are visible on the graph; returns a
        short detail. The default waits for nothing (inproc inputs are immediate)."""
        return ""

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


# ---------------------------------------------------------------- helpers
def base_name(node_name: str) -> str:
    m = _TEMP_RE.match(node_name)
    return m.group("base") if m else node_name


def temp_name(node_id: str, taken: Iterable[str]) -> str:
    """The next free ``<id>__r<N>`` (N > every N in use for that id)."""
    highest = 0
    for name in taken:
        m = _TEMP_RE.match(name.rsplit("/", 1)[-1])
        if m and m.group("base") == node_id:
            highest = max(highest, int(m.group("n")))
    return f"{node_id}__r{highest + 1}"


def changed_params(old: Mapping[str, Any], new: Mapping[str, Any]) -> Dict[str, Any]:
    """Params whose value differs (a key missing from ``new`` is not a change: see merge_params)."""
    return {k: v for k, v in new.items() if k not in old or old[k] != v or type(old[k]) is not type(v)}


def merge_params(current: Mapping[str, Any], given: Optional[Mapping[str, Any]], plugin_changed: bool) -> Dict[str, Any]:
    """The new node's params for a ReplaceNode request.

    Same plugin: ``given`` is merged over the current params (``k=v`` changes one key).
    Another plugin: ``given`` is the whole set (the old plugin's params may not exist there).
    ``given`` None or empty with the same plugin keeps the current params.
    """
    if plugin_changed:
        return dict(given or {})
    out = dict(current)
    out.update(given or {})
    return out


def load_from_plan_node(plan_node: Any, graph: str, spec: Any = None) -> NodeLoad:
    """A :class:`NodeLoad` from a ``schnitzel_bringup.plan.PlanNode`` (and its plugin spec)."""
    live = tuple(sorted(p.name for p in getattr(spec, "params", ()) if getattr(p, "live", False)))
    return NodeLoad(plugin=plan_node.plugin, params=dict(plan_node.params),
                    options=dict(plan_node.load_options(graph)), container=plan_node.container,
                    stateful=bool(getattr(spec, "stateful", False)), live_params=live,
                    remappings={a: b for a, b in getattr(plan_node, "remappings", [])})


def validate_replacement(graph: Any, node_id: str, plugin: str, params: Mapping[str, Any],
                         registry: Any = None) -> Tuple[Any, List[str]]:
    """Check the graph as it would be after the replacement, with the validator.

    Returns ``(new_graph, errors)``; ``errors`` are one-line messages (empty: valid).
    """
    from schnitzel_validator import validate

    node = graph.node(node_id)
    if node is None:
        return None, [f"graph {graph.name!r} has no node {node_id!r} (nodes: "
                      f"{', '.join(sorted(n.id for n in graph.nodes)) or 'none'})"]
    new_graph = copy.deepcopy(graph)
    n = new_graph.node(node_id)
    n.plugin = plugin
    n.params = dict(params)
    n.param_pos = {}
    report = validate(new_graph, registry)
    return new_graph, [str(e) for e in report.errors]


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, TimeoutError) and not text:
        text = "timed out"
    return text or type(exc).__name__


# ---------------------------------------------------------------- protocol
class ReplaceProtocol:
    """Runs one replacement (or live parameter change) against a transport.

    ``timeout_s`` bounds each step; ``overlap_s`` is how long old and new run
    side by side (stateless); ``drain_s`` how long the deactivated old node may
    still deliver what it holds before it is cleaned up.
    """

    def __init__(self, transport: ReplaceTransport, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 overlap_s: float = DEFAULT_OVERLAP_S, drain_s: float = DEFAULT_DRAIN_S,
                 clock_ns: Callable[[], int] = time.time_ns,
                 log: Optional[Callable[[str], None]] = None) -> None:
        if timeout_s <= 0:
            raise ReplaceError(f"timeout_s must be > 0, not {timeout_s}")
        self.t = transport
        self.timeout_s = float(timeout_s)
        self.overlap_s = max(0.0, float(overlap_s))
        self.drain_s = max(0.0, float(drain_s))
        self.clock_ns = clock_ns
        self.log = log
        self._lock = threading.Lock()   # one replacement at a time per protocol object

    # -- step runner -------------------------------------------------------------
    def _step(self, steps: List[Step], name: str, target: str, fn: Callable[[], Any],
              detail: str = "") -> Tuple[bool, Any]:
        t0 = self.clock_ns()
        m0 = time.monotonic()
        try:
            value = fn()
            ok, text = True, detail or (value if isinstance(value, str) else "")
        except Exception as exc:  # noqa: BLE001 - every failure becomes the step's reason
            value, ok, text = None, False, _reason(exc)
        step = Step(name, target, ok, t0, (time.monotonic() - m0) * 1000.0, text)
        steps.append(step)
        if self.log:
            self.log(step.line())
        return ok, (value if ok else text)

    # -- entry points ---------------------------------------------------------------
    def update(self, old: NodeRef, new: NodeLoad, *, force_replace: bool = False) -> ReplaceResult:
        """Apply ``new`` to the running ``old`` node: live params in place when that is
        enough, otherwise the replacement protocol."""
        mode = self.classify(old, new)
        if mode == "noop" and not force_replace:
            return ReplaceResult(True, f"node {old.node_id} already runs {new.plugin} with these parameters",
                                 [], "noop", old)
        if mode == "live_params" and not force_replace:
            return self.set_live_params(old, changed_params(old.params, new.params))
        return self.replace(old, new)

    @staticmethod
    def classify(old: NodeRef, new: NodeLoad) -> str:
        """"noop", "live_params" or "replace" (see the module docstring)."""
        same_place = (new.container or old.container) == old.container
        same_ports = not old.options or old.options.get("ports_json") == new.options.get("ports_json")
        if new.plugin != old.plugin or not same_place or not same_ports or set(old.params) - set(new.params):
            return "replace"
        diff = changed_params(old.params, new.params)
        if not diff:
            return "noop"
        if set(diff) <= set(new.live_params):
            return "live_params"
        return "replace"

    def set_live_params(self, node: NodeRef, params: Mapping[str, Any]) -> ReplaceResult:
        steps: List[Step] = []
        names = ", ".join(f"{k}={json.dumps(v, default=str)}" for k, v in sorted(params.items()))
        ok, why = self._step(steps, "set_parameters", node.full_name,
                             lambda: self.t.set_parameters(node.full_name, dict(params), self.timeout_s),
                             detail=names)
        if not ok:
            return ReplaceResult(False, f"node {node.node_id}: live parameter change refused: {why}; "
                                        "nothing was changed", steps, "live_params", node)
        serving = dataclasses.replace(node, params={**node.params, **params})
        return ReplaceResult(True, f"node {node.node_id}: set {names} in place (no replacement)",
                             steps, "live_params", serving)

    def replace(self, old: NodeRef, new: NodeLoad) -> ReplaceResult:
        if not self._lock.acquire(blocking=False):
            raise ReplaceError("another replacement is in progress; try again when it has finished")
        try:
            return self._replace(old, new)
        finally:
            self._lock.release()

    # -- the protocol ---------------------------------------------------------------
    def _replace(self, old: NodeRef, new: NodeLoad) -> ReplaceResult:
        steps: List[Step] = []
        to = self.timeout_s
        container = new.container or old.container
        stateful = bool(old.stateful and new.stateful)

        ok, taken = self._step(steps, "list_nodes", f"container {container}",
                               lambda: self.t.list_nodes(container, to))
        if not ok:
            return ReplaceResult(False, f"cannot replace {old.node_id}: container {container} does not answer: "
                                        f"{taken}; nothing was changed", steps, "replace", old)
        name = temp_name(old.node_id, list(taken) + [old.node_name])
        options = dict(new.options)
        options[OPT_NODE_ID] = old.node_id
        options[OPT_REPLACES] = old.full_name
        options.setdefault("container", container)
        if stateful:
            options[OPT_HANDOVER] = "1"
        new_ref = NodeRef(old.node_id, container, name, old.namespace, 0, new.plugin, dict(new.params),
                          options, new.stateful)
        target = new_ref.full_name

        ok, loaded = self._step(
            steps, "load", target,
            lambda: self.t.load_node(container, new.plugin, name, old.namespace,
                                     json.dumps(new.params, sort_keys=True), options, new.remappings, to),
            detail=f"plugin {new.plugin} in container {container}")
        if not ok:
            return ReplaceResult(False, f"replacement of {old.node_id} failed: cannot load {new.plugin}: {loaded}; "
                                        f"{old.full_name} keeps serving", steps, "replace", old, rolled_back=True)
        new_ref.unique_id = int(loaded[1]) if isinstance(loaded, (tuple, list)) else 0

        def rollback(why: str, reactivate_old: bool = False) -> ReplaceResult:
            self._step(steps, "rollback_unload", target,
                       lambda: self.t.unload_node(container, new_ref.unique_id, name, to))
            if reactivate_old:
                ok_old, err = self._step(steps, "rollback_activate", old.full_name,
                                         lambda: self.t.change_state(old.full_name, "activate", to))
                if not ok_old:
                    return ReplaceResult(False, f"replacement of {old.node_id} failed: {why}; and the old node "
                                                f"could not be activated again: {err}; node {old.node_id} is NOT "
                                                "serving", steps, "replace", None, rolled_back=True)
            return ReplaceResult(False, f"replacement of {old.node_id} rolled back: {why}; {old.full_name} keeps "
                                        "serving", steps, "replace", old, rolled_back=True)

        ok, why = self._step(steps, "configure", target, lambda: self.t.change_state(target, "configure", to))
        if not ok:
            return rollback(f"new node {new.plugin} failed to configure: {why}")

        ports_json = options.get("ports_json", "")
        ok, why = self._step(steps, "wait_inputs", target,
                             lambda: self.t.wait_inputs_matched(target, ports_json, to))
        if not ok:
            return rollback(f"new node's inputs did not connect: {why}")

        if stateful:
            # freeze the old node: on deactivate the adapter saves its state for the new one
            ok, why = self._step(steps, "deactivate", old.full_name,
                                 lambda: self.t.change_state(old.full_name, "deactivate", to),
                                 detail="state saved to blackboard handover/<graph>/" + old.node_id)
            if not ok:
                return rollback(f"old node could not be deactivated to hand its state over: {why}",
                                reactivate_old=False)
            ok, why = self._step(steps, "activate", target, lambda: self.t.change_state(target, "activate", to),
                                 detail="state restored, held inputs replayed")
            if not ok:
                return rollback(f"new node {new.plugin} failed to activate: {why}", reactivate_old=True)
        else:
            ok, why = self._step(steps, "activate", target, lambda: self.t.change_state(target, "activate", to))
            if not ok:
                return rollback(f"new node {new.plugin} failed to activate: {why}")
            if self.overlap_s:
                self._step(steps, "overlap", f"{old.full_name} + {target}",
                           lambda: self.t.sleep(self.overlap_s), detail=f"both active for {self.overlap_s:g} s")
            ok_d, why_d = self._step(steps, "deactivate", old.full_name,
                                     lambda: self.t.change_state(old.full_name, "deactivate", to))
            if not ok_d and self.log:
                self.log(f"old node {old.full_name} did not deactivate ({why_d}); unloading it anyway")

        # the new node serves from here on; what follows only retires the old one
        self._step(steps, "drain", old.full_name, lambda: self.t.sleep(self.drain_s),
                   detail=f"{self.drain_s:g} s for what it still holds")
        ok_c, why_c = self._step(steps, "cleanup", old.full_name,
                                 lambda: self.t.change_state(old.full_name, "cleanup", to))
        ok_u, why_u = self._step(steps, "unload", old.full_name,
                                 lambda: self.t.unload_node(old.container, old.unique_id, old.node_name, to))
        if not ok_u:
            return ReplaceResult(False, f"{target} ({new.plugin}) now serves {old.node_id}, but the old node "
                                        f"{old.full_name} could not be unloaded: {why_u} (it is inactive; "
                                        "unload it by hand)", steps, "replace", new_ref)
        note = "" if ok_c else f" (cleanup of the old node failed: {why_c}; it was unloaded anyway)"
        return ReplaceResult(True, f"{old.node_id} replaced: {target} ({new.plugin}) serves, {old.full_name} "
                                   f"({old.plugin or 'old'}) unloaded{note}", steps, "replace", new_ref)


# ---------------------------------------------------------------- ROS transport
_TRANSITIONS = {"configure": 1, "cleanup": 2, "activate": 3, "deactivate": 4}


def _ros_value(value: Any) -> Any:
    """A parameter value as the adapter declares it: scalars as such, list/dict as JSON text
    (schnitzel_nodes.ros.params)."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


class RosTransport(ReplaceTransport):
    """The protocol over ROS services, from a node the caller spins (e.g. the manager's).

    Containers: ``/<graph>/_containers/<id>/{load_node,unload_node,list_nodes}``
    (schnitzel_msgs); nodes: ``<full name>/change_state`` (lifecycle_msgs) and
    ``<full name>/set_parameters_atomically`` (rcl_interfaces).

    The calls wait on futures, so the node must be spun by another thread (a
    MultiThreadedExecutor or a background spin) while the protocol runs.
    """

    #: How long a failed transition waits for the node's NodeStatus to say why.
    REASON_WAIT_S = 1.5

    def __init__(self, node: Any, graph: str,
                 container_service: Optional[Callable[[str, str], str]] = None,
                 watch_status: bool = True) -> None:
        self.node = node
        self.graph = graph
        self._svc = container_service or (lambda cid, what: f"/{graph}/_containers/{cid}/{what}")
        self._clients: Dict[Tuple[str, str], Any] = {}
        # node id -> (last_error, monotonic time received): the reason behind a refused transition
        self._errors: Dict[str, Tuple[str, float]] = {}
        self._status_sub = None
        if watch_status:
            from schnitzel_msgs.msg import NodeStatus

            self._status_sub = node.create_subscription(NodeStatus, f"/{graph}/_status/nodes", self._on_status, 50,
                                                        callback_group=self._status_group())

    def _status_group(self) -> Any:
        from rclpy.callback_groups import ReentrantCallbackGroup

        return ReentrantCallbackGroup()

    def _on_status(self, msg: Any) -> None:
        self._errors[msg.node_id] = (msg.last_error, time.monotonic())

    def _client(self, srv_type: Any, name: str) -> Any:
        key = (srv_type.__name__, name)
        c = self._clients.get(key)
        if c is None:
            group = getattr(self, "_callback_group", None)
            c = self._clients[key] = (self.node.create_client(srv_type, name, callback_group=group) if group
                                      else self.node.create_client(srv_type, name))
        return c

    def _call(self, srv_type: Any, name: str, request: Any, timeout_s: float) -> Any:
        client = self._client(srv_type, name)
        deadline = time.monotonic() + timeout_s
        if not client.wait_for_service(timeout_sec=max(0.0, deadline - time.monotonic())):
            raise StepFailed(f"service {name} is not available (waited {timeout_s:g} s)")
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _f: done.set())
        if not done.wait(max(0.0, deadline - time.monotonic())):
            future.cancel()
            raise StepFailed(f"{name} did not answer within {timeout_s:g} s")
        if future.exception() is not None:
            raise StepFailed(f"{name} failed: {future.exception()}")
        return future.result()

    def load_node(self, container, plugin, node_name, namespace, parameters_json, options, remappings, timeout_s):
        from schnitzel_msgs.msg import KeyValue
        from schnitzel_msgs.srv import LoadNode

        req = LoadNode.Request(plugin=plugin, node_name=node_name, node_namespace=namespace,
                               parameters_json=parameters_json)
        req.options = [KeyValue(key=k, value=str(v)) for k, v in sorted(options.items())]
        req.remappings = [KeyValue(key=k, value=v) for k, v in sorted(remappings.items())]
        resp = self._call(LoadNode, self._svc(container, "load_node"), req, timeout_s)
        if not resp.success:
            raise StepFailed(resp.error_message or "load_node refused without a reason")
        return resp.full_node_name, int(resp.unique_id)

    def unload_node(self, container, unique_id, node_name, timeout_s):
        from schnitzel_msgs.srv import UnloadNode

        resp = self._call(UnloadNode, self._svc(container, "unload_node"),
                          UnloadNode.Request(node_name=node_name, unique_id=int(unique_id)), timeout_s)
        if not resp.success:
            raise StepFailed(resp.error_message or "unload_node refused without a reason")

    def list_nodes(self, container, timeout_s):
        from schnitzel_msgs.srv import ListNodes

        resp = self._call(ListNodes, self._svc(container, "list_nodes"), ListNodes.Request(), timeout_s)
        return list(resp.full_node_names)

    def change_state(self, full_node_name, transition, timeout_s):
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        req = ChangeState.Request(transition=Transition(id=_TRANSITIONS[transition]))
        resp = self._call(ChangeState, f"{full_node_name}/change_state", req, timeout_s)
        if not resp.success:
            raise StepFailed(f"{transition} refused by the node{self._last_error(full_node_name)}")

    def _last_error(self, full_node_name: str) -> str:
        """The node's own reason, from the next NodeStatus it publishes (best effort; the
        container publishes one per node and second)."""
        if self._status_sub is None:
            return ""
        node_id = full_node_name.rsplit("/", 1)[-1]
        since = time.monotonic()
        deadline = since + self.REASON_WAIT_S
        while time.monotonic() < deadline:
            err, at = self._errors.get(node_id, ("", 0.0))
            if at >= since and err:
                return f": {err}"
            time.sleep(0.05)
        err, _ = self._errors.get(node_id, ("", 0.0))
        return f": {err}" if err else ""

    def set_parameters(self, full_node_name, params, timeout_s):
        from rcl_interfaces.srv import SetParametersAtomically
        from rclpy.parameter import Parameter

        req = SetParametersAtomically.Request(
            parameters=[Parameter(k, value=_ros_value(v)).to_parameter_msg() for k, v in sorted(params.items())])
        resp = self._call(SetParametersAtomically, f"{full_node_name}/set_parameters_atomically", req, timeout_s)
        if not resp.result.successful:
            raise StepFailed(resp.result.reason or "refused without a reason")

    def wait_inputs_matched(self, full_node_name, ports_json, timeout_s):
        try:
            ports = json.loads(ports_json) if ports_json else {}
        except json.JSONDecodeError:
            return "ports_json unreadable; not waited"
        topics = sorted({e["topic"] for edges in (ports.get("in") or {}).values() for e in edges
                         if e.get("transport", "dds") != "inproc" and e.get("topic")})
        if not topics:
            return "no DDS inputs"
        ns, _, name = full_node_name.rpartition("/")
        ns = ns or "/"
        deadline = time.monotonic() + timeout_s
        missing = topics
        while time.monotonic() < deadline:
            missing = [t for t in topics if not any(
                i.node_name == name and i.node_namespace == ns
                for i in self.node.get_subscriptions_info_by_topic(t))]
            if not missing:
                return f"{len(topics)} DDS input(s) matched"
            time.sleep(0.02)
        raise StepFailed(f"no subscription on {', '.join(missing)} after {timeout_s:g} s")


# ---------------------------------------------------------------- apply a graph difference
@dataclasses.dataclass
class ApplyResult:
    success: bool
    message: str
    steps: List[Step]
    serving: Dict[str, NodeRef]        # node id -> node now running (added/replaced/changed ones)
    removed: List[str]                 # node ids unloaded
    done: List[str]                    # the actions carried out, as text

    def step_lines(self) -> List[str]:
        return [s.line() for s in self.steps]


def apply_actions(proto: ReplaceProtocol, actions: Sequence[Any], running: Mapping[str, NodeRef],
                  loads: Mapping[str, NodeLoad], namespace: str,
                  containers: Optional[Mapping[str, Callable[[str], None]]] = None) -> ApplyResult:
    """Carry out ``graph_diff.plan_application`` actions in order with ``proto``'s transport.

    ``running``: node id -> the node as it runs now; ``loads``: node id -> what the new plan
    runs (for load, replace and set_params); ``containers``: callables
    ``{"start_container": f(cid), "stop_container": f(cid), "update_container": f(cid)}``
    the manager provides (a missing one fails that action with a clear reason).
    Stops at the first failed action: what was done stays done (reported in ``done``).
    """
    t, to = proto.t, proto.timeout_s
    steps: List[Step] = []
    serving: Dict[str, NodeRef] = {}
    removed: List[str] = []
    done: List[str] = []
    containers = containers or {}

    def fail(why: str) -> ApplyResult:
        applied = f"; already applied: {'; '.join(done)}" if done else "; nothing was changed"
        return ApplyResult(False, f"{why}{applied}", steps, serving, removed, done)

    for a in actions:
        kind, nid = a.action, a.target
        if kind in ("start_container", "stop_container", "update_container"):
            fn = containers.get(kind)
            ok, why = proto._step(steps, kind, f"container {nid}",
                                  (lambda f=fn, c=nid: f(c)) if fn else
                                  (lambda: (_ for _ in ()).throw(StepFailed(
                                      "the lifecycle manager does not start, stop or change container processes "
                                      "(the runner or launch owns them); restart the graph to change containers"))))
            if not ok:
                return fail(f"{a}: {why}")
        elif kind == "load":
            new = loads[nid]
            cid = new.container or a.container
            options = {**new.options, OPT_NODE_ID: nid}
            full = f"{namespace.rstrip('/')}/{nid}"
            ok, loaded = proto._step(steps, "load", full, lambda: t.load_node(
                cid, new.plugin, nid, namespace, json.dumps(new.params, sort_keys=True), options,
                new.remappings, to), detail=f"plugin {new.plugin} in container {cid}")
            if not ok:
                return fail(f"{a}: {loaded}")
            ref = NodeRef(nid, cid, nid, namespace, int(loaded[1]), new.plugin, dict(new.params), options,
                          new.stateful)
            for tr in ("configure", "activate"):
                ok, why = proto._step(steps, tr, full, lambda tr=tr: t.change_state(full, tr, to))
                if not ok:
                    proto._step(steps, "rollback_unload", full, lambda: t.unload_node(cid, ref.unique_id, nid, to))
                    return fail(f"{a}: new node failed to {tr}: {why}")
            serving[nid] = ref
        elif kind == "set_params":
            res = proto.set_live_params(running[nid], dict(a.params))
            steps.extend(res.steps)
            if not res.success:
                return fail(res.message)
            serving[nid] = res.serving  # type: ignore[assignment]
        elif kind == "replace":
            res = proto.replace(running[nid], loads[nid])
            steps.extend(res.steps)
            if not res.success:
                return fail(res.message)
            serving[nid] = res.serving  # type: ignore[assignment]
        elif kind == "unload":
            old = running[nid]
            proto._step(steps, "deactivate", old.full_name, lambda: t.change_state(old.full_name, "deactivate", to))
            proto._step(steps, "drain", old.full_name, lambda: t.sleep(proto.drain_s))
            proto._step(steps, "cleanup", old.full_name, lambda: t.change_state(old.full_name, "cleanup", to))
            ok, why = proto._step(steps, "unload", old.full_name,
                                  lambda: t.unload_node(old.container, old.unique_id, old.node_name, to))
            if not ok:
                return fail(f"{a}: {why}")
            removed.append(nid)
        else:
            return fail(f"unknown action {kind!r}")
        done.append(str(a))
    return ApplyResult(True, f"applied {len(done)} action(s)" if done else "no changes", steps, serving,
                       removed, done)


# ---------------------------------------------------------------- the manager's services
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
        from .compiler import compile_graph

        return compile_graph(graph, self.registry, graph_file=getattr(self.plan, "graph_file", "") or None)

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
    from .compiler import compile_graph

    try:
        now = compile_graph(graph, registry, graph_file=plan.graph_file)
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
        transport = RosTransport(self.node, plan.graph, container_service=container_service)
        transport._callback_group = self._io_group
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
