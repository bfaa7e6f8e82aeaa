"""Graph-level delivery faults through `schnitzel run` (containers, lifecycle manager, DDS):
synthetic_source -> durable_queue -> http_sink, each in its own container, acks over
/<graph>/_delivery/ack. The backend process is SIGKILLed while the source is producing,
then the queue's container is SIGKILLed with the undelivered rows pending; the manager
restarts it, the backend comes back, and every packet the source sent reaches the backend
exactly once (unique keys == packets produced, queue depth 0).
"""
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from _faults import Backend, graph_pids, queue_stats, stop_graph, wait_until  # noqa: E402

from schnitzel_core.packet import derive_key  # noqa: E402

GRAPH = """\
schnitzel: 1
name: {name}
containers:
  - {{id: a, restart: on-failure, restart_backoff_s: 0.5, restart_limit: 3}}
  - {{id: q, restart: on-failure, restart_backoff_s: 0.5, restart_limit: 3}}
  - {{id: s, restart: on-failure, restart_backoff_s: 0.5, restart_limit: 3}}
nodes:
  - id: src
    plugin: synthetic_source
    container: a
    params: {{mode: counter, count: {count}, rate_hz: {rate}}}
  - id: q
    plugin: durable_queue
    container: q
    params: {{path: {db}}}
  - id: http
    plugin: http_sink
    container: s
    params: {{url: "{url}/events", probe_interval_s: 1.0}}
edges:
  - {{from: src.out, to: q.in}}
  - {{from: q.out, to: http.in}}
"""


def status(run_dir: Path):
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.slow
def test_graph_backend_outage_and_queue_container_sigkill_lose_nothing(tmp_path, ros_env):
    name = f"dlv_{uuid.uuid4().hex[:8]}"
    be = Backend(tmp_path)
    be.start()
    count, rate = 200, 20.0
    db = tmp_path / "queue.db"
    graph = tmp_path / "graph.yaml"
    graph.write_text(GRAPH.format(name=name, count=count, rate=rate, db=db, url=be.url))
    run_dir = tmp_path / "run"
    log = open(tmp_path / "run.log", "wb")
    runner = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(graph), "--run-dir",
                               str(run_dir), "--quiet", "--report", str(tmp_path / "report.json")],
                              env=ros_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True)
    run_log = lambda: (tmp_path / "run.log").read_text(errors="replace")  # noqa: E731
    try:
        assert wait_until(lambda: be.stats()["unique_keys"] >= 20, 90), run_log()
        be.kill()  # backend gone while the source keeps producing
        assert wait_until(lambda: queue_stats(db)["counters"]["accepted"] == count, 60, step=0.5), run_log()
        pending = queue_stats(db)["depth"]
        assert pending >= count // 2
        [victim] = graph_pids(name, "q")
        os.kill(victim, signal.SIGKILL)  # the queue's container, rows pending
        assert wait_until(lambda: [p for p in graph_pids(name, "q") if p != victim], 15), run_log()
        assert wait_until(lambda: status(run_dir).get("nodes", {}).get("q", {}).get("state") == "active", 60), \
            run_log()
        be.start()
        assert wait_until(lambda: be.stats()["unique_keys"] == count, 60), (be.stats(), run_log())
        expected = {derive_key("src", 0, seq) for seq in range(1, count + 1)}
        assert set(be.keys()) == expected
        assert wait_until(lambda: queue_stats(db)["depth"] == 0, 30)
        runner.send_signal(signal.SIGINT)
        runner.wait(timeout=60)
        assert "Traceback" not in run_log()
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["nodes"]["src"]["packets_out"] == count
        assert report["containers"]["q"]["restarts"] == 1
        print({k: v.get("counters") for k, v in report["nodes"].items()})
        print(f"\ngraph: {count} produced, {pending} pending at the queue kill, "
              f"{be.stats()['unique_keys']} unique at the backend, duplicates {be.stats()['duplicates']}")
    finally:
        stop_graph(runner, name)
        be.kill()


@pytest.mark.skipif(not __import__("shutil").which("prlimit"), reason="needs util-linux prlimit")
def test_graph_disk_full_reported_in_status_and_accepting_resumes(tmp_path, ros_env):
    """File writes of the queue's running container fail (RLIMIT_FSIZE lowered, what a full
    disk looks like to SQLite): the node stays up, its status carries the error and a counted
    refusal reason; once writes work again it accepts again. Nothing accepted is lost."""
    name = f"dlvfull_{uuid.uuid4().hex[:8]}"
    be = Backend(tmp_path)
    be.start()
    db = tmp_path / "queue.db"
    graph = tmp_path / "graph.yaml"
    graph.write_text(GRAPH.format(name=name, count=0, rate=20.0, db=db, url=be.url)
                     .replace("params: {path:", "params: {probe_s: 1.0, path:"))
    run_dir = tmp_path / "run"
    log = open(tmp_path / "run.log", "wb")
    runner = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(graph), "--run-dir",
                               str(run_dir), "--quiet"], env=ros_env, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    run_log = lambda: (tmp_path / "run.log").read_text(errors="replace")  # noqa: E731
    q = lambda: status(run_dir).get("nodes", {}).get("q", {})  # noqa: E731
    try:
        assert wait_until(lambda: be.stats()["unique_keys"] >= 20, 90), run_log()
        [pid] = graph_pids(name, "q")
        subprocess.run(["prlimit", "--pid", str(pid), "--fsize=1:"], check=True)

        def refused():
            c = q().get("counters", {})
            return sum(int(v) for k, v in c.items() if k.startswith("refused_"))

        assert wait_until(lambda: refused() >= 10 and "refusing new packets" in q().get("last_error", ""), 30), \
            (q(), run_log())
        assert q()["state"] == "active" and graph_pids(name, "q") == [pid]  # reported, not crashed
        subprocess.run(["prlimit", "--pid", str(pid), "--fsize=unlimited:"], check=True)
        accepted = int(q()["counters"]["accepted"])
        assert wait_until(lambda: int(q().get("counters", {}).get("accepted", 0)) >= accepted + 10, 30), q()
        runner.send_signal(signal.SIGINT)
        runner.wait(timeout=60)
        st = queue_stats(db)
        # every accepted packet is either stored once at the backend or still queued (the
        # source is unbounded: the last ones may wait for the next run); refused ones never entered
        # (a row delivered just before the stop whose ack was still in flight counts in both)
        unique = be.stats()["unique_keys"]
        assert unique <= st["counters"]["accepted"] <= unique + st["depth"], (st, be.stats())
    finally:
        stop_graph(runner, name)
        be.kill()
