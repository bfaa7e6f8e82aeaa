"""The live graph page: ``schnitzel run --ui`` (docs/observability.md).

The lifecycle manager serves one self-contained page (inline CSS and JavaScript, no library,
nothing fetched from anywhere else) and a server-sent-events stream of its view of the graph
(``LifecycleManager.live_view``) twice a second. The page draws the graph from the plan:
containers as boxes, each node inside its container's box, each edge labelled with its rate,
newest-packet age and the receiving node's drops; nodes coloured by lifecycle state and health;
the durable queues' backlog and dead letters; the manager's last events (hot swaps included).

Bound to 127.0.0.1 unless ``runtime: ui_host`` says otherwise; a request from any address but
127.0.0.1 must carry the token (``?token=`` or ``Authorization: Bearer``).
"""
from __future__ import annotations

import hmac
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Tuple

PERIOD_S = 0.5          # one update every PERIOD_S (>= 1 Hz)
NODE_W, NODE_H, GAP, PAD, COL_GAP = 170, 44, 34, 26, 200


def layout(plan: Any) -> Dict[str, Any]:
    """Where the page draws everything: one column per container (ordered by how far downstream
    its nodes are), its nodes stacked inside it in data-flow order."""
    depth: Dict[str, int] = {}
    ups = {n.id: list(n.upstream or []) for n in plan.nodes}

    def d(nid: str, seen: Tuple[str, ...] = ()) -> int:
        if nid not in depth:
            depth[nid] = 0 if not ups.get(nid) else 1 + max(
                (d(u, seen + (nid,)) for u in ups[nid] if u not in seen and u in ups), default=-1)
        return depth[nid]

    for n in plan.nodes:
        d(n.id)
    cids = sorted({n.container for n in plan.nodes},
                  key=lambda c: (min(depth[n.id] for n in plan.nodes if n.container == c), c))
    groups, nodes = [], {}
    x = 20
    for c in cids:
        mine = sorted((n for n in plan.nodes if n.container == c), key=lambda n: (depth[n.id], n.id))
        y = 40
        for n in mine:
            nodes[n.id] = {"x": x + PAD, "y": y + PAD, "w": NODE_W, "h": NODE_H, "plugin": n.plugin,
                           "container": c, "category": n.category}
            y += NODE_H + GAP
        groups.append({"id": c, "x": x, "y": 40, "w": NODE_W + 2 * PAD, "h": y - 40 - GAP + 2 * PAD})
        x += NODE_W + 2 * PAD + COL_GAP
    height = max([g["y"] + g["h"] for g in groups] or [100]) + 40
    edges = [{"src": e.src, "dst": e.dst} for e in plan.edges]
    return {"graph": plan.graph, "groups": groups, "nodes": nodes, "edges": edges,
            "width": max(x, 400), "height": height}


def allowed(client_ip: str, path: str, headers: Any, token: str) -> bool:
    """127.0.0.1 needs nothing; any other address the token, as ``?token=`` or a Bearer header."""
    if client_ip == "127.0.0.1":
        return True
    q = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query).get("token", [""])[0]
    auth = (headers.get("Authorization") or "") if headers is not None else ""
    given = q or (auth[7:] if auth.startswith("Bearer ") else "")
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


class LiveServer:
    """The page and its event stream over HTTP, on its own threads."""

    def __init__(self, plan_fn: Callable[[], Any], view_fn: Callable[[], Dict[str, Any]], port: int,
                 host: str = "127.0.0.1", token: str = "") -> None:
        self.plan_fn, self.view_fn, self.token = plan_fn, view_fn, token
        self.closing = threading.Event()
        live = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_a: Any) -> None:   # quiet: the manager's log is for the graph
                pass

            def do_GET(self) -> None:   # noqa: N802 - http.server's name
                if not allowed(self.client_address[0], self.path, self.headers, live.token):
                    return self._send(403, "text/plain", b"a token is required from this address\n")
                route = urllib.parse.urlsplit(self.path).path
                if route == "/":
                    return self._send(200, "text/html; charset=utf-8", PAGE.encode())
                if route == "/plan":
                    return self._send(200, "application/json", json.dumps(layout(live.plan_fn())).encode())
                if route == "/view":
                    return self._send(200, "application/json", json.dumps(live.view_fn()).encode())
                if route == "/events":
                    return self._events()
                return self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _events(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                shown_plan = None
                try:
                    while not live.closing.is_set():
                        plan = live.plan_fn()
                        if plan is not shown_plan:   # first, and after a hot swap changed the graph
                            shown_plan = plan
                            self.wfile.write(b"event: plan\ndata: " + json.dumps(layout(plan)).encode() + b"\n\n")
                        self.wfile.write(b"data: " + json.dumps(live.view_fn()).encode() + b"\n\n")
                        self.wfile.flush()
                        live.closing.wait(PERIOD_S)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2},
                                       name="live-page", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie does not): read from /proc, so a container
    SIGKILLed shows at the next update, before any heartbeat or service call times out."""
    if pid <= 0:
        return True    # not known yet: nothing to say
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>schnitzel live</title>
<style>
body{font:13px system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}
header{padding:10px 16px;background:#20242c;color:#fff;display:flex;gap:18px;align-items:baseline}
header h1{font-size:16px;margin:0}#status{font-weight:600;padding:2px 8px;border-radius:4px}
.ok{background:#2e7d32}.degraded{background:#f9a825;color:#000}.error{background:#c62828}
main{display:flex;gap:16px;padding:12px}#graph{background:#fff;border:1px solid #ddd;flex:1;overflow:auto}
aside{width:330px}aside section{background:#fff;border:1px solid #ddd;margin-bottom:12px;padding:8px}
aside h2{font-size:13px;margin:0 0 6px}table{border-collapse:collapse;width:100%}
td,th{padding:2px 4px;text-align:left;border-bottom:1px solid #eee}td.n{text-align:right}
.grp{fill:#eef2f7;stroke:#9aa7b8;stroke-dasharray:4 3}.grp-label{fill:#556;font-size:12px}
.node rect{stroke:#333;stroke-width:1}.node text{font-size:12px}
.node.s-active rect{fill:#a5d6a7}.node.s-warn rect{fill:#ffe082}.node.s-bad rect{fill:#ef5350}
.node.s-idle rect{fill:#cfd8dc}.edge{stroke:#607d8b;stroke-width:1.6;fill:none}
.elabel{font-size:11px;fill:#1a237e}.ev{font-family:monospace;font-size:11px}
</style></head><body>
<header><h1 id="title">schnitzel</h1><span id="status">…</span><span id="active"></span><span id="updated"></span></header>
<main><div id="graph"><svg id="svg" xmlns="http://www.w3.org/2000/svg"></svg></div>
<aside><section><h2>Durable queues</h2><table id="queues"><tr><th>queue</th><th>backlog</th><th>oldest s</th><th>DLQ</th></tr></table></section>
<section><h2>Containers</h2><table id="containers"></table></section>
<section><h2>Last events (hot swaps, restarts)</h2><div id="events"></div></section></aside></main>
<script>
"use strict";
const NS = "http://www.w3.org/2000/svg";
const tok = new URLSearchParams(location.search).get("token");
const q = tok ? "?token=" + encodeURIComponent(tok) : "";
let plan = null;
function el(tag, attrs, parent, text) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function end(ep, right) {
  const n = plan.nodes[ep.split(".")[0]];
  return {x: right ? n.x + n.w : n.x, y: n.y + n.h / 2};
}
function drawPlan(p) {
  plan = p;
  document.getElementById("title").textContent = "schnitzel: " + p.graph;
  const svg = document.getElementById("svg");
  svg.innerHTML = "";
  svg.setAttribute("width", p.width); svg.setAttribute("height", p.height);
  const defs = el("defs", {}, svg);
  const m = el("marker", {id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "7",
                          markerHeight: "7", orient: "auto-start-reverse"}, defs);
  el("path", {d: "M 0 0 L 10 5 L 0 10 z", fill: "#607d8b"}, m);
  for (const g of p.groups) {
    el("rect", {class: "grp", x: g.x, y: g.y, width: g.w, height: g.h, rx: 8, "data-container": g.id}, svg);
    el("text", {class: "grp-label", x: g.x + 8, y: g.y - 6}, svg, "container " + g.id);
  }
  for (const e of p.edges) {
    const key = e.src + "->" + e.dst;
    const sn = p.nodes[e.src.split(".")[0]], dn = p.nodes[e.dst.split(".")[0]];
    if (!sn || !dn) continue;
    let d, lx, ly;
    if (sn.x === dn.x) {   // same column: down from the bottom of one to the top of the other
      const x = sn.x + sn.w / 2, y1 = sn.y < dn.y ? sn.y + sn.h : sn.y, y2 = sn.y < dn.y ? dn.y : dn.y + dn.h;
      d = `M ${x} ${y1} L ${x} ${y2}`; lx = x + 6; ly = (y1 + y2) / 2 + 4;
    } else {
      const a = end(e.src, sn.x < dn.x), b = end(e.dst, sn.x > dn.x), mx = (a.x + b.x) / 2;
      d = `M ${a.x} ${a.y} C ${mx} ${a.y}, ${mx} ${b.y}, ${b.x} ${b.y}`;
      lx = mx; ly = Math.min(a.y, b.y) - 8;
    }
    el("path", {class: "edge", d: d, "marker-end": "url(#arrow)", "data-edge": key}, svg);
    el("text", {class: "elabel", x: lx, y: ly, "data-edge-label": key,
                "text-anchor": sn.x === dn.x ? "start" : "middle"}, svg, "…");
  }
  for (const [nid, n] of Object.entries(p.nodes)) {
    const g = el("g", {class: "node s-idle", "data-node": nid}, svg);
    el("rect", {x: n.x, y: n.y, width: n.w, height: n.h, rx: 5}, g);
    el("text", {x: n.x + 8, y: n.y + 17, "font-weight": "600"}, g, nid);
    el("text", {x: n.x + 8, y: n.y + 34, "data-node-info": nid}, g, n.plugin);
  }
}
function fmt(x, d) { return x === null || x === undefined ? "–" : Number(x).toFixed(d); }
function update(v) {
  if (!plan) return;
  const st = document.getElementById("status");
  st.textContent = v.status + " · " + v.state; st.className = v.status;
  document.getElementById("active").textContent = `nodes active ${v.nodes_active}/${v.nodes_total}`;
  document.getElementById("updated").textContent = new Date(v.time * 1000).toLocaleTimeString();
  for (const [nid, n] of Object.entries(v.nodes)) {
    const g = document.querySelector(`[data-node="${CSS.escape(nid)}"]`);
    if (!g) continue;
    g.setAttribute("class", "node s-" + n.health);
    g.setAttribute("data-health", n.health); g.setAttribute("data-state", n.state);
    const info = g.querySelector("[data-node-info]");
    info.textContent = `${n.plugin} · ` + (n.container_alive ? n.state : "container down")
                       + (n.errors ? ` · ${n.errors} err` : "");
  }
  for (const e of plan.edges) {
    const key = e.src + "->" + e.dst;
    const l = document.querySelector(`[data-edge-label="${CSS.escape(key)}"]`);
    const ev = v.edges[key];
    if (l && ev) {
      l.textContent = `${fmt(ev.rate, 1)}/s · age ${fmt(ev.age_s, 1)} s · drops ${ev.drops}`;
      l.setAttribute("data-rate", ev.rate);
    }
  }
  const qt = document.getElementById("queues");
  qt.querySelectorAll("tr.q").forEach(r => r.remove());
  for (const qv of v.queues) {
    const r = document.createElement("tr"); r.className = "q";
    for (const [c, cls] of [[qv.node, ""], [qv.depth, "n"], [fmt(qv.oldest_age_s, 1), "n"], [qv.dead, "n"]]) {
      const td = document.createElement("td"); td.textContent = c; if (cls) td.className = cls; r.appendChild(td);
    }
    qt.appendChild(r);
  }
  const ct = document.getElementById("containers"); ct.innerHTML = "";
  for (const [cid, c] of Object.entries(v.containers)) {
    const r = document.createElement("tr");
    r.innerHTML = "<td></td><td></td><td class=n></td>";
    r.children[0].textContent = cid; r.children[1].textContent = c.alive ? c.state : "dead";
    r.children[2].textContent = "restarts " + c.restarts; ct.appendChild(r);
  }
  const evs = document.getElementById("events"); evs.innerHTML = "";
  for (const e of v.events) {
    const d = document.createElement("div"); d.className = "ev";
    d.textContent = `${fmt(e.t, 1)} s  ${e.event}`; evs.appendChild(d);
  }
}
const src = new EventSource("/events" + q);
src.addEventListener("plan", m => drawPlan(JSON.parse(m.data)));
src.onmessage = m => update(JSON.parse(m.data));
src.onerror = () => { const st = document.getElementById("status"); st.textContent = "disconnected"; st.className = "error"; };
</script></body></html>
"""
