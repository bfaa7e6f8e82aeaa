"""What each edge of a valid graph guarantees about delivery (docs/delivery.md, "Which
edges carry the guarantee"). Shown as ``info:`` lines by ``schnitzel validate`` and as
``delivery`` in its JSON; informational, never an error.

- ``at-least-once (outbox)``: an edge into a durable_queue. The sender keeps what it sent
  in its outbox until the queue acknowledges the commit and re-sends the rest.
- ``at-least-once (queue)``: an edge out of a durable_queue. Rows are re-sent until every
  sink acknowledges them.
- ``latest-only``: by design: a best-effort reader QoS keeping one packet (frames) or a
  compute node, which keeps only the newest packet per input. Not re-sent.
- ``best-effort``: by design: a best-effort reader QoS with a deeper history (sensor).
- ``reliable while running``: a reliable edge between two running nodes; what is in flight
  when either process dies is not kept.
"""
from __future__ import annotations

from typing import Any, Dict, List

from schnitzel_core import qos as qosmod
from schnitzel_core.graph import Graph

OUTBOX_DEFAULT_MAX = 10_000   # schnitzel_core.outbox.DEFAULT_MAX


def edge_guarantees(graph: Graph, registry: Any) -> List[Dict[str, str]]:
    """[{"edge", "guarantee", "detail"}] for every edge whose plugins are installed."""
    out: List[Dict[str, str]] = []
    for e in graph.edges:
        src, dst = graph.node(e.src_node), graph.node(e.dst_node)
        if src is None or dst is None:
            continue
        se, de = registry.get(src.plugin), registry.get(dst.plugin)
        sspec, dspec = getattr(se, "spec", None), getattr(de, "spec", None)
        if sspec is None or dspec is None or sspec.port(e.src_port) is None:
            continue
        try:
            _, reader = qosmod.edge_qos(sspec.port(e.src_port).qos, (src.qos or {}).get(e.src_port), e.qos)
        except qosmod.QosError:
            continue
        if dspec.durable_queue:
            mode = e.outbox or "memory"
            g = "at-least-once (outbox)"
            detail = (f"{src.id} keeps up to {e.outbox_max or OUTBOX_DEFAULT_MAX} sent packets "
                      f"({'in memory and in a file' if mode == 'durable' else 'in memory'}) until {dst.id} "
                      "acknowledges their commit, and re-sends the rest when it is back; drops past that "
                      "bound are counted (outbox_dropped)")
        elif sspec.durable_queue:
            g = "at-least-once (queue)"
            detail = f"{src.id} re-sends each row until its sinks acknowledge it"
        elif reader.reliability == "best_effort" and reader.depth <= 1:
            g = "latest-only"
            detail = "by design: best-effort QoS keeping the last packet (frames); a packet lost or replaced is not re-sent"
        elif reader.reliability == "best_effort":
            g = "best-effort"
            detail = (f"by design: best-effort QoS (keep last {reader.depth}, e.g. sensor); a lost packet "
                      "is not re-sent")
        elif getattr(dspec.category, "value", "") == "compute":
            g = "latest-only"
            detail = f"by design: {dst.id} is a compute node and keeps only the newest packet per input"
        else:
            g = "reliable while running"
            detail = "reliable while both nodes run; packets in flight when either process dies are not kept"
        out.append({"edge": e.label, "guarantee": g, "detail": detail})
    return out
