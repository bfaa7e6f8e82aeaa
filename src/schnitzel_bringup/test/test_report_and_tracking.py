"""Run report status rules and the manager's counter bookkeeping across container restarts."""
import json
import time

from schnitzel_core.graph_loader import load_graph
from schnitzel_core.registry import Registry

from schnitzel_bringup.compiler import compile_graph
from schnitzel_bringup.manager import MState, NodeTrack, graph_health
from schnitzel_bringup.report import build_report, write_report
from schnitzel_bringup.runner import status_line

from _plugins import ALL
from test_compiler import FOUR

PLAN = compile_graph(load_graph(FOUR, file="g.yaml"), Registry.from_classes(ALL))


def _hb(pin, pout, pid=100, **kw):
    d = {"packets_in": pin, "packets_out": pout, "drops": kw.get("drops", 0), "errors": kw.get("errors", 0),
         "pid": pid, "last_error": kw.get("last_error", ""), "latency_p50_ms": 1.0,
         "latency_p95_ms": 2.0, "latency_p99_ms": 3.0, "counters": {}}
    return d


def test_counters_add_up_across_a_container_restart():
    t = NodeTrack(PLAN.node("map"))
    t.on_heartbeat(_hb(10, 10, pid=100), 1.0)
    t.on_heartbeat(_hb(25, 24, pid=100, errors=1), 2.0)
    # the container was restarted: a new pid, counters from zero
    t.on_heartbeat(_hb(3, 3, pid=200), 3.0)
    assert (t.total("packets_in"), t.total("packets_out"), t.total("errors")) == (28, 27, 1)
    t.on_heartbeat(_hb(5, 5, pid=200), 4.0)
    assert t.total("packets_in") == 30


def test_graph_health():
    tracks = {n.id: NodeTrack(n) for n in PLAN.nodes}
    now = time.monotonic()
    for t in tracks.values():
        t.state = "active"
        t.on_heartbeat(_hb(1, 1), now)
    assert graph_health(tracks, MState.ACTIVE, now) == "ok"
    assert graph_health(tracks, MState.ACTIVE, now + 10) == "degraded"  # heartbeats stale
    tracks["map"].state = "unknown"
    assert graph_health(tracks, MState.ACTIVE, now) == "degraded"
    tracks["map"].state = "error"
    assert graph_health(tracks, MState.ACTIVE, now) == "error"
    assert graph_health({}, MState.ERROR, now) == "error"


def _status(**over):
    nodes = {n.id: {"state": "inactive", "packets_in": 5, "packets_out": 5, "drops": 0, "errors": 0,
                    "latency_p50_ms": 1.5, "latency_p95_ms": 2.5, "latency_p99_ms": 4.0} for n in PLAN.nodes}
    st = {"state": "finished", "ever_active": True, "nodes": nodes, "events": [{"t": 0.1, "event": "x"}]}
    st.update(over)
    return st


def _report(status, containers=None):
    containers = containers or {c.id: {"restarts": 0, "exit_codes": [], "gave_up": ""} for c in PLAN.containers}
    return build_report(PLAN, status, started_at=1000.0, ended_at=1012.5, stopped_by="duration",
                        containers=containers)


def test_report_ok(tmp_path):
    rep = _report(_status())
    assert rep["status"] == "ok" and rep["problems"] == []
    assert rep["duration_s"] == 12.5
    assert rep["nodes"]["snk"]["latency_ms"] == {"p50": 1.5, "p95": 2.5, "p99": 4.0}
    assert rep["totals"]["sink_packets_in"] == 5 and rep["totals"]["source_packets_out"] == 5
    assert rep["graph"]["name"] == "lobby" and set(rep["graph"]["nodes"]) == {"src", "map", "rule", "snk"}
    write_report(rep, str(tmp_path / "r" / "report.json"))
    assert json.loads((tmp_path / "r" / "report.json").read_text())["status"] == "ok"


def test_report_degraded_on_restart_or_errors_and_error_when_broken():
    st = _status()
    st["nodes"]["map"]["errors"] = 2
    assert _report(st)["status"] == "degraded"
    restarted = {c.id: {"restarts": 1 if c.id == "b" else 0, "gave_up": ""} for c in PLAN.containers}
    rep = _report(_status(), restarted)
    assert rep["status"] == "degraded" and rep["problems"] == ["container 'b' was restarted 1 time(s)"]
    rep = _report(_status(degraded_episodes=2))
    assert rep["status"] == "degraded" and "degraded 2 time(s)" in rep["problems"][0]
    gave_up = {c.id: {"restarts": 0, "gave_up": "restart policy is 'never'" if c.id == "c" else ""}
               for c in PLAN.containers}
    rep = _report(_status(), gave_up)
    assert rep["status"] == "error" and "'c'" in rep["problems"][0]
    rep = _report(_status(state="error", ever_active=False, message="bring-up failed: map: configure failed"))
    assert rep["status"] == "error" and "configure failed" in rep["problems"][0]
    rep = _report(None)
    assert rep["status"] == "error"


def test_status_line():
    line = status_line("lobby", {"state": "active", "nodes_active": 4, "nodes_total": 4, "status": "ok",
                                 "nodes": {"a": {"drops": 2, "errors": 1}}}, 3.0, 19.5, 1)
    assert "active 4/4" in line and "19.5 pkt/s" in line and "drops 2" in line and "restarts 1" in line
    assert "starting" in status_line("lobby", None, 0.5, 0.0, 0)
