"""A node input with `overflow: error` that overflows ends the run in error (no DDS)."""
import types

from schnitzel_core.graph_loader import load_graph
from schnitzel_core.registry import Registry

from schnitzel_bringup.compiler import compile_graph
from schnitzel_bringup.manager import MState, graph_health

from _plugins import ALL
from test_compiler import ONE
from test_runtime_health import _manager

REG = Registry.from_classes(ALL)
PLAN = compile_graph(load_graph(ONE.replace("{id: snk, plugin: t_sink,", "{id: snk, plugin: t_sink, "
                                            "inputs: {in: {overflow: error, max_queued: 5}},"),
                                file="g.yaml"), REG)


def _status(node_id, counters, state="active", last_error=""):
    kv = [types.SimpleNamespace(key=k, value=str(v)) for k, v in counters.items()]
    return types.SimpleNamespace(node_id=node_id, ros_name=node_id, packets_in=10, packets_out=0, drops=0,
                                 errors=1 if last_error else 0, last_error=last_error, latency_p50_ms=0.0,
                                 latency_p95_ms=0.0, latency_p99_ms=0.0, pid=7, state=state, counters=kv)


def test_an_overflow_error_stops_the_run_with_status_error():
    m = _manager(PLAN)
    m._take_status(m.tracks["snk"], _status("snk", {"dropped_total.in": 0}), False)
    assert not m.stop_requested.is_set() and m.fatal == ""
    why = "input 'in' overflowed: 5 inputs queued and its policy is overflow: error"
    m._take_status(m.tracks["snk"], _status("snk", {"overflow_errors": 1}, "error", why), False)
    assert m.stop_requested.is_set() and m.state == MState.ERROR
    assert "node snk" in m.fatal and why in m.fatal and why in m.message
    assert graph_health(m.tracks, m.state, 0.0) == "error"
    assert any(why in e["event"] for e in m.events)
