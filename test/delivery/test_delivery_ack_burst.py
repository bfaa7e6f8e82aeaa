"""A burst of acknowledgements over DDS is not lost (issue 5 follow-up).

1000 rows wait in the queue's file; the queue (container q) forwards them all at once
(max_inflight 1000) to a jsonl_sink in another container (s), which confirms them in
batches of 100 on /<graph>/_delivery/ack. With the ack topic's deep history every ack
reaches the queue: each row is forwarded exactly once, written once, and removed, well
before a lease could expire (lease_s 120 s, so a lost ack would only be recovered after the
test's deadline). With the old keep-last-100 ack QoS most of such a burst was overwritten.
"""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _faults import packet, queue_stats, stop_graph, wait_until  # noqa: E402

from schnitzel_core.store import DurableStore  # noqa: E402

N = 1000

GRAPH = """\
schnitzel: 1
name: {name}
containers:
  - {{id: q}}
  - {{id: s}}
nodes:
  - id: q
    plugin: durable_queue
    container: q
    params: {{path: {db}, max_inflight: {n}, forward_batch: {n}, lease_s: 120.0, commit_ms: 2.0}}
    qos: {{out: {{depth: {depth}}}}}
  - id: out
    plugin: jsonl_sink
    container: s
    params: {{path: {out}, fsync: always, batch_size: 100}}
edges:
  - {{from: q.out, to: out.in}}
"""


def _lines(path: Path):
    try:
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    except (OSError, ValueError):
        return []


def test_burst_of_1000_acks_cross_container_no_duplicate_no_lease_resend(tmp_path, ros_env):
    name = f"dlvburst_{uuid.uuid4().hex[:8]}"
    db, out = tmp_path / "queue.db", tmp_path / "out.jsonl"
    with DurableStore(str(db)) as s:
        assert s.enqueue([packet(i, stream="burst") for i in range(1, N + 1)]).accepted == N
    graph = tmp_path / "graph.yaml"
    graph.write_text(GRAPH.format(name=name, db=db, out=out, n=N, depth=2 * N))
    log = open(tmp_path / "run.log", "wb")
    t0 = time.monotonic()
    runner = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(graph), "--run-dir",
                               str(tmp_path / "run"), "--quiet", "--report", str(tmp_path / "report.json")],
                              env=ros_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True)
    run_log = lambda: (tmp_path / "run.log").read_text(errors="replace")  # noqa: E731
    try:
        assert wait_until(lambda: len(_lines(out)) >= N, 60, step=0.2), (len(_lines(out)), run_log())
        # every ack arrived: the queue is empty long before the 120 s lease could expire
        assert wait_until(lambda: queue_stats(db)["depth"] == 0, 30, step=0.5), (queue_stats(db), run_log())
        took = time.monotonic() - t0
        time.sleep(1.0)  # a late re-send would show up here
        runner.send_signal(signal.SIGINT)
        runner.wait(timeout=60)
        lines = _lines(out)
        keys = [x["idempotency_key"] for x in lines]
        assert len(keys) == N and len(set(keys)) == N, "a row was written twice"
        st = queue_stats(db)
        assert st["counters"]["delivered"] == N and st["depth"] == 0
        report = json.loads((tmp_path / "report.json").read_text())
        qc = {k: int(float(v)) for k, v in report["nodes"]["q"]["counters"].items()}
        sc = {k: int(float(v)) for k, v in report["nodes"]["out"]["counters"].items()}   # (gauges too, e.g. latency_p95_recent_ms)
        assert qc.get("forwarded") == N, qc      # no lease-expiry re-send
        assert qc.get("acked") == N, qc          # no ack lost
        assert sc.get("delivered") == N and not sc.get("reacked") and not sc.get("busy"), sc
        print(f"\n{N} rows, burst of {N} acks across containers: done in {took:.1f} s, q {qc}, sink {sc}")
    finally:
        stop_graph(runner, name)
