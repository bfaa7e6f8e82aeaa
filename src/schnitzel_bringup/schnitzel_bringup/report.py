"""The run report: one JSON document written at the end of ``schnitzel run --report FILE``.

Status rules (docs/runtime.md):
- ``error``: the graph never came up, a node ended in the error state, or a
  container died and was not (or could no longer be) restarted;
- ``degraded``: it ran, but a container was restarted, a node raised errors, the
  running graph was degraded for a while (stale heartbeats, a container not answering, a
  source that sent nothing past its grace period), or a durable queue's sinks could not
  deliver (rows waiting past a threshold, rows dead-lettered; ``delivery_health``);
- ``cancelled``: a signal (Ctrl-C, SIGTERM) stopped the run before the graph became active;
- ``ok``: everything else. Drops alone do not degrade a run: live streams are
  latest-only by design and their drops are counted, not failures.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from .plan import Plan

REPORT_FORMAT = 1


def _iso(t: float) -> str:
    return _dt.datetime.fromtimestamp(t, tz=_dt.timezone.utc).isoformat(timespec="milliseconds")


def graph_info(plan: Plan) -> Dict[str, Any]:
    info: Dict[str, Any] = {"name": plan.graph, "file": plan.graph_file,
                            "containers": [c.id for c in plan.containers],
                            "nodes": {n.id: {"plugin": n.plugin, "container": n.container,
                                             "params": n.params} for n in plan.nodes},
                            "edges": [{"from": e.src, "to": e.dst, "transport": e.transport} for e in plan.edges]}
    try:
        text = Path(plan.graph_file).read_bytes()
        info["sha256"] = hashlib.sha256(text).hexdigest()
        info["text"] = text.decode("utf-8", "replace")
    except OSError:
        pass
    return info


def build_report(plan: Plan, status: Optional[Dict[str, Any]], *, started_at: float, ended_at: float,
                 stopped_by: str, containers: Dict[str, Dict[str, Any]],
                 problems: Optional[List[str]] = None,
                 timeline: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """The report from the manager's last status (None when the manager never wrote one)."""
    problems = list(problems or [])
    status = status or {}
    node_stats = status.get("nodes", {}) or {}
    nodes: Dict[str, Any] = {}
    for n in plan.nodes:
        s = node_stats.get(n.id, {})
        nodes[n.id] = {
            "plugin": n.plugin, "container": n.container, "category": n.category,
            "state": s.get("state", "unknown"),
            "packets_in": int(s.get("packets_in", 0) or 0), "packets_out": int(s.get("packets_out", 0) or 0),
            "drops": int(s.get("drops", 0) or 0), "errors": int(s.get("errors", 0) or 0),
            "last_error": s.get("last_error", "") or "",
            "latency_ms": {"p50": float(s.get("latency_p50_ms", 0.0) or 0.0),
                           "p95": float(s.get("latency_p95_ms", 0.0) or 0.0),
                           "p99": float(s.get("latency_p99_ms", 0.0) or 0.0)},
            "counters": s.get("counters", {}) or {},
            # where it sits in the graph: the report page orders nodes source -> sink, and says
            # which durable queue feeds which sink
            "upstream": list(n.upstream or []), "feeds_sinks": list(n.feeds_sinks or []),
        }
    totals = {k: sum(v[k] for v in nodes.values()) for k in ("drops", "errors")}
    totals["packets_in"] = sum(v["packets_in"] for v in nodes.values())
    totals["packets_out"] = sum(v["packets_out"] for v in nodes.values())
    totals["sink_packets_in"] = sum(nodes[i]["packets_in"] for i in plan.sinks)
    totals["source_packets_out"] = sum(nodes[i]["packets_out"] for i in plan.sources)
    restarts = sum(int(c.get("restarts", 0)) for c in containers.values())

    reached_active = bool(status.get("ever_active"))
    # A signal (the user's Ctrl-C, a supervisor's SIGTERM) before the graph came up is a cancel,
    # not a failure: unless something had already failed, the run reads "cancelled".
    cancelled = stopped_by.startswith("signal:") and not reached_active
    if status.get("state") == "error" or (not status and not cancelled):
        problems.append(status.get("message") or "the lifecycle manager did not report")
    if any(v["state"] == "error" for v in nodes.values()):
        problems.append("node(s) in the error state: " + ", ".join(i for i, v in nodes.items() if v["state"] == "error"))
    for cid, c in containers.items():
        if c.get("gave_up"):
            problems.append(f"container {cid!r} stopped and was not restarted ({c.get('gave_up')})")
    if cancelled and not problems:
        result = "cancelled"
    elif problems or not reached_active:
        result = "error"
        if not reached_active and not problems:
            problems.append("the graph never became active")
    elif (restarts or totals["errors"] or status.get("degraded_episodes") or status.get("delivery_problems_seen")
          or status.get("source_problems_seen")):
        result = "degraded"
        problems.extend(status.get("source_problems_seen") or [])
        problems.extend(status.get("delivery_problems_seen") or [])
        for cid, c in containers.items():
            if int(c.get("restarts", 0)):
                problems.append(f"container {cid!r} was restarted {c['restarts']} time(s)")
        if totals["errors"]:
            problems.append(f"nodes raised {totals['errors']} error(s): "
                            + ", ".join(f"{i} ({v['errors']})" for i, v in nodes.items() if v["errors"]))
        if status.get("degraded_episodes"):
            problems.append(f"the running graph was degraded {status['degraded_episodes']} time(s) "
                            "(a node's heartbeat went stale, a container stopped answering, a source sent "
                            "nothing or a sink could not deliver; see events and timeline)")
    else:
        result = "ok"
    return {
        "schnitzel_report": REPORT_FORMAT,
        "status": result,
        "problems": problems,
        "graph": graph_info(plan),
        "started_at": _iso(started_at), "ended_at": _iso(ended_at),
        "duration_s": round(ended_at - started_at, 3),
        "stopped_by": stopped_by,
        "totals": totals,
        "nodes": nodes,
        "containers": containers,
        "events": status.get("events", []) or [],
        # periodic samples from the runner (schnitzel report --html plots them):
        # [{"t": s since start, "state", "nodes": {id: {in, out, drops, errors, p50, p99, depth?, oldest_age_ms?}}}]
        "timeline": list(timeline or []),
    }


def write_report(report: Dict[str, Any], path: str) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    tmp.replace(p)
