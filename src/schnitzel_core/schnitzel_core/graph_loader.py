"""Load a graph file (YAML) into a :class:`~schnitzel_core.graph.Graph`, keeping positions.

The file is composed (not constructed) with PyYAML's C loader when available,
so every value keeps its line and column; scalars are then typed as YAML would
and ``${env:NAME}`` / ``${env:NAME:-default}`` references are interpolated.

This module checks the *shape* of the file (codes SCH0xx and SCH1xx of
docs/validation.md): YAML syntax, keys, types, spec version, interpolation.
Everything that needs plugins (ports, params, kinds, QoS pairs, cycles, ...) is
checked by ``schnitzel_validator``. :func:`parse_graph` returns the graph and
every issue found; :func:`load_graph` raises :class:`GraphLoadError` when any
of them is an error.

Why one module of ~800 lines: every section of the file (containers, nodes, edges, hosts,
runtime, controllers, ...) is read by a method of one builder, because they all share the same
position bookkeeping, typing of scalars and ``${env:...}`` interpolation; each method is short and
self-contained, so a new section is one new method (and one row in docs/graph-spec.md).
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .graph import (DEFAULT_CONTAINER, DEFAULT_DISCOVERY_PORT, DEFAULT_HOST, DISCOVERY_MODES, HOST_ROLES,
                    SPEC_VERSION, ZENOH_MODES, ContainerDecl, EdgeDecl, Graph, HostDecl, NodeDecl, Pos)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # C speed where libyaml is present

TRANSPORTS = ("auto", "inproc", "shm", "dds", "zenoh")
RESTART_POLICIES = ("never", "on-failure")
MAX_DEPTH = 64          # no graph needs deeper nesting; guards the recursive composer
MAX_BYTES = 64 * 1024 * 1024

TOP_KEYS = ("schnitzel", "name", "description", "hosts", "discovery", "zenoh", "containers", "nodes", "edges",
            "payload_ref", "runtime", "controllers")
#: multi-host placement (docs/multi-host.md)
HOST_KEYS = ("name", "address", "role", "site", "description")
DISCOVERY_KEYS = ("mode", "server", "port")
ZENOH_KEYS = ("mode", "router", "port")
#: ``runtime:`` (graph-wide settings of the runner and the lifecycle manager, docs/runtime.md)
RUNTIME_KEYS = ("source_grace_s", "source_grace", "delivery_stall_s", "state_backend", "state_path",
                "metrics_port", "metrics_host", "ui_port", "ui_host")
CONTAINER_KEYS = ("id", "host", "restart", "restart_backoff_s", "restart_limit", "description")
NODE_KEYS = ("id", "plugin", "container", "params", "version", "qos", "inputs", "description")
EDGE_KEYS = ("from", "to", "qos", "transport", "outbox", "outbox_max", "description")
OUTBOX_MODES = ("memory", "durable")   # schnitzel_core.outbox.MODES

_T_STR = "tag:yaml.org,2002:str"
_T_NULL = "tag:yaml.org,2002:null"
_T_BOOL = "tag:yaml.org,2002:bool"
_T_INT = "tag:yaml.org,2002:int"
_T_FLOAT = "tag:yaml.org,2002:float"
_T_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_T_MERGE = "tag:yaml.org,2002:merge"
_T_MAP = "tag:yaml.org,2002:map"
_T_SEQ = "tag:yaml.org,2002:seq"

_ENV_REF = re.compile(r"\$\$\{|\$\{env:([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
_ENDPOINT = re.compile(r"^([^.\s]+)\.([^.\s]+)$")


@dataclasses.dataclass
class Issue:
    """One finding, loader's or validator's: a stable code, where, and how to fix it."""

    code: str
    message: str
    file: str = "<graph>"
    line: int = 0
    column: int = 0
    hint: str = ""
    node: Optional[str] = None
    edge: Optional[str] = None
    severity: str = "error"            # "error" | "warning"

    def to_dict(self) -> Dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "message": self.message,
                "file": self.file, "line": self.line, "column": self.column,
                "node": self.node, "edge": self.edge, "hint": self.hint}

    def __str__(self) -> str:
        kind = "" if self.severity == "error" else "warning: "
        return f"{self.file}:{self.line}:{self.column}: {self.code} {kind}{self.message}"


class GraphLoadError(Exception):
    """The file is not a well-formed graph; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues = list(issues)
        first = self.issues[0] if self.issues else None
        more = f" (and {len(self.issues) - 1} more)" if len(self.issues) > 1 else ""
        super().__init__(f"{first}{more}" if first else "invalid graph")

    @property
    def unreadable(self) -> bool:
        """True when the file could not be read or is not YAML (exit code 2 of `schnitzel validate`)."""
        return any(i.code in ("SCH001", "SCH002") for i in self.issues)


def _type_name(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    tag = node.tag
    if tag == _T_NULL:
        return "nothing (null)"
    return {"tag:yaml.org,2002:bool": "a boolean", _T_INT: "an integer", _T_FLOAT: "a number",
            _T_STR: "a string"}.get(tag, f"a {tag.rsplit(':', 1)[-1]}")


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}? (allowed: {', '.join(options)})"
    return f"allowed keys: {', '.join(options)}"


class _Builder:
    def __init__(self, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.issues: List[Issue] = []
        self._constructor = yaml.constructor.SafeConstructor()
        self._resolver = yaml.resolver.Resolver()
        # Values left to build: aliases (*a) can make a small file expand exponentially
        # ("billion laughs"); the budget bounds work by the file's size. Set by parse_graph.
        self.budget = 10 ** 6
        self.exhausted = False

    # ---- positions and issues ------------------------------------------------
    def pos(self, node: Node) -> Pos:
        m = node.start_mark
        return Pos(self.file, m.line + 1, m.column + 1)

    def key_pos(self, knode: Node, vnode: Node) -> Pos:
        """Where a key's value is, for messages: a scalar's own position; a collection's key
        (a block mapping starts on the line below its key, which reads as the wrong line)."""
        return self.pos(vnode if isinstance(vnode, ScalarNode) else knode)

    def err(self, code: str, message: str, where: Union[Node, Pos, None], hint: str = "", **kw: Any) -> None:
        p = where if isinstance(where, Pos) else self.pos(where) if where is not None else Pos(self.file, 1, 1)
        self.issues.append(Issue(code, message, p.file, p.line, p.column, hint, **kw))

    # ---- values ----------------------------------------------------------------
    def pairs(self, node: MappingNode, what: str) -> List[Tuple[str, Node, Node]]:
        out: List[Tuple[str, Node, Node]] = []
        seen: Dict[str, Node] = {}
        for knode, vnode in node.value:
            if not isinstance(knode, ScalarNode):
                self.err("SCH104", f"a key in {what} is {_type_name(knode)}; keys must be plain names", knode,
                         "write keys as plain words, e.g. `id: cam`")
                continue
            if knode.tag == _T_MERGE:
                self.err("SCH004", f"YAML merge keys (<<) are not supported in {what}", knode,
                         "write the keys out; use ${env:...} for values that vary")
                continue
            key = knode.value
            if key in seen:
                self.err("SCH109", f"duplicate key {key!r} in {what} (first at line "
                         f"{seen[key].start_mark.line + 1}); YAML would silently keep only the last",
                         knode, f"remove one of the two {key!r} entries")
                continue
            seen[key] = knode
            out.append((key, knode, vnode))
        return out

    def value(self, node: Node, what: str = "the graph", depth: int = 0) -> Any:
        self.budget -= 1
        if self.budget < 0:
            if not self.exhausted:
                self.exhausted = True
                self.err("SCH004", "aliases (*name) expand to far more values than the file holds", node,
                         "write the values out instead of nesting aliases")
            return None
        if depth > MAX_DEPTH:
            self.err("SCH004", f"values nested deeper than {MAX_DEPTH} levels", node,
                     "flatten the value; a graph never needs this depth")
            return None
        if isinstance(node, ScalarNode):
            return self.scalar(node)
        if isinstance(node, SequenceNode):
            if node.tag != _T_SEQ:
                self.unsupported_tag(node)
            return [self.value(c, what, depth + 1) for c in node.value]
        if isinstance(node, MappingNode):
            if node.tag != _T_MAP:
                self.unsupported_tag(node)
            return {k: self.value(v, what, depth + 1) for k, _kn, v in self.pairs(node, what)}
        return None

    def unsupported_tag(self, node: Node) -> None:
        self.err("SCH004", f"unsupported YAML tag {node.tag!r}", node,
                 "remove the tag; graph values are plain strings, numbers, booleans, lists and mappings")

    def scalar(self, node: ScalarNode) -> Any:
        tag = node.tag
        text = node.value
        if tag == _T_STR:
            if "${" in text:
                before = len(self.issues)
                new = self.interpolate(text, node)
                if new != text and new and not node.style and len(self.issues) == before:
                    # A plain (unquoted) scalar is typed after interpolation, as if written literally:
                    # `fps: ${env:FPS:-15}` is the integer 15. Quote it to keep a string.
                    rtag = self._resolver.resolve(ScalarNode, new, (True, False))
                    if rtag != _T_STR:
                        return self.construct(ScalarNode(rtag, new, node.start_mark, node.end_mark))
                return new
            return text
        if tag in (_T_NULL, _T_BOOL, _T_INT, _T_FLOAT):
            return self.construct(node)
        if tag == _T_TIMESTAMP:
            return text  # keep dates as written: parameters travel as JSON
        self.unsupported_tag(node)
        return text

    def construct(self, node: ScalarNode) -> Any:
        try:
            return self._constructor.yaml_constructors[node.tag](self._constructor, node)
        except Exception:  # noqa: BLE001 - e.g. a float overflow; keep the text
            return node.value

    def interpolate(self, text: str, node: ScalarNode) -> str:
        def repl(m: "re.Match[str]") -> str:
            whole = m.group(0)
            if whole == "$${":
                return "${"   # escaped: a literal ${
            if m.group(1) is None:
                self.err("SCH108", f"malformed interpolation in {text!r}", node,
                         "write ${env:NAME} or ${env:NAME:-default} (or $${ for a literal ${)")
                return whole
            name, default = m.group(1), m.group(2)
            val = self.env.get(name)
            if val is None:
                if default is None:
                    self.err("SCH107", f"environment variable {name} is not set and has no default", node,
                             f"export {name}=... before running, or write ${{env:{name}:-DEFAULT}}")
                    return ""
                return default
            return val
        return _ENV_REF.sub(repl, text)

    # ---- typed fields ----------------------------------------------------------
    def want_str(self, node: Node, what: str, example: str, allow_numbers: bool = False,
                 nonempty: bool = False) -> Optional[str]:
        if isinstance(node, ScalarNode) and node.tag == _T_STR:
            text = self.scalar(node) if "${" in node.value else node.value
            if nonempty and isinstance(text, str) and not text.strip():
                self.err("SCH104", f"{what} must not be empty", node, f"write e.g. {example}")
                return None
            return text if isinstance(text, str) else str(text)
        if allow_numbers and isinstance(node, ScalarNode) and node.tag in (_T_INT, _T_FLOAT):
            return node.value
        if node.tag not in (_T_NULL, _T_BOOL, _T_INT, _T_FLOAT, _T_TIMESTAMP, _T_MAP, _T_SEQ, _T_STR):
            self.unsupported_tag(node)
            return None
        self.err("SCH104", f"{what} must be a string, got {_type_name(node)}", node, f"write e.g. {example}")
        return None

    def check_keys(self, pairs: List[Tuple[str, Node, Node]], allowed: Sequence[str], what: str,
                   **kw: Any) -> None:
        for key, knode, _v in pairs:
            if key not in allowed:
                self.err("SCH103", f"unknown key {key!r} in {what}", knode, _suggest(key, allowed), **kw)

    # ---- document ----------------------------------------------------------------
    def graph(self, root: Node) -> Optional[Graph]:
        if not isinstance(root, MappingNode):
            self.err("SCH101", f"a graph file must be a mapping with keys schnitzel, name, nodes; got "
                     f"{_type_name(root)}", root,
                     "start from the example in docs/graph-spec.md: `schnitzel: 1`, `name: ...`, `nodes: [...]`")
            return None
        pairs = self.pairs(root, "the graph")
        self.check_keys(pairs, TOP_KEYS, "the graph")
        by_key = {k: (kn, v) for k, kn, v in pairs}
        g = Graph(name="", file=self.file, pos=self.pos(root))
        for key, (kn, v) in by_key.items():
            g.key_pos[key] = self.key_pos(kn, v)
        for req, example in (("schnitzel", "schnitzel: 1"), ("name", "name: lobby"),
                             ("nodes", "nodes:\n  - {id: cam, plugin: video_source}")):
            if req not in by_key:
                self.err("SCH102", f"missing required key {req!r} in the graph", root, f"add `{example}`")
        raw: Dict[str, Any] = {}
        if "schnitzel" in by_key:
            v = by_key["schnitzel"][1]
            val = self.value(v)
            raw["schnitzel"] = val
            if isinstance(val, bool) or not isinstance(val, int):
                self.err("SCH104", f"schnitzel (the spec version) must be an integer, got {_type_name(v)}", v,
                         f"write `schnitzel: {SPEC_VERSION}`")
            elif val != SPEC_VERSION:
                self.err("SCH105", f"spec version {val} is not supported; this schnitzel reads version "
                         f"{SPEC_VERSION}", v, f"write `schnitzel: {SPEC_VERSION}` (see docs/graph-spec.md), "
                         "or use the schnitzel release that reads this version")
            else:
                g.spec_version = val
        if "name" in by_key:
            name = self.want_str(by_key["name"][1], "name", "`name: lobby`", nonempty=True)
            g.name = name or ""
            raw["name"] = name
        if "description" in by_key:
            raw["description"] = self.want_str(by_key["description"][1], "description", "`description: ...`")
        if "hosts" in by_key:
            raw["hosts"] = self.hosts(by_key["hosts"][1], g)
        if "discovery" in by_key:
            raw["discovery"] = self.settings(by_key["discovery"][1], g, "discovery", DISCOVERY_KEYS,
                                             {"mode": DISCOVERY_MODES}, "`discovery: {mode: server, server: base}`")
        if "zenoh" in by_key:
            raw["zenoh"] = self.settings(by_key["zenoh"][1], g, "zenoh", ZENOH_KEYS, {"mode": ZENOH_MODES},
                                         "`zenoh: {mode: client, router: tcp/10.0.0.1:7447}`")
        if "containers" in by_key:
            raw["containers"] = self.containers(by_key["containers"][1], g)
        if not g.containers:
            g.containers.append(ContainerDecl(DEFAULT_CONTAINER, DEFAULT_HOST, pos=g.pos, implicit=True))
        if "nodes" in by_key:
            raw["nodes"] = self.nodes(by_key["nodes"][1], g)
        if "edges" in by_key:
            raw["edges"] = self.edges(by_key["edges"][1], g)
        if "payload_ref" in by_key:
            raw["payload_ref"] = self.payload_ref(by_key["payload_ref"][1], g)
        if "runtime" in by_key:
            raw["runtime"] = self.runtime(by_key["runtime"][1], g)
        if "controllers" in by_key:
            raw["controllers"] = self.controllers(by_key["controllers"][1], g)
        g.raw = raw
        return g

    def hosts(self, node: Node, g: Graph) -> List[Any]:
        """``hosts:``: the machines a graph is placed on (docs/multi-host.md)."""
        raw = []
        for item in self.items(node, "hosts", "{name: base, address: 10.0.0.1, role: manager}"):
            pairs = self.pairs(item, "a host")
            self.check_keys(pairs, HOST_KEYS, "a host")
            kv = {k: v for k, _kn, v in pairs}
            raw.append({k: self.value(v) for k, v in kv.items()})
            h = HostDecl(name="", pos=self.pos(item))
            h.key_pos = {k: self.key_pos(kn, v) for k, kn, v in pairs}
            if "name" not in kv:
                self.err("SCH102", "missing required key 'name' in a host", item, "add `name: base`")
            else:
                h.name = self.want_str(kv["name"], "a host name", "`name: base`", nonempty=True) or ""
            if "address" in kv:
                h.address = self.want_str(kv["address"], "address", "`address: 10.0.0.1`", nonempty=True) or ""
            if "site" in kv:
                h.site = self.want_str(kv["site"], "site", "`site: robot1`", nonempty=True) or ""
            if "role" in kv:
                r = self.want_str(kv["role"], "role", "`role: worker`")
                if r is not None and r not in HOST_ROLES:
                    self.err("SCH106", f"role must be one of {', '.join(HOST_ROLES)}, got {r!r}", kv["role"],
                             "`role: manager` on the one host that runs the lifecycle manager, "
                             "`role: worker` on the others")
                elif r is not None:
                    h.role = r
            if "description" in kv:
                self.want_str(kv["description"], "description", "`description: ...`")
            g.hosts.append(h)
        return raw

    def settings(self, node: Node, g: Graph, what: str, keys: Sequence[str],
                 choices: Dict[str, Sequence[str]], example: str) -> Any:
        """A small mapping of scalars (``discovery:``, ``zenoh:``): keys known, choices allowed."""
        if isinstance(node, ScalarNode) and node.tag == _T_NULL:
            return {}
        if not isinstance(node, MappingNode):
            self.err("SCH104", f"{what} must be a mapping, got {_type_name(node)}", node, f"write e.g. {example}")
            return {}
        pairs = self.pairs(node, what)
        self.check_keys(pairs, keys, what)
        out: Dict[str, Any] = {}
        for k, kn, v in pairs:
            g.key_pos[f"{what}.{k}"] = self.key_pos(kn, v)
            if k not in keys:
                continue
            val = self.value(v)
            if k == "port":
                if isinstance(val, bool) or not isinstance(val, int) or not 0 < val < 65536:
                    self.err("SCH106" if isinstance(val, int) and not isinstance(val, bool) else "SCH104",
                             f"{what}.port must be a port number (1-65535), got {val!r}", v,
                             f"write e.g. `port: {DEFAULT_DISCOVERY_PORT if what == 'discovery' else 7447}`")
                    continue
            elif not isinstance(val, str) or not val:
                self.err("SCH104", f"{what}.{k} must be a non-empty string, got {_type_name(v)}", v,
                         f"write e.g. {example}")
                continue
            if k in choices and val not in choices[k]:
                self.err("SCH106", f"{what}.{k} must be one of {', '.join(choices[k])}, got {val!r}", v,
                         f"write e.g. {example}")
                continue
            out[k] = val
        setattr(g, what, out)
        return {k: self.value(v) for k, _kn, v in pairs}

    def payload_ref(self, node: Node, g: Graph) -> Any:
        """The graph's by-reference setting (schnitzel_core.payload_ref.RefSettings)."""
        from .payload_ref import RefSettings

        val = self.value(node, "payload_ref")
        try:
            g.payload_ref = RefSettings.from_dict(val).as_dict() if val else {}
        except ValueError as exc:
            code = "SCH103" if "unknown key" in str(exc) else "SCH104"
            self.err(code, str(exc), g.key_pos.get("payload_ref", self.pos(node)), "e.g. `payload_ref: {threshold_bytes: 1048576, ttl_s: 30}` "
                     "(docs/graph-spec.md)")
        return val

    def seconds(self, node: Node, what: str, example: str) -> Optional[float]:
        val = self.value(node)
        if isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0:
            self.err("SCH106" if isinstance(val, (int, float)) and not isinstance(val, bool) else "SCH104",
                     f"{what} must be a number of seconds >= 0, got {val!r}", node, f"write e.g. `{example}`")
            return None
        return float(val)

    def runtime(self, node: Node, g: Graph) -> Any:
        """``runtime:``: health thresholds and the containers' blackboard (docs/runtime.md)."""
        if isinstance(node, ScalarNode) and node.tag == _T_NULL:
            return {}
        if not isinstance(node, MappingNode):
            self.err("SCH104", f"runtime must be a mapping, got {_type_name(node)}", node,
                     "write e.g. `runtime: {source_grace_s: 5, delivery_stall_s: 5}`")
            return {}
        pairs = self.pairs(node, "runtime")
        self.check_keys(pairs, RUNTIME_KEYS, "runtime")
        kv = {k: v for k, _kn, v in pairs}
        for k, kn, v in pairs:
            g.key_pos[f"runtime.{k}"] = self.key_pos(kn, v)
        out: Dict[str, Any] = {}
        for key, example in (("source_grace_s", "source_grace_s: 5"), ("delivery_stall_s", "delivery_stall_s: 5")):
            if key in kv:
                val = self.seconds(kv[key], f"runtime.{key}", example)
                if val is not None:
                    out[key] = val
        if "source_grace" in kv:
            per = kv["source_grace"]
            if not isinstance(per, MappingNode):
                self.err("SCH104", f"runtime.source_grace must be a mapping of node id to seconds, got "
                         f"{_type_name(per)}", per, "write e.g. `source_grace: {cam: 30}`")
            else:
                grace: Dict[str, float] = {}
                for nid, _kn, v in self.pairs(per, "runtime.source_grace"):
                    if g.node(nid) is None:
                        self.err("SCH106", f"runtime.source_grace names node {nid!r}, which the graph does not "
                                 "declare", v, "name a source node of this graph: "
                                 + ", ".join(n.id for n in g.nodes))
                        continue
                    val = self.seconds(v, f"runtime.source_grace.{nid}", f"{nid}: 30")
                    if val is not None:
                        grace[nid] = val
                out["source_grace"] = grace
        if "state_backend" in kv:
            name = self.want_str(kv["state_backend"], "runtime.state_backend", "`state_backend: sqlite`",
                                 nonempty=True)
            if name is not None:
                from .blackboard import backend_names
                names = backend_names()
                if name not in names:
                    self.err("SCH106", f"runtime.state_backend {name!r} is not an installed state backend "
                             f"(installed: {', '.join(names)})", kv["state_backend"],
                             _suggest(name, names) or "write `state_backend: memory` or `state_backend: sqlite`")
                else:
                    out["state_backend"] = name
        if "state_path" in kv:
            path = self.want_str(kv["state_path"], "runtime.state_path", "`state_path: /var/lib/robot/state.db`",
                                 nonempty=True)
            if path is not None:
                out["state_path"] = path
        for key, what, example in (("metrics_port", "no metrics endpoint", 9464), ("ui_port", "no live page", 8710)):
            if key not in kv:
                continue
            val = self.value(kv[key])
            if isinstance(val, bool) or not isinstance(val, int) or not 0 <= val <= 65535:
                self.err("SCH106" if isinstance(val, int) and not isinstance(val, bool) else "SCH104",
                         f"runtime.{key} must be a TCP port 0-65535 (0: {what}), got {val!r}",
                         kv[key], f"write e.g. `{key}: {example}`")
            else:
                out[key] = val
        for key in ("metrics_host", "ui_host"):
            if key in kv:
                host = self.want_str(kv[key], f"runtime.{key}", f"`{key}: 127.0.0.1`", nonempty=True)
                if host is not None:
                    out[key] = host
        if out.get("state_backend", "memory") != "memory" and "state_path" not in out and "state_path" not in kv:
            self.err("SCH102", f"runtime.state_backend {out['state_backend']!r} needs runtime.state_path (the file "
                     "that holds the state)", kv["state_backend"], "add `state_path: /var/lib/robot/state.db`")
        g.runtime = out
        return {k: self.value(v) for k, v in kv.items()}

    def controllers(self, node: Node, g: Graph) -> List[Any]:
        """``controllers:`` (the autonomic control plane, docs/autonomic.md): kept as read; the
        validator checks each entry against the nodes and their parameter schemas (SCH80x)."""
        out = []
        for item in self.items(node, "controllers",
                               "{name: fps, knobs: [{node: cam, param: fps, min: 2, max: 30}], "
                               "objectives: [{node: det, metric: latency_p95_ms, max: 150}]}"):
            val = self.value(item, "controllers")
            g.controllers.append(val)
            g.controller_pos.append(self.pos(item))
            out.append(val)
        return out

    def items(self, node: Node, what: str, example: str) -> List[Node]:
        if isinstance(node, ScalarNode) and node.tag == _T_NULL:
            return []  # `edges:` with nothing under it
        if not isinstance(node, SequenceNode):
            self.err("SCH104", f"{what} must be a list, got {_type_name(node)}", node,
                     f"write each entry on its own line starting with '- ', e.g.\n{what}:\n  - {example}")
            return []
        out = []
        for item in node.value:
            if not isinstance(item, MappingNode):
                self.err("SCH104", f"each entry of {what} must be a mapping, got {_type_name(item)}", item,
                         f"write e.g. `- {example}`")
                continue
            out.append(item)
        return out

    def containers(self, node: Node, g: Graph) -> List[Any]:
        raw = []
        for item in self.items(node, "containers", "{id: vision, host: localhost}"):
            pairs = self.pairs(item, "a container")
            self.check_keys(pairs, CONTAINER_KEYS, "a container")
            kv = {k: v for k, _kn, v in pairs}
            raw.append({k: self.value(v) for k, v in kv.items()})
            c = ContainerDecl(id="", pos=self.pos(item))
            c.key_pos = {k: self.key_pos(kn, v) for k, kn, v in pairs}
            if "id" not in kv:
                self.err("SCH102", "missing required key 'id' in a container", item, "add `id: vision`")
            else:
                c.id = self.want_str(kv["id"], "a container id", "`id: vision`", nonempty=True) or ""
            if "host" in kv:
                c.host = self.want_str(kv["host"], "host", "`host: localhost`", nonempty=True) or DEFAULT_HOST
            if "restart" in kv:
                r = self.want_str(kv["restart"], "restart", "`restart: on-failure`")
                if r is not None and r not in RESTART_POLICIES:
                    self.err("SCH106", f"restart must be one of {', '.join(RESTART_POLICIES)}, got {r!r}",
                             kv["restart"], "`restart: on-failure` restarts a crashed container; `never` does not")
                elif r is not None:
                    c.restart = r
            if "restart_backoff_s" in kv:
                val = self.value(kv["restart_backoff_s"])
                if isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0:
                    self.err("SCH106" if isinstance(val, (int, float)) and not isinstance(val, bool) else "SCH104",
                             f"restart_backoff_s must be a number of seconds >= 0, got {val!r}",
                             kv["restart_backoff_s"], "write e.g. `restart_backoff_s: 1.0`")
                else:
                    c.restart_backoff_s = float(val)
            if "restart_limit" in kv:
                val = self.value(kv["restart_limit"])
                if isinstance(val, bool) or not isinstance(val, int) or val < 0:
                    self.err("SCH106" if isinstance(val, int) and not isinstance(val, bool) else "SCH104",
                             f"restart_limit must be an integer >= 0, got {val!r}", kv["restart_limit"],
                             "write e.g. `restart_limit: 5` (restarts allowed before the graph is marked failed)")
                else:
                    c.restart_limit = val
            if "description" in kv:
                self.want_str(kv["description"], "description", "`description: ...`")
            g.containers.append(c)
        return raw

    def nodes(self, node: Node, g: Graph) -> List[Any]:
        raw = []
        declared = [c for c in g.containers if not c.implicit]
        for item in self.items(node, "nodes", "{id: cam, plugin: video_source}"):
            pairs = self.pairs(item, "a node")
            kv = {k: v for k, _kn, v in pairs}
            n = NodeDecl(id="", plugin="", pos=self.pos(item))
            n.key_pos = {k: self.key_pos(kn, v) for k, kn, v in pairs}
            if "id" in kv:
                n.id = self.want_str(kv["id"], "a node id", "`id: cam`", nonempty=True) or ""
            else:
                self.err("SCH102", "missing required key 'id' in a node", item, "add `id: <name>`, e.g. `id: cam`")
            label = n.id or None
            self.check_keys(pairs, NODE_KEYS, f"node {n.id!r}" if n.id else "a node", node=label)
            rnode: Dict[str, Any] = {}
            if "plugin" in kv:
                n.plugin = self.want_str(kv["plugin"], "plugin", "`plugin: video_source`", nonempty=True) or ""
            else:
                self.err("SCH102", f"missing required key 'plugin' in node {n.id!r}", item,
                         "add `plugin: <name>`; `schnitzel plugins` lists installed plugins", node=label)
            if "container" in kv:
                n.container = self.want_str(kv["container"], "container", "`container: vision`", nonempty=True) or ""
            elif len(declared) == 1:
                n.container = declared[0].id   # one declared container: nodes go there by default
            if "params" in kv:
                p = kv["params"]
                if isinstance(p, ScalarNode) and p.tag == _T_NULL:
                    pass
                elif not isinstance(p, MappingNode):
                    self.err("SCH104", f"params of node {n.id!r} must be a mapping, got {_type_name(p)}", p,
                             "write e.g. `params: {fps: 15}`", node=label)
                else:
                    for key, knode, vnode in self.pairs(p, f"params of node {n.id!r}"):
                        n.params[key] = self.value(vnode, f"param {key!r}", 1)
                        n.param_pos[key] = self.pos(knode)
                rnode["params"] = dict(n.params)
            if "version" in kv:
                v = self.want_str(kv["version"], "version", "`version: \"^1.2\"`", allow_numbers=True)
                if v is not None:
                    from .registry import check_constraint
                    try:
                        check_constraint(v)
                        n.version = v
                    except ValueError as exc:
                        self.err("SCH111", f"version of node {n.id!r}: {exc}", kv["version"],
                                 "write e.g. `version: \"^1.2\"` (1.2 or newer, below 2.0)", node=label)
            if "qos" in kv:
                q = kv["qos"]
                if not isinstance(q, MappingNode):
                    self.err("SCH104", f"qos of node {n.id!r} must map output ports to a QoS, got {_type_name(q)}",
                             q, "write e.g. `qos: {frames: sensor}` (port: preset or mapping)", node=label)
                else:
                    for key, knode, vnode in self.pairs(q, f"qos of node {n.id!r}"):
                        n.qos[key] = self.value(vnode)
                        n.key_pos[f"qos.{key}"] = self.pos(knode)
                        if isinstance(vnode, MappingNode):
                            for k2, kn2, _v2 in self.pairs(vnode, "a qos mapping"):
                                n.key_pos[f"qos.{key}.{k2}"] = self.pos(kn2)
            if "inputs" in kv:
                q = kv["inputs"]
                if not isinstance(q, MappingNode):
                    self.err("SCH104", f"inputs of node {n.id!r} must map input ports to a policy, got {_type_name(q)}",
                             q, "write e.g. `inputs: {in: {overflow: drop_new, max_queued: 100}}`", node=label)
                else:
                    # values are checked against the plugin's ports by the validator (SCH410, SCH411)
                    for key, knode, vnode in self.pairs(q, f"inputs of node {n.id!r}"):
                        n.inputs[key] = self.value(vnode)
                        n.key_pos[f"inputs.{key}"] = self.pos(knode)
                        if isinstance(vnode, MappingNode):
                            for k2, kn2, v2 in self.pairs(vnode, "an inputs mapping"):
                                n.key_pos[f"inputs.{key}.{k2}"] = self.key_pos(kn2, v2)
            if "description" in kv:
                self.want_str(kv["description"], "description", "`description: ...`")
            for k, v in kv.items():
                if k not in rnode and k in NODE_KEYS:
                    rnode[k] = getattr(n, k) if k in ("id", "plugin", "container", "version", "qos", "inputs") else self.value(v)
            raw.append(rnode)
            g.nodes.append(n)
        return raw

    def edges(self, node: Node, g: Graph) -> List[Any]:
        raw = []
        for item in self.items(node, "edges", "{from: cam.frames, to: det.image}"):
            pairs = self.pairs(item, "an edge")
            kv = {k: v for k, _kn, v in pairs}
            e = EdgeDecl("", "", "", "", pos=self.pos(item))
            e.key_pos = {k: self.key_pos(kn, v) for k, kn, v in pairs}
            ok = True
            for end in ("from", "to"):
                if end not in kv:
                    self.err("SCH102", f"missing required key {end!r} in an edge", item,
                             f"add `{end}: node.port`, e.g. `{end}: {'cam.frames' if end == 'from' else 'det.image'}`")
                    ok = False
                    continue
                s = self.want_str(kv[end], f"edge {end!r}", f"`{end}: cam.frames`", nonempty=True)
                m = _ENDPOINT.match(s) if s is not None else None
                if s is not None and m is None:
                    self.err("SCH110", f"edge {end!r} is {s!r}; an endpoint is written node.port", kv[end],
                             f"write e.g. `{end}: {'cam.frames' if end == 'from' else 'det.image'}`"
                             " (`schnitzel plugins show PLUGIN` lists a plugin's ports)")
                if m is None:
                    ok = False
                    continue
                if end == "from":
                    e.src_node, e.src_port = m.group(1), m.group(2)
                else:
                    e.dst_node, e.dst_port = m.group(1), m.group(2)
            label = e.label if ok else None
            self.check_keys(pairs, EDGE_KEYS, f"edge {label}" if label else "an edge", edge=label)
            redge: Dict[str, Any] = {k: self.value(v) for k, v in kv.items() if k in EDGE_KEYS}
            if "qos" in kv:
                q = kv["qos"]
                e.qos = redge["qos"]
                if isinstance(q, MappingNode):
                    for k2, kn2, _v2 in self.pairs(q, "a qos mapping"):
                        e.key_pos[f"qos.{k2}"] = self.pos(kn2)
            if "transport" in kv:
                t = self.want_str(kv["transport"], "transport", "`transport: auto`")
                if t is not None and t not in TRANSPORTS:
                    close = difflib.get_close_matches(t, TRANSPORTS, n=1)
                    self.err("SCH106", f"transport must be one of {', '.join(TRANSPORTS)}, got {t!r}",
                             kv["transport"], (f"did you mean {close[0]!r}? " if close else "") +
                             "auto picks in-process inside a container and DDS otherwise", edge=label)
                elif t is not None:
                    e.transport = t
            if "outbox" in kv:
                m = self.want_str(kv["outbox"], "outbox", "`outbox: durable`")
                if m is not None and m not in OUTBOX_MODES:
                    self.err("SCH106", f"outbox must be one of {', '.join(OUTBOX_MODES)}, got {m!r}", kv["outbox"],
                             "memory (default) keeps unacknowledged packets in the sender's memory; durable "
                             "also in a file, so a restart of the run re-sends them", edge=label)
                elif m is not None:
                    e.outbox = m
            if "outbox_max" in kv:
                val = self.value(kv["outbox_max"])
                if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                    self.err("SCH106" if isinstance(val, int) and not isinstance(val, bool) else "SCH104",
                             f"outbox_max must be an integer >= 1, got {val!r}", kv["outbox_max"],
                             "write e.g. `outbox_max: 10000` (packets kept until the queue acknowledges them)",
                             edge=label)
                else:
                    e.outbox_max = val
            if "description" in kv:
                self.want_str(kv["description"], "description", "`description: ...`")
            raw.append(redge)
            if ok:
                g.edges.append(e)
        return raw


def _nesting_bound(text: str) -> int:
    """A cheap upper bound of the YAML nesting depth: block nesting on a line is at most its length,
    and flow nesting carried over lines at most the sum of each line's unclosed brackets."""
    longest = 0
    carried = 0
    for line in text.splitlines():
        if len(line) > longest:
            longest = len(line)
        if "[" in line or "{" in line:
            net = line.count("[") + line.count("{") - line.count("]") - line.count("}")
            if net > 0:
                carried += net
    return longest + carried


def _too_deep(text: str, limit: int) -> Optional[yaml.Mark]:
    """The mark where nesting passes ``limit`` (event scan, no recursion), else None."""
    depth = 0
    for ev in yaml.parse(text, Loader=_Loader):
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > limit:
                return ev.start_mark
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
    return None


def read_source(path_or_text: Union[str, os.PathLike, bytes], file: Optional[str] = None) -> Tuple[str, str]:
    """(text, file name). A Path, or a one-line str naming an existing file or ending in .yaml/.yml,
    is read from disk; any other str or bytes is the graph text itself (pass a Path to be explicit).
    Raises GraphLoadError SCH001/SCH002."""
    if isinstance(path_or_text, bytes):
        data, name = path_or_text, file or "<graph>"
    elif isinstance(path_or_text, os.PathLike) or (
            isinstance(path_or_text, str) and "\n" not in path_or_text and
            (path_or_text.endswith((".yaml", ".yml")) or os.path.isfile(path_or_text))):
        p = Path(path_or_text)
        name = file or str(path_or_text)
        try:
            if p.is_dir():
                raise IsADirectoryError("it is a directory")
            size = p.stat().st_size
            if size > MAX_BYTES:
                raise OSError(f"it is {size} bytes; graph files are limited to {MAX_BYTES} bytes")
            data = p.read_bytes()
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise GraphLoadError([Issue("SCH001", f"cannot read {name}: {why}", name, 0, 0,
                                        "check the path and its permissions")]) from None
    else:
        return str(path_or_text), file or "<graph>"
    try:
        return data.decode("utf-8-sig"), name
    except UnicodeDecodeError as exc:
        raise GraphLoadError([Issue("SCH002", f"{name} is not a UTF-8 text file (byte {exc.start}: "
                                    f"{exc.reason})", name, 1, 1,
                                    "a graph is a YAML text file; save it as UTF-8")]) from None


def parse_graph(path_or_text: Union[str, os.PathLike, bytes], file: Optional[str] = None,
                env: Optional[Mapping[str, str]] = None) -> Tuple[Optional[Graph], List[Issue]]:
    """Parse a graph; return it (None when the file is not a graph at all) and every issue found.

    Raises :class:`GraphLoadError` only when the file cannot be read or is not YAML (SCH001, SCH002).
    """
    text, name = read_source(path_or_text, file)
    b = _Builder(name, os.environ if env is None else env)
    b.budget = 100_000 + 2 * len(text)
    try:
        if _nesting_bound(text) > 2 * MAX_DEPTH:
            mark = _too_deep(text, MAX_DEPTH)
            if mark is not None:
                return None, [Issue("SCH004", f"values nested deeper than {MAX_DEPTH} levels", name,
                                    mark.line + 1, mark.column + 1,
                                    "flatten the value; a graph never needs this depth")]
        docs = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        what = " ".join(str(x) for x in (exc.context, exc.problem) if x)
        cm = exc.context_mark
        if cm is not None and mark is not None and cm.line != mark.line:
            what += f" (the construct started at line {cm.line + 1}, column {cm.column + 1})"
        raise GraphLoadError([Issue("SCH002", f"not valid YAML: {what}", name, line, col,
                                    "fix the YAML syntax at this position (indentation, a missing ':' or "
                                    "quote, a tab used for indentation)")]) from None
    except yaml.YAMLError as exc:
        raise GraphLoadError([Issue("SCH002", f"not valid YAML: {exc}", name, 1, 1,
                                    "a graph is a YAML text file")]) from None
    docs = [d for d in docs if d is not None]
    if not docs:
        return None, [Issue("SCH101", "the file is empty; a graph needs keys schnitzel, name and nodes",
                            name, 1, 1, "start from the example in docs/graph-spec.md")]
    if len(docs) > 1:
        b.err("SCH003", f"the file holds {len(docs)} YAML documents; a graph file holds exactly one",
              docs[1], "remove the '---' separator and everything after it, or split into several files")
    g = b.graph(docs[0])
    return g, b.issues


def load_graph(path_or_text: Union[str, os.PathLike, bytes], file: Optional[str] = None,
               env: Optional[Mapping[str, str]] = None) -> Graph:
    """Load a graph file (or its text). Raises :class:`GraphLoadError` listing every shape problem.

    This checks the file's shape only; run ``schnitzel_validator.validate(graph, registry)``
    before starting anything.
    """
    graph, issues = parse_graph(path_or_text, file=file, env=env)
    errors = [i for i in issues if i.severity == "error"]
    if errors or graph is None:
        raise GraphLoadError(errors or issues)
    return graph
