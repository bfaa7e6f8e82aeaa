"""Compile a valid graph into a :class:`~schnitzel_bringup.plan.Plan`.

What the compiler decides (docs/runtime.md):

- containers with the nodes each hosts, in start order (sinks first, sources
  last: a consumer is ready before anything is sent to it);
- each node's parameters after the plugin's defaults;
- each edge's resolved QoS (writer: the output port's preset or the node's
  override; reader: the edge's qos merged over the writer's) and transport
  (``auto`` becomes ``inproc`` inside one container, ``zenoh`` between hosts of different
  sites and ``dds`` otherwise; a zenoh edge gets its key expression);
- the ``ports_json`` every node is loaded with (docs/contracts.md);
- the container restart policy;
- for each durable queue, the sinks it feeds (so the queue knows whose
  acknowledgements a row waits for);
- for each output feeding a durable queue, its outbox (``ports_json`` ``outbox``: mode,
  bound, the queues whose acknowledgements a packet waits for).

The compiler trusts the validator: it is only called on a graph that passed.
"""
from __future__ import annotations

import copy
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from schnitzel_core import qos as qosmod
from schnitzel_core.graph import Graph

from .plan import (CONTAINER_EXECUTABLE, CONTAINER_PACKAGE, CONTROLLER_EXECUTABLE,
                   CONTROLLER_NODE_NAME, MANAGER_EXECUTABLE, MANAGER_NODE_NAME, MANAGER_PACKAGE, Plan, PlanContainer, PlanEdge,
                   PlanNode, RestartPolicy, DELIVERY_STALL_S, SOURCE_GRACE_S)

#: Packets an outbox keeps by default (schnitzel_core.outbox.DEFAULT_MAX)
OUTBOX_DEFAULT_MAX = 10_000

#: Node ids under /<graph> are the graph's nodes; containers live one level below.
CONTAINER_NS_SUFFIX = "_containers"


class CompileError(ValueError):
    """The graph cannot be compiled (should not happen after validation)."""


def container_node_name(graph: str, cid: str) -> Tuple[str, str]:
    """(node name, namespace) of a container process: ``/<graph>/_containers/<id>``."""
    return cid, f"/{graph}/{CONTAINER_NS_SUFFIX}"


def topic_of(graph: str, node: str, port: str) -> str:
    return f"/{graph}/{node}/{port}"


def zenoh_key(graph: str, src: str, sport: str, dst: str, dport: str) -> str:
    """The Zenoh key expression of an edge: ``schnitzel/<graph>/<src>/<port>/<dst>/<port>``
    (packets); its acknowledgements travel under the same key with ``/ack`` appended."""
    return f"schnitzel/{graph.strip('/')}/{src}/{sport}/{dst}/{dport}"


def zenoh_sessions(graph: Graph, node_ids: Sequence[str]) -> Dict[str, Dict[str, Any]]:
    """The Zenoh session of each container that carries a Zenoh edge (ros/zenoh_link.py), by
    container id. Client mode: it connects to the graph's router. Peer mode: the i-th such
    container of a host listens on ``tcp/<host address>:<zenoh.port + i>`` (port default 7447) and
    connects to every other one's endpoint, so whichever starts later reaches the earlier (a peer
    does not retry a connect that failed at its start)."""
    z = dict(graph.zenoh or {})
    cids: List[str] = []
    for nid in node_ids:
        cid = graph.node(nid).container
        if cid not in cids:
            cids.append(cid)
    if z.get("mode") == "client":
        return {cid: {"mode": "client", "connect": [z["router"]] if z.get("router") else [], "listen": []}
                for cid in cids}
    port = int(z.get("port", 7447))
    ends: Dict[str, str] = {}
    per_host: Dict[str, int] = {}
    for cid in cids:
        c = graph.container(cid)
        h = graph.host(c.host) if c else None
        if h is None or not h.address:
            continue
        i = per_host.get(h.name, 0)
        per_host[h.name] = i + 1
        ends[cid] = f"tcp/{h.address}:{port + i}"
    return {cid: {"mode": "peer", "listen": [ends[cid]] if cid in ends else [],
                  "connect": [e for other, e in ends.items() if other != cid]} for cid in cids}


def _category(spec: Any) -> str:
    cat = getattr(spec, "category", "")
    return getattr(cat, "value", str(cat))


def _start_order(node_ids: Sequence[str], edges: Sequence[Tuple[str, str]]) -> List[str]:
    """Reverse topological order (sinks first). Ties keep file order; nodes on a cycle
    (only legal through a delay node) follow in file order after the rest."""
    downstream: Dict[str, List[str]] = {n: [] for n in node_ids}
    for a, b in edges:
        if a in downstream and b in downstream and b not in downstream[a]:
            downstream[a].append(b)
    remaining_out = {n: len([d for d in downstream[n] if d != n]) for n in node_ids}
    upstream: Dict[str, List[str]] = {n: [] for n in node_ids}
    for a, ds in downstream.items():
        for b in ds:
            if b != a:
                upstream[b].append(a)
    order: List[str] = []
    placed = set()
    while len(order) < len(node_ids):
        ready = [n for n in node_ids if n not in placed and remaining_out[n] == 0]
        if not ready:  # a cycle: break it at the first unplaced node in file order
            ready = [next(n for n in node_ids if n not in placed)]
        for n in ready:
            order.append(n)
            placed.add(n)
            for u in upstream[n]:
                remaining_out[u] -= 1
    return order


def compile_graph(graph: Graph, registry: Any, graph_file: Optional[str] = None) -> Plan:
    """Turn a validated graph into a plan. ``registry`` is a schnitzel_core Registry."""
    name = graph.name
    ns = f"/{name}"
    specs: Dict[str, Any] = {}
    packages: Dict[str, str] = {}
    for n in graph.nodes:
        entry = registry.get(n.plugin)
        if entry is None or getattr(entry, "spec", None) is None:
            raise CompileError(f"node {n.id!r}: plugin {n.plugin!r} is not installed "
                               "(run `schnitzel validate` for details)")
        specs[n.id] = entry.spec
        # A ROS package name (ComposableNode.package): distributions spell "-" where ROS has "_".
        packages[n.id] = (getattr(entry, "dist", "") or CONTAINER_PACKAGE).replace("-", "_")

    # Containers: declared ones, in file order, plus any a node names (implicit "main").
    declared = list(graph.containers)
    cids = [c.id for c in declared]
    for n in graph.nodes:
        if n.container not in cids:
            cids.append(n.container)

    # Edges: QoS and transport.
    plan_edges: List[PlanEdge] = []
    ports: Dict[str, Dict[str, Any]] = {n.id: {"in": {}, "out": {}} for n in graph.nodes}
    for n in graph.nodes:
        for p in specs[n.id].outputs:
            preset = getattr(p, "qos", qosmod.DEFAULT_PRESET)
            writer, _ = qosmod.edge_qos(preset, (getattr(n, "qos", None) or {}).get(p.name), None)
            ports[n.id]["out"][p.name] = {"topic": topic_of(name, n.id, p.name),
                                          "qos": writer.to_dict(), "transports": []}
        for p in specs[n.id].inputs:
            ports[n.id]["in"][p.name] = []
    zenoh_nodes: List[str] = []
    for e in graph.edges:
        src = graph.node(e.src_node)
        dst = graph.node(e.dst_node)
        if src is None or dst is None:
            raise CompileError(f"edge {e.label}: unknown node")
        sport = specs[src.id].port(e.src_port)
        preset = getattr(sport, "qos", qosmod.DEFAULT_PRESET) if sport else qosmod.DEFAULT_PRESET
        override = (getattr(src, "qos", None) or {}).get(e.src_port)
        writer, reader = qosmod.edge_qos(preset, override, e.qos)
        transport = e.transport or "auto"
        inter_site = bool(graph.hosts) and (graph.site_of_host(graph.host_of(src.id))
                                            != graph.site_of_host(graph.host_of(dst.id)))
        if transport == "auto":
            transport = ("inproc" if src.container == dst.container else "zenoh" if inter_site else "dds")
        topic = topic_of(name, src.id, e.src_port)
        plan_edges.append(PlanEdge(src=f"{src.id}.{e.src_port}", dst=f"{dst.id}.{e.dst_port}",
                                   topic=topic, transport=transport, qos=reader.to_dict(),
                                   writer_qos=writer.to_dict(),
                                   key=zenoh_key(name, e.src_node, e.src_port, e.dst_node, e.dst_port)
                                   if transport == "zenoh" else ""))
        out = ports[src.id]["out"].setdefault(
            e.src_port, {"topic": topic, "qos": writer.to_dict(), "transports": []})
        if transport not in out["transports"]:
            out["transports"].append(transport)
        inp = {"topic": topic, "qos": reader.to_dict(), "transport": transport, "from": f"{src.id}.{e.src_port}"}
        if transport == "zenoh":
            key = plan_edges[-1].key
            out.setdefault("zenoh_keys", []).append(key)
            inp["key"] = key
            zenoh_nodes.extend(i for i in (src.id, dst.id) if i not in zenoh_nodes)
        ports[dst.id]["in"].setdefault(e.dst_port, []).append(inp)
        if getattr(specs[dst.id], "durable_queue", False):
            # the sender keeps what it sends until the queue acknowledges the commit
            # (docs/delivery.md, "The outbox"); several queues on one port: the strongest mode.
            # "queues" is a count, not ids: swapping one queue for another (apply) must not
            # change the sender's ports_json and so replace the sender.
            box = out.setdefault("outbox", {"mode": "memory", "max": OUTBOX_DEFAULT_MAX, "queues": 0})
            if e.outbox == "durable":
                box["mode"] = "durable"
            if e.outbox_max:
                box["max"] = max(int(e.outbox_max), box["max"]) if box["queues"] else int(e.outbox_max)
            box["queues"] += 1
    sessions = zenoh_sessions(graph, zenoh_nodes)
    for nid in zenoh_nodes:
        ports[nid]["zenoh"] = sessions[graph.node(nid).container]
    for n in graph.nodes:
        if n.inputs:   # backpressure per input port (docs/contracts.md, ports_json "inputs")
            ports[n.id]["inputs"] = copy.deepcopy(n.inputs)
    for pmap in ports.values():
        if getattr(graph, "payload_ref", None):   # by-reference payloads (ros/byref.py)
            pmap["payload_ref"] = dict(graph.payload_ref)
        for out in pmap["out"].values():
            out["transports"].sort(key=lambda t: ("inproc", "shm", "dds", "zenoh").index(t)
                                   if t in ("inproc", "shm", "dds", "zenoh") else 9)

    order = _start_order([n.id for n in graph.nodes], [(e.src_node, e.dst_node) for e in graph.edges])
    upstream = {n.id: sorted({e.src_node for e in graph.inputs_of(n.id) if e.src_node != n.id})
                for n in graph.nodes}

    plan_nodes: Dict[str, PlanNode] = {}
    for n in graph.nodes:
        spec = specs[n.id]
        params = copy.deepcopy(spec.defaults())
        params.update(copy.deepcopy(n.params))
        remaps = [[p, out["topic"]] for p, out in ports[n.id]["out"].items()]
        remaps += [[p, ins[0]["topic"]] for p, ins in ports[n.id]["in"].items() if len(ins) == 1]
        plan_nodes[n.id] = PlanNode(
            id=n.id, plugin=n.plugin, container=n.container, namespace=ns,
            category=_category(spec), package=packages[n.id],
            plugin_version=str(getattr(spec, "version", "")), params=params,
            ports=ports[n.id], remappings=remaps, upstream=upstream[n.id])

    # Durable queues: the sinks each one feeds, following edges through routers
    # (anything that is not a sink or another queue) downstream.
    for n in graph.nodes:
        if not getattr(specs[n.id], "durable_queue", False):
            continue
        sinks: List[str] = []
        seen = {n.id}
        frontier = [e.dst_node for e in graph.outputs_of(n.id)]
        while frontier:
            cur = frontier.pop(0)
            if cur in seen:
                continue
            seen.add(cur)
            cspec = specs[cur]
            if _category(cspec) == "sink" or getattr(cspec, "external", False):
                sinks.append(cur)
            elif not getattr(cspec, "durable_queue", False):
                frontier.extend(e.dst_node for e in graph.outputs_of(cur))
        pn = plan_nodes[n.id]
        pn.feeds_sinks = sinks
        if specs[n.id].param("sinks") is not None and not n.params.get("sinks"):
            pn.params["sinks"] = list(sinks)

    rt = dict(getattr(graph, "runtime", None) or {})
    runtime = {"source_grace_s": float(rt.get("source_grace_s", SOURCE_GRACE_S)),
               "source_grace": dict(rt.get("source_grace") or {}),
               "delivery_stall_s": float(rt.get("delivery_stall_s", DELIVERY_STALL_S)),
               "state_backend": rt.get("state_backend", "memory"), "state_path": rt.get("state_path", ""),
               "metrics_port": int(rt.get("metrics_port", 0)), "metrics_host": rt.get("metrics_host", "127.0.0.1"),
               "ui_port": int(rt.get("ui_port", 0)), "ui_host": rt.get("ui_host", "127.0.0.1")}
    src_file = graph_file or graph.file
    if runtime["state_path"] and not os.path.isabs(runtime["state_path"]) and os.path.isfile(src_file):
        # relative to the graph file, as a reader of the file expects (not to wherever it is run)
        runtime["state_path"] = os.path.join(os.path.dirname(os.path.abspath(src_file)), runtime["state_path"])
    # every container opens the graph's blackboard backend (one file shared by all with sqlite)
    state_args = [] if runtime["state_backend"] == "memory" and not runtime["state_path"] else (
        ["--state-backend", runtime["state_backend"]]
        + (["--state-path", runtime["state_path"]] if runtime["state_path"] else []))
    containers: List[PlanContainer] = []
    for cid in cids:
        decl = graph.container(cid)
        node_name, cns = container_node_name(name, cid)
        restart = RestartPolicy(policy=decl.restart, backoff_s=float(decl.restart_backoff_s),
                                limit=int(decl.restart_limit)) if decl else RestartPolicy()
        containers.append(PlanContainer(
            id=cid, host=_container_host(graph, decl), node_name=node_name, namespace=cns,
            restart=restart, nodes=[i for i in order if plan_nodes[i].container == cid],
            package=CONTAINER_PACKAGE, executable=CONTAINER_EXECUTABLE,
            arguments=["--graph", name, "--container", cid] + state_args))
    containers = [c for c in containers if c.nodes or (graph.container(c.id) and not graph.container(c.id).implicit)]

    sources = [i for i in order if plan_nodes[i].is_source]
    # Tear-down: sources first, then downstream in data-flow order (the reverse of start).
    stop_order = list(reversed(order))
    stop_order = sources + [i for i in stop_order if i not in sources]
    plan = Plan(
        graph=name, namespace=ns, graph_file=graph_file or graph.file,
        containers=containers, nodes=[plan_nodes[i] for i in order], edges=plan_edges,
        start_order=order, stop_order=stop_order,
        manager={"package": MANAGER_PACKAGE, "executable": MANAGER_EXECUTABLE,
                 "name": MANAGER_NODE_NAME, "namespace": ns},
        status_topics={"graph": f"{ns}/_status/graph", "nodes": f"{ns}/_status/nodes"},
        runtime=runtime,
        hosts=[{"name": h.name, "address": h.address, "role": h.role, "site": h.site} for h in graph.hosts],
        discovery=dict(graph.discovery), zenoh=dict(graph.zenoh),
        # the control plane: hosted by its own process (schnitzel_bringup.controller_node)
        controllers=[{"spec": copy.deepcopy(c),
                      "integer_params": [f"{k.get('node')}.{k.get('param')}" for k in c.get("knobs", [])
                                         if isinstance(k, dict) and k.get("node") in specs
                                         and getattr(specs[k["node"]].param(str(k.get("param"))), "type", "") == "int"]}
                     for c in getattr(graph, "controllers", None) or []],
        control=({"package": MANAGER_PACKAGE, "executable": CONTROLLER_EXECUTABLE,
                  "name": CONTROLLER_NODE_NAME, "namespace": ns}
                 if getattr(graph, "controllers", None) else {}),
    )
    plan.count_dds_readers()
    return plan


def _container_host(graph: Graph, decl: Any) -> str:
    host = decl.host if decl else "localhost"
    if graph.hosts and len(graph.hosts) == 1 and (decl is None or decl.implicit):
        return graph.hosts[0].name   # a one-host graph without containers: its only host
    return host


# ---- validate + compile in one step ----------------------------------------

def validate_and_compile(path: str) -> Tuple[Any, Optional[Plan]]:
    """(validator report, plan or None). The plan is None when the graph is invalid."""
    import os

    from schnitzel_core.registry import load_registry
    from schnitzel_validator import validate_path

    registry = load_registry()
    report = validate_path(path, registry=registry)
    if not report.valid or report.graph is None:
        return report, None
    plan = compile_graph(report.graph, registry, graph_file=os.path.abspath(path))
    return report, plan
