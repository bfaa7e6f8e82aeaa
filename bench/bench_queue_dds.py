"""The durable_queue node end to end (DDS in, persisted) against a raw rclpy subscriber
receiving the same stream in the same run.

    python bench/bench_queue_dds.py [--rate 1000] [--seconds 10] [--outbox memory|durable] [--no-record]

`schnitzel run` starts a graph synthetic_source -> durable_queue (each in its own
container, DDS between them); a separate process subscribes to the same topic with plain rclpy
(rclpy.spin, same QoS; EventsExecutor received nothing from this graph in our runs) and counts. Both see the one stream the source publishes, so the
comparison is: packets the queue committed (accepted) per second vs packets the raw
subscriber received per second, and whether the queue lost any that the raw one received.
The source keeps what it sends in its outbox until the queue acknowledges the commit
(docs/delivery.md, "The outbox"): ``--outbox`` picks the edge's mode (default memory).
Target (issue 5): queue >= 0.8x the raw subscriber's rate, no packet lost.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import publish  # noqa: E402

GRAPH = """\
schnitzel: 1
name: {name}
containers:
  - {{id: a}}
  - {{id: q}}
nodes:
  - id: src
    plugin: synthetic_source
    container: a
    params: {{mode: counter, count: {count}, rate_hz: {rate}}}
    qos: {{out: events}}
  - id: q
    plugin: durable_queue
    container: q
    params: {{path: {db}, synchronous: {sync}}}
edges:
  - {{from: src.out, to: q.in, outbox: {outbox}}}
"""


RAW_SUB = r"""
import json, os, sys, time, threading
import rclpy
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from schnitzel_msgs.msg import StreamPacket
topic, out = sys.argv[1], sys.argv[2]
rclpy.init()
node = rclpy.create_node("raw_bench_sub")
got = {"n": 0, "first": 0.0, "last": 0.0}
def on_msg(msg):
    now = time.monotonic()
    if not got["n"]:
        got["first"] = now
    got["n"] += 1
    got["last"] = now
qos = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE,
                 history=HistoryPolicy.KEEP_LAST, depth=100)
node.create_subscription(StreamPacket, topic, on_msg, qos)
def dump():
    while True:
        time.sleep(0.25)
        tmp = out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(got, f)
        os.replace(tmp, out)
threading.Thread(target=dump, daemon=True).start()
rclpy.spin(node)
"""


def accepted_now(db: str) -> int:
    """The queue's accepted counter, read in this process (sqlite3, read-only): polling through
    the CLI spawned a Python process every half second, CPU taken from the nodes measured."""
    import sqlite3

    if not os.path.exists(db):
        return 0
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            row = c.execute("SELECT value FROM counters WHERE name = 'accepted'").fetchone()
        finally:
            c.close()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


def queue_stats(db: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", "queue", "stats", db, "--format", "json"],
                         capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout) if out.returncode == 0 else {}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--sync", default="FULL", choices=("FULL", "NORMAL"))
    ap.add_argument("--outbox", default="memory", choices=("memory", "durable"))
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()

    count = int(a.rate * a.seconds)
    name = f"qbench_{uuid.uuid4().hex[:6]}"
    tmp = tempfile.TemporaryDirectory()
    db = os.path.join(tmp.name, "queue.db")
    graph = Path(tmp.name) / "graph.yaml"
    graph.write_text(GRAPH.format(name=name, count=count, rate=a.rate, db=db, sync=a.sync, outbox=a.outbox))
    raw_out = Path(tmp.name) / "raw.json"
    # the raw subscriber is its own process (plain rclpy), stopped with SIGKILL
    sub = subprocess.Popen([sys.executable, "-c", RAW_SUB, f"/{name}/src/out", str(raw_out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(2.0)  # let it come up before the source starts
    run_dir = Path(tmp.name) / "run"
    runner = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(graph), "--run-dir",
                               str(run_dir), "--quiet", "--report", str(Path(tmp.name) / "report.json")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
                              env={**os.environ, "SCHNITZEL_STATE_DIR": str(Path(tmp.name) / "state")})
    status: dict = {}
    try:
        t0 = time.monotonic()
        last_n, last_change = -1, time.monotonic()
        while time.monotonic() - t0 < a.seconds + 90:
            raw = json.loads(raw_out.read_text()) if raw_out.exists() else {"n": 0}
            acc = accepted_now(db)
            if acc >= count and raw["n"] >= count:
                break
            if raw["n"] != last_n:
                last_n, last_change = raw["n"], time.monotonic()
            elif raw["n"] and time.monotonic() - last_change > 10:
                break  # the stream ended
            time.sleep(0.5)
        time.sleep(1.0)
        if (run_dir / "status.json").exists():
            status = json.loads((run_dir / "status.json").read_text())
        runner.send_signal(signal.SIGINT)
        try:
            runner.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    finally:
        for proc in (runner, sub):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)
    got = json.loads(raw_out.read_text()) if raw_out.exists() else {"n": 0, "first": 0.0, "last": 0.0}
    report = json.loads((Path(tmp.name) / "report.json").read_text())
    st = queue_stats(db)
    accepted = st["counters"]["accepted"]
    q_node = status.get("nodes", {}).get("q", {})
    lat = (q_node.get("latency_p50_ms", 0.0), q_node.get("latency_p99_ms", 0.0))
    sent = report["nodes"]["src"]["packets_out"]
    raw_rate = got["n"] / max(1e-9, got["last"] - got["first"]) if got["n"] > 1 else 0.0
    # the queue's rate over the same window as the raw subscriber's (first to last packet);
    # the queue's lag behind the stream shows in its latency from the source stamp
    window = (got["last"] - got["first"]) if got["n"] > 1 else sent / a.rate
    q_rate = accepted / window if window else 0.0
    raw_n = got["n"]
    head = (f"Queue / raw: {accepted / max(1, raw_n):.3f} of the packets, rate {q_rate / max(1e-9, raw_rate):.2f}x; "
            if raw_n else "The raw subscriber received nothing (check discovery); ")
    lines = ["| consumer (same stream, same run) | packets | rate pkt/s |", "| --- | ---: | ---: |",
             f"| source sent | {sent:,} | {a.rate:,.0f} offered |",
             f"| raw rclpy subscriber (rclpy.spin) | {raw_n:,} | {raw_rate:,.0f} |",
             f"| durable_queue, accepted = committed ({a.sync}; source outbox {a.outbox}) | {accepted:,} | "
             f"{q_rate:,.0f} |", "",
             head +
             f"lost by the queue: {max(0, raw_n - accepted)}; queue node latency from the source stamp p50 "
             f"{lat[0]:.1f} ms, p99 {lat[1]:.1f} ms. Target >= 0.8x the raw rate and no loss: "
             f"{'met' if accepted >= raw_n and q_rate >= 0.8 * raw_rate else 'NOT met'}."]
    publish("bench_queue_dds.py", lines, save=not a.no_record)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
