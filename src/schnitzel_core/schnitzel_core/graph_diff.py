"""The difference between two versions of a graph, and the order to apply it in.

    diff = diff_graphs(old_graph, new_graph, registry)   # registry: which params are live
    print("\\n".join(diff.lines()))                        # "add node sink2", "change node zones: ..."
    for action in plan_application(diff):                 # what the lifecycle manager does, in order
        ...

Both results are deterministic: the same two graphs always give the same lines
and the same plan, whatever the order of nodes and edges in the files.

Application order (so the rest of the graph keeps running, docs/hot-replacement.md):

1. start added containers;            2. update changed containers (restart policy);
3. load added nodes, downstream first (sinks before the nodes that feed them);
4. set live-applicable parameters in place (no replacement);
5. replace changed nodes and the nodes whose inputs are rewired, downstream first;
6. unload removed nodes, upstream first (sources stop first, the rest drain);
7. stop removed containers (their nodes are gone or moved by then).

A node's inputs are subscriptions to its upstream's output topics, so an edge
that is added, removed or changed is realised by *replacing its destination
node* with the new subscriptions (the protocol of docs/hot-replacement.md: no
packet missed); a transport change replaces its source as well. Removed edges
are therefore gone (step 5) before their nodes are unloaded (step 6).
"""
from __future__ import annotations

import dataclasses
import heapq
import json
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from .graph import ContainerDecl, EdgeDecl, Graph, NodeDecl

# order of the "what" and "op" parts in the sorted change list
_WHAT_ORDER = {"container": 0, "node": 1, "edge": 2}
_OP_ORDER = {"add": 0, "change": 1, "remove": 2}

#: Node fields compared, in the order they are reported.
NODE_FIELDS = ("plugin", "version", "container", "params", "qos", "inputs")
#: Node fields whose change needs a replacement (params may not: see live params).
REPLACE_FIELDS = ("plugin", "version", "container", "qos", "inputs")


class GraphDiffError(ValueError):
    """The two graphs cannot be compared or the difference cannot be applied live."""


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def edge_key(e: EdgeDecl) -> Tuple[str, str, str, str]:
    return (e.src_node, e.src_port, e.dst_node, e.dst_port)


def edge_label(key: Tuple[str, str, str, str]) -> str:
    return f"{key[0]}.{key[1]} -> {key[2]}.{key[3]}"


@dataclasses.dataclass(frozen=True)
class Change:
    """One difference. ``what``: container | node | edge; ``op``: add | remove | change."""

    what: str
    op: str
    target: str                         # container id, node id or edge label
    fields: Tuple[str, ...] = ()        # for "change": what differs (plugin, params, qos, ...)
    details: Tuple[str, ...] = ()       # human-readable, e.g. 'params.threshold: 0.5 -> 0.7'
    params_changed: Tuple[str, ...] = ()  # node params whose value differs (added/removed included)

    def __str__(self) -> str:
        head = f"{self.op} {self.what} {self.target}"
        return head + (": " + "; ".join(self.details) if self.details else "")

    def sort_key(self) -> Tuple[int, int, str]:
        return (_WHAT_ORDER[self.what], _OP_ORDER[self.op], self.target)


@dataclasses.dataclass
class GraphDiff:
    old: Graph
    new: Graph
    changes: List[Change]
    #: node id -> names of params that can be set live (filled when a registry was given)
    live_params: Dict[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.changes

    def lines(self) -> List[str]:
        """One line per change (what ApplyGraph returns as ``changes``)."""
        return [str(c) for c in self.changes]

    def _select(self, what: str, op: str) -> List[Change]:
        return [c for c in self.changes if c.what == what and c.op == op]

    @property
    def nodes_added(self) -> List[str]:
        return [c.target for c in self._select("node", "add")]

    @property
    def nodes_removed(self) -> List[str]:
        return [c.target for c in self._select("node", "remove")]

    @property
    def nodes_changed(self) -> Dict[str, Change]:
        return {c.target: c for c in self._select("node", "change")}

    @property
    def edges_added(self) -> List[str]:
        return [c.target for c in self._select("edge", "add")]

    @property
    def edges_removed(self) -> List[str]:
        return [c.target for c in self._select("edge", "remove")]

    @property
    def edges_changed(self) -> Dict[str, Change]:
        return {c.target: c for c in self._select("edge", "change")}

    @property
    def containers_added(self) -> List[str]:
        return [c.target for c in self._select("container", "add")]

    @property
    def containers_removed(self) -> List[str]:
        return [c.target for c in self._select("container", "remove")]

    @property
    def containers_changed(self) -> Dict[str, Change]:
        return {c.target: c for c in self._select("container", "change")}


# ---------------------------------------------------------------- diff
def _params_details(old: Mapping[str, Any], new: Mapping[str, Any]) -> Tuple[List[str], List[str]]:
    details, names = [], []
    for k in sorted(set(old) | set(new)):
        if k not in new:
            details.append(f"params.{k}: removed (was {_short(old[k])})")
        elif k not in old:
            details.append(f"params.{k}: added = {_short(new[k])}")
        elif old[k] != new[k] or type(old[k]) is not type(new[k]):
            details.append(f"params.{k}: {_short(old[k])} -> {_short(new[k])}")
        else:
            continue
        names.append(k)
    return details, names


def _node_change(o: NodeDecl, n: NodeDecl) -> Optional[Change]:
    fields: List[str] = []
    details: List[str] = []
    pnames: List[str] = []
    for f in NODE_FIELDS:
        a, b = getattr(o, f), getattr(n, f)
        if f == "params":
            d, pnames = _params_details(a or {}, b or {})
            if d:
                fields.append(f)
                details.extend(d)
        elif (a or None) != (b or None):
            fields.append(f)
            details.append(f"{f}: {_short(a) if a else 'none'} -> {_short(b) if b else 'none'}")
    if not fields:
        return None
    return Change("node", "change", n.id, tuple(fields), tuple(details), tuple(pnames))


def _edge_change(o: EdgeDecl, n: EdgeDecl) -> Optional[Change]:
    fields, details = [], []
    if o.qos != n.qos:
        fields.append("qos")
        details.append(f"qos: {_short(o.qos) if o.qos else 'default'} -> {_short(n.qos) if n.qos else 'default'}")
    if (o.transport or "auto") != (n.transport or "auto"):
        fields.append("transport")
        details.append(f"transport: {o.transport or 'auto'} -> {n.transport or 'auto'}")
    if not fields:
        return None
    return Change("edge", "change", edge_label(edge_key(n)), tuple(fields), tuple(details))


def _container_change(o: ContainerDecl, n: ContainerDecl) -> Optional[Change]:
    fields, details = [], []
    for f in ("host", "restart", "restart_backoff_s", "restart_limit"):
        a, b = getattr(o, f), getattr(n, f)
        if a != b:
            fields.append(f)
            details.append(f"{f}: {_short(a)} -> {_short(b)}")
    if not fields:
        return None
    return Change("container", "change", n.id, tuple(fields), tuple(details))


def _live_names(registry: Any, plugin: str) -> Optional[Set[str]]:
    if registry is None:
        return None
    entry = registry.get(plugin)
    spec = getattr(entry, "spec", None)
    if spec is None:
        return None
    return {p.name for p in spec.params if getattr(p, "live", False)}


def diff_graphs(old: Graph, new: Graph, registry: Any = None) -> GraphDiff:
    """Compare two graphs. ``registry`` (schnitzel_core.registry.Registry) tells which params
    are live; without it every param change is treated as needing a replacement."""
    if old.name != new.name:
        raise GraphDiffError(f"the new graph is named {new.name!r} but the running graph is {old.name!r}; "
                             "a graph can only be changed into a graph of the same name")
    for g, which in ((old, "running"), (new, "new")):
        for kind, ids in (("node", [n.id for n in g.nodes]), ("container", [c.id for c in g.containers])):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            if dup:
                raise GraphDiffError(f"the {which} graph declares {kind} {dup[0]!r} more than once")
    changes: List[Change] = []

    oc = {c.id: c for c in old.containers}
    nc = {c.id: c for c in new.containers}
    for cid in sorted(set(oc) | set(nc)):
        if cid not in nc:
            changes.append(Change("container", "remove", cid))
        elif cid not in oc:
            changes.append(Change("container", "add", cid, details=(f"host {nc[cid].host}",)))
        else:
            ch = _container_change(oc[cid], nc[cid])
            if ch:
                changes.append(ch)

    on = {n.id: n for n in old.nodes}
    nn = {n.id: n for n in new.nodes}
    live: Dict[str, Tuple[str, ...]] = {}
    for nid in sorted(set(on) | set(nn)):
        if nid not in nn:
            changes.append(Change("node", "remove", nid))
        elif nid not in on:
            n = nn[nid]
            changes.append(Change("node", "add", nid, details=(f"plugin {n.plugin} in container {n.container}",)))
        else:
            ch = _node_change(on[nid], nn[nid])
            if ch:
                changes.append(ch)
                names = _live_names(registry, nn[nid].plugin)
                if names is not None:
                    live[nid] = tuple(sorted(names))

    oe: Dict[Tuple[str, str, str, str], EdgeDecl] = {}
    ne: Dict[Tuple[str, str, str, str], EdgeDecl] = {}
    for src, dst in ((old.edges, oe), (new.edges, ne)):
        for e in src:
            dst[edge_key(e)] = e
    for k in sorted(set(oe) | set(ne)):
        if k not in ne:
            changes.append(Change("edge", "remove", edge_label(k)))
        elif k not in oe:
            changes.append(Change("edge", "add", edge_label(k)))
        else:
            ch = _edge_change(oe[k], ne[k])
            if ch:
                changes.append(ch)

    changes.sort(key=Change.sort_key)
    return GraphDiff(old, new, changes, live)


# ---------------------------------------------------------------- application plan
@dataclasses.dataclass(frozen=True)
class Action:
    """One step of applying a difference to a running graph.

    ``action``: start_container | update_container | load | set_params | replace |
    unload | stop_container. ``target`` is a container id (container actions) or a
    node id; ``container`` is where the node runs after the step (for ``replace``:
    the new container; ``from_container`` the old one when the node moves).
    ``params``: for ``set_params`` the values to set.
    """

    action: str
    target: str
    container: str = ""
    reason: str = ""
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    from_container: str = ""

    def __str__(self) -> str:
        if self.action in ("start_container", "stop_container", "update_container"):
            text = f"{self.action.replace('_', ' ')} {self.target}"
        elif self.action == "set_params":
            text = (f"set params of {self.target} in place: "
                    + ", ".join(f"{k}={_short(v, 30)}" for k, v in sorted(self.params.items())))
        elif self.action == "replace" and self.from_container and self.from_container != self.container:
            text = f"replace node {self.target} (move {self.from_container} -> {self.container})"
        else:
            text = f"{self.action} node {self.target} in container {self.container}"
        return text + (f" ({self.reason})" if self.reason else "")


def _topo(nodes: Iterable[str], edges: Iterable[Tuple[str, str]], downstream_first: bool) -> List[str]:
    """Deterministic topological order of ``nodes``; cycles (delay nodes) fall back to id order."""
    nodes = sorted(set(nodes))
    succ: Dict[str, Set[str]] = {n: set() for n in nodes}
    for a, b in edges:
        if a in succ and b in succ and a != b:
            if downstream_first:
                a, b = b, a
            succ[a].add(b)
    indeg = {n: 0 for n in nodes}
    for a in nodes:
        for b in succ[a]:
            indeg[b] += 1
    heap = [n for n in nodes if indeg[n] == 0]
    heapq.heapify(heap)
    out: List[str] = []
    while heap:
        a = heapq.heappop(heap)
        out.append(a)
        for b in sorted(succ[a]):
            indeg[b] -= 1
            if indeg[b] == 0:
                heapq.heappush(heap, b)
    seen = set(out)
    out.extend(n for n in nodes if n not in seen)  # members of a cycle, by id
    return out


def _default_of(registry: Any, plugin: str, name: str) -> Tuple[bool, Any]:
    if registry is None:
        return False, None
    spec = getattr(registry.get(plugin), "spec", None)
    p = spec.param(name) if spec is not None else None
    if p is None or p.required:
        return False, None
    return True, p.default


def plan_application(diff: GraphDiff, registry: Any = None,
                     ports_changed: Iterable[str] = ()) -> List[Action]:
    """The ordered actions that turn the running graph (``diff.old``) into ``diff.new``.

    ``ports_changed``: node ids whose compiled ports (``PlanNode.ports``) differ between
    the two plans, when the caller has them (see :func:`nodes_with_changed_ports`); they
    are replaced as well. Raises :class:`GraphDiffError` for a difference that cannot be
    applied to a running graph (a container moved to another host while keeping nodes).
    """
    old, new = diff.old, diff.new
    new_nodes = {n.id: n for n in new.nodes}
    old_nodes = {n.id: n for n in old.nodes}
    actions: List[Action] = []

    for cid, ch in sorted(diff.containers_changed.items()):
        if "host" in ch.fields and any(n.container == cid for n in new.nodes if n.id in old_nodes):
            raise GraphDiffError(f"container {cid} moves to another host ({'; '.join(ch.details)}); a running "
                                 "container cannot move: give the container on the new host a new id")

    for cid in diff.containers_added:
        actions.append(Action("start_container", cid, cid, "added"))
    for cid, ch in sorted(diff.containers_changed.items()):
        actions.append(Action("update_container", cid, cid, "; ".join(ch.details)))

    new_pairs = [(e.src_node, e.dst_node) for e in new.edges]
    old_pairs = [(e.src_node, e.dst_node) for e in old.edges]
    downstream_first = _topo(new_nodes, new_pairs, downstream_first=True)
    upstream_first_old = _topo(old_nodes, old_pairs, downstream_first=False)

    added = set(diff.nodes_added)
    for nid in downstream_first:
        if nid in added:
            actions.append(Action("load", nid, new_nodes[nid].container, "added"))

    # which surviving nodes need a replacement, and why
    reasons: Dict[str, List[str]] = {}
    live_sets: Dict[str, Dict[str, Any]] = {}
    for nid, ch in diff.nodes_changed.items():
        hard = [f for f in ch.fields if f in REPLACE_FIELDS]
        if "params" in ch.fields:
            live = set(diff.live_params.get(nid, ()))
            not_live = [p for p in ch.params_changed if p not in live]
            if hard or not_live or nid not in diff.live_params:
                hard.append("params" + (f" {', '.join(not_live)} not live" if not_live and live else ""))
            else:
                values: Dict[str, Any] = {}
                for p in ch.params_changed:
                    if p in new_nodes[nid].params:
                        values[p] = new_nodes[nid].params[p]
                    else:
                        ok, default = _default_of(registry, new_nodes[nid].plugin, p)
                        if not ok:
                            hard.append(f"params {p} removed without a default")
                            break
                        values[p] = default
                else:
                    live_sets[nid] = values
        if hard:
            live_sets.pop(nid, None)
            reasons.setdefault(nid, []).append(", ".join(hard) + " changed")

    survivors = set(old_nodes) & set(new_nodes)
    for label in diff.edges_added:
        dst = label.split(" -> ")[1].rsplit(".", 1)[0]
        if dst in survivors:
            reasons.setdefault(dst, []).append(f"input added: {label}")
    for label in diff.edges_removed:
        dst = label.split(" -> ")[1].rsplit(".", 1)[0]
        if dst in survivors:
            reasons.setdefault(dst, []).append(f"input removed: {label}")
    for label, ch in sorted(diff.edges_changed.items()):
        src, dst = (part.rsplit(".", 1)[0] for part in label.split(" -> "))
        if dst in survivors:
            reasons.setdefault(dst, []).append(f"input {label} {'/'.join(ch.fields)} changed")
        if "transport" in ch.fields and src in survivors:
            reasons.setdefault(src, []).append(f"output {label} transport changed")
    for nid in sorted(set(ports_changed)):
        if nid in survivors and nid not in reasons:
            reasons[nid] = ["compiled ports changed"]

    for nid in sorted(live_sets):
        if nid not in reasons:
            actions.append(Action("set_params", nid, new_nodes[nid].container, "live parameters",
                                  params=live_sets[nid]))
    for nid in downstream_first:
        if nid in reasons:
            actions.append(Action("replace", nid, new_nodes[nid].container, "; ".join(reasons[nid]),
                                  from_container=old_nodes[nid].container))

    removed = set(diff.nodes_removed)
    for nid in upstream_first_old:
        if nid in removed:
            actions.append(Action("unload", nid, old_nodes[nid].container, "removed"))
    for cid in diff.containers_removed:
        actions.append(Action("stop_container", cid, cid, "removed"))
    return actions


def nodes_with_changed_ports(old_plan: Any, new_plan: Any) -> List[str]:
    """Ids of nodes present in both plans (schnitzel_bringup.plan.Plan) whose ports differ."""
    out = []
    for n in getattr(new_plan, "nodes", []):
        o = old_plan.node(n.id)
        if o is not None and o.ports != n.ports:
            out.append(n.id)
    return sorted(out)


def describe_plan(actions: Sequence[Action]) -> List[str]:
    """Numbered, human-readable lines of a plan."""
    return [f"{i}. {a}" for i, a in enumerate(actions, 1)]
