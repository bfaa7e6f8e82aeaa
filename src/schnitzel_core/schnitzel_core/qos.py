"""QoS presets, resolution of an edge's QoS, and the ROS 2 compatibility rules.

Model (docs/graph-spec.md, "QoS"):

- The *writer* QoS of an output port is the port's default preset (``Port.qos``
  in the plugin spec), optionally overridden per node with ``qos: {port: ...}``
  in the graph file. One output has one publisher, so one writer QoS.
- The *reader* QoS of an edge is the edge's ``qos`` (a preset name, or a
  mapping merged over the writer's QoS); without ``qos`` the reader asks for
  exactly what the writer offers, which always connects.

ROS 2 (DDS request/offer) refuses to connect a reader whose request is stronger
than the writer's offer; :func:`compatibility` reports those pairs so the
validator can reject them before anything runs, instead of a silent runtime
"incompatible QoS" event and no data.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Tuple

RELIABILITY = ("reliable", "best_effort")
DURABILITY = ("volatile", "transient_local")
HISTORY = ("keep_last", "keep_all")
KEYS = ("reliability", "durability", "history", "depth", "deadline_ms", "lifespan_ms")


@dataclasses.dataclass(frozen=True)
class QoS:
    reliability: str = "reliable"
    durability: str = "volatile"
    history: str = "keep_last"
    depth: int = 10
    deadline_ms: Optional[float] = None   # None: no deadline (infinite)
    lifespan_ms: Optional[float] = None   # None: packets never expire

    def to_dict(self) -> Dict[str, Any]:
        """The resolved mapping carried in LoadNode ``ports_json`` (docs/contracts.md)."""
        return dataclasses.asdict(self)


PRESETS: Dict[str, QoS] = {
    # Live frames: latest only, never block the producer for a slow reader.
    "frames": QoS(reliability="best_effort", durability="volatile", history="keep_last", depth=1),
    # Sensor samples: latest few, loss tolerated.
    "sensor": QoS(reliability="best_effort", durability="volatile", history="keep_last", depth=10),
    # Events: every one matters.
    "events": QoS(reliability="reliable", durability="volatile", history="keep_last", depth=100),
    # State: the last value, delivered to late joiners too.
    "state": QoS(reliability="reliable", durability="transient_local", history="keep_last", depth=1),
}

DEFAULT_PRESET = "events"


class QosError(ValueError):
    """A QoS setting in a graph that is not valid. ``key`` names the offending key (or None)."""

    def __init__(self, message: str, key: Optional[str] = None, hint: str = "") -> None:
        super().__init__(message)
        self.key = key
        self.hint = hint


def _number(key: str, value: Any, *, integer: bool = False, minimum: float = 0) -> Any:
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok:
        want = "an integer" if integer else "a number"
        raise QosError(f"qos {key} must be {want}, got {value!r}", key,
                       f"write e.g. {key}: {'10' if integer else '100'}")
    if value < minimum:
        raise QosError(f"qos {key} must be >= {minimum}, got {value!r}", key,
                       f"use a value of at least {minimum}")
    return value


def resolve(spec: Any, base: Optional[QoS] = None) -> QoS:
    """Resolve a QoS as written in a graph (None, a preset name, or a mapping).

    A mapping may name a ``preset`` to start from; otherwise it is merged over
    ``base`` (the writer's QoS for an edge) or the ``events`` preset. Raises
    :class:`QosError` for an unknown preset, key or value.
    """
    start = base or PRESETS[DEFAULT_PRESET]
    if spec is None:
        return start
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise QosError(f"unknown QoS preset {spec!r}", None,
                           f"use one of: {', '.join(PRESETS)}, or a mapping with {', '.join(KEYS)}")
        return PRESETS[spec]
    if not isinstance(spec, Mapping):
        raise QosError(f"qos must be a preset name or a mapping, got {type(spec).__name__}", None,
                       f"use one of: {', '.join(PRESETS)}, or a mapping with {', '.join(KEYS)}")
    values = dict(spec)
    if "preset" in values:
        start = resolve(values.pop("preset"))
    fields = dataclasses.asdict(start)
    for key, value in values.items():
        if key not in KEYS:
            import difflib
            close = difflib.get_close_matches(str(key), KEYS + ("preset",), n=1)
            raise QosError(f"unknown qos key {key!r}", str(key),
                           f"did you mean {close[0]!r}?" if close else f"qos keys are: {', '.join(KEYS)}, preset")
        if key == "reliability" and value not in RELIABILITY:
            raise QosError(f"qos reliability must be one of {', '.join(RELIABILITY)}, got {value!r}", key,
                           "reliable: every packet is delivered; best_effort: latest wins, loss allowed")
        if key == "durability" and value not in DURABILITY:
            raise QosError(f"qos durability must be one of {', '.join(DURABILITY)}, got {value!r}", key,
                           "transient_local keeps the last `depth` packets for late joiners")
        if key == "history" and value not in HISTORY:
            raise QosError(f"qos history must be one of {', '.join(HISTORY)}, got {value!r}", key,
                           "keep_last keeps `depth` packets; keep_all keeps every packet")
        if key == "depth":
            value = _number(key, value, integer=True, minimum=1)
        if key in ("deadline_ms", "lifespan_ms") and value is not None:
            value = _number(key, value, minimum=0)
            if value == 0:
                value = None   # 0 means "none", as in ROS 2 (infinite)
        fields[key] = value
    return QoS(**fields)


@dataclasses.dataclass(frozen=True)
class QosProblem:
    rule: str        # "reliability" | "durability" | "deadline"
    message: str
    hint: str


def compatibility(writer: QoS, reader: QoS) -> List[QosProblem]:
    """The ROS 2 request/offer rules a (writer, reader) pair breaks; empty when they connect."""
    problems: List[QosProblem] = []
    if reader.reliability == "reliable" and writer.reliability == "best_effort":
        problems.append(QosProblem(
            "reliability",
            "a reliable reader never connects to a best_effort writer in ROS 2",
            "make the reader best_effort on this edge (e.g. qos: frames or qos: {reliability: best_effort}),"
            " or make the writer reliable with the node's qos: {PORT: events}"))
    if reader.durability == "transient_local" and writer.durability == "volatile":
        problems.append(QosProblem(
            "durability",
            "a transient_local reader never connects to a volatile writer in ROS 2",
            "use durability: volatile on this edge, or make the writer transient_local"
            " with the node's qos: {PORT: state}"))
    w_deadline = writer.deadline_ms
    r_deadline = reader.deadline_ms
    if r_deadline is not None and (w_deadline is None or w_deadline > r_deadline):
        offered = "no deadline" if w_deadline is None else f"deadline {w_deadline:g} ms"
        problems.append(QosProblem(
            "deadline",
            f"the reader requests deadline {r_deadline:g} ms but the writer offers {offered};"
            " ROS 2 needs the writer's deadline <= the reader's",
            f"raise the reader's deadline_ms to at least {w_deadline:g}" if w_deadline is not None
            else "remove deadline_ms from the reader, or set the writer's deadline_ms (node qos) to at most"
                 f" {r_deadline:g}"))
    return problems


def edge_qos(port_preset: str, node_override: Any, edge_spec: Any) -> Tuple[QoS, QoS]:
    """(writer, reader) QoS of an edge: the output port's preset, the node's override, the edge's qos."""
    base = PRESETS.get(port_preset, PRESETS[DEFAULT_PRESET])
    writer = resolve(node_override, base) if node_override is not None else base
    reader = resolve(edge_spec, writer)
    return writer, reader
