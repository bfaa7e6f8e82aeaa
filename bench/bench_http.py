"""HTTP delivery to the local reference backend: single (one packet per POST) vs batched
(100 per POST), measured in the same run; plus the whole delivery path (durable_queue +
http_sink logic, in one process) draining a backlog into the backend.

    python bench/bench_http.py [--packets 5000] [--no-record]

Target (issue 5): >= 5,000 packets/s batched. The backend (a separate process, aiohttp,
SQLite WAL synchronous=NORMAL) stores every event idempotently, so its cost is included.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import publish  # noqa: E402

from schnitzel_core.delivery import HttpSink  # noqa: E402
from schnitzel_core.packet import Packet  # noqa: E402


def pk(tag: str, i: int) -> Packet:
    return Packet.from_json(tag, i, "event", {"seq": i, "pad": "x" * 120})


def start_backend(d: str):
    proc = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.reference_backend", "--port", "0",
                             "--db", os.path.join(d, "backend.db")], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    url = "http://" + line.split("http://")[1].split()[0]
    return proc, url


def stats(url: str):
    base = url.rsplit("/events", 1)[0]
    return json.loads(urllib.request.urlopen(base + "/stats").read())


def sink_rate(url: str, n: int, batch: bool, size: int) -> float:
    sink = HttpSink(url, batch=batch)
    packets = [pk(f"{'b' if batch else 's'}{size}", i) for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, size):
        out = sink.deliver(packets[i:i + size])
        assert all(o.ok for o in out), out[:3]
    dt = time.perf_counter() - t0
    sink.close()
    return n / dt


def pipeline_rate(url: str, d: str, n: int) -> float:
    """Backlog of n rows in a durable queue, drained by queue + http_sink logic (in-process)."""
    from schnitzel_core.plugin import NodeContext
    from schnitzel_core.store import DurableStore
    from schnitzel_nodes.plugins.delivery import DurableQueueLogic, HttpSinkLogic

    db = os.path.join(d, "pipe.db")
    s = DurableStore(db, synchronous="NORMAL")
    for i in range(0, n, 1000):
        s.enqueue([pk("pipe", j) for j in range(i, min(n, i + 1000))])
    s.close()
    qp = dict(DurableQueueLogic.spec.defaults(), path=db, poll_s=0.002, max_inflight=1000, forward_batch=500)
    sp = dict(HttpSinkLogic.spec.defaults(), url=url, batch_size=100)
    qctx, sctx = NodeContext("q", qp), NodeContext("http", sp)
    q, sink = DurableQueueLogic(qctx), HttpSinkLogic(sctx)
    qctx._emit = lambda port, p: sink.on_packet("in", p)
    sctx._ack = q.on_ack
    t0 = time.perf_counter()
    q.configure()
    sink.configure()
    sink.activate()
    q.activate()
    while q.store.depth > 0:
        q.tick()
        time.sleep(0.002)
        if time.perf_counter() - t0 > 120:
            raise RuntimeError("pipeline did not drain in 120 s")
    dt = time.perf_counter() - t0
    sink.deactivate()
    q.cleanup()
    return n / dt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=5000)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        proc, url = start_backend(d)
        try:
            single = sink_rate(url, max(500, a.packets // 5), False, 1)
            batched = sink_rate(url, a.packets * 4, True, 100)
            pipe = pipeline_rate(url, d, a.packets * 4)
            st = stats(url)
        finally:
            proc.terminate()
            proc.wait(10)
    lines = ["| path | packets/s |", "| --- | ---: |",
             f"| HttpSink, 1 packet per POST (keep-alive) | {single:,.0f} |",
             f"| HttpSink, 100 packets per POST | {batched:,.0f} |",
             f"| durable_queue + http_sink draining a {a.packets * 4:,}-row backlog (batches of 100, acks committed) "
             f"| {pipe:,.0f} |", "",
             f"Batched / single: {batched / single:.1f}x. Target >= 5,000 packets/s batched: "
             f"{'met' if batched >= 5000 else 'NOT met'} ({batched:,.0f}/s). Backend: "
             f"{st['unique_keys']:,} unique keys, {st['duplicates']} duplicates."]
    publish("bench_http.py", lines, save=not a.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
