"""The run plan: what the compiler makes of a valid graph, and what both the launch
file and the built-in runner execute.

A plan is plain data (JSON-serialisable), so the generated launch file, the
lifecycle manager and the runner all read the same file
(``<graph>.plan.json``) and start exactly the same containers and nodes.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

#: Format version of the plan file; bumped on incompatible changes.
PLAN_FORMAT = 1

CONTAINER_PACKAGE = "schnitzel_nodes"
CONTAINER_EXECUTABLE = "schnitzel_container"
MANAGER_PACKAGE = "schnitzel_bringup"
MANAGER_EXECUTABLE = "schnitzel_manager"
MANAGER_NODE_NAME = "schnitzel_manager"
#: The autonomic controllers' host (schnitzel_bringup.controller_node), installed as
#: lib/schnitzel_bringup/schnitzel_controller; its ROS node is ``<namespace>/_control``.
CONTROLLER_EXECUTABLE = "schnitzel_controller"
CONTROLLER_NODE_NAME = "_control"

#: A source that has sent nothing this long after its activation degrades the graph (``runtime:
#: source_grace_s``; ``source_grace: {id: s}`` per node, 0 = never).
SOURCE_GRACE_S = 5.0
#: A durable queue whose oldest row has waited this long degrades the graph (``runtime:
#: delivery_stall_s``; rows normally leave in milliseconds).
DELIVERY_STALL_S = 5.0


class PlanError(ValueError):
    """A plan file that cannot be read (missing, not JSON, wrong format version)."""


@dataclasses.dataclass
class RestartPolicy:
    policy: str = "on-failure"        # never | on-failure
    backoff_s: float = 1.0            # delay before the first restart; doubles up to 30 s
    limit: int = 5                    # restarts allowed before the container is given up


@dataclasses.dataclass
class PlanContainer:
    id: str
    host: str = "localhost"
    node_name: str = ""               # ROS node name of the container process
    namespace: str = "/"              # ROS namespace of the container process
    restart: RestartPolicy = dataclasses.field(default_factory=RestartPolicy)
    nodes: List[str] = dataclasses.field(default_factory=list)   # node ids, in start order
    package: str = CONTAINER_PACKAGE
    executable: str = CONTAINER_EXECUTABLE
    arguments: List[str] = dataclasses.field(default_factory=list)

    @property
    def full_name(self) -> str:
        ns = self.namespace.rstrip("/")
        return f"{ns}/{self.node_name}"


@dataclasses.dataclass
class PlanNode:
    id: str
    plugin: str
    container: str
    namespace: str                    # "/<graph>"
    category: str = ""
    package: str = ""                 # distribution that provides the plugin
    plugin_version: str = ""
    params: Dict[str, Any] = dataclasses.field(default_factory=dict)   # after defaults
    ports: Dict[str, Any] = dataclasses.field(default_factory=dict)    # ports_json (docs/contracts.md)
    remappings: List[List[str]] = dataclasses.field(default_factory=list)
    upstream: List[str] = dataclasses.field(default_factory=list)      # node ids feeding this one
    feeds_sinks: List[str] = dataclasses.field(default_factory=list)   # durable_queue only
    #: output port -> DDS readers the plan connects to it (its edges, the recorder): the node
    #: waits, when it activates, until its writer has matched that many (LoadNode option)
    dds_readers: Dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.namespace.rstrip('/')}/{self.id}"

    @property
    def is_source(self) -> bool:
        return self.category == "source" or not self.upstream

    def load_options(self, graph: str) -> Dict[str, str]:
        """The LoadNode ``options`` (key/value text) the container expects."""
        out = {"ports_json": json.dumps(self.ports, sort_keys=True),
               "graph": graph, "container": self.container}
        if self.dds_readers:
            out["dds_readers"] = json.dumps(self.dds_readers, sort_keys=True)
        return out

    def parameters_json(self) -> str:
        return json.dumps(self.params, sort_keys=True)


@dataclasses.dataclass
class PlanEdge:
    src: str                          # "node.port"
    dst: str
    topic: str
    transport: str                    # inproc | shm | dds | zenoh
    key: str = ""                     # zenoh only: the key expression the edge's packets travel under
    qos: Dict[str, Any] = dataclasses.field(default_factory=dict)          # reader QoS
    writer_qos: Dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Plan:
    graph: str
    namespace: str
    graph_file: str = ""
    containers: List[PlanContainer] = dataclasses.field(default_factory=list)
    nodes: List[PlanNode] = dataclasses.field(default_factory=list)   # in start order (sinks first)
    edges: List[PlanEdge] = dataclasses.field(default_factory=list)
    start_order: List[str] = dataclasses.field(default_factory=list)
    stop_order: List[str] = dataclasses.field(default_factory=list)
    manager: Dict[str, Any] = dataclasses.field(default_factory=dict)
    status_topics: Dict[str, str] = dataclasses.field(default_factory=dict)
    # the graph's ``runtime:`` settings with defaults: source_grace_s, source_grace {id: s},
    # delivery_stall_s, state_backend, state_path (docs/runtime.md, "Settings")
    runtime: Dict[str, Any] = dataclasses.field(default_factory=dict)
    # multi-host placement (docs/multi-host.md): the graph's hosts [{name, address, role, site}],
    # its discovery / zenoh settings; ``host`` and ``dds_env`` are set in a host's share of the
    # plan (``<graph>.<host>.plan.json``): which host runs it, and the DDS settings it runs under
    hosts: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    discovery: Dict[str, Any] = dataclasses.field(default_factory=dict)
    zenoh: Dict[str, Any] = dataclasses.field(default_factory=dict)
    host: str = ""
    dds_env: Dict[str, str] = dataclasses.field(default_factory=dict)
    #: in the share of the host that serves DDS discovery: {address, port} it listens on
    discovery_server: Dict[str, str] = dataclasses.field(default_factory=dict)
    # ``controllers:`` (docs/autonomic.md): {"spec": entry as read, "integer_params": ["node.param"]}
    controllers: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    # the process hosting them ({package, executable, name, namespace}; {} without controllers):
    # the launch file starts it beside the manager, as ``schnitzel run`` does
    control: Dict[str, Any] = dataclasses.field(default_factory=dict)
    format: int = PLAN_FORMAT

    # ---- lookups ---------------------------------------------------------
    def node(self, node_id: str) -> Optional[PlanNode]:
        for n in self.nodes:
            if n.id == node_id:
                return n
        return None

    def container(self, cid: str) -> Optional[PlanContainer]:
        for c in self.containers:
            if c.id == cid:
                return c
        return None

    def nodes_in(self, cid: str) -> List[PlanNode]:
        c = self.container(cid)
        return [self.node(n) for n in (c.nodes if c else [])]  # type: ignore[misc]

    @property
    def manager_host(self) -> str:
        """The host that runs the lifecycle manager ("" for a one-machine graph)."""
        return next((h["name"] for h in self.hosts if h.get("role") == "manager"), "")

    def containers_on(self, host: str) -> List[PlanContainer]:
        return [c for c in self.containers if c.host == host]

    @property
    def sources(self) -> List[str]:
        return [n.id for n in self.nodes if n.is_source]

    @property
    def sinks(self) -> List[str]:
        return [n.id for n in self.nodes if n.category == "sink"]

    def source_grace_s(self, node_id: str) -> float:
        """Seconds a source may stay silent after activation before the graph reads degraded
        (0: never)."""
        per = (self.runtime.get("source_grace") or {}).get(node_id)
        return float(per if per is not None else self.runtime.get("source_grace_s", SOURCE_GRACE_S))

    @property
    def delivery_stall_s(self) -> float:
        return float(self.runtime.get("delivery_stall_s", DELIVERY_STALL_S))

    # ---- JSON ------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d = {"schnitzel_plan": d.pop("format"), **d}
        return d

    def count_dds_readers(self) -> None:
        """Fill each node's ``dds_readers`` from the DDS edges (one reader per edge)."""
        for n in self.nodes:
            n.dds_readers = {}
        for e in self.edges:
            if e.transport in ("dds", "shm"):
                node, port = e.src.split(".", 1)
                pn = self.node(node)
                if pn is not None:
                    pn.dds_readers[port] = pn.dds_readers.get(port, 0) + 1

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def write(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Plan":
        d = dict(d)
        fmt = d.pop("schnitzel_plan", None)
        if fmt != PLAN_FORMAT:
            raise PlanError(f"plan format {fmt!r} is not supported (this schnitzel reads format "
                            f"{PLAN_FORMAT}); compile the graph again with `schnitzel compile`")
        containers = []
        for c in d.pop("containers", []):
            c = dict(c)
            c["restart"] = RestartPolicy(**c.get("restart", {}))
            containers.append(PlanContainer(**c))
        nodes = [PlanNode(**n) for n in d.pop("nodes", [])]
        edges = [PlanEdge(**e) for e in d.pop("edges", [])]
        return cls(containers=containers, nodes=nodes, edges=edges, **d)

    @classmethod
    def from_json(cls, text: str) -> "Plan":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise PlanError(f"plan is not valid JSON: {exc}") from None
        except TypeError as exc:
            raise PlanError(f"plan has an unexpected shape: {exc}") from None

    @classmethod
    def read(cls, path: Union[str, Path]) -> "Plan":
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise PlanError(f"cannot read plan {p}: {exc.strerror or exc}") from None
        return cls.from_json(text)
