"""Delivery health: a durable queue whose sinks cannot deliver degrades the running graph.

Read from the counters the delivery plugins publish (``ctx.count`` -> NodeStatus ``counters``):

- ``durable_queue``: gauges ``depth``, ``oldest_age_ms``, ``dead`` (rows in the dead-letter
  table, earlier runs included) and the counters ``dead_lettered``, ``retries``;
- ``http_sink`` / ``jsonl_sink``: ``retries``, ``rejected``, ``delivered``, ``breaker_open``
  (times the circuit breaker opened).

A queue counts as a problem while its oldest row has waited at least ``stall_s`` seconds
(the graph's ``runtime: delivery_stall_s``, default ``DELIVERY_STALL_S`` = 5 s; a healthy queue
hands rows over in milliseconds), or once rows were
dead-lettered during this run. Each problem is one sentence naming the sink, e.g.
``sink http: 12 rows dead-lettered (queue q)``.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional

#: The oldest row of a durable queue waiting this long means its sinks are not delivering
#: (the default of the graph setting ``runtime: delivery_stall_s``).
from .plan import DELIVERY_STALL_S
#: Counters that add up across container restarts (the rest are gauges or per-incarnation).
CUMULATIVE = ("dead_lettered", "rejected", "retries", "delivered", "breaker_open")


def _num(counters: Mapping[str, Any], key: str) -> int:
    try:
        return int(float(counters.get(key, 0) or 0))
    except (TypeError, ValueError):
        return 0


def is_queue(plan_node: Any, counters: Mapping[str, Any]) -> bool:
    return bool(getattr(plan_node, "feeds_sinks", None)) or ("oldest_age_ms" in counters and "depth" in counters)


def _sink_detail(sid: str, counters: Mapping[str, Any]) -> str:
    bits = []
    if _num(counters, "retries"):
        bits.append(f"{_num(counters, 'retries')} retries")
    if _num(counters, "breaker_open"):
        n = _num(counters, "breaker_open")
        bits.append(f"breaker opened {n} time{'s' if n != 1 else ''}")
    if _num(counters, "rejected"):
        bits.append(f"{_num(counters, 'rejected')} rejected")
    return ", ".join(bits)


def delivery_problems(plan: Any, counters: Mapping[str, Mapping[str, Any]],
                      stall_s: Optional[float] = None) -> Dict[str, str]:
    """``{key: sentence}`` for every durable queue that cannot deliver right now or dead-lettered
    rows. ``counters``: node id -> its counters (cumulative ones summed over restarts); the key
    (``<queue>/dead``, ``<queue>/waiting``) lets a caller keep the newest sentence per problem."""
    stall = DELIVERY_STALL_S if stall_s is None else stall_s
    out: Dict[str, str] = {}
    for n in plan.nodes:
        c = counters.get(n.id) or {}
        if not is_queue(n, c):
            continue
        sinks = list(getattr(n, "feeds_sinks", None) or [])
        dead = _num(c, "dead_lettered")
        if dead:
            rows = f"{dead} row{'s' if dead != 1 else ''} dead-lettered"
            if len(sinks) == 1:
                out[f"{n.id}/dead"] = f"sink {sinks[0]}: {rows} (queue {n.id})"
            else:
                rej = [f"{s} {_num(counters.get(s) or {}, 'rejected')}" for s in sinks
                       if _num(counters.get(s) or {}, "rejected")]
                out[f"{n.id}/dead"] = f"queue {n.id}: {rows}" + (f" (rejected by sinks: {', '.join(rej)})"
                                                                  if rej else "")
        depth, age_s = _num(c, "depth"), _num(c, "oldest_age_ms") / 1000.0
        if depth and age_s >= stall:
            rows = f"{depth} row{'s' if depth != 1 else ''} waiting"
            if len(sinks) == 1:
                d = _sink_detail(sinks[0], counters.get(sinks[0]) or {})
                out[f"{n.id}/waiting"] = (f"sink {sinks[0]}: {rows} in queue {n.id}, the oldest for "
                                          f"{age_s:.0f} s" + (f" ({d})" if d else ""))
            else:
                ds = [f"sink {s}: {d}" for s in sinks for d in [_sink_detail(s, counters.get(s) or {})] if d]
                out[f"{n.id}/waiting"] = (f"queue {n.id}: {rows}, the oldest for {age_s:.0f} s"
                                          + (f" ({'; '.join(ds)})" if ds else ""))
    return out


__all__ = ["CUMULATIVE", "DELIVERY_STALL_S", "delivery_problems", "is_queue"]
