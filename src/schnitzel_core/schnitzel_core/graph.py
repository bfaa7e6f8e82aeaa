"""The graph model: what a graph file (YAML) describes, with source positions.

``load_graph(path)`` (in ``schnitzel_core.graph_loader``) parses a file into a
:class:`Graph`; positions (file, line, column; 1-based) are kept on every
element so the validator can point at the exact place of a mistake.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

SPEC_VERSION = 1
DEFAULT_CONTAINER = "main"
DEFAULT_HOST = "localhost"
#: What happens to an input that finds its port's queue full (node ``inputs: {PORT: {overflow}}``):
#: drop the oldest queued input (default), drop the new one, or fail the run.
OVERFLOW_POLICIES = ("drop_oldest", "drop_new", "error")
DEFAULT_OVERFLOW = "drop_oldest"
#: Inputs a port may hold queued before its overflow policy applies (``max_queued``).
DEFAULT_MAX_QUEUED = 1000
INPUT_KEYS = ("overflow", "max_queued")
#: ``hosts:`` roles (docs/multi-host.md): the one ``manager`` host runs the lifecycle manager.
HOST_ROLES = ("manager", "worker")
#: ``discovery: {mode}``: DDS peers listed per host (static) or a Fast DDS discovery server.
DISCOVERY_MODES = ("static", "server")
DEFAULT_DISCOVERY_PORT = 11811
#: ``zenoh: {mode}``: sites meet as peers (mesh) or as clients of a router.
ZENOH_MODES = ("peer", "client")


@dataclasses.dataclass(frozen=True)
class Pos:
    file: str = "<graph>"
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclasses.dataclass
class HostDecl:
    """A machine of a multi-host graph (``hosts:``, docs/multi-host.md)."""

    name: str
    address: str = ""                  # where the other hosts reach it (IPv4 address or DNS name)
    role: str = "worker"               # manager | worker
    site: str = ""                     # hosts of one site talk DDS; sites meet over Zenoh
    pos: Pos = Pos()
    key_pos: Dict[str, Pos] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ContainerDecl:
    id: str
    host: str = DEFAULT_HOST
    restart: str = "on-failure"        # never | on-failure
    restart_backoff_s: float = 1.0
    restart_limit: int = 5
    pos: Pos = Pos()
    implicit: bool = False             # created because the file declared none
    key_pos: Dict[str, Pos] = dataclasses.field(default_factory=dict)  # position of each key's value


@dataclasses.dataclass
class NodeDecl:
    id: str
    plugin: str
    container: str = DEFAULT_CONTAINER
    params: Dict[str, Any] = dataclasses.field(default_factory=dict)
    version: Optional[str] = None      # optional plugin version constraint (e.g. "^1.2")
    pos: Pos = Pos()
    param_pos: Dict[str, Pos] = dataclasses.field(default_factory=dict)
    # Writer QoS overrides per output port: {port: preset name or mapping} (schnitzel_core.qos).
    qos: Dict[str, Any] = dataclasses.field(default_factory=dict)
    # Backpressure per input port: {port: {overflow?, max_queued?}} (docs/graph-spec.md, inputs).
    inputs: Dict[str, Any] = dataclasses.field(default_factory=dict)
    key_pos: Dict[str, Pos] = dataclasses.field(default_factory=dict)  # position of each key's value


@dataclasses.dataclass
class EdgeDecl:
    src_node: str
    src_port: str
    dst_node: str
    dst_port: str
    qos: Any = None                    # None, a preset name, or a mapping
    transport: str = "auto"            # auto | inproc | shm | dds | zenoh
    outbox: Optional[str] = None       # into a durable queue: memory (default) | durable
    outbox_max: Optional[int] = None   # packets the sender keeps unacknowledged (default 10,000)
    pos: Pos = Pos()
    key_pos: Dict[str, Pos] = dataclasses.field(default_factory=dict)  # position of each key's value

    @property
    def label(self) -> str:
        return f"{self.src_node}.{self.src_port} -> {self.dst_node}.{self.dst_port}"


@dataclasses.dataclass
class Graph:
    name: str
    spec_version: int = SPEC_VERSION
    containers: List[ContainerDecl] = dataclasses.field(default_factory=list)
    nodes: List[NodeDecl] = dataclasses.field(default_factory=list)
    edges: List[EdgeDecl] = dataclasses.field(default_factory=list)
    file: str = "<graph>"
    pos: Pos = Pos()
    raw: Dict[str, Any] = dataclasses.field(default_factory=dict)  # the interpolated document
    # Large payloads by reference (schnitzel_core.payload_ref.RefSettings as a dict); {} = off.
    payload_ref: Dict[str, Any] = dataclasses.field(default_factory=dict)
    key_pos: Dict[str, Pos] = dataclasses.field(default_factory=dict)  # position of each top-level value
    # ``runtime:`` settings as read (source_grace_s, source_grace, delivery_stall_s, state_backend,
    # state_path); the compiler fills in the defaults (docs/runtime.md)
    runtime: Dict[str, Any] = dataclasses.field(default_factory=dict)
    # ``controllers:`` entries as read (schnitzel_core.autonomic.spec_from_dict reads each) and
    # where each starts in the file; the control plane, apart from nodes and edges (docs/autonomic.md)
    controllers: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    controller_pos: List[Pos] = dataclasses.field(default_factory=list)

    # ``hosts:`` (empty: every container runs on one machine), ``discovery:`` and ``zenoh:``
    # settings as read (docs/multi-host.md)
    hosts: List[HostDecl] = dataclasses.field(default_factory=list)
    discovery: Dict[str, Any] = dataclasses.field(default_factory=dict)
    zenoh: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def host(self, name: str) -> Optional[HostDecl]:
        for h in self.hosts:
            if h.name == name:
                return h
        return None

    def host_of(self, node_id: str) -> str:
        """The host a node runs on (its container's host)."""
        n = self.node(node_id)
        c = self.container(n.container) if n else None
        return c.host if c else DEFAULT_HOST

    def site_of_host(self, name: str) -> str:
        h = self.host(name)
        return (h.site if h else "") or ""

    def node(self, node_id: str) -> Optional[NodeDecl]:
        for n in self.nodes:
            if n.id == node_id:
                return n
        return None

    def container(self, container_id: str) -> Optional[ContainerDecl]:
        for c in self.containers:
            if c.id == container_id:
                return c
        return None

    def inputs_of(self, node_id: str) -> List[EdgeDecl]:
        return [e for e in self.edges if e.dst_node == node_id]

    def outputs_of(self, node_id: str) -> List[EdgeDecl]:
        return [e for e in self.edges if e.src_node == node_id]
