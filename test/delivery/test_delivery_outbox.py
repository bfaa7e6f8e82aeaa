"""The outbox in front of a durable queue (issue 20, defect 0), through `schnitzel run`:
synthetic_source -> event_builder in container `a`, durable_queue in `q`, jsonl_sink in `s`.

The queue's container is SIGKILLed while the event builder emits; the runner respawns it.
Every event the builder emitted reaches the sink (unique keys == packets the builder sent):
the builder keeps what it sent in its outbox until the queue acknowledges the commit, and
re-sends the rest once the queue is back (the key absorbs copies the queue had committed).
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
from _faults import graph_pids, stop_graph, wait_until  # noqa: E402
from schnitzel_core.testing import jsonl_rows  # noqa: E402

GRAPH = """\
schnitzel: 1
name: {name}
containers:
  - {{id: a}}
  - {{id: q, restart: on-failure, restart_backoff_s: 0.5, restart_limit: 3}}
  - {{id: s}}
nodes:
  - id: src
    plugin: synthetic_source
    container: a
    params: {{mode: counter, kind: event, count: {count}, rate_hz: {rate}, epoch: {epoch}}}
  - id: eb
    plugin: event_builder
    container: a
  - id: q
    plugin: durable_queue
    container: q
    params: {{path: {db}}}
  - id: out
    plugin: jsonl_sink
    container: s
    params: {{path: {out}}}
edges:
  - {{from: src.out, to: eb.in}}
  - {{from: eb.out, to: q.in{edge}}}
  - {{from: q.out, to: out.in}}
"""


def keys(path: Path):
    return {r["idempotency_key"] for r in jsonl_rows(path) if "idempotency_key" in r}


def status(run_dir: Path):
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def start(tmp_path, env, name, tag, **fmt):
    graph = tmp_path / f"{tag}.yaml"
    graph.write_text(GRAPH.format(name=name, **fmt))
    log = tmp_path / f"{tag}.log"
    runner = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(graph), "--run-dir",
                               str(tmp_path / tag), "--quiet", "--report", str(tmp_path / f"{tag}.json")],
                              stdout=open(log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              start_new_session=True,
                              env={**env, "SCHNITZEL_STATE_DIR": str(tmp_path / "state")})   # durable outboxes
    return runner, (lambda: log.read_text(errors="replace")), tmp_path / tag


def finish(runner, tmp_path, tag):
    runner.send_signal(signal.SIGINT)
    runner.wait(timeout=60)
    return json.loads((tmp_path / f"{tag}.json").read_text())


@pytest.mark.slow
def test_queue_container_sigkill_under_load_loses_no_emitted_event(tmp_path, ros_env):
    name = f"obx_{uuid.uuid4().hex[:8]}"
    count, rate = 1500, 150.0
    db, out = tmp_path / "q.db", tmp_path / "out.jsonl"
    runner, run_log, run_dir = start(tmp_path, ros_env, name, "run", count=count, rate=rate, epoch=0, db=db, out=out,
                                     edge="")
    try:
        assert wait_until(lambda: len(keys(out)) >= 150, 90), run_log()
        [victim] = graph_pids(name, "q")
        os.kill(victim, signal.SIGKILL)   # the queue's container, while the builder emits
        assert wait_until(lambda: [p for p in graph_pids(name, "q") if p != victim], 30), run_log()
        assert wait_until(lambda: status(run_dir).get("nodes", {}).get("q", {}).get("state") == "active", 60)
        got = lambda: len(keys(out))  # noqa: E731
        wait_until(lambda: got() == count, 60)
        report = finish(runner, tmp_path, "run")
        eb = report["nodes"]["eb"]
        print(f"\nqueue SIGKILL: builder emitted {eb['packets_out']}, sink holds {got()} unique, "
              f"builder counters {eb.get('counters')}, queue counters {report['nodes']['q'].get('counters')}")
        assert report["containers"]["q"]["restarts"] == 1
        assert eb["packets_out"] == count
        assert got() == count, f"{count - got()} of {count} emitted events never reached the sink"
        assert int(eb.get("counters", {}).get("outbox_dropped", 0)) == 0
        assert "Traceback" not in run_log()
    finally:
        stop_graph(runner, name)


@pytest.mark.slow
def test_durable_outbox_carries_unacknowledged_events_across_a_restart_of_the_whole_run(tmp_path, ros_env):
    """The queue's container is SIGKILLed and the whole run is stopped while it is down: what
    the builder emitted meanwhile is in its durable outbox (`outbox: durable` on the edge) and
    the next run of the graph re-sends it first."""
    name = f"obr_{uuid.uuid4().hex[:8]}"
    db, out = tmp_path / "q.db", tmp_path / "out.jsonl"
    fmt = dict(db=db, out=out, edge=", outbox: durable")
    runner, run_log, _ = start(tmp_path, ros_env, name, "run1", count=0, rate=150.0, epoch=0, **fmt)
    try:
        assert wait_until(lambda: len(keys(out)) >= 150, 90), run_log()
        [victim] = graph_pids(name, "q")
        os.kill(victim, signal.SIGKILL)
        first = finish(runner, tmp_path, "run1")   # the whole run stops while the queue is down
    finally:
        stop_graph(runner, name)
    emitted1 = first["nodes"]["eb"]["packets_out"]
    held = len(keys(out))
    assert emitted1 > held   # some of run 1's events had not reached the sink when it stopped
    runner, run_log, _ = start(tmp_path, ros_env, name, "run2", count=100, rate=150.0, epoch=1, **fmt)
    try:
        wait_until(lambda: len(keys(out)) == emitted1 + 100, 90)
        second = finish(runner, tmp_path, "run2")
        got = len(keys(out))
        print(f"\nwhole-run restart: run 1 emitted {emitted1} ({held} at the sink when it stopped), run 2 "
              f"emitted {second['nodes']['eb']['packets_out']}; sink holds {got} unique; "
              f"run 2 builder counters {second['nodes']['eb'].get('counters')}")
        assert got == emitted1 + 100, f"{emitted1 + 100 - got} emitted events never reached the sink"
        assert "Traceback" not in run_log()
    finally:
        stop_graph(runner, name)


@pytest.mark.slow
def test_a_full_outbox_drops_the_oldest_and_reports_every_drop(tmp_path, ros_env):
    """A small outbox (outbox_max: 50) while the queue's container is down: what it cannot keep
    is counted in the builder's outbox_dropped (status and report); every emitted event either
    reached the sink or was counted there."""
    name = f"obf_{uuid.uuid4().hex[:8]}"
    count = 1500
    db, out = tmp_path / "q.db", tmp_path / "out.jsonl"
    runner, run_log, run_dir = start(tmp_path, ros_env, name, "run", count=count, rate=150.0, epoch=0, db=db,
                                     out=out, edge=", outbox_max: 50")
    try:
        assert wait_until(lambda: len(keys(out)) >= 150, 90), run_log()
        [victim] = graph_pids(name, "q")
        os.kill(victim, signal.SIGKILL)
        eb = lambda: status(run_dir).get("nodes", {}).get("eb", {})  # noqa: E731
        assert wait_until(lambda: int(eb().get("counters", {}).get("outbox_dropped", 0)) > 0, 30), eb()
        assert wait_until(lambda: status(run_dir).get("nodes", {}).get("q", {}).get("state") == "active", 60)
        assert wait_until(lambda: eb().get("packets_out") == count
                          and int(eb().get("counters", {}).get("outbox_pending", -1)) == 0, 60), eb()
        report = finish(runner, tmp_path, "run")
        c = report["nodes"]["eb"].get("counters", {})
        dropped, got = int(c.get("outbox_dropped", 0)), len(keys(out))
        print(f"\nfull outbox: emitted {count}, at the sink {got}, counted outbox_dropped {dropped}")
        assert 0 < dropped < count
        assert got + dropped >= count   # nothing lost without being counted
    finally:
        stop_graph(runner, name)
