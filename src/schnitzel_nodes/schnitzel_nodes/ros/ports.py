"""A node's ports as ports_json (docs/contracts.md) wires them: output ports, input edges,
input overflow policies, and the checks run before anything is created (QoS resolvable, a
wire converter for every port that travels over DDS or Zenoh). Raises LoadError.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Tuple

from schnitzel_core import outbox as obx
from schnitzel_core.plugin import Category, Direction, PluginSpec

from ..mailbox import InputPolicy
from .qos import QosError, to_profile
from .wire import IMAGE, Wire, wire_for

#: Topic names a lifecycle node already uses under ``~/``; a port may not take them.
RESERVED_PORTS = ("transition_event",)


class LoadError(ValueError):
    """A node that cannot be created as requested (bad ports_json, params, plugin)."""


# ports
class OutPort:
    __slots__ = ("name", "topic", "qos", "inproc", "dds", "pub", "wire", "lazy", "outbox_cfg", "box", "zenoh_keys")

    def __init__(self, name: str, topic: str, qos: Any, transports: List[str],
                 zenoh_keys: Optional[List[str]] = None) -> None:
        self.name, self.topic, self.qos = name, topic, qos
        self.inproc = "inproc" in transports
        self.dds = "dds" in transports or "shm" in transports
        self.zenoh_keys = list(zenoh_keys or [])   # zenoh edges (ros/zenoh_link.py): CDR bytes per key
        self.pub: Any = None
        self.wire: Optional[Wire] = None   # set for DDS outputs
        #: published on DDS only while someone subscribes (an Image output with no DDS edge)
        self.lazy = False
        #: an edge into a durable queue: keep what is sent until the queue's commit is
        #: acknowledged (ports_json ``outbox``, schnitzel_core.outbox); box made at configure
        self.outbox_cfg: Optional[Mapping[str, Any]] = None
        self.box: Optional[obx.Outbox] = None


def parse_dds_readers(text: str, outs: Mapping[str, "OutPort"]) -> Dict[str, int]:
    """The LoadNode option ``dds_readers`` (JSON ``{port: readers}``) -> checked counts; LoadError."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LoadError(f"options.dds_readers is not valid JSON: {exc}") from None
    if not isinstance(raw, Mapping) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                               for v in raw.values()):
        raise LoadError('options.dds_readers must be a JSON object of output port -> reader count, e.g. {"out": 2}')
    unknown = sorted(set(raw) - set(outs))
    if unknown:
        raise LoadError(f"options.dds_readers names output(s) {unknown}; this node has {sorted(outs)}")
    return {str(k): int(v) for k, v in raw.items() if v}


def unmatched_writers(outs: Mapping[str, "OutPort"], readers: Mapping[str, int]) -> Dict[str, str]:
    """Output ports whose DDS writer has matched fewer readers than the plan connects to it:
    port -> "matched/wanted". A packet a best-effort (or volatile) writer sends before a reader
    matched never reaches that reader."""
    out = {}
    for name, want in readers.items():
        o = outs.get(name)
        if o is None or o.pub is None:
            continue
        got = o.pub.get_subscription_count()
        if got < want:
            out[name] = f"{got}/{want}"
    return out


class InEdge:
    __slots__ = ("port", "topic", "qos", "transport", "handle", "wire", "key", "src")

    def __init__(self, port: str, topic: str, qos: Any, transport: str, key: str = "", src: str = "") -> None:
        self.port, self.topic, self.qos, self.transport = port, topic, qos, transport
        self.key, self.src = key, src   # zenoh edges: the key expression, the sending node id
        self.handle: Any = None  # subscription or bus token (zenoh: the link's subscription ids)
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
    unknown = set(ports) - {"in", "out", "inputs", "payload_ref", "zenoh"}
    if unknown:
        raise LoadError(f"ports_json has unknown keys {sorted(unknown)}; expected 'in', 'out', 'inputs', "
                        "'payload_ref' and 'zenoh'")
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
        bad = [t for t in transports if t not in ("inproc", "dds", "shm", "zenoh")]
        if bad:
            raise LoadError(f"ports_json out.{name}: unknown transport(s) {bad}; use inproc, dds or zenoh")
        outs[name] = OutPort(name, decl["topic"], decl.get("qos", port.qos), list(transports),
                             [str(k) for k in decl.get("zenoh_keys") or []])
        cfg = decl.get("outbox")
        if cfg is not None:
            if not isinstance(cfg, Mapping) or cfg.get("mode", "memory") not in obx.MODES:
                raise LoadError(f"ports_json out.{name}.outbox must be an object with mode "
                                f"{' or '.join(obx.MODES)}")
            outs[name].outbox_cfg = cfg
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
            if transport not in ("inproc", "dds", "shm", "zenoh"):
                raise LoadError(f"ports_json in.{name}: unknown transport {transport!r}; use inproc, dds or zenoh")
            if transport == "zenoh":
                if not e.get("key"):
                    raise LoadError(f"ports_json in.{name}: a zenoh edge needs its 'key'")
                ins.append(InEdge(name, e["topic"], e.get("qos", port.qos), "zenoh", str(e["key"]),
                                  str(e.get("from", "")).split(".")[0]))
                continue
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
        if o.dds or o.zenoh_keys:
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


__all__ = ["LoadError", "OutPort", "InEdge", "parse_ports", "parse_input_policies", "RESERVED_PORTS"]
