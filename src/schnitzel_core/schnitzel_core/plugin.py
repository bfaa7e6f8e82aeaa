"""The plugin API: what a plugin declares (PluginSpec) and what it implements (NodeLogic).

A plugin is a class derived from :class:`NodeLogic` with a class attribute
``spec`` (a :class:`PluginSpec`). It is registered through the Python entry
point group ``schnitzel.plugins`` (name = plugin name, value = "module:Class"),
so a new plugin installs as its own package with no change to the core.

Node logic is plain Python: it never imports rclpy. The ROS adapter in
schnitzel_nodes owns topics, parameters, lifecycle and diagnostics and calls the
hooks below. Heavy dependencies (opencv, onnxruntime) are imported in
``configure``, never at module import, so listing and validating plugins stays
fast and works where those libraries are absent.

API versioning follows semver caret rules (docs/plugin-api.md): a plugin that
targets ``api_version`` X.Y.Z loads on a runtime with the same major and a
minor >= Y.
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import threading
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple

from .packet import Packet

#: The plugin API version this runtime implements (1.1: the check_params hook;
#: 1.2: PluginSpec.static_check, run by the validator).
PLUGIN_API_VERSION = "1.2.0"
#: Entry point group plugins register under.
ENTRY_POINT_GROUP = "schnitzel.plugins"

REQUIRED = object()  # sentinel default: the parameter must be given


class Category(str, enum.Enum):
    SOURCE = "source"
    TRANSFORM = "transform"
    COMPUTE = "compute"
    POLICY = "policy"
    STATE = "state"
    CONTROL = "control"
    SINK = "sink"


class Direction(str, enum.Enum):
    IN = "in"
    OUT = "out"


class Profile(str, enum.Enum):
    """How a port's payload may travel."""

    ANY = "any"            # serialisable, small or large
    INPROC = "inproc"      # only inside one container (e.g. a frame carrying a shared buffer)
    EVENT = "event"        # small, serialisable records fit for durable storage and egress


#: Message type of a port unless declared otherwise.
STREAM_PACKET = "schnitzel_msgs/msg/StreamPacket"


@dataclasses.dataclass(frozen=True)
class Port:
    name: str
    direction: Direction
    kinds: Tuple[str, ...] = ("*",)     # accepted/produced packet kinds; "video.*" and "*" wildcards
    profile: Profile = Profile.ANY
    msg_type: str = STREAM_PACKET     # ROS message type on the wire
    qos: str = "events"               # default QoS preset for edges on this port ("frames", "events", "sensor")
    description: str = ""


def In(name: str, kinds: Sequence[str] = ("*",), **kw: Any) -> Port:
    return Port(name, Direction.IN, tuple(kinds), **kw)


def Out(name: str, kinds: Sequence[str] = ("*",), **kw: Any) -> Port:
    return Port(name, Direction.OUT, tuple(kinds), **kw)


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter in a plugin's schema."""

    name: str
    type: str                          # "int" | "float" | "number" | "str" | "bool" | "list" | "dict" | "any"
    default: Any = REQUIRED
    description: str = ""
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    enum: Optional[Tuple[Any, ...]] = None
    live: bool = False                 # may change on a running node without replacement
    items: Optional[str] = None        # element type for "list"
    secret_env: bool = False           # value names an environment variable holding a secret

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def json_schema(self) -> Dict[str, Any]:
        types = {"int": "integer", "float": "number", "number": "number", "str": "string",
                 "bool": "boolean", "list": "array", "dict": "object"}
        schema: Dict[str, Any] = {}
        if self.type in types:
            schema["type"] = types[self.type]
        if self.description:
            schema["description"] = self.description
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.enum is not None:
            schema["enum"] = list(self.enum)
        if self.items and self.items in types:
            schema["items"] = {"type": types[self.items]}
        if not self.required:
            schema["default"] = self.default
        if self.live:
            schema["x-live"] = True
        return schema


@dataclasses.dataclass(frozen=True)
class PluginSpec:
    """Everything a plugin declares in code; the validator checks graphs against it."""

    name: str
    category: Category
    version: str                       # the plugin's own version
    api_version: str = PLUGIN_API_VERSION  # plugin API version it was written for
    ports: Tuple[Port, ...] = ()
    params: Tuple[Param, ...] = ()
    description: str = ""
    external: bool = False             # writes to a system outside the graph: must be fed by a durable queue
    delay: bool = False                # a delay node: cycles may pass through it when it has an initial value
    durable_queue: bool = False        # the durable queue node itself
    stateful: bool = False             # hands state over on hot replacement (get_state/set_state)
    #: Checks the validator runs on a node's params (defaults merged in) beyond each value's
    #: schema: ``static_check(params) -> [(param, message, hint)]``, empty when usable. Keep it
    #: cheap and free of side effects (no connection is made while validating).
    static_check: Optional[Callable[[Mapping[str, Any]], Sequence[Tuple[str, str, str]]]] = None

    def port(self, name: str) -> Optional[Port]:
        for p in self.ports:
            if p.name == name:
                return p
        return None

    @property
    def inputs(self) -> Tuple[Port, ...]:
        return tuple(p for p in self.ports if p.direction == Direction.IN)

    @property
    def outputs(self) -> Tuple[Port, ...]:
        return tuple(p for p in self.ports if p.direction == Direction.OUT)

    def param(self, name: str) -> Optional[Param]:
        for p in self.params:
            if p.name == name:
                return p
        return None

    def defaults(self) -> Dict[str, Any]:
        return {p.name: p.default for p in self.params if not p.required}

    def params_json_schema(self) -> Dict[str, Any]:
        return {
            "type": "object",
            "properties": {p.name: p.json_schema() for p in self.params},
            "required": [p.name for p in self.params if p.required],
            "additionalProperties": False,
        }


@dataclasses.dataclass(frozen=True)
class Ack:
    """A sink's acknowledgement of one packet to the durable queue that fed it; or, with
    outcome ``accepted``, a durable queue's acknowledgement of a commit to the node that
    sent the packets through its outbox (``queue_id`` = that node, ``idempotency_key`` =
    its sender id, ``seqs`` = committed sequence numbers as [first, last] pairs;
    schnitzel_core.outbox).

    Travels as schnitzel_msgs/DeliveryAck on ``/<graph>/_delivery/ack``.
    """

    queue_id: str
    sink_id: str
    idempotency_key: str
    row_id: int
    outcome: str = "delivered"         # "delivered" | "retry" | "rejected" | "accepted"
    reason: str = ""
    seqs: Tuple[int, ...] = ()         # outcome "accepted" only


class NodeContext:
    """What the runtime gives a node's logic: identity, parameters, output and services.

    The ROS adapter (and the unit-test harness) subclass or construct this; logic
    only uses the public attributes and methods below.
    """

    def __init__(self, node_id: str, params: Mapping[str, Any], graph: str = "graph",
                 emit: Optional[Callable[[str, Packet], None]] = None,
                 logger: Optional[logging.Logger] = None,
                 clock: Optional[Callable[[], int]] = None,
                 blackboard: Any = None) -> None:
        from .packet import now_ns

        self.node_id = node_id
        self.graph = graph
        self.params: Dict[str, Any] = dict(params)
        self.logger = logger or logging.getLogger(f"schnitzel.{graph}.{node_id}")
        self._emit = emit
        self.clock_ns: Callable[[], int] = clock or now_ns
        self.blackboard = blackboard
        self.counters: Dict[str, int] = {}
        self._lock = threading.Lock()
        self.emitted: List[Tuple[str, Packet]] = []  # filled only when no emit callback is given (tests)
        self.acks: List[Ack] = []  # filled only when no ack callback is given (tests)
        self._ack: Optional[Callable[[Ack], None]] = None
        #: The hosting rclpy node, for the few plugins that bridge arbitrary ROS topics
        #: (ros_topic_source/sink). None outside a ROS container (unit tests).
        self.ros_node: Any = None

    def emit(self, port: str, packet: Packet) -> None:
        """Send a packet out of an output port. Thread-safe."""
        if self._emit is None:
            with self._lock:
                self.emitted.append((port, packet))
        else:
            self._emit(port, packet)

    def ack(self, ack: Ack) -> None:
        """Acknowledge a packet to its durable queue (sinks fed by a queue call this)."""
        if self._ack is None:
            with self._lock:
                self.acks.append(ack)
        else:
            self._ack(ack)

    def count(self, name: str, n: int = 1) -> None:
        """Bump a named counter (e.g. "drops", "invalid"); surfaced in metrics and diagnostics."""
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n


class NodeLogic:
    """Base of every plugin's logic. Override the hooks you need.

    Lifecycle: ``configure`` (read and check params, open resources) ->
    ``activate`` (start producing) -> ``deactivate`` (stop producing) ->
    ``cleanup`` (release resources). ``on_packet`` is only called while active.

    Sources produce either on a timer (set ``tick_period_s`` and implement
    ``tick``) or in their own thread (set ``threaded = True`` and implement
    ``run(stop)``, returning when ``stop`` is set). Both emit through
    ``self.ctx.emit``.
    """

    spec: ClassVar[PluginSpec]
    threaded: ClassVar[bool] = False

    def __init__(self, ctx: NodeContext) -> None:
        self.ctx = ctx
        self.params = ctx.params
        self.tick_period_s: Optional[float] = None

    # lifecycle hooks
    def configure(self) -> None: ...
    def activate(self) -> None: ...
    def deactivate(self) -> None: ...
    def cleanup(self) -> None: ...

    # data hooks
    def on_packet(self, port: str, packet: Packet) -> None: ...
    def tick(self) -> None: ...
    def run(self, stop: threading.Event) -> None: ...

    def on_ack(self, ack: Ack) -> None:
        """Durable queue only: a sink acknowledged a packet (see docs/contracts.md)."""

    def check_params(self, params: Mapping[str, Any]) -> None:
        """Raise ValueError if this combination of parameters is unusable (the schema
        already checked each value on its own). Called with the merged params before a live
        change is applied, so a refused change leaves the node as it was."""

    def on_params(self, changed: Mapping[str, Any]) -> None:
        """Apply live parameter changes (only params declared ``live=True`` arrive here)."""
        merged = dict(self.params)
        merged.update(changed)
        self.check_params(merged)
        self.params.update(changed)

    # hot replacement: state hand-over through the blackboard
    def get_state(self) -> Any:
        return None

    def set_state(self, state: Any) -> None: ...

    def emit(self, port: str, packet: Packet) -> None:
        self.ctx.emit(port, packet)
