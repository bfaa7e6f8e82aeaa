"""Benchmark: a 3-hop chain (source -> relay -> relay -> sink) through schnitzel, against a raw
rclpy publisher -> subscriber chain of the same shape measured in the same run.

    source scripts/env.sh && python bench/bench_chain.py [--seconds 6] [--append-results]

Cases, for 200-byte and 1 MB payloads:
- ``raw rclpy``: four processes, StreamPacket messages, rclpy's default executor: the
  source publishes, two relays re-publish what they receive, the sink records
  ``now - header.stamp``;
- ``schnitzel dds``: ``schnitzel run``'s machinery (runner, containers, lifecycle manager)
  with four containers, so every hop is DDS between processes;
- ``schnitzel inproc``: the same graph in one container (in-process hand-off).

The relays are the built-in ``sampler`` plugin (n=1, pass-through); the source and the sink
are small plugins defined below and loaded by ``module:Class`` (they stamp and time packets
exactly like the raw chain does). The same QoS (reliable, keep_last) and the same offered
rate are used everywhere; the first 10 % of packets (warm-up) are not counted.

Targets (issue 4): DDS hops within 1.5x raw rclpy latency; inproc hops at least 5x faster
than DDS for 1 MB payloads.

``--metrics-overhead``: instead, the DDS chain's throughput (200 B, source unpaced) with the
manager's Prometheus endpoint on (scraped once a second, as Prometheus would) against off,
interleaved in the same run (issue 12: on >= 0.97x off).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
SIZES = {"200 B": 200, "1 MB": 1_000_000}
RATES = {"200 B": 200.0, "1 MB": 30.0}
DEPTH = {"200 B": 100, "1 MB": 5}
MODES = ("raw", "dds", "inproc")
FLOOD = {"200 B": 20000.0, "1 MB": 1000.0}   # offered far above what any chain carries


# ---- schnitzel plugins used by the bench (loaded as "bench_chain:BenchSource") ----------------

def _plugins():
    from schnitzel_core.packet import Packet
    from schnitzel_core.plugin import Category, In, Out, Param, PluginSpec
    from schnitzel_nodes.base import SinkLogic, SourceLogic

    class BenchSource(SourceLogic):
        spec = PluginSpec(name="bench_source", category=Category.SOURCE, version="1.0.0",
                          ports=(Out("out", ("*",)),),
                          params=(Param("size", "int", 200, minimum=0), Param("rate_hz", "float", 100.0),
                                  Param("count", "int", 0, minimum=0)))
        threaded = True

        def configure(self) -> None:
            self.payload = os.urandom(int(self.params["size"]))

        def run(self, stop: threading.Event) -> None:
            period = 1.0 / float(self.params["rate_hz"])
            nxt = time.monotonic()
            n = 0
            while not stop.is_set() and (not self.params["count"] or n < self.params["count"]):
                self.seq += 1
                n += 1
                self.emit("out", Packet(stream_id="bench", seq=self.seq, kind="telemetry",
                                        payload=self.payload, stamp_ns=time.time_ns()))
                nxt += period
                delay = nxt - time.monotonic()
                if delay > 0:
                    stop.wait(delay)

    class BenchSink(SinkLogic):
        spec = PluginSpec(name="bench_sink", category=Category.SINK, version="1.0.0",
                          ports=(In("in", ("*",)),), params=(Param("path", "str"),))

        def activate(self) -> None:
            self.lat: List[int] = []
            self.times: List[float] = []

        def write(self, packet: Any) -> None:
            self.lat.append(time.time_ns() - packet.stamp_ns)
            self.times.append(time.monotonic())

        def deactivate(self) -> None:
            Path(self.params["path"]).write_text(json.dumps({"lat_ns": self.lat, "t": self.times}))

    return BenchSource, BenchSink


if __name__ != "__main__" or os.environ.get("_BENCH_PLUGINS"):
    try:
        BenchSource, BenchSink = _plugins()
    except ImportError:  # imported without schnitzel installed: only the raw chain can run
        pass


# ---- raw rclpy chain -----------------------------------------------------------------------

def _qos(depth: int):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE, history=HistoryPolicy.KEEP_LAST)


def raw_role(role: str, topic_in: str, topic_out: str, size: int, rate: float, seconds: float,
             depth: int, out_path: str) -> None:
    import rclpy
    from schnitzel_msgs.msg import StreamPacket

    rclpy.init()
    node = rclpy.create_node(f"raw_{role}_{os.getpid()}")
    qos = _qos(depth)
    if role == "source":
        pub = node.create_publisher(StreamPacket, topic_out, qos)
        payload = os.urandom(size)
        deadline = time.monotonic() + seconds
        time.sleep(1.5)  # discovery
        period = 1.0 / rate
        nxt = time.monotonic()
        seq = 0
        while time.monotonic() < deadline + 1.5:
            seq += 1
            m = StreamPacket()
            m.seq = seq
            m.stream_id = "bench"
            m.kind = "telemetry"
            m.payload = payload
            t = time.time_ns()
            m.header.stamp.sec, m.header.stamp.nanosec = divmod(t, 1_000_000_000)
            try:
                pub.publish(m)
            except Exception:  # noqa: BLE001 - count as lost, like the adapter does
                pass
            nxt += period
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)
    elif role == "relay":
        pub = node.create_publisher(StreamPacket, topic_out, qos)
        node.create_subscription(StreamPacket, topic_in, pub.publish, qos)
        try:
            rclpy.spin(node)
        except Exception:  # noqa: BLE001 - stopped by a signal
            pass
    else:
        lat: List[int] = []
        times: List[float] = []

        def on_msg(m):
            lat.append(time.time_ns() - (m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec))
            times.append(time.monotonic())

        node.create_subscription(StreamPacket, topic_in, on_msg, qos)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        while not stop.is_set():
            rclpy.spin_once(node, timeout_sec=0.1)
        Path(out_path).write_text(json.dumps({"lat_ns": lat, "t": times}))
    try:
        node.destroy_node()
        rclpy.shutdown()
    except Exception:  # noqa: BLE001
        pass


def run_raw(size_name: str, seconds: float, tmp: Path, env: Dict[str, str], rate: float = 0.0) -> Dict[str, Any]:
    size, depth = SIZES[size_name], DEPTH[size_name]
    rate = rate or RATES[size_name]
    base = f"/bench_raw_{os.getpid()}"
    out = tmp / "raw.json"
    roles = [("sink", f"{base}/t3", "", ), ("relay", f"{base}/t2", f"{base}/t3"),
             ("relay", f"{base}/t1", f"{base}/t2"), ("source", "", f"{base}/t1")]
    procs = []
    for role, tin, tout in roles:
        procs.append(subprocess.Popen([sys.executable, __file__, "_raw", role, tin or "-", tout or "-", str(size),
                                       str(rate), str(seconds), str(depth), str(out)], env=env,
                                      start_new_session=True))
    procs[-1].wait(timeout=seconds + 60)
    time.sleep(1.0)  # drain
    for p in procs[:-1]:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs[:-1]:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
    return summarise(json.loads(out.read_text()), rate)


# ---- schnitzel chain -----------------------------------------------------------------------

GRAPH = """\
schnitzel: 1
name: {name}
containers: [{containers}]
nodes:
  - {{id: src, plugin: sampler, container: {c0}, qos: {{out: {q}}}}}
  - {{id: r1, plugin: sampler, container: {c1}, qos: {{out: {q}}}}}
  - {{id: r2, plugin: sampler, container: {c2}, qos: {{out: {q}}}}}
  - {{id: snk, plugin: sampler, container: {c3}}}
edges:
  - {{from: src.out, to: r1.in}}
  - {{from: r1.out, to: r2.in}}
  - {{from: r2.out, to: snk.in}}
"""


def run_schnitzel(size_name: str, mode: str, seconds: float, tmp: Path, rate: float = 0.0,
                  metrics_port: int = 0) -> Dict[str, Any]:
    from schnitzel_core.graph_loader import load_graph
    from schnitzel_core.registry import load_registry

    from schnitzel_bringup.compiler import compile_graph
    from schnitzel_bringup.runner import Runner

    size, depth = SIZES[size_name], DEPTH[size_name]
    rate = rate or RATES[size_name]
    cs = ["a", "b", "c", "d"] if mode == "dds" else ["main"] * 4
    q = "{reliability: reliable, durability: volatile, history: keep_last, depth: %d}" % depth
    name = f"bench_{mode}_{os.getpid()}"
    text = GRAPH.format(name=name, containers=", ".join(f"{{id: {c}}}" for c in sorted(set(cs))),
                        c0=cs[0], c1=cs[1], c2=cs[2], c3=cs[3], q=q)
    # Placeholders compile with the built-in sampler; then source and sink become the bench plugins.
    plan = compile_graph(load_graph(text, file="bench.yaml"), load_registry())
    out = tmp / f"{mode}.json"
    src, snk = plan.node("src"), plan.node("snk")
    src.plugin, src.params = "bench_chain:BenchSource", {"size": size, "rate_hz": rate, "count": 0}
    src.ports["in"] = {}
    snk.plugin, snk.params = "bench_chain:BenchSink", {"path": str(out)}
    snk.ports["out"] = {}
    src.remappings = [r for r in src.remappings if r[0] == "out"]
    snk.remappings = [r for r in snk.remappings if r[0] == "in"]
    snk.category = "sink"
    src.category = "source"
    run_dir = tmp / f"run-{mode}"
    run_dir.mkdir()
    plan.runtime["metrics_port"] = metrics_port
    plan_path = plan.write(run_dir / "plan.json")
    r = Runner(plan, str(plan_path), str(run_dir), duration=seconds, live=False, out=lambda s: None)
    stop = threading.Event()
    scrapes: List[float] = []
    if metrics_port:
        def scrape() -> None:   # what a Prometheus server does: one scrape a second
            import urllib.request
            while not stop.wait(1.0):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).read()
                    scrapes.append(time.monotonic())
                except OSError:
                    pass
        threading.Thread(target=scrape, daemon=True).start()
    try:
        r.run()
    finally:
        stop.set()
    if metrics_port and not scrapes:
        raise RuntimeError(f"the metrics endpoint on port {metrics_port} never answered; logs in {run_dir}")
    if not out.exists():
        raise RuntimeError(f"schnitzel {mode} run produced no measurements; logs in {run_dir}")
    return summarise(json.loads(out.read_text()), rate)


# ---- figures -------------------------------------------------------------------------------

def summarise(data: Dict[str, Any], rate: float) -> Dict[str, Any]:
    lat = data["lat_ns"]
    t = data["t"]
    skip = len(lat) // 10
    lat, t = lat[skip:], t[skip:]
    if len(lat) < 10:
        return {"n": len(lat), "pps": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan")}
    s = sorted(lat)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))] / 1e6  # noqa: E731
    pps = (len(t) - 1) / (t[-1] - t[0]) if t[-1] > t[0] else 0.0
    return {"n": len(lat), "pps": pps, "offered": rate, "p50_ms": pick(0.5), "p99_ms": pick(0.99)}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_raw":
        role, tin, tout, size, rate, seconds, depth, out = sys.argv[2:]
        raw_role(role, tin, tout, int(size), float(rate), float(seconds), int(depth), out)
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per case")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; figures are medians")
    ap.add_argument("--flood", action="store_true", help="also measure throughput with the source unpaced")
    ap.add_argument("--sizes", default=",".join(SIZES), help="comma-separated: " + ", ".join(SIZES))
    ap.add_argument("--append-results", action="store_true", help="record the table in bench/RESULTS.md (replaces its last one)")
    ap.add_argument("--metrics-overhead", action="store_true",
                    help="measure DDS throughput with the metrics endpoint on against off instead")
    a = ap.parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{HERE}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env["_BENCH_PLUGINS"] = "1"
    os.environ.update({"PYTHONPATH": env["PYTHONPATH"], "_BENCH_PLUGINS": "1"})
    if a.metrics_overhead:
        return metrics_overhead(a)
    rows = []
    sizes = [x.strip() for x in a.sizes.split(",")]
    runs: Dict[str, Dict[str, List[Dict[str, Any]]]] = {sz: {m: [] for m in MODES} for sz in sizes}
    with tempfile.TemporaryDirectory(prefix="bench-chain-") as td:
        # Rounds interleave the chains, so a burst of load from elsewhere on the machine hits
        # all of them alike; each figure is the median over the rounds.
        for rnd in range(a.rounds):
            for size_name in sizes:
                for mode in MODES:
                    d = Path(td) / f"{rnd}-{size_name.replace(' ', '')}-{mode}"
                    d.mkdir()
                    f = run_raw(size_name, a.seconds, d, env) if mode == "raw" \
                        else run_schnitzel(size_name, mode, a.seconds, d)
                    runs[size_name][mode].append(f)
                    print(f"round {rnd + 1}: {size_name:>6} {mode:<7} n={f['n']:<6} {f['pps']:9.1f} pkt/s  "
                          f"p50 {f['p50_ms']:8.3f} ms  p99 {f['p99_ms']:8.3f} ms", flush=True)
        flood: Dict[str, Dict[str, Dict[str, Any]]] = {}
        if a.flood:
            for size_name in sizes:
                flood[size_name] = {}
                for mode in MODES:
                    d = Path(td) / f"flood-{size_name.replace(' ', '')}-{mode}"
                    d.mkdir()
                    f = run_raw(size_name, a.seconds, d, env, FLOOD[size_name]) if mode == "raw" \
                        else run_schnitzel(size_name, mode, a.seconds, d, FLOOD[size_name])
                    flood[size_name][mode] = f
                    print(f"flood:   {size_name:>6} {mode:<7} {f['pps']:9.1f} pkt/s received", flush=True)
    for size_name in sizes:
        rows.append((size_name, {m: {k: statistics.median(r[k] for r in runs[size_name][m])
                                     for k in ("n", "pps", "p50_ms", "p99_ms")} for m in MODES}))
    lines = [f"{os.environ.get('RMW_IMPLEMENTATION', 'default rmw')}, "
             f"median of {a.rounds} interleaved rounds of {a.seconds:g} s per case, reliable keep_last QoS; latency from the source stamp to the sink "
             "(3 hops); first 10 % dropped as warm-up.", "",
             "| payload | chain | offered pkt/s | received pkt/s | p50 ms | p99 ms | p50 / raw |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for size_name, figs in rows:
        raw50 = figs["raw"]["p50_ms"]
        for mode, label in (("raw", "raw rclpy (4 processes)"), ("dds", "schnitzel, 4 containers (DDS)"),
                            ("inproc", "schnitzel, 1 container (inproc)")):
            f = figs[mode]
            lines.append(f"| {size_name} | {label} | {RATES[size_name]:g} | {f['pps']:.1f} | {f['p50_ms']:.3f} | "
                         f"{f['p99_ms']:.3f} | {f['p50_ms'] / raw50:.2f}x |")
    if flood:
        lines += ["", "Throughput (source sending as fast as it can; packets/s reaching the sink, one round):", "",
                  "| payload | raw rclpy | schnitzel DDS | schnitzel inproc |", "| --- | ---: | ---: | ---: |"]
        for size_name, f in flood.items():
            lines.append(f"| {size_name} | {f['raw']['pps']:.0f} | {f['dds']['pps']:.0f} | {f['inproc']['pps']:.0f} |")
    lines.append("")
    for size_name, figs in rows:
        dds, raw, inp = figs["dds"], figs["raw"], figs["inproc"]
        lines.append(f"- {size_name}: DDS/raw p50 {dds['p50_ms'] / raw['p50_ms']:.2f}x (target <= 1.5x), "
                     f"DDS/inproc p50 {dds['p50_ms'] / inp['p50_ms']:.1f}x"
                     + (" (target >= 5x)" if size_name == "1 MB" else ""))
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if a.append_results:
        sys.path.insert(0, str(HERE))
        from _results import record
        record("bench_chain.py", lines, section=("## Runtime chain", "schnitzel against raw rclpy, same run."))
    return 0


def metrics_overhead(a: Any) -> int:
    import socket
    on: List[float] = []
    off: List[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-metrics-") as td:
        for rnd in range(a.rounds):
            for label in (("off", "on") if rnd % 2 == 0 else ("on", "off")):   # neither always goes first
                port = 0
                if label == "on":
                    with socket.socket() as s:
                        s.bind(("127.0.0.1", 0))
                        port = s.getsockname()[1]
                d = Path(td) / f"{rnd}-{label}"
                d.mkdir()
                f = run_schnitzel("200 B", "dds", a.seconds, d, FLOOD["200 B"], metrics_port=port)
                (on if port else off).append(f["pps"])
                print(f"round {rnd + 1}: metrics {label:<3} {f['pps']:9.1f} pkt/s", flush=True)
    m_on, m_off = statistics.median(on), statistics.median(off)
    # each round's on/off pair ran back to back: its ratio is what the shared machine's load
    # drifting between rounds disturbs least
    ratio = statistics.median(a_on / a_off for a_on, a_off in zip(on, off))
    lines = [f"DDS chain (4 containers), 200 B, source unpaced; median of {a.rounds} interleaved rounds of "
             f"{a.seconds:g} s; metrics on = the manager's endpoint scraped once a second.", "",
             "| metrics | received pkt/s (median) | rounds |", "| --- | ---: | --- |",
             f"| off | {m_off:.0f} | {', '.join(f'{x:.0f}' for x in off)} |",
             f"| on | {m_on:.0f} | {', '.join(f'{x:.0f}' for x in on)} |", "",
             f"- on/off: {ratio:.3f}x, the median of the rounds' ratios (target >= 0.97x); "
             f"of the medians {m_on / m_off:.3f}x"]
    print("\n".join(lines))
    if a.append_results:
        sys.path.insert(0, str(HERE))
        from _results import record
        record("bench_chain.py --metrics-overhead", lines,
               section=("## Runtime chain", "schnitzel against raw rclpy, same run."))
    return 0


if __name__ == "__main__":
    sys.exit(main())
