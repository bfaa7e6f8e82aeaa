"""Benchmark: one hop between hosts (network namespaces joined by a veth bridge) over DDS and over
Zenoh, against the same-host DDS hop measured in the same run (docs/multi-host.md).

    source scripts/env.sh && python bench/bench_multihost.py [--pings 300] [--seconds 3] [--no-record]

Needs root and `ip netns` (as test/multihost). Cases, each with a 200-byte and a 64 KiB
StreamPacket payload:
- ``same-host DDS``: the echo process in the measuring process's namespace (Fast DDS as schnitzel
  runs it on one machine);
- ``cross-host DDS``: the echo in another namespace, UDPv4 only with ROS_STATIC_PEERS, as
  `schnitzel run --host` sets it up;
- ``cross-host Zenoh``: the echo in another namespace, the StreamPacket's CDR bytes over a Zenoh
  peer link, as a zenoh edge carries them.

Latency: ping-pong with one message in flight, half the round trip (median, p95). Throughput:
pings with up to 32 in flight for ``--seconds``, round trips per second.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SIZES = {"200 B": 200, "64 KiB": 65536}
WINDOW = 32
NOTE = ("Note: raw hops (an rclpy echo node for DDS, the containers' Zenoh session code for Zenoh), not schnitzel's node path; the DDS side pays rclpy's executor per message, the Zenoh side calls back directly, which is why Zenoh reads faster than the same-host DDS hop here. The machine (2 cores) is shared; figures vary between runs.")
SECTION = ("## Multi-host", "One hop between network namespaces over DDS and Zenoh (`bench/bench_multihost.py`).")


# ---- the two transports, one interface: send(bytes-of-a-packet) / on_receive(callback) --------

class Dds:
    def __init__(self, name: str, tx: str, rx: str) -> None:
        import rclpy
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from schnitzel_msgs.msg import StreamPacket
        rclpy.init()
        self.node = rclpy.create_node(name)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.cls = StreamPacket
        self.pub = self.node.create_publisher(StreamPacket, tx, qos)
        self.cb: Callable[[Any], None] = lambda m: None
        self.node.create_subscription(StreamPacket, rx, lambda m: self.cb(m), qos)
        from rclpy.executors import SingleThreadedExecutor
        ex = SingleThreadedExecutor()
        ex.add_node(self.node)
        threading.Thread(target=ex.spin, daemon=True).start()

    def make(self, size: int, seq: int) -> Any:
        return self.cls(seq=seq, payload=bytes(size))

    def send(self, msg: Any) -> None:
        self.pub.publish(msg)


class Zen:
    def __init__(self, listen: List[str], connect: List[str], tx: str, rx: str) -> None:
        from rclpy.serialization import deserialize_message, serialize_message
        from schnitzel_msgs.msg import StreamPacket
        from schnitzel_nodes.ros.zenoh_link import Link
        self.link = Link.get({"mode": "peer", "listen": listen, "connect": connect})
        self.cls, self.ser, self.de = StreamPacket, serialize_message, deserialize_message
        self.tx = tx
        self.cb: Callable[[Any], None] = lambda m: None
        self.link.subscribe(rx, lambda data: self.cb(self.de(data, self.cls)))

    def make(self, size: int, seq: int) -> Any:
        return self.cls(seq=seq, payload=bytes(size))

    def send(self, msg: Any) -> None:
        self.link.put(self.tx, self.ser(msg))


def _transport(kind: str, side: str, args: Any) -> Any:
    tx, rx = ("/bench/pong", "/bench/ping") if side == "echo" else ("/bench/ping", "/bench/pong")
    if kind == "dds":
        return Dds(f"bench_{side}", tx, rx)
    return Zen(json.loads(args.listen), json.loads(args.connect), tx.strip("/"), rx.strip("/"))


def echo_main(args: Any) -> int:
    t = _transport(args.kind, "echo", args)
    t.cb = t.send
    print("echo ready", flush=True)
    while True:
        time.sleep(1)


def measure_main(args: Any) -> int:
    """Ping side: prints one JSON line of results per size."""
    t = _transport(args.kind, "ping", args)
    got: Dict[int, float] = {}
    cv = threading.Condition()

    def on_pong(msg: Any) -> None:
        with cv:
            got[int(msg.seq)] = time.perf_counter()
            cv.notify_all()
    t.cb = on_pong
    seq = 0
    # wait until the echo answers (discovery, session)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        seq += 1
        t.send(t.make(10, seq))
        with cv:
            if cv.wait_for(lambda: seq in got, timeout=0.2):
                break
    else:
        print(json.dumps({"error": "the echo never answered"}), flush=True)
        return 1
    for label, size in SIZES.items():
        rtts: List[float] = []
        for _ in range(args.pings):
            seq += 1
            msg = t.make(size, seq)
            t0 = time.perf_counter()
            t.send(msg)
            with cv:
                if cv.wait_for(lambda: seq in got, timeout=2.0):
                    rtts.append(got[seq] - t0)
        start_seq, sent, end = seq, 0, time.monotonic() + args.seconds
        msg = t.make(size, 0)
        while time.monotonic() < end:
            with cv:
                cv.wait_for(lambda: (seq - start_seq) - sum(1 for s in got if s > start_seq) < WINDOW, timeout=1.0)
            seq += 1
            msg.seq = seq
            t.send(msg)
            sent += 1
        time.sleep(0.5)
        done = sum(1 for s in got if s > start_seq)
        half = sorted(r / 2 * 1000 for r in rtts)
        print(json.dumps({"size": label, "p50_ms": statistics.median(half) if half else None,
                          "p95_ms": half[int(len(half) * 0.95) - 1] if half else None,
                          "lost": args.pings - len(rtts), "rt_per_s": done / args.seconds}), flush=True)
    return 0


def run_case(box: Any, name: str, kind: str, echo_host: str, args: Any) -> List[Dict[str, Any]]:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="SUBNET", FASTDDS_BUILTIN_TRANSPORTS="UDPv4",
               ROS_STATIC_PEERS=f"{box.addr['a']};{box.addr['b']}")
    if name.startswith("same-host"):
        env.pop("FASTDDS_BUILTIN_TRANSPORTS")   # one machine: Fast DDS as schnitzel runs it there
    me = [sys.executable, str(Path(__file__).resolve())]
    zen = {"a": f"tcp/{box.addr['a']}:7447", "b": f"tcp/{box.addr['b']}:7447"}

    def argv(role: str, host: str) -> List[str]:
        other = "b" if host == "a" else "a"
        return box.exec_argv(host, me + ["--role", role, "--kind", kind, "--pings", str(args.pings),
                                         "--seconds", str(args.seconds), "--listen", json.dumps([zen[host]]),
                                         "--connect", json.dumps([zen[other]])])
    echo = subprocess.Popen(argv("echo", echo_host), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(1.0)
        out = subprocess.run(argv("measure", "a"), env=env, capture_output=True, text=True,
                             timeout=120 + 4 * args.seconds)
        rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
        if not rows or "error" in rows[0]:
            raise RuntimeError(f"{name}: {out.stdout[-500:]} {out.stderr[-1500:]}")
        return rows
    finally:
        os.killpg(echo.pid, 9)
        echo.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", choices=("echo", "measure"), help=argparse.SUPPRESS)
    ap.add_argument("--kind", choices=("dds", "zenoh"), help=argparse.SUPPRESS)
    ap.add_argument("--listen", default="[]", help=argparse.SUPPRESS)
    ap.add_argument("--connect", default="[]", help=argparse.SUPPRESS)
    ap.add_argument("--pings", type=int, default=300, help="ping-pongs per size (latency)")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds of pipelined pings per size (throughput)")
    ap.add_argument("--no-record", action="store_true", help="print only; do not add to bench/RESULTS.md")
    args = ap.parse_args()
    if args.role == "echo":
        return echo_main(args)
    if args.role == "measure":
        return measure_main(args)
    from schnitzel_bringup.graphtest.netns import Sandbox, unavailable
    why = unavailable()
    if why:
        print(f"bench_multihost: {why}", file=sys.stderr)
        return 2
    os.environ.setdefault("ROS_DOMAIN_ID", "51")
    box = Sandbox(["a", "b"], subnet=200 + os.getpid() % 50)
    try:
        cases = [("same-host DDS (baseline)", "dds", "a"), ("cross-host DDS", "dds", "b"),
                 ("cross-host Zenoh", "zenoh", "b")]
        results = {name: run_case(box, name, kind, host, args) for name, kind, host in cases}
    finally:
        box.close()
    base = {r["size"]: r for r in results[cases[0][0]]}
    lines = [f"{args.pings} ping-pongs (latency = half the round trip) and {args.seconds:g} s of pings "
             f"with {WINDOW} in flight (throughput) per payload size; one veth bridge between namespaces.", "",
             "| case | payload | latency p50 (ms) | p95 (ms) | x same-host | round trips/s | x same-host |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, rows in results.items():
        for r in rows:
            b = base[r["size"]]
            lines.append(f"| {name} | {r['size']} | {r['p50_ms']:.3f} | {r['p95_ms']:.3f} | "
                         f"{r['p50_ms'] / b['p50_ms']:.2f} | {r['rt_per_s']:.0f} | "
                         f"{r['rt_per_s'] / b['rt_per_s']:.2f} |")
    lines += ["", NOTE]
    from _results import publish
    publish("bench_multihost.py", lines, save=not args.no_record, section=SECTION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
