"""MQTT egress: the whole delivery path (durable_queue + mqtt_sink logic, in one process)
draining a backlog into a local mosquitto, against paho publishing the same events directly,
measured in the same run (interleaved rounds).

    python bench/bench_mqtt.py [--packets 20000] [--rounds 3] [--no-record]

Both sides publish QoS 1 with MQTT 5, the same JSON body and the idempotency key as a user
property, with at most 100 messages awaiting PUBACK, and count a message only on its PUBACK.
The schnitzel side also reads each row from SQLite (WAL, synchronous=NORMAL), leases it, and
commits its acknowledgement. Target (issue 17): >= 0.7x of direct paho.
Needs Debian's mosquitto (apt-get install mosquitto).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import publish  # noqa: E402

from schnitzel_core.packet import Packet  # noqa: E402

INFLIGHT = 100


def pk(tag: str, i: int) -> Packet:
    return Packet.from_json(tag, i, "event", {"seq": i, "pad": "x" * 120})


def start_broker(d: str):
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        sys.exit("bench_mqtt: mosquitto is not installed (apt-get install mosquitto)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = os.path.join(d, "m.conf")
    with open(conf, "w") as f:
        f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 0\nmax_queued_messages 0\n"
                + ("user root\n" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen([exe, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def direct_rate(port: int, n: int, tag: str) -> float:
    """paho alone: publish n events (QoS 1, v5, key property), INFLIGHT at a time, until every PUBACK."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(INFLIGHT)
    done = threading.Semaphore(0)
    c.on_publish = lambda *a: done.release()
    c.connect("127.0.0.1", port)
    c.loop_start()
    packets = [pk(tag, i) for i in range(n)]
    t0 = time.perf_counter()
    for p in packets:   # paho keeps INFLIGHT on the wire and queues the rest: a sliding window
        props = Properties(PacketTypes.PUBLISH)
        props.UserProperty = ("idempotency_key", p.idempotency_key)
        props.ContentType = "application/json"
        props.PayloadFormatIndicator = 1
        c.publish(f"bench/{p.stream_id}/{p.kind}", json.dumps(p.to_dict(), separators=(",", ":")).encode(),
                  qos=1, properties=props)
    for _ in packets:
        done.acquire()
    dt = time.perf_counter() - t0
    c.loop_stop()
    c.disconnect()
    return n / dt


def pipeline_rate(port: int, d: str, n: int, tag: str) -> float:
    """A backlog of n rows drained by durable_queue + mqtt_sink logic (in-process, acks committed)."""
    from schnitzel_core.plugin import NodeContext
    from schnitzel_core.store import DurableStore
    from schnitzel_nodes.plugins.brokers import MqttSinkLogic
    from schnitzel_nodes.plugins.delivery import DurableQueueLogic

    db = os.path.join(d, f"{tag}.db")
    s = DurableStore(db, synchronous="NORMAL")
    for i in range(0, n, 1000):
        s.enqueue([pk(tag, j) for j in range(i, min(n, i + 1000))])
    s.close()
    qp = dict(DurableQueueLogic.spec.defaults(), path=db, poll_s=0.002, max_inflight=1000, forward_batch=500,
              synchronous="NORMAL")
    sp = dict(MqttSinkLogic.spec.defaults(), url=f"mqtt://127.0.0.1:{port}", topic="bench/{stream_id}/{kind}",
              max_inflight=INFLIGHT)
    qctx, sctx = NodeContext("q", qp), NodeContext("mqtt", sp)
    q, sink = DurableQueueLogic(qctx), MqttSinkLogic(sctx)
    qctx._emit = lambda port_, p: sink.on_packet("in", p)
    sctx._ack = q.on_ack
    q.configure()
    sink.configure()
    sink.activate()
    assert sink.worker.sink._connected.wait(10), "mqtt sink did not connect"
    t0 = time.perf_counter()
    q.activate()
    while q.store.depth > 0:
        q.tick()
        time.sleep(0.002)
        if time.perf_counter() - t0 > 300:
            raise RuntimeError("pipeline did not drain in 300 s")
    dt = time.perf_counter() - t0
    delivered = sctx.counters.get("delivered", 0)
    sink.deactivate()
    q.cleanup()
    assert delivered >= n, f"only {delivered} of {n} confirmed"
    return n / dt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-record", action="store_true")
    a = ap.parse_args()
    direct, pipe = [], []
    with tempfile.TemporaryDirectory() as d:
        proc, port = start_broker(d)
        try:
            direct_rate(port, 2000, "warm")
            for r in range(a.rounds):
                direct.append(direct_rate(port, a.packets, f"d{r}"))
                pipe.append(pipeline_rate(port, d, a.packets, f"p{r}"))
                print(f"round {r + 1}: paho direct {direct[-1]:,.0f}/s, durable_queue + mqtt_sink {pipe[-1]:,.0f}/s",
                      flush=True)
        finally:
            proc.terminate()
            proc.wait(10)
    dm, pm = statistics.median(direct), statistics.median(pipe)
    ratio = pm / dm
    lines = ["| path (QoS 1, MQTT 5, counted on PUBACK) | events/s |", "| --- | ---: |",
             f"| paho publishing directly (sliding window of {INFLIGHT} in flight) | {dm:,.0f} |",
             f"| durable_queue + mqtt_sink draining a {a.packets:,}-row backlog (mqtt_sink defaults: batches of 500, acks committed) "
             f"| {pm:,.0f} |", "",
             f"Median of {a.rounds} interleaved rounds of {a.packets:,} events (broker: Debian's mosquitto on "
             f"127.0.0.1). Ratio {ratio:.2f}x; target >= 0.7x: {'met' if ratio >= 0.7 else 'NOT met'}."]
    publish("bench_mqtt.py", lines, save=not a.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
