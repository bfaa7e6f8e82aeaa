"""A short backend outage shows as `degraded` while it lasts and `ok` after, through `schnitzel run`
(containers, lifecycle manager, DDS): synthetic_source -> durable_queue -> http_sink against the
reference backend, which the test stops (SIGKILL) and starts again a few seconds later. The
threshold is the graph setting `runtime: delivery_stall_s` (default 5 s; it was a hard-coded
30 s, so an outage this short never showed). The run report's timeline shows the episode
(ok -> degraded -> ok) and its problems name the sink.
"""
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))
from _faults import Backend, stop_graph, wait_until  # noqa: E402

GRAPH = """\
schnitzel: 1
name: {name}
containers:
  - {{id: a}}
  - {{id: d}}
nodes:
  - {{id: src, plugin: synthetic_source, container: a, params: {{mode: counter, rate_hz: 20}}}}
  - {{id: q, plugin: durable_queue, container: d, params: {{path: {db}}}}}
  - {{id: http, plugin: http_sink, container: d, params: {{url: "{url}/events", probe_interval_s: 0.5}}}}
edges:
  - {{from: src.out, to: q.in}}
  - {{from: q.out, to: http.in}}
"""


def _status(run_dir: Path):
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def _episodes(timeline):
    """The graph status over the active part of the run, runs of one value collapsed."""
    out = []
    for s in timeline:
        if s.get("state") == "active" and (not out or out[-1] != s["status"]):
            out.append(s["status"])
    return out


def test_a_backend_outage_of_a_few_seconds_reads_degraded_then_ok(tmp_path, ros_env):
    name = f"dlh_{uuid.uuid4().hex[:8]}"
    be = Backend(tmp_path)
    be.start()
    graph = tmp_path / "graph.yaml"
    graph.write_text(GRAPH.format(name=name, db=tmp_path / "queue.db", url=be.url))
    run_dir = tmp_path / "run"
    report = tmp_path / "report.json"
    with open(tmp_path / "run.log", "wb") as log:
        runner = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(graph), "--run-dir",
                                   str(run_dir), "--quiet", "--report", str(report)],
                                  env=ros_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  start_new_session=True)
    run_log = lambda: (tmp_path / "run.log").read_text(errors="replace")  # noqa: E731
    try:
        assert wait_until(lambda: be.stats()["unique_keys"] >= 20, 90), run_log()
        assert _status(run_dir).get("status") == "ok", _status(run_dir)
        be.kill()                                       # the backend goes away ...
        assert wait_until(lambda: _status(run_dir).get("status") == "degraded", 20), (_status(run_dir), run_log())
        assert any("waiting in queue q" in p for p in _status(run_dir)["problems"]), _status(run_dir)
        be.start()                                      # ... and comes back a few seconds later
        assert wait_until(lambda: _status(run_dir).get("status") == "ok", 30), (_status(run_dir), run_log())
        n = be.stats()["unique_keys"]                   # delivering again: 2 s more of new rows
        assert wait_until(lambda: be.stats()["unique_keys"] >= n + 40, 30), run_log()
        assert _status(run_dir).get("status") == "ok", _status(run_dir)
        stop_graph(runner, name)
    finally:
        stop_graph(runner, name)
        be.kill()
    assert runner.returncode == 3, run_log()
    rep = json.loads(report.read_text())
    assert rep["status"] == "degraded"
    assert any(p.startswith("sink http: ") and "waiting in queue q" in p for p in rep["problems"]), rep["problems"]
    assert _episodes(rep["timeline"])[:3] == ["ok", "degraded", "ok"], rep["timeline"]
    events = [e["event"] for e in rep["events"]]
    assert "graph status ok -> degraded" in events and "graph status degraded -> ok" in events, events
