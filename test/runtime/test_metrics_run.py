"""`schnitzel run --metrics-port P`, end to end: a real run scraped over HTTP on 127.0.0.1.

synthetic_source -> durable_queue -> http_sink (each in its own container) delivering to a
reference backend. Metric names and types are checked with prometheus-client's parser; the sink's
container is SIGKILLed and respawned and every counter stays monotonic; after the run, the last
scrape equals the run report's counts and the sink's own (the backend's) count. `schnitzel top
--once --format json` reads the same run over ROS.
"""
import json
import os
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from rt_helpers import output, schnitzel_cmd, start_run
from schnitzel_core.testing import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "delivery"))
from _faults import Backend, graph_pids  # noqa: E402

COUNT = 60
GRAPH = """\
schnitzel: 1
name: {name}
containers:
  - {{id: a}}
  - {{id: q}}
  - {{id: s, restart: on-failure, restart_backoff_s: 0.5, restart_limit: 3}}
nodes:
  - {{id: src, plugin: synthetic_source, container: a, params: {{mode: counter, count: {count}, rate_hz: 40}}}}
  - {{id: q, plugin: durable_queue, container: q, params: {{path: {db}}}}}
  - {{id: http, plugin: http_sink, container: s, params: {{url: "{url}/events"}}}}
edges:
  - {{from: src.out, to: q.in}}
  - {{from: q.out, to: http.in}}
"""


def scrape(port):
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    return {f.name: f for f in text_string_to_metric_families(body)}


def value(fams, sample, **labels):
    for f in fams.values():
        for s in f.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def counter_samples(fams):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values()
            if f.type in ("counter", "histogram") for s in f.samples if not s.name.endswith("_created")}


def test_real_run_scraped_over_http_monotonic_across_sigkill_and_equal_to_the_report(tmp_path, tagged, free_port):
    name = f"met_{uuid.uuid4().hex[:8]}"
    be = Backend(tmp_path)
    be.start()
    graph = tmp_path / "graph.yaml"
    graph.write_text(GRAPH.format(name=name, count=COUNT, db=tmp_path / "q.db", url=be.url))
    report = tmp_path / "report.json"
    run = start_run(graph, tmp_path / "run", tagged.env, "--quiet", "--metrics-port", str(free_port),
                    "--report", str(report))
    try:
        done = lambda f: (value(f, "schnitzel_sink_attempts_total", sink="http", result="delivered") == COUNT  # noqa: E731
                          and value(f, "schnitzel_queue_depth_rows", node="q") == 0)
        assert wait_for(lambda: done(scrape(free_port)), 90), output(run)
        before = scrape(free_port)
        types = {n: f.type for n, f in before.items()}
        assert types["schnitzel_node_packets_in"] == "counter"
        assert types["schnitzel_node_latency_seconds"] == "histogram"
        assert types["schnitzel_edge_rate_packets_per_second"] == "gauge"
        assert types["schnitzel_sink_breaker_state"] == "gauge"
        # latency reaches the histogram from each container's bucket counts
        assert value(before, "schnitzel_node_latency_seconds_count", node="http") == COUNT
        assert value(before, "schnitzel_edge_packets_total", node="http", port="in", from_node="q",
                     from_port="out") == COUNT
        # everything served on loopback, every series labelled with the graph
        assert all(s.labels.get("graph") == name for f in before.values() for s in f.samples)

        # the terminal view of the same run, over ROS: `schnitzel top --once --format json`
        top = subprocess.run(schnitzel_cmd("top", name, "--once", "--format", "json"), env=tagged.env,
                             capture_output=True, text=True, timeout=60)
        assert top.returncode == 0, top.stderr
        view = json.loads(top.stdout)
        assert view["graph"] == name and view["nodes_active"] == view["nodes_total"] == 3
        tn = {n["node"]: n for n in view["nodes"]}
        assert set(tn) == {"src", "q", "http"}
        assert tn["http"]["packets_in"] == COUNT and tn["q"]["queue_depth"] == 0
        assert all(n["in_per_s"] is not None and n["state"] == "active" for n in tn.values())

        [victim] = graph_pids(name, "s")
        os.kill(victim, signal.SIGKILL)
        back = lambda f: (value(f, "schnitzel_container_restarts_total", container="s") == 1  # noqa: E731
                          and value(f, "schnitzel_node_state", node="http", state="active") == 1
                          and value(f, "schnitzel_node_heartbeat_age_seconds", node="http") < 2)
        assert wait_for(lambda: back(scrape(free_port)), 60), output(run)
        after = scrape(free_port)
        prev, cur = counter_samples(before), counter_samples(after)
        for key, v in prev.items():
            assert cur.get(key, -1) >= v, (key, v, cur.get(key))
        assert value(after, "schnitzel_node_restarts_total", node="http") == 1

        run.send_signal(signal.SIGINT)
        run.wait(timeout=60)
        rep = json.loads(report.read_text())
        for nid, rn in rep["nodes"].items():
            for key in ("packets_in", "packets_out", "drops", "errors"):
                assert value(after, f"schnitzel_node_{key}_total", node=nid) == rn[key], (nid, key, rn)
        assert be.stats()["unique_keys"] == COUNT == int(rep["nodes"]["http"]["counters"]["delivered"])
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGINT)
            run.wait(timeout=60)
        be.kill()
