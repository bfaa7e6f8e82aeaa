"""Test helper: one process hosting durable_queue -> http_sink/jsonl_sink/mqtt_sink/kafka_sink
logic exactly as the plugins are written, wired in-process (emit -> on_packet, ctx.ack ->
on_ack), without DDS. Packets arrive as JSON lines on stdin (Packet.to_dict); status goes
to stdout as JSON lines every 0.1 s (never to a file: disk-full tests limit file writes).

Fault knobs: --crash-after-delivered N: SIGKILL this process right after the N-th
delivered outcome, before its ack reaches the queue.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import NodeContext
from schnitzel_nodes.plugins.brokers import KafkaSinkLogic, MqttSinkLogic
from schnitzel_nodes.plugins.delivery import DurableQueueLogic, HttpSinkLogic, JsonlSinkLogic

SINKS = {"http_sink": HttpSinkLogic, "jsonl_sink": JsonlSinkLogic, "mqtt_sink": MqttSinkLogic,
         "kafka_sink": KafkaSinkLogic}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", required=True)
    ap.add_argument("--url", default="")
    ap.add_argument("--jsonl", default="")
    ap.add_argument("--queue-params", default="{}")
    ap.add_argument("--sink-params", default="{}")
    ap.add_argument("--sink-plugin", default="", choices=sorted(SINKS), help="default: http_sink with --url, "
                    "else jsonl_sink")
    ap.add_argument("--crash-after-delivered", type=int, default=0)
    a = ap.parse_args()
    out_lock = threading.Lock()

    def say(doc):
        with out_lock:
            sys.stdout.write(json.dumps(doc) + "\n")
            sys.stdout.flush()

    qparams = dict(DurableQueueLogic.spec.defaults())
    qparams.update({"path": a.db, "poll_s": 0.01, "stats_s": 0.1})
    qparams.update(json.loads(a.queue_params))
    sink_cls = SINKS[a.sink_plugin] if a.sink_plugin else HttpSinkLogic if a.url else JsonlSinkLogic
    sparams = dict(sink_cls.spec.defaults())
    if not a.sink_plugin:
        sparams.update({"url": a.url} if a.url else {"path": a.jsonl})
    sparams.update(json.loads(a.sink_params))

    qctx = NodeContext("queue", qparams, graph="fault")
    sctx = NodeContext("sink", sparams, graph="fault")
    queue = DurableQueueLogic(qctx)
    sink = sink_cls(sctx)
    delivered = [0]

    def ack(ack):
        if ack.outcome == "delivered":
            delivered[0] += 1
            if a.crash_after_delivered and delivered[0] >= a.crash_after_delivered:
                os.kill(os.getpid(), signal.SIGKILL)
        queue.on_ack(ack)

    qctx._emit = lambda port, p: sink.on_packet("in", p)
    sctx._ack = ack
    queue.configure()
    sink.configure()
    sink.activate()
    queue.activate()
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            queue.tick()
            time.sleep(queue.tick_period_s)

    def reader():
        for line in sys.stdin:
            line = line.strip()
            if line:
                queue.on_packet("in", Packet.from_dict(json.loads(line)))
        stop.set() if os.environ.get("WORKER_EXIT_ON_EOF") else None

    threading.Thread(target=ticker, daemon=True).start()
    threading.Thread(target=reader, daemon=True).start()
    say({"ready": True, "pid": os.getpid()})
    while not stop.is_set():
        w = sink.worker
        say({"t": time.time(), "counters": dict(qctx.counters), "sink": dict(sctx.counters),
             "health": queue.health(), "breaker": w.state.value, "attempts": w.attempts,
             "sink_pending": w.pending(), "accepted": queue.accepted})
        time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
