"""Render a run report (``schnitzel run --report``) as one self-contained HTML page.

No JavaScript, no CDN, no external file: the plots are inline SVG drawn here, so the page
opens offline, in a browser on the robot, or attached to a ticket. What it shows:

- a status badge (ok / degraded / error), the problems, and headline numbers: events produced,
  and per sink delivered / pending / dead-lettered;
- packet rates over time, one plot per node (sources out, every other node in), each scaled to its
  own stream (frames and events never share an axis), from the report's ``timeline``;
- latency: the p50/p95/p99 of every node (from the source stamp to the node's input), and
  the sinks' p50/p99 over time;
- the depth of every durable queue over time (integer axis: rows);
- a per-node table, sorted source -> sink, (plugin, container, state, in, out, drops, errors, latency, counters) and
  the lifecycle events.

``render_html(report) -> str``; ``summary_lines(report) -> list[str]`` is the text version.
"""
from __future__ import annotations

import html
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
           "#475569", "#ea580c")
STATUS_COLOURS = {"ok": "#15803d", "degraded": "#b45309", "error": "#b91c1c"}

Series = Tuple[str, List[Tuple[float, float]]]


class ReportFormatError(ValueError):
    """The document is not a schnitzel run report."""


def _esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _num(v: Any, default: float = 0.0) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return default
    return f if math.isfinite(f) else default


def check_report(doc: Any) -> Dict[str, Any]:
    """The report, or ReportFormatError saying why it is not one."""
    if not isinstance(doc, dict):
        raise ReportFormatError("expected a JSON object (a run report written by `schnitzel run --report`)")
    if "schnitzel_report" not in doc:
        raise ReportFormatError("this JSON is not a schnitzel run report (no 'schnitzel_report' key); "
                                "write one with `schnitzel run GRAPH --report RUN.json`")
    if not isinstance(doc.get("nodes", {}), dict) or not isinstance(doc.get("timeline", []), list):
        raise ReportFormatError("the run report is malformed: 'nodes' must be an object and 'timeline' a list")
    return doc


# ---------------------------------------------------------------------------------- numbers
def _nodes(rep: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {k: v for k, v in (rep.get("nodes") or {}).items() if isinstance(v, dict)}


def _by_category(rep: Dict[str, Any], cat: str) -> List[str]:
    return [k for k, v in _nodes(rep).items() if v.get("category") == cat]


def queues(rep: Dict[str, Any]) -> List[str]:
    return [k for k, v in _nodes(rep).items()
            if v.get("plugin") == "durable_queue" or "depth" in (v.get("counters") or {})]


def flow_order(rep: Dict[str, Any]) -> List[str]:
    """Node ids source -> sink: by distance from the sources (the report's ``upstream``), then
    sources before the rest before sinks (older reports have no ``upstream``), then id."""
    nodes = _nodes(rep)
    depth: Dict[str, int] = {}

    def d(nid: str, seen: Tuple[str, ...] = ()) -> int:
        if nid not in depth:
            ups = [u for u in (nodes.get(nid, {}).get("upstream") or []) if u in nodes and u not in seen]
            depth[nid] = 1 + max((d(u, seen + (nid,)) for u in ups), default=-1)
        return depth[nid]

    rank = {"source": 0, "sink": 2}
    return sorted(nodes, key=lambda n: (d(n), rank.get(nodes[n].get("category"), 1), n))


def sink_delivery(rep: Dict[str, Any], sink: str) -> Dict[str, Optional[int]]:
    """A sink's delivered (its own ``delivered`` counter, else what it took in), pending (rows
    waiting in the durable queue that feeds it) and dead-lettered (that queue's, this run);
    None where there is no queue to say."""
    nodes = _nodes(rep)
    n = nodes.get(sink, {})
    d = _counter(n, "delivered")
    feeding = [q for q in queues(rep) if sink in (nodes[q].get("feeds_sinks") or [])
               or q in (n.get("upstream") or [])]
    pending = [_counter(nodes[q], "depth") for q in feeding]
    dead = [_counter(nodes[q], "dead_lettered") for q in feeding]
    return {"delivered": int(d if d is not None else _num(n.get("packets_in"))),
            "pending": int(sum(p or 0 for p in pending)) if feeding else None,
            "dead_lettered": int(sum(x or 0 for x in dead)) if feeding else None}


def _timeline(rep: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [s for s in rep.get("timeline") or [] if isinstance(s, dict) and isinstance(s.get("nodes"), dict)]


def rate_series(rep: Dict[str, Any], node: str, field: str) -> List[Tuple[float, float]]:
    """packets/s of a node's cumulative ``in``/``out`` between consecutive samples."""
    pts: List[Tuple[float, float]] = []
    prev: Optional[Tuple[float, float]] = None
    for s in _timeline(rep):
        n = s["nodes"].get(node)
        if not isinstance(n, dict):
            continue
        t, v = _num(s.get("t")), _num(n.get(field))
        if prev is not None and t > prev[0]:
            pts.append((t, max(0.0, (v - prev[1]) / (t - prev[0]))))
        prev = (t, v)
    return pts


def value_series(rep: Dict[str, Any], node: str, field: str) -> List[Tuple[float, float]]:
    return [(_num(s.get("t")), _num(s["nodes"][node].get(field))) for s in _timeline(rep)
            if isinstance(s["nodes"].get(node), dict) and field in s["nodes"][node]]


def _counter(node: Dict[str, Any], name: str) -> Optional[float]:
    v = (node.get("counters") or {}).get(name)
    return None if v is None else _num(v)


def headline(rep: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(label, value) pairs for the tiles at the top of the page and the text summary."""
    nodes = _nodes(rep)
    t = rep.get("totals") or {}
    sinks = _by_category(rep, "sink")
    out: List[Tuple[str, str]] = [
        ("status", str(rep.get("status", "?"))),
        ("duration", f"{_num(rep.get('duration_s')):.1f} s"),
        ("events produced", f"{int(_num(t.get('source_packets_out')))}"),
    ]
    for s in [n for n in flow_order(rep) if n in sinks]:
        sd = sink_delivery(rep, s)
        dash = lambda v: "–" if v is None else str(v)  # noqa: E731
        out.append((f"sink {s}: delivered / pending / dead-lettered",
                    f"{sd['delivered']} / {dash(sd['pending'])} / {dash(sd['dead_lettered'])}"))
    out += [
        ("sinks took", f"{int(_num(t.get('sink_packets_in')))}"),
        ("drops", f"{int(_num(t.get('drops')))}"),
        ("errors", f"{int(_num(t.get('errors')))}"),
    ]
    delivered = [_counter(nodes[s], "delivered") for s in sinks]
    if any(d is not None for d in delivered):
        out.append(("delivered (sum over sinks)", f"{int(sum(d or 0 for d in delivered))}"))
    for q in queues(rep):
        depth = _counter(nodes[q], "depth")
        out.append((f"{q} depth at end", "?" if depth is None else f"{int(depth)}"))
    lat = [nodes[s]["latency_ms"] for s in sinks if isinstance(nodes[s].get("latency_ms"), dict)
           and int(_num(nodes[s].get("packets_in"))) > 0]
    if lat:
        out.append(("latency to sinks p50 / p99",
                    f"{max(_num(l.get('p50')) for l in lat):.1f} / {max(_num(l.get('p99')) for l in lat):.1f} ms"))
    return out


def summary_lines(rep: Dict[str, Any]) -> List[str]:
    g = rep.get("graph") or {}
    lines = [f"run report of graph {g.get('name', '?')!s} ({g.get('file', '?')!s}), "
             f"{rep.get('started_at', '?')} .. {rep.get('ended_at', '?')}, stopped by {rep.get('stopped_by', '?')}"]
    width = max(len(k) for k, _ in headline(rep))
    lines += [f"  {k:<{width}}  {v}" for k, v in headline(rep)]
    for p in rep.get("problems") or []:
        lines.append(f"  problem: {p}")
    return lines


# ---------------------------------------------------------------------------------- SVG
def _nice_step(span: float, ticks: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v / 1000:.1f}k".replace(".0k", "k")
    if abs(v) >= 10 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.2g}" if abs(v) < 1 else f"{v:.1f}"


def line_chart(plot_id: str, title: str, series: Sequence[Series], *, y_label: str, x_label: str = "time (s)",
               width: int = 760, height: int = 280, shade_until: Optional[float] = None,
               integer: bool = False) -> str:
    """An SVG line chart; every series is a polyline with ``data-series`` naming it. ``integer``:
    a count (rows), so the y ticks are whole numbers."""
    ml, mr, mt, mb = 58, 16, 34, 64
    pw, ph = width - ml - mr, height - mt - mb
    pts = [p for _, s in series for p in s]
    parts = [f'<svg id="{_esc(plot_id)}" class="plot" xmlns="http://www.w3.org/2000/svg" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{_esc(title)}">',
             f'<title>{_esc(title)}</title>',
             f'<text x="{ml}" y="20" class="ptitle">{_esc(title)}</text>']
    if not pts:
        parts.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" class="frame"/>'
                     f'<text x="{ml + pw / 2}" y="{mt + ph / 2}" text-anchor="middle" class="muted">'
                     f'no samples in this report</text></svg>')
        return "".join(parts)
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    if x1 <= x0:
        x1 = x0 + 1.0
    y1 = max(p[1] for p in pts)
    ystep = _nice_step(y1 if y1 > 0 else 1.0)
    if integer:
        ystep = float(max(1, math.ceil(ystep)))
    y1 = ystep * max(1, math.ceil((y1 if y1 > 0 else 1.0) / ystep))
    xstep = _nice_step(x1 - x0, 8)

    def X(x: float) -> float:
        return ml + (x - x0) / (x1 - x0) * pw

    def Y(y: float) -> float:
        return mt + ph - y / y1 * ph

    parts.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" class="frame"/>')
    if shade_until is not None and shade_until > x0:
        parts.append(f'<rect x="{ml}" y="{mt}" width="{X(min(shade_until, x1)) - ml:.1f}" height="{ph}" '
                     f'class="shade"><title>starting up</title></rect>')
    y = 0.0
    while y <= y1 + 1e-9:
        parts.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{Y(y):.1f}" y2="{Y(y):.1f}" class="grid"/>'
                     f'<text x="{ml - 6}" y="{Y(y) + 4:.1f}" text-anchor="end" class="tick">{_fmt(y)}</text>')
        y += ystep
    x = math.ceil(x0 / xstep) * xstep
    while x <= x1 + 1e-9:
        parts.append(f'<line x1="{X(x):.1f}" x2="{X(x):.1f}" y1="{mt + ph}" y2="{mt + ph + 4}" class="axis"/>'
                     f'<text x="{X(x):.1f}" y="{mt + ph + 16}" text-anchor="middle" class="tick">{_fmt(x)}</text>')
        x += xstep
    parts.append(f'<text x="{ml + pw / 2}" y="{mt + ph + 32}" text-anchor="middle" class="muted">{_esc(x_label)}</text>'
                 f'<text transform="translate(14 {mt + ph / 2}) rotate(-90)" text-anchor="middle" class="muted">'
                 f'{_esc(y_label)}</text>')
    lx = ml
    for i, (label, s) in enumerate(series):
        c = PALETTE[i % len(PALETTE)]
        if s:
            coords = " ".join(f"{X(a):.1f},{Y(b):.1f}" for a, b in s)
            parts.append(f'<polyline class="series" data-series="{_esc(label)}" fill="none" stroke="{c}" '
                         f'stroke-width="2" points="{coords}"><title>{_esc(label)}</title></polyline>')
            if len(s) == 1:
                parts.append(f'<circle cx="{X(s[0][0]):.1f}" cy="{Y(s[0][1]):.1f}" r="3" fill="{c}"/>')
        ly = height - 12
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="12" height="4" fill="{c}"/>'
                     f'<text x="{lx + 16}" y="{ly - 4}" class="legend">{_esc(label)}</text>')
        lx += 24 + 7 * len(label)
    parts.append("</svg>")
    return "".join(parts)


def latency_bars(plot_id: str, title: str, rows: Sequence[Tuple[str, float, float, float]], width: int = 760) -> str:
    """Horizontal bars per node: p50 (dark), p95 and p99 (lighter, behind)."""
    ml, mr, mt, row_h = 120, 60, 34, 22
    height = mt + row_h * max(1, len(rows)) + 44
    pw = width - ml - mr
    parts = [f'<svg id="{_esc(plot_id)}" class="plot" xmlns="http://www.w3.org/2000/svg" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{_esc(title)}">',
             f'<title>{_esc(title)}</title><text x="{ml}" y="20" class="ptitle">{_esc(title)}</text>']
    if not rows:
        parts.append(f'<text x="{ml}" y="{mt + 16}" class="muted">no node received packets</text></svg>')
        return "".join(parts)
    top = max(r[3] for r in rows) or 1.0
    step = _nice_step(top)
    top = step * max(1, math.ceil(top / step))
    v = 0.0
    while v <= top + 1e-9:
        x = ml + v / top * pw
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt}" y2="{mt + row_h * len(rows)}" class="grid"/>'
                     f'<text x="{x:.1f}" y="{mt + row_h * len(rows) + 14}" text-anchor="middle" class="tick">{_fmt(v)}</text>')
        v += step
    for i, (name, p50, p95, p99) in enumerate(rows):
        y = mt + i * row_h + 3
        parts.append(f'<text x="{ml - 6}" y="{y + 12}" text-anchor="end" class="tick">{_esc(name)}</text>')
        for val, cls, lab in ((p99, "p99", "p99"), (p95, "p95", "p95"), (p50, "p50", "p50")):
            parts.append(f'<rect class="bar {cls}" data-node="{_esc(name)}" x="{ml}" y="{y}" '
                         f'width="{max(0.5, val / top * pw):.1f}" height="{row_h - 6}">'
                         f'<title>{_esc(name)} {lab}: {val:.2f} ms</title></rect>')
        parts.append(f'<text x="{ml + max(0.5, p99 / top * pw) + 4:.1f}" y="{y + 12}" class="tick">'
                     f'{p50:.1f} / {p99:.1f}</text>')
    ly = height - 10
    for j, (cls, lab) in enumerate((("p50", "p50"), ("p95", "p95"), ("p99", "p99"))):
        parts.append(f'<rect x="{ml + j * 80}" y="{ly - 10}" width="12" height="10" class="bar {cls}"/>'
                     f'<text x="{ml + j * 80 + 16}" y="{ly - 1}" class="legend">{lab} (ms)</text>')
    parts.append(f'<text x="{ml + 260}" y="{ly - 1}" class="muted">from the source stamp to the node\'s input</text>')
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------------------------- page
CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f8fafc;color:#0f172a}
header{background:#0f172a;color:#f8fafc;padding:18px 28px}
header h1{margin:0;font-size:22px} header .sub{color:#cbd5e1;font-size:13px}
main{padding:18px 28px;max-width:1100px}
.badge{display:inline-block;padding:3px 12px;border-radius:999px;color:#fff;font-weight:600;
       text-transform:uppercase;font-size:12px;letter-spacing:.05em;vertical-align:middle;margin-left:10px}
.tiles{display:flex;flex-wrap:wrap;gap:10px;margin:8px 0 18px}
.tile{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:8px 14px;min-width:120px}
.tile .k{color:#64748b;font-size:12px} .tile .v{font-size:20px;font-weight:600}
section{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:12px 16px;margin-bottom:16px}
h2{font-size:16px;margin:2px 0 8px}
.problems{background:#fef2f2;border-color:#fecaca} .problems li{color:#991b1b}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #e2e8f0;padding:4px 6px;text-align:right;white-space:nowrap}
th:first-child,td:first-child,td.l,th.l{text-align:left}
td.err{color:#b91c1c;font-weight:600} code{font-size:12px} td.wrap{white-space:normal;max-width:360px}
svg.plot{max-width:100%;height:auto;display:block;margin:6px 0}
svg .frame{fill:#fff;stroke:#cbd5e1} svg .grid{stroke:#eef2f7} svg .axis{stroke:#94a3b8}
svg .tick{font-size:11px;fill:#475569} svg .legend{font-size:12px;fill:#0f172a}
svg .muted,.muted{font-size:12px;fill:#64748b;color:#64748b} svg .ptitle{font-size:14px;font-weight:600;fill:#0f172a}
svg .shade{fill:#f1f5f9} svg .bar.p50{fill:#1d4ed8} svg .bar.p95{fill:#60a5fa} svg .bar.p99{fill:#bfdbfe}
details{margin-top:6px} pre{background:#f1f5f9;padding:8px;overflow:auto;font-size:12px}
"""


def _active_at(rep: Dict[str, Any]) -> Optional[float]:
    for s in _timeline(rep):
        if s.get("state") == "active":
            return _num(s.get("t"))
    return None


def _node_table(rep: Dict[str, Any]) -> str:
    rows = []
    nodes = _nodes(rep)
    for nid in flow_order(rep):
        n = nodes[nid]
        lat = n.get("latency_ms") or {}
        counters = n.get("counters") or {}
        ctext = ", ".join(f"{k}={v}" for k, v in sorted(counters.items()))
        err = int(_num(n.get("errors")))
        state = str(n.get("state", "?"))
        rows.append(
            f'<tr data-node="{_esc(nid)}"><td>{_esc(nid)}</td><td class="l">{_esc(n.get("plugin", ""))}</td>'
            f'<td class="l">{_esc(n.get("container", ""))}</td>'
            f'<td class="l{" err" if state == "error" else ""}">{_esc(state)}</td>'
            f'<td>{int(_num(n.get("packets_in")))}</td><td>{int(_num(n.get("packets_out")))}</td>'
            f'<td>{int(_num(n.get("drops")))}</td><td class="{"err" if err else ""}">{err}</td>'
            f'<td>{_num(lat.get("p50")):.1f}</td><td>{_num(lat.get("p95")):.1f}</td><td>{_num(lat.get("p99")):.1f}</td>'
            f'<td class="l wrap"><code>{_esc(ctext)}</code>'
            + (f'<br><span class="muted">last error: {_esc(n.get("last_error"))}</span>' if n.get("last_error") else "")
            + "</td></tr>")
    return ('<table id="nodes"><thead><tr><th>node</th><th class="l">plugin</th><th class="l">container</th>'
            '<th class="l">state</th><th>in</th><th>out</th><th>drops</th><th>errors</th><th>p50 ms</th>'
            '<th>p95 ms</th><th>p99 ms</th><th class="l">counters</th></tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def render_html(rep: Dict[str, Any]) -> str:
    rep = check_report(rep)
    g = rep.get("graph") or {}
    name = str(g.get("name", "?"))
    status = str(rep.get("status", "?"))
    nodes = _nodes(rep)
    sources, sinks = _by_category(rep, "source"), _by_category(rep, "sink")
    active_at = _active_at(rep)

    # one plot per node, each scaled to its own stream: 30 frames/s and 2 events/s never share an axis
    rate_plots = "".join(
        line_chart(f"plot-rate-{nid}", f"{nid} ({nodes[nid].get('plugin', '')}): packets per second "
                   + ("out" if nid in sources else "in"),
                   [(f"{nid} {'out' if nid in sources else 'in'}",
                     rate_series(rep, nid, "out" if nid in sources else "in"))],
                   y_label="packets/s", height=200, shade_until=active_at)
        for nid in flow_order(rep))
    lat_t = []
    for s in sinks:
        lat_t += [(f"{s} p50", value_series(rep, s, "p50")), (f"{s} p99", value_series(rep, s, "p99"))]
    qs = queues(rep)
    depth = [(f"{q} depth", value_series(rep, q, "depth")) for q in qs]
    age = [(f"{q} oldest row age", [(t, v / 1000.0) for t, v in value_series(rep, q, "oldest_age_ms")]) for q in qs]
    bars = [(nid, _num((n.get("latency_ms") or {}).get("p50")), _num((n.get("latency_ms") or {}).get("p95")),
             _num((n.get("latency_ms") or {}).get("p99")))
            for nid, n in nodes.items() if int(_num(n.get("packets_in"))) > 0]

    tiles = "".join(f'<div class="tile"><div class="k">{_esc(k)}</div><div class="v">{_esc(v)}</div></div>'
                    for k, v in headline(rep) if k != "status")
    problems = rep.get("problems") or []
    prob = ('<section class="problems" id="problems"><h2>Problems</h2><ul>'
            + "".join(f"<li>{_esc(p)}</li>" for p in problems) + "</ul></section>") if problems else ""
    events = rep.get("events") or []
    ev = "".join(f"<tr><td>{_num(e.get('t')):.2f}</td><td class='l'>{_esc(e.get('event', ''))}</td></tr>"
                 for e in events if isinstance(e, dict))
    note = "" if _timeline(rep) else (
        '<p class="muted">This report has no time series (<code>timeline</code>): it was written by an '
        'older schnitzel; rerun the graph with <code>schnitzel run --report</code> for the plots over time.</p>')
    queue_plot = (line_chart("plot-queue", "Durable queue depth (rows waiting for delivery)", depth,
                             y_label="rows", shade_until=active_at, integer=True)
                  + line_chart("plot-queue-age", "Oldest waiting row", age, y_label="age (s)", shade_until=active_at)
                  ) if qs else '<p class="muted" id="plot-queue">This graph has no durable queue.</p>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>schnitzel run report: {_esc(name)} ({_esc(status)})</title>
<style>{CSS}</style></head>
<body>
<header><h1>{_esc(name)} <span id="status" class="badge status-{_esc(status)}"
 style="background:{STATUS_COLOURS.get(status, '#475569')}">{_esc(status)}</span></h1>
<div class="sub">{_esc(g.get('file', ''))} &middot; {_esc(rep.get('started_at', ''))} &rarr; {_esc(rep.get('ended_at', ''))}
 &middot; {_num(rep.get('duration_s')):.1f} s &middot; stopped by {_esc(rep.get('stopped_by', ''))}
 &middot; {len(nodes)} nodes in {len(g.get('containers') or [])} container(s)</div></header>
<main>
<div class="tiles" id="tiles">{tiles}</div>
{prob}{note}
<section><h2>Rates</h2>
<div id="plot-rates">{rate_plots}</div>
<p class="muted">Shaded: the graph was starting up (loading and configuring nodes).</p></section>
<section><h2>Latency</h2>
{latency_bars("plot-latency", "Latency per node, p50 / p95 / p99 (ms)", bars)}
{line_chart("plot-latency-time", "Latency at the sinks over time", lat_t, y_label="ms", shade_until=active_at)}
</section>
<section><h2>Delivery</h2>{queue_plot}</section>
<section><h2>Nodes</h2>{_node_table(rep)}</section>
<section><h2>Lifecycle</h2><details><summary>{len(events)} events</summary>
<table><thead><tr><th>t (s)</th><th class="l">event</th></tr></thead><tbody>{ev}</tbody></table></details>
<details><summary>graph file</summary><pre>{_esc(g.get('text', ''))}</pre></details></section>
<p class="muted">Written by <code>schnitzel report</code> from a run report (format {_esc(rep.get('schnitzel_report'))}).</p>
</main></body></html>
"""


def write_html(rep: Dict[str, Any], path: str) -> None:
    from pathlib import Path

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(render_html(rep), encoding="utf-8")
    tmp.replace(p)


__all__ = ["ReportFormatError", "check_report", "flow_order", "headline", "sink_delivery", "line_chart", "latency_bars", "rate_series",
           "render_html", "summary_lines", "value_series", "write_html"]
