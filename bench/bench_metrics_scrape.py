#!/usr/bin/env python3
"""Metrics scrape benchmark: what one Prometheus scrape of the lifecycle manager costs.

A manager (no ROS: its bookkeeping alone, ``LifecycleManager._init_state``) tracks a chain of N
nodes over 5 containers, each with a heartbeat carrying the latency histogram, input ports and
plugin counters; one scrape = ``metrics_view()`` + every metric family + the text exposition
(``generate_latest``), as served at /metrics. Median of --repeat scrapes per size.
Target (issue 12): < 50 ms at 50 nodes. Records under "## Runtime chain" (unless --no-record).

    source scripts/env.sh && python bench/bench_metrics_scrape.py [--nodes 50,200 --repeat 50]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from schnitzel_bringup import metrics
from schnitzel_bringup.compiler import compile_graph
from schnitzel_bringup.manager import LifecycleManager
from schnitzel_core.graph_loader import load_graph
from schnitzel_core.registry import load_registry

HERE = Path(__file__).resolve().parent


def manager(n: int) -> LifecycleManager:
    text = ["schnitzel: 1", "name: big", "containers:"] + [f"  - {{id: c{i}}}" for i in range(5)] + ["nodes:"]
    text += ["  - {id: n0, plugin: synthetic_source, container: c0}"]
    text += [f"  - {{id: n{i}, plugin: sampler, container: c{i % 5}}}" for i in range(1, n)]
    text += ["edges:"] + [f"  - {{from: n{i - 1}.out, to: n{i}.in}}" for i in range(1, n)]
    plan = compile_graph(load_graph("\n".join(text) + "\n", file="big.yaml"), load_registry())
    m = LifecycleManager.__new__(LifecycleManager)
    m._init_state(plan, log=lambda _s: None)
    now = time.time()
    for i, t in enumerate(m.tracks.values()):
        t.state = "active"
        t.on_heartbeat({"packets_in": 1000 + i, "packets_out": 1000 + i, "drops": i, "errors": 0, "pid": 100 + i % 5,
                        "last_error": "", "latency_p50_ms": 1.0, "latency_p95_ms": 2.0, "latency_p99_ms": 3.0,
                        "counters": {"kept": "10", "dropped": "3"},
                        "latency_bounds_s": [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                             2.5, 5.0, 10.0],
                        "latency_buckets": [i % 7] * 15, "latency_sum_s": 0.5,
                        "in_ports": {"in": (1000 + i, now - 0.01)}}, time.monotonic())
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", default="50,200", help="comma-separated graph sizes")
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--no-record", action="store_true", help="do not write bench/RESULTS.md")
    a = ap.parse_args()
    rows = []
    for n in (int(x) for x in a.nodes.split(",")):
        m = manager(n)
        reg = CollectorRegistry(auto_describe=False)
        reg.register(metrics._Collector(m.metrics_view))
        times, size = [], 0
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            size = len(generate_latest(reg))
            times.append((time.perf_counter() - t0) * 1e3)
        rows.append((n, statistics.median(times), max(times), size))
        print(f"{n:4d} nodes: scrape median {rows[-1][1]:.2f} ms, max {rows[-1][2]:.2f} ms, {size} bytes", flush=True)
    lines = [f"One scrape of the manager's /metrics (view + families + text exposition), median of {a.repeat}; "
             "a chain over 5 containers, every node with its latency histogram, input port and counters.", "",
             "| nodes | median ms | max ms | bytes |", "| ---: | ---: | ---: | ---: |"]
    lines += [f"| {n} | {med:.2f} | {mx:.2f} | {size} |" for n, med, mx, size in rows]
    at50 = [med for n, med, _mx, _s in rows if n == 50]
    if at50:
        lines += ["", f"- 50 nodes: {at50[0]:.2f} ms (target < 50 ms)"]
    print("\n".join(lines))
    if not a.no_record:
        sys.path.insert(0, str(HERE))
        from _results import record
        record("bench_metrics_scrape.py", lines, section=("## Runtime chain", "schnitzel against raw rclpy, same run."))
    return 0


if __name__ == "__main__":
    sys.exit(main())
