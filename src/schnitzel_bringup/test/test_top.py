"""`schnitzel top`'s view from two consecutive GraphStatus messages (pure: no ROS)."""
from schnitzel_bringup.cmd_top import rows, table


def _st(stamp, pin, depth=None, state="active"):
    counters = {"depth": str(depth)} if depth is not None else {}
    return {"graph": "g", "status": "ok", "nodes_active": 1, "nodes_total": 1, "stamp": stamp,
            "containers": ["a:1:up"],
            "nodes": [{"node": "q", "plugin": "durable_queue", "container": "a", "state": state,
                       "packets_in": pin, "packets_out": pin, "drops": 2, "errors": 0, "p99_ms": 1.25,
                       "age_s": 0.1, "counters": counters}]}


def test_rates_from_two_statuses_and_queue_depth():
    v = rows(_st(11.0, 150, depth=7), _st(10.0, 100))
    [n] = v["nodes"]
    assert n["in_per_s"] == 50.0 and n["out_per_s"] == 50.0 and n["queue_depth"] == 7
    assert n["p99_ms"] == 1.25 and n["drops"] == 2


def test_one_status_has_no_rates_yet_and_renders():
    v = rows(_st(10.0, 100, state="error"))
    assert v["nodes"][0]["in_per_s"] is None and v["nodes"][0]["queue_depth"] is None
    assert table(v).row_count == 1


def test_no_running_graph_and_bad_usage_are_one_clear_line():
    import subprocess
    import sys
    cli = [sys.executable, "-m", "schnitzel_bringup.cli", "top"]
    r = subprocess.run(cli + ["nosuchgraph_top", "--once", "--wait", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "no status from graph 'nosuchgraph_top'" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(cli + ["g", "--format", "xml"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--format must be table or json" in r.stderr
