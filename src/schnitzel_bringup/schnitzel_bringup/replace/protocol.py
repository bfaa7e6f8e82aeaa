"""Hot replacement: swap a node of a running graph with no restart and no packet missed.

The lifecycle manager calls this module; it talks to containers and nodes only
through a :class:`ReplaceTransport` (the ROS implementation is
:class:`~schnitzel_bringup.replace.ros_transport.RosTransport`), so the protocol runs
against fakes in unit tests. No rclpy import here.

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
import time
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

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


# ---------------------------------------------------------------- step runner
class StepRunner:
    """Runs transport calls as named steps: each is timed, recorded in ``steps`` (the
    ReplaceNode / ApplyGraph response lines) and logged; an exception becomes the step's
    reason instead of propagating::

        run = StepRunner(steps, log=print).run
        ok, value_or_reason = run("load", "/g/n__r1", lambda: transport.load_node(...))
    """

    def __init__(self, steps: Optional[List[Step]] = None, *, clock_ns: Callable[[], int] = time.time_ns,
                 log: Optional[Callable[[str], None]] = None) -> None:
        self.steps: List[Step] = [] if steps is None else steps
        self.clock_ns = clock_ns
        self.log = log

    def run(self, name: str, target: str, fn: Callable[[], Any], detail: str = "") -> Tuple[bool, Any]:
        """``(True, fn's value)`` or ``(False, the reason)``; the step's detail is ``detail``,
        else fn's value when it is a string."""
        t0 = self.clock_ns()
        m0 = time.monotonic()
        try:
            value = fn()
            ok, text = True, detail or (value if isinstance(value, str) else "")
        except Exception as exc:  # noqa: BLE001 - every failure becomes the step's reason
            value, ok, text = None, False, _reason(exc)
        step = Step(name, target, ok, t0, (time.monotonic() - m0) * 1000.0, text)
        self.steps.append(step)
        if self.log:
            self.log(step.line())
        return ok, (value if ok else text)


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

    def runner(self, steps: Optional[List[Step]] = None) -> "StepRunner":
        """A :class:`StepRunner` with this protocol's clock and log, appending to ``steps``."""
        return StepRunner(steps, clock_ns=self.clock_ns, log=self.log)

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
        ok, why = self.runner(steps).run(
            "set_parameters", node.full_name,
            lambda: self.t.set_parameters(node.full_name, dict(params), self.timeout_s), detail=names)
        if not ok:
            return ReplaceResult(False, f"node {node.node_id}: live parameter change refused: {why}; "
                                        "nothing was changed", steps, "live_params", node)
        serving = dataclasses.replace(node, params={**node.params, **params})
        return ReplaceResult(True, f"node {node.node_id}: set {names} in place (no replacement)",
                             steps, "live_params", serving)

    # -- the protocol ---------------------------------------------------------------
    def replace(self, old: NodeRef, new: NodeLoad) -> ReplaceResult:
        """Replace ``old`` by ``new``. Not serialised here: the caller runs one request at a
        time (``HotSwap`` holds its busy lock around every request)."""
        steps: List[Step] = []
        step = self.runner(steps).run
        to = self.timeout_s
        container = new.container or old.container
        stateful = bool(old.stateful and new.stateful)

        ok, taken = step("list_nodes", f"container {container}",
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

        ok, loaded = step("load", target,
                          lambda: self.t.load_node(container, new.plugin, name, old.namespace,
                                                   json.dumps(new.params, sort_keys=True), options,
                                                   new.remappings, to),
                          detail=f"plugin {new.plugin} in container {container}")
        if not ok:
            return ReplaceResult(False, f"replacement of {old.node_id} failed: cannot load {new.plugin}: {loaded}; "
                                        f"{old.full_name} keeps serving", steps, "replace", old, rolled_back=True)
        new_ref.unique_id = int(loaded[1]) if isinstance(loaded, (tuple, list)) else 0

        def rollback(why: str, reactivate_old: bool = False) -> ReplaceResult:
            step("rollback_unload", target,
                 lambda: self.t.unload_node(container, new_ref.unique_id, name, to))
            if reactivate_old:
                ok_old, err = step("rollback_activate", old.full_name,
                                   lambda: self.t.change_state(old.full_name, "activate", to))
                if not ok_old:
                    return ReplaceResult(False, f"replacement of {old.node_id} failed: {why}; and the old node "
                                                f"could not be activated again: {err}; node {old.node_id} is NOT "
                                                "serving", steps, "replace", None, rolled_back=True)
            return ReplaceResult(False, f"replacement of {old.node_id} rolled back: {why}; {old.full_name} keeps "
                                        "serving", steps, "replace", old, rolled_back=True)

        ok, why = step("configure", target, lambda: self.t.change_state(target, "configure", to))
        if not ok:
            return rollback(f"new node {new.plugin} failed to configure: {why}")

        ports_json = options.get("ports_json", "")
        ok, why = step("wait_inputs", target,
                       lambda: self.t.wait_inputs_matched(target, ports_json, to))
        if not ok:
            return rollback(f"new node's inputs did not connect: {why}")

        if stateful:
            # freeze the old node: on deactivate the adapter saves its state for the new one
            ok, why = step("deactivate", old.full_name,
                           lambda: self.t.change_state(old.full_name, "deactivate", to),
                           detail="state saved to blackboard handover/<graph>/" + old.node_id)
            if not ok:
                return rollback(f"old node could not be deactivated to hand its state over: {why}",
                                reactivate_old=False)
            ok, why = step("activate", target, lambda: self.t.change_state(target, "activate", to),
                           detail="state restored, held inputs replayed")
            if not ok:
                return rollback(f"new node {new.plugin} failed to activate: {why}", reactivate_old=True)
        else:
            ok, why = step("activate", target, lambda: self.t.change_state(target, "activate", to))
            if not ok:
                return rollback(f"new node {new.plugin} failed to activate: {why}")
            if self.overlap_s:
                step("overlap", f"{old.full_name} + {target}",
                     lambda: self.t.sleep(self.overlap_s), detail=f"both active for {self.overlap_s:g} s")
            ok_d, why_d = step("deactivate", old.full_name,
                               lambda: self.t.change_state(old.full_name, "deactivate", to))
            if not ok_d and self.log:
                self.log(f"old node {old.full_name} did not deactivate ({why_d}); unloading it anyway")

        # the new node serves from here on; what follows only retires the old one
        step("drain", old.full_name, lambda: self.t.sleep(self.drain_s),
             detail=f"{self.drain_s:g} s for what it still holds")
        ok_c, why_c = step("cleanup", old.full_name,
                           lambda: self.t.change_state(old.full_name, "cleanup", to))
        ok_u, why_u = step("unload", old.full_name,
                           lambda: self.t.unload_node(old.container, old.unique_id, old.node_name, to))
        if not ok_u:
            return ReplaceResult(False, f"{target} ({new.plugin}) now serves {old.node_id}, but the old node "
                                        f"{old.full_name} could not be unloaded: {why_u} (it is inactive; "
                                        "unload it by hand)", steps, "replace", new_ref)
        note = "" if ok_c else f" (cleanup of the old node failed: {why_c}; it was unloaded anyway)"
        return ReplaceResult(True, f"{old.node_id} replaced: {target} ({new.plugin}) serves, {old.full_name} "
                                   f"({old.plugin or 'old'}) unloaded{note}", steps, "replace", new_ref)


