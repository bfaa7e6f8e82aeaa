"""Start-up with a 1,000,000-row backlog: time from opening the queue to the first
delivery confirmed by the local reference backend.

    python bench/bench_backlog.py [--rows 1000000] [--keep DIR] [--no-record]

A fresh process opens the durable store (durable_queue.configure), forwards the oldest rows
to http_sink and stops at the first acknowledged delivery. Reported: the time from the
first line of the process (imports included) and from configure() to that delivery.
Target (issue 5): < 2 s before the first delivery.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import publish  # noqa: E402

CHILD = r"""
import time, json, sys
t_start = time.perf_counter()
from schnitzel_core.plugin import NodeContext
from schnitzel_nodes.plugins.delivery import DurableQueueLogic, HttpSinkLogic
db, url = sys.argv[1], sys.argv[2]
t_imported = time.perf_counter()
first = {}
qctx = NodeContext("q", dict(DurableQueueLogic.spec.defaults(), path=db, poll_s=0.005))
sctx = NodeContext("http", dict(HttpSinkLogic.spec.defaults(), url=url))
q, sink = DurableQueueLogic(qctx), HttpSinkLogic(sctx)
qctx._emit = lambda port, p: sink.on_packet("in", p)
def ack(a):
    if a.outcome == "delivered" and "t" not in first:
        first["t"] = time.perf_counter()
    q.on_ack(a)
sctx._ack = ack
t_cfg = time.perf_counter()
q.configure(); sink.configure(); sink.activate(); q.activate()
t_ready = time.perf_counter()
while "t" not in first and time.perf_counter() - t_cfg < 60:
    q.tick(); time.sleep(0.005)
st = q.store.stats()
print(json.dumps({"imports_s": t_imported - t_start, "configure_s": t_ready - t_cfg,
                  "first_from_configure_s": first["t"] - t_cfg, "first_from_start_s": first["t"] - t_start,
                  "depth": st.depth}))
sink.deactivate(); q.cleanup()
"""


def build(db: str, rows: int) -> float:
    from schnitzel_core.packet import Packet
    from schnitzel_core.store import DurableStore

    t0 = time.perf_counter()
    s = DurableStore(db, synchronous="NORMAL")
    have = s.depth
    pad = "x" * 120
    for i in range(have, rows, 10_000):
        s.enqueue([Packet.from_json("backlog", j, "event", {"seq": j, "pad": pad})
                   for j in range(i, min(rows, i + 10_000))])
    s.close()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", default="", help="directory to keep/reuse the backlog database in")
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    tmp = tempfile.TemporaryDirectory()
    d = a.keep or tmp.name
    os.makedirs(d, exist_ok=True)
    db = os.path.join(d, f"backlog-{a.rows}.db")
    built = build(db, a.rows)
    size_mb = os.path.getsize(db) / 1e6
    print(f"backlog: {a.rows:,} rows, {size_mb:,.0f} MB (built in {built:.1f} s)", flush=True)
    be = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.reference_backend", "--port", "0",
                           "--db", os.path.join(d, "backend.db")], stdout=subprocess.PIPE, text=True)
    try:
        url = "http://" + be.stdout.readline().split("http://")[1].split()[0]
        runs = []
        for _ in range(3):
            # drop the OS page cache is not possible unprivileged; the first run is the coldest
            out = subprocess.run([sys.executable, "-c", CHILD, db, url], capture_output=True, text=True, timeout=120)
            if out.returncode != 0:
                print(out.stderr, file=sys.stderr)
                return 1
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    finally:
        be.terminate()
        be.wait(10)
    lines = ["| run | imports s | configure (open store) s | first delivery from configure s | "
             "first delivery from process start s | depth at first delivery |",
             "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i, r in enumerate(runs, 1):
        lines.append(f"| {i} | {r['imports_s']:.3f} | {r['configure_s']:.3f} | {r['first_from_configure_s']:.3f} | "
                     f"{r['first_from_start_s']:.3f} | {r['depth']:,} |")
    worst = max(r["first_from_start_s"] for r in runs)
    lines += ["", f"Backlog {a.rows:,} rows ({size_mb:,.0f} MB file). Target < 2 s before the first delivery: "
                  f"{'met' if worst < 2 else 'NOT met'} (worst {worst:.3f} s from process start)."]
    publish("bench_backlog.py", lines, save=not a.no_record)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
