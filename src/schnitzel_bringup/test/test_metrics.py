"""Prometheus metrics from the manager's view (schnitzel_bringup.metrics): names and types as
prometheus-client parses them, counters that stay monotonic across a container restart (latency
histogram and per-port counts included), and counts equal to the run report's."""
import time
import urllib.request

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from schnitzel_core.graph_loader import load_graph
from schnitzel_core.registry import Registry

from schnitzel_bringup import metrics
from schnitzel_bringup.compiler import compile_graph
from schnitzel_bringup.manager import LifecycleManager, NodeTrack
from schnitzel_bringup.report import build_report

from _plugins import ALL
from test_compiler import FOUR

PLAN = compile_graph(load_graph(FOUR, file="g.yaml"), Registry.from_classes(ALL))
BOUNDS = [0.001, 0.01, 0.1]


def _hb(pin, pout, pid=100, buckets=(0, 0, 0, 0), lsum=0.0, ports=None, **kw):
    return {"packets_in": pin, "packets_out": pout, "drops": kw.get("drops", 0), "errors": kw.get("errors", 0),
            "pid": pid, "last_error": "", "latency_p50_ms": 1.0, "latency_p95_ms": 2.0, "latency_p99_ms": 3.0,
            "counters": kw.get("counters", {}), "latency_bounds_s": BOUNDS, "latency_buckets": list(buckets),
            "latency_sum_s": lsum, "in_ports": ports if ports is not None else {"in": (pin, 1000.0 + pin)}}


def test_latency_histogram_and_port_counts_add_up_across_a_container_restart():
    t = NodeTrack(PLAN.node("map"))
    t.on_heartbeat(_hb(10, 10, buckets=(4, 3, 2, 1), lsum=0.5), 1.0)
    t.on_heartbeat(_hb(3, 3, pid=200, buckets=(1, 1, 1, 0), lsum=0.1), 2.0)   # restarted: counts from zero
    bounds, buckets, lsum = t.latency_total()
    assert bounds == BOUNDS and buckets == [5, 4, 3, 1] and abs(lsum - 0.6) < 1e-9
    assert t.ports_total() == {"in": (13, 1003.0)}
    t.rebase()   # a hot replacement serves from now on
    assert t.latency_total()[1] == [5, 4, 3, 1] and t.ports_total()["in"][0] == 13


def _manager():
    m = LifecycleManager.__new__(LifecycleManager)
    m._init_state(PLAN, log=lambda _s: None)
    return m


def _scrape(m):
    reg = CollectorRegistry(auto_describe=False)
    reg.register(metrics._Collector(m.metrics_view))
    return {f.name: f for f in text_string_to_metric_families(generate_latest(reg).decode())}


def _sample(fams, family, sample, **labels):
    vals = [s.value for s in fams[family].samples if s.name == sample
            and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(vals) == 1, (family, sample, labels, fams[family].samples)
    return vals[0]


def _feed(m, scale, pid):
    now = time.monotonic()
    for i, n in enumerate(PLAN.nodes):
        t = m.tracks[n.id]
        t.state = "active"
        t.on_heartbeat(_hb(scale * (i + 1), scale * (i + 2), pid=pid, buckets=(scale, scale, 0, 1),
                           lsum=0.01 * scale, drops=i, errors=1 if n.id == "map" else 0), now)


def test_families_types_and_counts_equal_the_report():
    m = _manager()
    _feed(m, 5, pid=100)
    fams = _scrape(m)
    types = {name: f.type for name, f in fams.items()}
    for name in ("schnitzel_node_packets_in", "schnitzel_node_packets_out", "schnitzel_node_drops",
                 "schnitzel_node_errors", "schnitzel_node_restarts", "schnitzel_edge_packets",
                 "schnitzel_container_restarts"):
        assert types[name] == "counter", name
    for name in ("schnitzel_node_state", "schnitzel_graph_status", "schnitzel_edge_rate_packets_per_second",
                 "schnitzel_edge_newest_packet_age_seconds", "schnitzel_node_heartbeat_age_seconds"):
        assert types[name] == "gauge", name
    assert types["schnitzel_node_latency_seconds"] == "histogram"

    report = build_report(PLAN, m.snapshot(), started_at=time.time() - 1, ended_at=time.time(),
                          stopped_by="duration", containers={})
    for nid, rn in report["nodes"].items():
        for key in ("packets_in", "packets_out", "drops", "errors"):
            assert _sample(fams, f"schnitzel_node_{key}", f"schnitzel_node_{key}_total", node=nid) == rn[key]
        assert _sample(fams, "schnitzel_node_state", "schnitzel_node_state", node=nid, state="active") == 1
        assert _sample(fams, "schnitzel_node_latency_seconds", "schnitzel_node_latency_seconds_count",
                       node=nid) == 5 + 5 + 1
        assert _sample(fams, "schnitzel_node_latency_seconds", "schnitzel_node_latency_seconds_bucket",
                       node=nid, le="0.01") == 10
    # every plan edge has its series, labelled by both ends
    for e in PLAN.edges:
        (nid, port), (fnode, fport) = e.dst.split("."), e.src.split(".")
        assert _sample(fams, "schnitzel_edge_packets", "schnitzel_edge_packets_total", node=nid, port=port,
                       from_node=fnode, from_port=fport) == report["nodes"][nid]["packets_in"]


def test_counters_stay_monotonic_across_a_container_restart():
    m = _manager()
    _feed(m, 5, pid=100)
    before = _scrape(m)
    _feed(m, 1, pid=200)   # every container restarted: its nodes count from zero again
    after = _scrape(m)
    for name, f in before.items():
        if f.type not in ("counter", "histogram"):
            continue
        prev = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in f.samples}
        for s in after[name].samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            if key in prev and not s.name.endswith("_created"):
                assert s.value >= prev[key], (key, prev[key], s.value)
    # the new incarnation's counts come on top of the old one's (5x + 1x)
    assert _sample(after, "schnitzel_node_packets_in", "schnitzel_node_packets_in_total", node="map") == \
        _sample(before, "schnitzel_node_packets_in", "schnitzel_node_packets_in_total", node="map") / 5 * 6


def test_queue_and_sink_series_from_their_counters():
    m = _manager()
    _feed(m, 1, pid=100)
    m.tracks["rule"].last["counters"] = {"depth": "7", "oldest_age_ms": "1500", "dead": "2", "bytes": "4096",
                                        "leased": "1", "dead_lettered": "2"}
    m.tracks["snk"].last["counters"] = {"delivered": "40", "retries": "3", "rejected": "1", "breaker_open": "1",
                                       "breaker_state": "2"}
    fams = _scrape(m)
    assert _sample(fams, "schnitzel_queue_depth_rows", "schnitzel_queue_depth_rows", node="rule") == 7
    assert _sample(fams, "schnitzel_queue_oldest_age_seconds", "schnitzel_queue_oldest_age_seconds",
                   node="rule") == 1.5
    assert _sample(fams, "schnitzel_queue_bytes", "schnitzel_queue_bytes", node="rule") == 4096
    assert _sample(fams, "schnitzel_sink_attempts", "schnitzel_sink_attempts_total", sink="snk",
                   result="delivered") == 40
    assert _sample(fams, "schnitzel_sink_breaker_state", "schnitzel_sink_breaker_state", sink="snk",
                   state="open") == 1


def test_served_over_http_on_loopback():
    m = _manager()
    _feed(m, 2, pid=100)
    bound = m.serve_metrics(0)   # any free port
    try:
        assert bound
        body = urllib.request.urlopen(f"http://127.0.0.1:{bound}/metrics", timeout=5).read().decode()
        names = {f.name for f in text_string_to_metric_families(body)}
        assert "schnitzel_node_packets_in" in names
    finally:
        m.close_metrics()


def test_scrape_time_at_50_nodes():
    """A measurement, not an assertion: what one scrape costs at 50 nodes (docs/observability.md)."""
    text = ["schnitzel: 1", "name: big", "containers:"] + [f"  - {{id: c{i}}}" for i in range(5)] + ["nodes:"]
    text += ["  - {id: n0, plugin: t_src, container: c0}"]
    text += [f"  - {{id: n{i}, plugin: t_map, container: c{i % 5}}}" for i in range(1, 50)]
    text += ["edges:"] + [f"  - {{from: n{i - 1}.out, to: n{i}.in}}" for i in range(1, 50)]
    plan = compile_graph(load_graph("\n".join(text) + "\n", file="big.yaml"), Registry.from_classes(ALL))
    m = LifecycleManager.__new__(LifecycleManager)
    m._init_state(plan, log=lambda _s: None)
    for t in m.tracks.values():
        t.state = "active"
        t.on_heartbeat({**_hb(100, 100), "latency_bounds_s": list(range(1, 15)), "latency_buckets": [1] * 15},
                       time.monotonic())
    reg = CollectorRegistry(auto_describe=False)
    reg.register(metrics._Collector(m.metrics_view))
    t0 = time.perf_counter()
    n = 20
    for _ in range(n):
        body = generate_latest(reg)
    ms = (time.perf_counter() - t0) / n * 1e3
    assert b'schnitzel_node_packets_in_total{graph="big",node="n49"} 100.0' in body
    print(f"\nscrape at 50 nodes: {ms:.2f} ms ({len(body)} bytes)")


def test_docs_list_every_metric_with_its_type_and_labels():
    """docs/observability.md is the contract: one table row per family, with its type and labels."""
    import pathlib
    import re
    doc = pathlib.Path(__file__).resolve().parents[3] / "docs" / "observability.md"
    rows = {m.group(1): (m.group(2), m.group(3)) for m in
            re.finditer(r"^\| `(schnitzel_[a-z_]+)` \| (\w+) \| ([a-z_, ]+) \|", doc.read_text(), re.M)}
    m = _manager()
    _feed(m, 1, pid=100)
    m.tracks["rule"].last["counters"] = {"depth": "1", "oldest_age_ms": "1", "dead": "0", "bytes": "1", "leased": "0"}
    m.tracks["snk"].last["counters"] = {"delivered": "1", "breaker_state": "0"}
    m.take_audit('{"controller": "c", "knob": "snk.rate", "old": 1, "new": 2, "outcome": "pending"}')
    fams = metrics.families(m.metrics_view())
    produced = {}
    for f in fams:
        name = f.name + ("_total" if f.type == "counter" else "")
        labels = sorted({k for s in f.samples for k in s.labels if k != "le"})
        produced[name] = (f.type, labels)
    assert set(produced) == set(rows), (set(produced) ^ set(rows))
    for name, (typ, labels) in produced.items():
        dtyp, dlabels = rows[name]
        assert dtyp == typ, name
        if labels:
            assert sorted(x.strip() for x in dlabels.split(",")) == labels, (name, labels, dlabels)


def test_drops_by_cause_sum_to_the_nodes_drops_across_a_restart():
    m = _manager()
    nid = PLAN.nodes[0].id
    t = m.tracks[nid]
    t.state = "active"
    now = time.monotonic()
    t.on_heartbeat(_hb(10, 10, pid=100, drops=5, counters={"drops_by_cause.overflow": 3,
                                                            "drops_by_cause.inactive": 2}), now)
    t.on_heartbeat(_hb(2, 2, pid=101, drops=1, counters={"drops_by_cause.overflow": 1}), now + 1)  # restarted
    fams = _scrape(m)
    assert fams["schnitzel_node_drops_by_cause"].type == "counter"
    over = _sample(fams, "schnitzel_node_drops_by_cause", "schnitzel_node_drops_by_cause_total", node=nid,
                   cause="overflow")
    inactive = _sample(fams, "schnitzel_node_drops_by_cause", "schnitzel_node_drops_by_cause_total", node=nid,
                       cause="inactive")
    assert (over, inactive) == (4, 2)
    assert over + inactive == _sample(fams, "schnitzel_node_drops", "schnitzel_node_drops_total", node=nid) == 6


def test_controller_decisions_from_the_audit_become_series_and_events():
    import json

    m = _manager()
    rec = {"id": 1, "t": 1.0, "controller": "fps", "knob": "cam.rate_hz", "old": 20.0, "new": 10.0,
           "rule": "aimd:decrease", "metrics": {"latency_p95_ms": 300.0}, "pressure": 2.0, "outcome": "pending"}
    m.take_audit(json.dumps(rec))
    m.take_audit(json.dumps({**rec, "id": 2, "outcome": "kept", "ref": 1}))
    m.take_audit(json.dumps({**rec, "id": 3, "old": 10.0, "new": 12.0, "rule": "aimd:increase"}))
    m.take_audit("not json")   # ignored
    fams = _scrape(m)
    assert fams["schnitzel_controller_decisions"].type == "counter"
    dec = lambda o: _sample(fams, "schnitzel_controller_decisions", "schnitzel_controller_decisions_total",  # noqa: E731
                            controller="fps", knob="cam.rate_hz", outcome=o)
    assert (dec("changed"), dec("kept")) == (2, 1)
    assert _sample(fams, "schnitzel_controller_knob_value", "schnitzel_controller_knob_value",
                   controller="fps", knob="cam.rate_hz") == 12.0
    events = [e["event"] for e in m.events]
    assert "controller fps: cam.rate_hz 20 -> 10 (aimd:decrease)" in events and len(events) == 2
    m.take_audit(json.dumps({**rec, "id": 4, "knob": "*", "old": None, "new": None, "rule": "override:suspend",
                             "outcome": "override"}))
    assert _sample(_scrape(m), "schnitzel_controller_decisions", "schnitzel_controller_decisions_total",
                   controller="fps", knob="*", outcome="override") == 1
    assert m.events[-1]["event"] == "controller fps: * (override:suspend)"


def test_enum_knob_and_mode_records_become_events_and_numeric_knobs_gauges():
    import json

    m = _manager()
    base = {"controller": "q", "t": 1.0, "metrics": {}, "pressure": 2.0, "outcome": "pending"}
    m.take_audit(json.dumps({**base, "id": 1, "knob": "det.model", "old": "det_s.onnx", "new": "det_n.onnx",
                             "rule": "aimd:decrease"}))
    m.take_audit(json.dumps({**base, "id": 2, "knob": "mode", "old": None, "new": "low_power", "rule": "mode:enter",
                             "changes": {"cam.rate_hz": [20.0, 5.0], "det.model": ["det_n.onnx", "det_t.onnx"]}}))
    fams = _scrape(m)
    dec = lambda k: _sample(fams, "schnitzel_controller_decisions", "schnitzel_controller_decisions_total",  # noqa: E731
                            controller="q", knob=k, outcome="changed")
    assert (dec("det.model"), dec("mode")) == (1, 1)
    assert _sample(fams, "schnitzel_controller_knob_value", "schnitzel_controller_knob_value",
                   controller="q", knob="cam.rate_hz") == 5.0
    events = [e["event"] for e in m.events]
    assert events == ["controller q: det.model det_s.onnx -> det_n.onnx (aimd:decrease)",
                      "controller q: mode none -> low_power (cam.rate_hz 20 -> 5, det.model det_n.onnx -> det_t.onnx) "
                      "(mode:enter)"]
