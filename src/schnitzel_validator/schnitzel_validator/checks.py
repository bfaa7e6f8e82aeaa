"""The static checks over a loaded graph (codes SCH2xx..SCH8xx of docs/validation.md).

Placement on hosts (SCH7xx) is in checks_hosts.py, the control plane (SCH8xx) in
checks_control.py; both are mixins of the one checker here, which holds the report.

Each check reports where (file, line, column of the exact key), what (node or
edge), and how to fix it. Checks never cascade: a node whose plugin is unknown
is reported once, and the edges on it are not reported again for unknown ports.
"""
from __future__ import annotations

import fnmatch
import re
from collections import deque
from typing import Any, Dict, List, Optional, Set, Tuple

from schnitzel_core.graph import (DEFAULT_CONTAINER, INPUT_KEYS, OVERFLOW_POLICIES, ContainerDecl, EdgeDecl, Graph,
                                  NodeDecl, Pos)
from schnitzel_core.graph_loader import Issue
from schnitzel_core.plugin import Category, Direction, Param, PluginSpec, Port, Profile
from schnitzel_core import param_check
from schnitzel_core import qos as qosmod
from schnitzel_core.registry import Registry, satisfies

from .checks_control import ControlChecks
from .checks_hosts import HostChecks
from .codes import severity
from .hints import _close, _did_you_mean  # noqa: F401 - also imported from here

ROS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_NAME = 255
_PY_TYPES = {"int": "an integer", "float": "a number", "number": "a number", "str": "a string",
             "bool": "true or false", "list": "a list", "dict": "a mapping"}


def ros_name_fix(name: str) -> str:
    """A valid ROS name close to ``name``: other characters become '_', no leading digit."""
    fixed = re.sub(r"[^A-Za-z0-9_]", "_", name).lstrip("_") or "n"
    if fixed[0].isdigit():
        fixed = "n" + fixed
    return fixed


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def kinds_match(a: str, b: str) -> bool:
    """Can a packet of kind pattern ``a`` be one of kind pattern ``b``? ("*", "video.*" wildcards)."""
    return a == b or fnmatch.fnmatchcase(a, b) or fnmatch.fnmatchcase(b, a)


def _yaml_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _ports_text(spec: PluginSpec, direction: Optional[Direction] = None) -> str:
    ports = [p for p in spec.ports if direction is None or p.direction == direction]
    if not ports:
        return "none"
    return ", ".join(f"{p.name} ({p.direction.value}: {'|'.join(p.kinds)})" for p in ports)


class _Checker(HostChecks, ControlChecks):
    def __init__(self, graph: Graph, registry: Registry) -> None:
        self.g = graph
        self.reg = registry
        self.issues: List[Issue] = []
        self.nodes: Dict[str, NodeDecl] = {}
        self.specs: Dict[str, Optional[PluginSpec]] = {}
        self.containers: Dict[str, ContainerDecl] = {}
        self.good_edges: List[Tuple[EdgeDecl, Port, Port]] = []
        self.linked: List[EdgeDecl] = []   # edges whose two nodes exist

    def add(self, code: str, message: str, pos: Pos, hint: str = "", node: Optional[str] = None,
            edge: Optional[str] = None) -> None:
        self.issues.append(Issue(code, message, pos.file, pos.line, pos.column, hint, node or None, edge,
                                 severity(code)))

    def run(self) -> List[Issue]:
        self.check_names()
        self.check_containers()
        for n in self.g.nodes:
            if n.id in self.specs:
                continue  # a duplicate id, reported once
            self.specs[n.id] = self.check_plugin(n)
        self.check_edges()
        self.check_cycles()
        self.check_egress()
        self.check_reachability()
        self.check_hosts()
        self.check_controllers()
        return self.issues

    # ---- placement on hosts (docs/multi-host.md) -------------------------------------------
    def check_names(self) -> None:
        g = self.g
        name = g.name
        if name:
            tokens = name.strip("/").split("/") if name.startswith("/") or "/" in name else [name]
            bad = (not tokens or any(not ROS_NAME.match(t) for t in tokens) or "//" in name
                   or name.endswith("/") or len(name) > MAX_NAME)
            if bad:
                self.add("SCH201", f"graph name {name!r} is not a valid ROS namespace (it names every topic "
                         f"/{name}/<node>/<port>)", g.key_pos.get("name", g.pos),
                         f"use letters, digits and '_', not starting with a digit, e.g. "
                         f"`name: {ros_name_fix(name)}`")
        first: Dict[str, NodeDecl] = {}
        for n in g.nodes:
            if not n.id:
                continue
            where = n.key_pos.get("id", n.pos)
            if n.id in first:
                self.add("SCH203", f"node id {n.id!r} is used twice (first at line {first[n.id].pos.line})",
                         where, f"give each node its own id, e.g. `id: {n.id}_2`", node=n.id)
                continue
            first[n.id] = n
            if not ROS_NAME.match(n.id) or len(n.id) > MAX_NAME:
                self.add("SCH202", f"node id {n.id!r} is not a valid ROS node name", where,
                         f"use letters, digits and '_', not starting with a digit, e.g. "
                         f"`id: {ros_name_fix(n.id)}`", node=n.id)
            elif n.id.startswith("_"):
                self.add("SCH202", f"node id {n.id!r} starts with '_'; such names are reserved for schnitzel's "
                         "own topics (/<graph>/_status, /<graph>/_delivery)", where,
                         f"e.g. `id: {ros_name_fix(n.id)}`", node=n.id)
        self.nodes = first

    def check_containers(self) -> None:
        if not self.g.containers:
            # A graph built in code (not loaded) may omit containers: the loader's default applies.
            self.containers[DEFAULT_CONTAINER] = ContainerDecl(DEFAULT_CONTAINER, implicit=True)
        for c in self.g.containers:
            if c.implicit:
                self.containers.setdefault(c.id, c)
                continue
            if not c.id:
                continue  # a missing id is reported by the loader
            where = c.key_pos.get("id", c.pos)
            if c.id in self.containers:
                self.add("SCH205", f"container id {c.id!r} is declared twice (first at line "
                         f"{self.containers[c.id].pos.line})", where, "give each container its own id")
                continue
            self.containers[c.id] = c
            if not ROS_NAME.match(c.id) or len(c.id) > MAX_NAME:
                self.add("SCH204", f"container id {c.id!r} is not valid (it names a ROS node and a process)",
                         where, f"use letters, digits and '_', e.g. `id: {ros_name_fix(c.id)}`")
        used: Set[str] = set()
        declared = list(dict.fromkeys(c.id for c in self.g.containers if not c.implicit and c.id))
        for n in self.g.nodes:
            if not n.container:
                continue
            used.add(n.container)
            if n.container not in self.containers:
                if "container" in n.key_pos:
                    where = n.key_pos["container"]
                    msg = f"node {n.id!r} is placed in container {n.container!r}, which is not declared"
                else:
                    where = n.pos
                    msg = (f"node {n.id!r} names no container and the graph declares no container "
                           f"{n.container!r} (the default)")
                hint = _did_you_mean(n.container, declared)
                hint += (f"declared containers: {', '.join(declared)}; add `container: ID` to the node or declare "
                         f"`- id: {n.container}` under containers" if declared else
                         f"declare it under containers: `- id: {n.container}`")
                self.add("SCH206", msg, where, hint, node=n.id or None)
        for c in self.g.containers:
            if not c.implicit and c.id and c.id not in used and self.containers.get(c.id) is c:
                self.add("SCH207", f"container {c.id!r} is declared but no node runs in it",
                         c.key_pos.get("id", c.pos), f"place a node in it with `container: {c.id}`, or remove it")

    # ---- plugins and parameters --------------------------------------------------
    def check_plugin(self, n: NodeDecl) -> Optional[PluginSpec]:
        if not n.plugin:
            return None
        where = n.key_pos.get("plugin", n.pos)
        entry = self.reg.get(n.plugin)
        if entry is None:
            close = _close(n.plugin, self.reg.names())
            hint = (f"did you mean {' or '.join(repr(c) for c in close)}? " if close else "")
            hint += "`schnitzel plugins` lists installed plugins; a plugin from another package must be pip-installed"
            self.add("SCH301", f"node {n.id!r} uses plugin {n.plugin!r}, which is not installed", where, hint,
                     node=n.id)
            return None
        if entry.error is not None or entry.spec is None:
            if entry.api_incompatible:
                self.add("SCH303", entry.error or "incompatible plugin API", where,
                         "install a release of the plugin built for this runtime's plugin API (docs/plugin-api.md)",
                         node=n.id)
            else:
                self.add("SCH302", entry.error or f"plugin {n.plugin!r} cannot be loaded", where,
                         f"reinstall the package that provides it ({entry.dist or 'unknown'}), or fix its code",
                         node=n.id)
            return None
        spec = entry.spec
        if n.version:
            try:
                ok = satisfies(spec.version, n.version)
            except ValueError:
                ok = False
            if not ok:
                self.add("SCH304", f"node {n.id!r} asks for plugin {n.plugin!r} version {n.version!r}, but "
                         f"version {spec.version} is installed", n.key_pos.get("version", where),
                         f"install a matching version of "
                         f"{entry.dist if entry.dist and not entry.dist.startswith('<') else n.plugin}, or change "
                         "`version:`",
                         node=n.id)
        self.check_params(n, spec)
        self.check_node_qos(n, spec)
        self.check_node_inputs(n, spec)
        return spec

    def check_params(self, n: NodeDecl, spec: PluginSpec) -> None:
        names = [p.name for p in spec.params]
        where_params = n.key_pos.get("params", n.pos)
        for p in spec.params:
            if p.required and p.name not in n.params:
                example = {"int": "10", "float": "1.0", "number": "1.0", "str": '"..."', "bool": "true",
                           "list": "[]", "dict": "{}"}.get(p.type, "...")
                desc = f" ({p.description})" if p.description else ""
                self.add("SCH310", f"node {n.id!r} ({spec.name}) is missing required parameter "
                         f"{p.name!r}{desc}", where_params, f"add it under params: `{p.name}: {example}`",
                         node=n.id)
        for key, value in n.params.items():
            where = n.param_pos.get(key, where_params)
            p = spec.param(key)
            if p is None:
                hint = _did_you_mean(key, names)
                hint += f"parameters of {spec.name}: {', '.join(names) if names else 'none'}"
                self.add("SCH311", f"node {n.id!r} ({spec.name}) has no parameter {key!r}", where, hint, node=n.id)
                continue
            self.check_param_value(n, spec, p, value, where)
        self.check_static(n, spec, where_params)

    def check_static(self, n: NodeDecl, spec: PluginSpec, where_params: Pos) -> None:
        """The plugin's own check of the whole parameter set (PluginSpec.static_check)."""
        if spec.static_check is None or any(i.node == n.id for i in self.issues if i.code.startswith("SCH31")):
            return   # a missing or wrong-typed value is reported already; don't pile on
        params = spec.defaults()
        params.update(n.params)
        try:
            problems = list(spec.static_check(params))
        except Exception as exc:  # noqa: BLE001 - a plugin's bug must not crash validation
            problems = [("", f"static check of plugin {spec.name!r} failed: {type(exc).__name__}: {exc}",
                         "report this to the plugin's author")]
        for name, message, hint in problems:
            where = n.param_pos.get(name, where_params)
            self.add("SCH316", f"node {n.id!r} ({spec.name}): {message}", where, hint, node=n.id)

    def check_param_value(self, n: NodeDecl, spec: PluginSpec, p: Param, value: Any, where: Pos) -> None:
        """One SCH312..SCH315 issue per problem schnitzel_core.param_check finds (the adapter's rules)."""
        problems = {pr.kind: pr for pr in param_check.param_problems(p, value)}
        if param_check.SECRET_ENV in problems:
            var = ros_name_fix(f"{n.id}_{p.name[:-4] if p.name.endswith('_env') else p.name}").upper()
            # Never echo the value: it may be the secret itself.
            self.add("SCH315", f"parameter {p.name!r} of node {n.id!r} must name an environment variable "
                     "holding the secret, not hold the secret itself", where,
                     f"export the secret in a variable (e.g. `export {var}=...`) and write its name here: "
                     f"`{p.name}: {var}`", node=n.id)
            return
        if param_check.TYPE in problems:
            want = _PY_TYPES.get(p.type, p.type)
            extra = ""
            if p.type in ("int", "float", "number") and isinstance(value, str):
                extra = " (write numbers without quotes)"
            self.add("SCH312", f"parameter {p.name!r} of node {n.id!r} must be {want}, got {_yaml_type(value)} "
                     f"{_short(value)}", where, f"write e.g. `{p.name}: {self.example(p)}`{extra}", node=n.id)
            return
        item = problems.get(param_check.ITEM_TYPE)
        if item is not None:
            want = _PY_TYPES.get(p.items or "", p.items)
            self.add("SCH312", f"item {item.index} of parameter {p.name!r} of node {n.id!r} must be "
                     f"{want}, got {_yaml_type(item.value)} {_short(item.value)}", where,
                     f"every item of {p.name} is {want}", node=n.id)
        if param_check.ENUM in problems:
            allowed = ", ".join(repr(v) for v in p.enum or ())
            hint = _did_you_mean(str(value), [str(v) for v in p.enum or ()]) + f"allowed: {allowed}"
            self.add("SCH314", f"parameter {p.name!r} of node {n.id!r} is {_short(value)}, not one of its "
                     "allowed values", where, hint, node=n.id)
            return
        if param_check.FINITE in problems:
            self.add("SCH313", f"parameter {p.name!r} of node {n.id!r} is {value!r}, out of range: it must "
                     "be a finite number", where, "use a finite number", node=n.id)
        elif param_check.MINIMUM in problems or param_check.MAXIMUM in problems:
            lo, hi = p.minimum, p.maximum
            rng = (f"between {lo:g} and {hi:g}" if lo is not None and hi is not None else
                   f">= {lo:g}" if lo is not None else f"<= {hi:g}")
            self.add("SCH313", f"parameter {p.name!r} of node {n.id!r} is {value!r}, out of range: it must "
                     f"be {rng}", where, f"use a value {rng}", node=n.id)

    @staticmethod
    def example(p: Param) -> str:
        if p.enum:
            return repr(p.enum[0])
        if not p.required and p.default is not None:
            return repr(p.default) if not isinstance(p.default, bool) else str(p.default).lower()
        return {"int": "10", "float": "1.0", "number": "1.0", "str": '"..."', "bool": "true",
                "list": "[]", "dict": "{}"}.get(p.type, "...")

    def check_node_qos(self, n: NodeDecl, spec: PluginSpec) -> None:
        for port_name, value in n.qos.items():
            where = n.key_pos.get(f"qos.{port_name}", n.key_pos.get("qos", n.pos))
            port = spec.port(port_name)
            if port is None or port.direction != Direction.OUT:
                self.add("SCH402", f"qos of node {n.id!r} names {port_name!r}, which is not an output port of "
                         f"{spec.name}", where, _did_you_mean(port_name, [p.name for p in spec.outputs]) +
                         f"outputs: {_ports_text(spec, Direction.OUT)}", node=n.id)
                continue
            self.resolve_qos(value, qosmod.PRESETS.get(port.qos), where, n.key_pos, f"qos.{port_name}.",
                             node=n.id)

    def check_node_inputs(self, n: NodeDecl, spec: PluginSpec) -> None:
        """``inputs: {PORT: {overflow, max_queued}}``: backpressure per input port."""
        for port_name, value in n.inputs.items():
            where = n.key_pos.get(f"inputs.{port_name}", n.key_pos.get("inputs", n.pos))
            port = spec.port(port_name)
            if port is None or port.direction != Direction.IN:
                self.add("SCH410", f"inputs of node {n.id!r} names {port_name!r}, which is not an input port of "
                         f"{spec.name}", where, _did_you_mean(port_name, [p.name for p in spec.inputs]) +
                         f"inputs: {_ports_text(spec, Direction.IN)}", node=n.id)
                continue
            if spec.category == Category.COMPUTE:
                self.add("SCH411", f"inputs.{port_name} of node {n.id!r}: {spec.name} is a compute node, which "
                         "keeps only the newest packet per input (latest-only); an overflow policy does not apply",
                         where, "remove `inputs:` from this node", node=n.id)
                continue
            if not isinstance(value, dict):
                self.add("SCH411", f"inputs.{port_name} of node {n.id!r} must be a mapping, got {_yaml_type(value)}",
                         where, f"write e.g. `inputs: {{{port_name}: {{overflow: drop_new, max_queued: 100}}}}`",
                         node=n.id)
                continue
            for key in value:
                if key not in INPUT_KEYS:
                    self.add("SCH411", f"inputs.{port_name} of node {n.id!r} has unknown key {key!r}",
                             n.key_pos.get(f"inputs.{port_name}.{key}", where),
                             _did_you_mean(str(key), INPUT_KEYS) + f"allowed keys: {', '.join(INPUT_KEYS)}",
                             node=n.id)
            ov = value.get("overflow", OVERFLOW_POLICIES[0])
            if ov not in OVERFLOW_POLICIES:
                self.add("SCH411", f"inputs.{port_name}.overflow of node {n.id!r} is {_short(ov)}, not one of "
                         f"{', '.join(OVERFLOW_POLICIES)}", n.key_pos.get(f"inputs.{port_name}.overflow", where),
                         _did_you_mean(str(ov), OVERFLOW_POLICIES) + f"allowed: {', '.join(OVERFLOW_POLICIES)}",
                         node=n.id)
            mq = value.get("max_queued", 1)
            if not isinstance(mq, int) or isinstance(mq, bool) or mq < 1:
                self.add("SCH411", f"inputs.{port_name}.max_queued of node {n.id!r} must be an integer >= 1, got "
                         f"{_short(mq)}", n.key_pos.get(f"inputs.{port_name}.max_queued", where),
                         "write e.g. `max_queued: 100` (inputs queued before the overflow policy applies)",
                         node=n.id)

    def resolve_qos(self, value: Any, base: Optional[qosmod.QoS], where: Pos, key_pos: Dict[str, Pos],
                    prefix: str, node: Optional[str] = None, edge: Optional[str] = None) -> Optional[qosmod.QoS]:
        try:
            return qosmod.resolve(value, base)
        except qosmod.QosError as exc:
            at = key_pos.get(prefix + exc.key, where) if exc.key else where
            unknown_preset = isinstance(value, str) or (exc.key is None and isinstance(value, dict)
                                                        and "preset" in value)
            code = "SCH501" if unknown_preset and "preset" in str(exc) else "SCH502"
            hint = exc.hint
            if code == "SCH501" and isinstance(value, str):
                hint = _did_you_mean(value, qosmod.PRESETS) + hint
            self.add(code, str(exc), at, hint, node=node, edge=edge)
            return None

    # ---- edges ----------------------------------------------------------------------
    def check_edges(self) -> None:
        seen: Dict[Tuple[str, str, str, str], EdgeDecl] = {}
        for e in self.g.edges:
            label = e.label
            fpos = e.key_pos.get("from", e.pos)
            tpos = e.key_pos.get("to", e.pos)
            key = (e.src_node, e.src_port, e.dst_node, e.dst_port)
            if key in seen:
                self.add("SCH408", f"edge {label} is declared twice (first at line {seen[key].pos.line})",
                         e.pos, "remove one of them", edge=label)
                continue
            seen[key] = e
            src = self.nodes.get(e.src_node)
            dst = self.nodes.get(e.dst_node)
            for end, nid, where in (("from", e.src_node, fpos), ("to", e.dst_node, tpos)):
                if nid not in self.nodes:
                    hint = _did_you_mean(nid, self.nodes)
                    self.add("SCH401", f"edge {label}: its {end!r} node {nid!r} is not declared", where,
                             hint + "declare it under nodes: or fix the id", edge=label)
            if src is None or dst is None:
                continue
            self.linked.append(e)
            sspec, dspec = self.specs.get(src.id), self.specs.get(dst.id)
            sport = self.endpoint(e, src, sspec, e.src_port, Direction.OUT, fpos)
            dport = self.endpoint(e, dst, dspec, e.dst_port, Direction.IN, tpos)
            if sport is None or dport is None:
                continue
            self.good_edges.append((e, sport, dport))
            self.check_pair(e, src, dst, sspec, dspec, sport, dport)

    def endpoint(self, e: EdgeDecl, n: NodeDecl, spec: Optional[PluginSpec], port_name: str, want: Direction,
                 where: Pos) -> Optional[Port]:
        if spec is None:
            return None  # the node's plugin is already reported
        label = e.label
        if want == Direction.IN and spec.category == Category.SOURCE:
            self.add("SCH404", f"edge {label} feeds node {n.id!r}, a source ({spec.name}); sources have no inputs",
                     where, f"a source only produces; connect from {n.id}.<output> instead "
                     f"(outputs: {_ports_text(spec, Direction.OUT)})", node=n.id, edge=label)
            return None
        if want == Direction.OUT and spec.category == Category.SINK:
            self.add("SCH405", f"edge {label} reads from node {n.id!r}, a sink ({spec.name}); sinks have no "
                     "outputs", where, f"a sink only consumes; connect into {n.id}.<input> instead "
                     f"(inputs: {_ports_text(spec, Direction.IN)})", node=n.id, edge=label)
            return None
        port = spec.port(port_name)
        if port is None:
            self.add("SCH402", f"node {n.id!r} ({spec.name}) has no port {port_name!r}", where,
                     _did_you_mean(port_name, [p.name for p in spec.ports]) +
                     f"ports of {spec.name}: {_ports_text(spec)}", node=n.id, edge=label)
            return None
        if port.direction != want:
            if want == Direction.OUT:
                msg = f"{n.id}.{port_name} is an input; the 'from' end of an edge must be an output"
                hint = f"outputs of {n.id}: {_ports_text(spec, Direction.OUT)}; or swap from and to"
            else:
                msg = f"{n.id}.{port_name} is an output; the 'to' end of an edge must be an input"
                hint = f"inputs of {n.id}: {_ports_text(spec, Direction.IN)}; or swap from and to"
            self.add("SCH403", msg, where, hint, node=n.id, edge=label)
            return None
        return port

    def container_of(self, n: NodeDecl) -> Optional[ContainerDecl]:
        return self.containers.get(n.container)

    def check_pair(self, e: EdgeDecl, src: NodeDecl, dst: NodeDecl, sspec: Optional[PluginSpec],
                   dspec: Optional[PluginSpec], sport: Port, dport: Port) -> None:
        label = e.label
        if not any(kinds_match(a, b) for a in sport.kinds for b in dport.kinds):
            self.add("SCH406", f"{src.id}.{sport.name} produces {', '.join(sport.kinds)} but {dst.id}.{dport.name} "
                     f"accepts only {', '.join(dport.kinds)}", e.key_pos.get("to", e.pos),
                     "connect a port whose kinds match, or insert a node that converts between them",
                     edge=label)
        if sport.msg_type != dport.msg_type:
            self.add("SCH409", f"{src.id}.{sport.name} publishes {sport.msg_type} but {dst.id}.{dport.name} "
                     f"subscribes to {dport.msg_type}; ROS 2 never connects one topic across message types",
                     e.key_pos.get("to", e.pos), "connect ports of the same message type, or insert a node that "
                     "converts between them (e.g. a ROS topic bridge)", edge=label)
        sc, dc = self.container_of(src), self.container_of(dst)
        cross = sc is not None and dc is not None and sc.id != dc.id
        inproc = Profile.INPROC in (sport.profile, dport.profile)
        profile_problem = None
        if inproc and cross:
            profile_problem = (f"{'%s.%s' % (src.id, sport.name) if sport.profile == Profile.INPROC else '%s.%s' % (dst.id, dport.name)}"
                               f" carries in-process-only payloads (profile inproc), but this edge crosses from "
                               f"container {sc.id!r} to {dc.id!r}",
                               f"place {src.id} and {dst.id} in the same container, or insert a node that "
                               "turns the payload into a serialisable one")
        elif sport.profile == Profile.INPROC and dspec is not None and (dspec.durable_queue or dspec.external):
            what = "a durable queue" if dspec.durable_queue else "an external sink"
            profile_problem = (f"{src.id}.{sport.name} carries in-process-only payloads (profile inproc); "
                               f"{dst.id} is {what}, which stores or sends packets out of the process",
                               "insert a node that makes a serialisable record (e.g. an event builder or "
                               "encoder) before it")
        elif sport.profile == Profile.INPROC and dport.profile == Profile.EVENT:
            profile_problem = (f"{src.id}.{sport.name} carries in-process-only payloads (profile inproc), but "
                               f"{dst.id}.{dport.name} takes only small serialisable records (profile event)",
                               "insert a node that turns the payload into an event record")
        elif inproc and e.transport in ("shm", "dds"):
            profile_problem = (f"transport {e.transport} serialises packets, but this edge carries in-process-only "
                               "payloads (profile inproc)", "use `transport: inproc` or `transport: auto`")
        if profile_problem:
            self.add("SCH407", profile_problem[0], e.key_pos.get("to", e.pos), profile_problem[1], edge=label)
        if (e.outbox is not None or e.outbox_max is not None) and not (dspec is not None and dspec.durable_queue):
            key = "outbox" if e.outbox is not None else "outbox_max"
            self.add("SCH508", f"edge {label}: {key} is set, but {dst.id} is not a durable queue; only an edge "
                     "into a durable_queue has an outbox", e.key_pos.get(key, e.pos),
                     f"remove `{key}`, or route the packets through a durable_queue", edge=label)
        tpos = e.key_pos.get("transport", e.pos)
        if e.transport == "inproc" and cross:
            self.add("SCH506", f"transport inproc needs both nodes in one container, but {src.id} runs in "
                     f"{sc.id!r} and {dst.id} in {dc.id!r}", tpos,
                     "use `transport: auto` (DDS between containers) or put both nodes in one container",
                     edge=label)
        if e.transport == "shm" and sc is not None and dc is not None and sc.host != dc.host:
            self.add("SCH507", f"transport shm needs both nodes on one host, but {src.id} runs on {sc.host!r} "
                     f"and {dst.id} on {dc.host!r}", tpos, "use `transport: dds` (or auto) between hosts",
                     edge=label)
        if (sc is not None and dc is not None and sc.host != dc.host
                and int((getattr(self.g, "payload_ref", None) or {}).get("threshold_bytes", 0)) > 0):
            # a reference is a local file path: a reader on another host could never resolve it
            self.add("SCH520", f"payload_ref sends large payloads as references to files on the producer's "
                     f"host, but {src.id} runs on {sc.host!r} and {dst.id} on {dc.host!r}",
                     self.g.key_pos.get("payload_ref", e.pos),
                     "put the graph's containers on one host, or remove payload_ref (payloads go inline)",
                     edge=label)
        # QoS: the writer is the output port (and its node's override); the edge's qos is the reader.
        base = qosmod.PRESETS.get(sport.qos, qosmod.PRESETS[qosmod.DEFAULT_PRESET])
        writer: Optional[qosmod.QoS] = base
        override = src.qos.get(sport.name)
        if override is not None:
            try:
                writer = qosmod.resolve(override, base)
            except qosmod.QosError:
                writer = None  # already reported on the node
        if e.qos is None:
            return
        qpos = e.key_pos.get("qos", e.pos)
        reader = self.resolve_qos(e.qos, writer or base, qpos, e.key_pos, "qos.", edge=label)
        if reader is None or writer is None:
            return
        codes = {"reliability": "SCH503", "durability": "SCH504", "deadline": "SCH505"}
        for prob in qosmod.compatibility(writer, reader):
            hint = prob.hint.replace("PORT", sport.name)
            self.add(codes[prob.rule], f"edge {label}: {prob.message} (writer {src.id}.{sport.name}: "
                     f"{writer.reliability}, {writer.durability})", qpos, hint, edge=label)

    # ---- the graph as a whole ---------------------------------------------------------
    def adjacency(self, edges: Optional[List[EdgeDecl]] = None) -> Dict[str, List[str]]:
        adj: Dict[str, List[str]] = {nid: [] for nid in self.nodes}
        for e in (self.linked if edges is None else edges):
            adj[e.src_node].append(e.dst_node)
        return adj

    def delay_ok(self, nid: str) -> bool:
        spec = self.specs.get(nid)
        return bool(spec is not None and spec.delay and self.nodes[nid].params.get("initial") is not None)

    def check_cycles(self) -> None:
        cut = {nid for nid in self.nodes if self.delay_ok(nid)}
        adj = {nid: [d for d in succ if d not in cut]
               for nid, succ in self.adjacency([e for e, _s, _d in self.good_edges]).items() if nid not in cut}
        first_edge: Dict[Tuple[str, str], EdgeDecl] = {}
        for e, _sp, _dp in self.good_edges:
            first_edge.setdefault((e.src_node, e.dst_node), e)
        for comp in _sccs(adj):
            if len(comp) == 1:
                only = next(iter(comp))
                if only not in adj[only]:
                    continue
            order = [nid for nid in self.nodes if nid in comp]   # file order: stable reports
            start = order[0]
            path = _cycle_through(start, adj, comp)
            e = first_edge[(path[0], path[1])]
            shown = " -> ".join(path)
            delays = [nid for nid in path[:-1] if (self.specs.get(nid) is not None and self.specs[nid].delay)]
            if delays:
                d = delays[0]
                self.add("SCH602", f"cycle {shown} passes through delay node {d!r}, which has no initial value",
                         self.nodes[d].key_pos.get("params", self.nodes[d].pos),
                         f"set `initial:` under params of {d} (the value it emits before its first input)",
                         node=d, edge=e.label)
            else:
                delay_plugins = [en.name for en in self.reg.entries() if en.spec is not None and en.spec.delay]
                hint = ("break the cycle, or route it through a delay node with an initial value"
                        + (f" (plugin {', '.join(delay_plugins)})" if delay_plugins else ""))
                self.add("SCH601", f"cycle {shown}: packets would loop forever", e.pos, hint, edge=e.label)

    def check_egress(self) -> None:
        inputs: Dict[str, List[EdgeDecl]] = {}
        for e, _sp, _dp in self.good_edges:
            inputs.setdefault(e.dst_node, []).append(e)
        memo: Dict[str, bool] = {}

        def behind_queue(nid: str, visiting: Set[str]) -> bool:
            # True when every path into nid starts at a durable queue through control nodes only.
            if nid in memo:
                return memo[nid]
            spec = self.specs.get(nid)
            if spec is None:
                return True  # unknown plugin: reported already, don't pile on
            if spec.durable_queue:
                return True
            if spec.category != Category.CONTROL or nid in visiting or not inputs.get(nid):
                memo[nid] = False
                return False
            visiting.add(nid)
            ok = all(behind_queue(x.src_node, visiting) for x in inputs[nid])
            visiting.discard(nid)
            memo[nid] = ok
            return ok

        queues = [en.name for en in self.reg.entries() if en.spec is not None and en.spec.durable_queue]
        for nid, n in self.nodes.items():
            spec = self.specs.get(nid)
            if spec is None or not spec.external:
                continue
            for e in inputs.get(nid, []):
                if not behind_queue(e.src_node, set()):
                    q = queues[0] if queues else "a durable queue plugin"
                    self.add("SCH603", f"external sink {nid!r} ({spec.name}) is fed by {e.src_node}.{e.src_port} "
                             "without a durable queue in between: packets are lost when the external system is "
                             "down", e.key_pos.get("to", e.pos),
                             f"insert a durable queue node (plugin {q}): {e.src_node}.{e.src_port} -> queue, "
                             f"queue -> {nid}.{e.dst_port} (only control nodes such as a router may sit "
                             "between the queue and the sink)", node=nid, edge=e.label)

    def check_reachability(self) -> None:
        adj = self.adjacency()
        roots = [nid for nid, spec in self.specs.items()
                 if nid in self.nodes and (spec is None or spec.category == Category.SOURCE or not spec.inputs)]
        seen = set(roots)
        queue = deque(roots)
        while queue:
            for nxt in adj.get(queue.popleft(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        fed_out = {e.src_node for e in self.linked}
        for nid, n in self.nodes.items():
            spec = self.specs.get(nid)
            if spec is None:
                continue
            if nid not in seen:
                self.add("SCH610", f"node {nid!r} ({spec.name}) is not reachable from any source: nothing will "
                         "ever reach it", n.key_pos.get("id", n.pos),
                         f"connect an upstream output to one of its inputs ({_ports_text(spec, Direction.IN)}), "
                         "or remove it", node=nid)
            if spec.outputs and spec.category != Category.SINK and nid not in fed_out:
                outs = ", ".join(f"{nid}.{p.name}" for p in spec.outputs)
                self.add("SCH611", f"node {nid!r} ({spec.name}) has outputs ({outs}) connected to nothing: its "
                         "results are dropped", n.key_pos.get("id", n.pos),
                         "connect an output to a consumer (e.g. a sink), or remove the node", node=nid)


    # ---- the control plane (docs/autonomic.md) ----------------------------------
def _sccs(adj: Dict[str, List[str]]) -> List[Set[str]]:
    """Strongly connected components (Tarjan, iterative: deep graphs must not hit the recursion limit)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    on_stack: Set[str] = set()
    stack: List[str] = []
    out: List[Set[str]] = []
    counter = 0
    for root in adj:
        if root in index:
            continue
        work = [(root, iter(adj[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in adj:
                    continue
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(adj[w])))
                    advanced = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.add(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in adj[v]:
                    out.append(comp)
    return out


def _cycle_through(start: str, adj: Dict[str, List[str]], comp: Set[str]) -> List[str]:
    """The shortest cycle start -> ... -> start inside one strongly connected component."""
    parent: Dict[str, Optional[str]] = {}
    queue = deque()
    for w in adj[start]:
        if w == start:
            return [start, start]
        if w in comp and w not in parent:
            parent[w] = None
            queue.append(w)
    while queue:
        v = queue.popleft()
        for w in adj[v]:
            if w == start:
                path = [v]
                while parent[path[-1]] is not None:
                    path.append(parent[path[-1]])  # type: ignore[arg-type]
                return [start] + list(reversed(path)) + [start]
            if w in comp and w not in parent:
                parent[w] = v
                queue.append(w)
    return [start, start]  # unreachable for a true SCC


def run_checks(graph: Graph, registry: Registry) -> List[Issue]:
    return _Checker(graph, registry).run()
