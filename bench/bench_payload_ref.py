"""One 1080p rgb8 DDS hop (1920x1080x3 = 6,220,800 bytes) by reference against inline, same run.

    python bench/bench_payload_ref.py [--latency-frames 20] [--flood-frames 60] [--rounds 2] [--no-record]

Two processes on one host: this one publishes StreamPacket frames through the adapter's
own conversions (``ros/wire.py`` + ``ros/byref.py``: inline, or written as a blob under
/dev/shm/schnitzel/<graph>/ and sent as a reference); a subscriber process converts back
and resolves each reference (read, size and sha256 checked) as an adapter input does, then
checks the frame's length and its sequence bytes. Every frame differs (its first 8 bytes are
its sequence number), so a blob is written for each one (no content-addressed reuse).

- latency: frames at 5 Hz, one-way time from just before conversion to the plugin-ready
  packet in the subscriber (p50, p95);
- throughput: frames published back to back (reliable, keep_last 10): frames the subscriber
  got ready per second, from the first send to the last arrival, and how many arrived.

Modes alternate per round (inline, by reference, inline, ...); the figures are the medians
over rounds. Ratio = by reference / inline.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import record  # noqa: E402

W, H = 1920, 1080
SIZE = W * H * 3
SECTION = ("## Payloads by reference",
           "A 1080p rgb8 DDS hop by reference against inline (`bench/bench_payload_ref.py`).")
QOS = {"reliability": "reliable", "durability": "volatile", "history": "keep_last", "depth": 10}

SUB = r"""
import json, os, sys, threading, time
import rclpy
from schnitzel_core.packet import now_ns
from schnitzel_nodes.ros.byref import blob_store, resolve_input
from schnitzel_nodes.ros.qos import to_profile
from schnitzel_nodes.ros.wire import wire_for
topic, graph, root, out, size, qos = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), json.loads(sys.argv[6])
store = blob_store(graph, {"payload_ref": {"threshold_bytes": 1, "ttl_s": 5, "dir": root}})
wire = wire_for("")
rclpy.init()
node = rclpy.create_node("bench_payload_ref_sub")
phases = {}
lock = threading.Lock()
def err(msg, exc):
    ph["errors"] += 1
def on_msg(msg):
    global ph
    p = wire.from_msg(msg)
    phase = p.meta.get("phase", "?")
    with lock:
        ph = phases.setdefault(phase, {"n": 0, "lat_ms": [], "first_ns": 0, "last_ns": 0, "errors": 0, "bad": 0, "end": False})
        if p.kind == "bench.end":
            ph["end"] = True
            return
        p = resolve_input(store, p, err)
        if p is None:
            return
        t = now_ns()
        if len(p.payload) != size or int.from_bytes(p.payload[:8], "big") != p.seq:
            ph["bad"] += 1
        ph["n"] += 1
        ph["lat_ms"].append((t - p.stamp_ns) / 1e6)
        ph["first_ns"] = ph["first_ns"] or p.stamp_ns
        ph["last_ns"] = t
node.create_subscription(wire.msg_cls, topic, on_msg, to_profile(qos))
def dump():
    while True:
        time.sleep(0.2)
        with lock:
            text = json.dumps(phases)
        with open(out + ".tmp", "w") as f:
            f.write(text)
        os.replace(out + ".tmp", out)
threading.Thread(target=dump, daemon=True).start()
rclpy.spin(node)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--latency-frames", type=int, default=20)
    ap.add_argument("--flood-frames", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", default="/dev/shm/schnitzel", help="blob directory root (default /dev/shm/schnitzel)")
    ap.add_argument("--no-record", action="store_true", help="print only; do not add to bench/RESULTS.md")
    args = ap.parse_args()

    import rclpy
    from schnitzel_core.packet import Packet, now_ns
    from schnitzel_nodes.ros.byref import blob_store, externalising
    from schnitzel_nodes.ros.qos import to_profile
    from schnitzel_nodes.ros.wire import wire_for

    graph = f"bench_{uuid.uuid4().hex[:8]}"
    topic = f"/{graph}/frames"
    tmp = Path(tempfile.mkdtemp(prefix="bench_pref_"))
    out = tmp / "sub.json"
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    sub = subprocess.Popen([sys.executable, "-c", SUB, topic, graph, args.dir, str(out), str(SIZE), json.dumps(QOS)],
                           env=env, stdout=open(tmp / "sub.log", "wb"), stderr=subprocess.STDOUT)
    store = blob_store(graph, {"payload_ref": {"threshold_bytes": 1 << 20, "ttl_s": 5, "dir": args.dir}})
    inline = wire_for("")
    by_ref = externalising(inline, store)
    rclpy.init()
    node = rclpy.create_node("bench_payload_ref_pub")
    pub = node.create_publisher(inline.msg_cls, topic, to_profile(QOS))
    base = bytearray(os.urandom(SIZE))
    seq = 0

    def frame(phase: str) -> Packet:
        nonlocal seq
        seq += 1
        base[:8] = seq.to_bytes(8, "big")
        return Packet("cam0", seq, "video.frame", payload=bytes(base), meta={"phase": phase},
                      content_type=f"image/raw;encoding=rgb8;width={W};height={H};step={W * 3}")

    def sub_phase(phase: str) -> dict:
        try:
            return json.loads(out.read_text()).get(phase, {})
        except (OSError, ValueError):
            return {}

    def end(phase: str) -> dict:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            pub.publish(inline.to_msg(Packet("cam0", 0, "bench.end", meta={"phase": phase})))
            time.sleep(0.3)
            got = sub_phase(phase)
            if got.get("end"):
                return got
        return sub_phase(phase)

    try:
        deadline = time.monotonic() + 30
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        if pub.get_subscription_count() == 0:
            print("the subscriber never matched; see", tmp / "sub.log")
            return 1
        end("warmup")
        results = {"inline": [], "ref": []}
        for r in range(args.rounds):
            for mode, wire in (("inline", inline), ("ref", by_ref)):
                lat_phase, flood_phase = f"{mode}.lat.{r}", f"{mode}.flood.{r}"
                for _ in range(args.latency_frames):
                    p = frame(lat_phase)
                    p.stamp_ns = now_ns()
                    pub.publish(wire.to_msg(p))
                    time.sleep(0.2)
                lat = end(lat_phase)
                t0 = now_ns()
                for _ in range(args.flood_frames):
                    p = frame(flood_phase)
                    p.stamp_ns = now_ns()
                    pub.publish(wire.to_msg(p))
                flood = end(flood_phase)
                secs = max(1e-9, (flood.get("last_ns", t0) - t0) / 1e9)
                lats = sorted(lat.get("lat_ms") or [float("nan")])
                results[mode].append({
                    "p50": statistics.median(lats), "p95": lats[min(len(lats) - 1, int(0.95 * len(lats)))],
                    "lat_n": lat.get("n", 0), "fps": flood.get("n", 0) / secs, "flood_n": flood.get("n", 0),
                    "errors": lat.get("errors", 0) + flood.get("errors", 0), "bad": lat.get("bad", 0) + flood.get("bad", 0)})
    finally:
        node.destroy_node()
        rclpy.shutdown()
        sub.terminate()
        sub.wait(10)
        shutil.rmtree(store.dir, ignore_errors=True)

    def med(mode: str, k: str) -> float:
        return statistics.median(x[k] for x in results[mode])

    rows = []
    for mode, label in (("inline", "inline (payload in the message)"), ("ref", "by reference (/dev/shm blob, sha256 checked)")):
        rows.append(f"| {label} | {med(mode, 'fps'):.1f} | {med(mode, 'fps') * SIZE / 1e6:.0f} | "
                    f"{min(x['flood_n'] for x in results[mode])}/{args.flood_frames} | {med(mode, 'p50'):.1f} | "
                    f"{med(mode, 'p95'):.1f} | {sum(x['errors'] + x['bad'] for x in results[mode])} |")
    thr = med("ref", "fps") / max(1e-9, med("inline", "fps"))
    latr = med("ref", "p50") / max(1e-9, med("inline", "p50"))
    lines = [f"1080p rgb8 frames (6,220,800 bytes), one DDS hop between two processes (Fast DDS, reliable, "
             f"keep_last 10); {args.rounds} rounds, modes alternated, medians; latency: {args.latency_frames} "
             f"frames at 5 Hz per round; throughput: {args.flood_frames} frames back to back per round.",
             "",
             "| path | frames/s | MB/s | frames arrived (worst round) | latency p50 (ms) | latency p95 (ms) | errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |", *rows, "",
             f"By reference / inline: throughput {thr:.2f}x, p50 latency {latr:.2f}x."]
    print("\n".join(lines))
    if not args.no_record:
        record("bench_payload_ref.py", lines, section=SECTION)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
