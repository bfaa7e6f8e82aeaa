"""The in-process fast path: the plugins' logic of the part of the graph a case touches, wired
together in one process (emit -> the next node's on_packet, a sink's ack -> its queue's on_ack),
with a clock that reads the stamp of the packet being processed (deterministic).

What runs: every node downstream of an input port and upstream of an expected output, exactly
as the graph declares it (same plugin, same parameters); nothing upstream of the inputs.
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Any, Dict, List, Set, Tuple

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import NodeContext

from .spec import Case


class CaseError(Exception):
    """The case cannot run (not a failed expectation): a plugin raised, a port does not exist."""


def subgraph(graph: Any, case: Case) -> Set[str]:
    starts = {i.at.split(".")[0] for i in case.inputs}
    ends = {e.at.split(".")[0] for e in case.expect}
    down: Set[str] = set()
    todo = list(starts)
    while todo:
        n = todo.pop()
        if n not in down:
            down.add(n)
            todo += [e.dst_node for e in graph.outputs_of(n)]
    up: Set[str] = set()
    todo = list(ends)
    while todo:
        n = todo.pop()
        if n not in up:
            up.add(n)
            todo += [e.src_node for e in graph.inputs_of(n)]
    return down & up


def check_ports(graph: Any, registry: Any, case: Case) -> None:
    """Each input/expect names a node of the graph and a port of the right direction."""
    for what, at, direction in ([("input", i.at, "in") for i in case.inputs]
                                + [("expect", e.at, "out") for e in case.expect]):
        node_id, _, port = at.partition(".")
        node = graph.node(node_id)
        if node is None:
            raise CaseError(f"{what} at {at}: the graph has no node {node_id!r} "
                            f"(nodes: {', '.join(n.id for n in graph.nodes)})")
        spec = registry.load_class(node.plugin).spec
        ports = [p.name for p in (spec.inputs if direction == "in" else spec.outputs)]
        if port and port not in ports:
            raise CaseError(f"{what} at {at}: {node.plugin} has no {'input' if direction == 'in' else 'output'} "
                            f"port {port!r} (it has: {', '.join(ports) or 'none'})")
        if not port and direction == "in":
            raise CaseError(f"input at {at}: name the port, e.g. {node_id}.{ports[0] if ports else 'in'}")


def run_case(graph: Any, registry: Any, case: Case) -> Tuple[Dict[str, List[Packet]], List[Packet]]:
    """(packets emitted at each expected output, the input packets)."""
    check_ports(graph, registry, case)
    ids = subgraph(graph, case)
    now = [0]
    pending: "collections.deque[Tuple[str, str, Packet]]" = collections.deque()
    emitted: Dict[Tuple[str, str], List[Packet]] = collections.defaultdict(list)
    logics: Dict[str, Any] = {}
    queues: Dict[str, Any] = {}

    def emitter(node_id: str):
        def emit(port: str, p: Packet) -> None:
            emitted[(node_id, port)].append(p)
            for e in graph.outputs_of(node_id):
                if e.src_port == port and e.dst_node in ids:
                    pending.append((e.dst_node, e.dst_port, p))
        return emit

    def acker(ack: Any) -> None:
        q = queues.get(ack.queue_id)
        if q is not None:
            q.on_ack(ack)

    order = [n.id for n in graph.nodes if n.id in ids]
    try:
        for nid in order:
            node = graph.node(nid)
            cls = registry.load_class(node.plugin)
            params = dict(cls.spec.defaults())
            params.update(node.params)
            ctx = NodeContext(nid, params, graph=graph.name, emit=emitter(nid), clock=lambda: now[0],
                              logger=logging.getLogger(f"schnitzel.test.{nid}"))
            ctx._ack = acker
            logic = cls(ctx)
            logic.configure()
            logic.activate()
            logics[nid] = logic
            if getattr(cls.spec, "durable_queue", False):
                queues[nid] = logic
    except Exception as exc:  # noqa: BLE001 - a plugin that cannot start is the case's error, not a crash
        raise CaseError(f"node {nid} ({graph.node(nid).plugin}) failed to start: {type(exc).__name__}: {exc}") from None

    def drain() -> None:
        for _ in range(100):           # durable queues hand rows out on their tick
            while pending:
                nid, port, p = pending.popleft()
                try:
                    logics[nid].on_packet(port, p)
                except Exception as exc:  # noqa: BLE001
                    raise CaseError(f"node {nid} raised on packet {p.packet_id}: {type(exc).__name__}: {exc}") from None
            for q in queues.values():
                q.tick()
            if not pending:
                # a queue's group commit runs on its own thread: rows it has not committed yet
                # are handed out on a later tick
                if not any(getattr(q, "committer", None) is not None and q.committer.pending()
                           for q in queues.values()):
                    return
                time.sleep(0.002)

    inputs: List[Packet] = []
    feed = sorted(((pk["stamp_ns"], k, i.at, pk) for k, i in enumerate(case.inputs) for pk in i.packets),
                  key=lambda x: (x[0], x[1]))
    try:
        for stamp, _, at, pk in feed:
            p = Packet.from_dict(pk)
            inputs.append(p)
            now[0] = stamp
            nid, port = at.split(".")
            pending.append((nid, port, p))
            drain()
        if case.advance_s:
            now[0] = (feed[-1][0] if feed else 0) + int(case.advance_s * 1e9)
            for nid in order:
                if logics[nid].tick_period_s:
                    logics[nid].tick()
                    drain()
    finally:
        for logic in logics.values():
            try:
                logic.deactivate()
                logic.cleanup()
            except Exception:  # noqa: BLE001 - teardown must not hide the result
                pass
    out: Dict[str, List[Packet]] = {}
    for e in case.expect:
        nid, _, port = e.at.partition(".")
        out[e.at] = [p for (n, pt), ps in emitted.items() if n == nid and (not port or pt == port) for p in ps]
    return out, inputs
