"""Runtime robustness: when a container counts as unresponsive, restart backoff reset, and a
durable queue whose sinks cannot deliver degrading the graph and the run report (no DDS)."""
import time
import types

from schnitzel_core.graph_loader import load_graph
from schnitzel_core.registry import Registry

from schnitzel_bringup import manager as mgr_mod
from schnitzel_bringup import runner as runner_mod
from schnitzel_bringup.compiler import compile_graph
from schnitzel_bringup.delivery_health import delivery_problems
from schnitzel_bringup.manager import LifecycleManager, MState, graph_health
from schnitzel_bringup.report import build_report

from _plugins import ALL
from test_compiler import FOUR

REG = Registry.from_classes(ALL)
PLAN = compile_graph(load_graph(FOUR, file="g.yaml"), REG)

EGRESS = """
schnitzel: 1
name: egress
nodes:
  - {id: src, plugin: t_src}
  - {id: q, plugin: t_queue}
  - {id: http, plugin: t_sink, params: {path: a}}
edges:
  - {from: src.out, to: q.in}
  - {from: q.out, to: http.in}
"""
EGRESS_PLAN = compile_graph(load_graph(EGRESS, file="e.yaml"), REG)


def _manager(plan):
    """A running manager's bookkeeping, without rclpy: every node active and fresh, containers up."""
    m = LifecycleManager.__new__(LifecycleManager)
    m._init_state(plan, log=lambda _s: None)
    m.state, m.started_at, m.ever_active = MState.ACTIVE, 0.0, True
    now = time.monotonic()
    for t in m.tracks.values():
        t.loaded, t.state, t.last_rx = True, "active", now
    m.container_state = {c.id: "up" for c in plan.containers}
    m._container_prefix = {c.id: f"/g/_containers/{c.id}" for c in plan.containers}
    return m


# ---------------------------------------------------------------- 1. unresponsive containers
def test_one_slow_list_nodes_answer_does_not_make_a_container_down(monkeypatch):
    m = _manager(PLAN)
    answers = {c.id: {nid: "active" for nid in c.nodes} for c in PLAN.containers}
    slow = {"b"}
    monkeypatch.setattr(m, "_list", lambda cid, timeout=2.0: None if cid in slow else answers[cid])
    m.watch_once()                                  # one timeout on a loaded machine
    assert m.container_state["b"] == "up" and m.tracks["map"].state == "active"
    assert graph_health(m.tracks, m.state, time.monotonic()) == "ok"
    slow.clear()
    m.watch_once()                                  # it answers again: the count starts over
    assert m._misses == {}
    slow.add("b")
    for _ in range(mgr_mod.UNRESPONSIVE_MISSES - 1):
        m.watch_once()
    assert m.container_state["b"] == "up"           # not enough misses yet
    m._misses["b"][0] -= mgr_mod.UNRESPONSIVE_S     # ... spanning UNRESPONSIVE_S by now
    m.watch_once()
    assert m.container_state["b"] == "down" and m.tracks["map"].state == "unknown"
    assert graph_health(m.tracks, m.state, time.monotonic()) == "degraded"
    assert any("stopped answering" in e["event"] for e in m.events)


def test_a_late_answer_from_a_container_whose_heartbeats_arrive_is_not_a_miss(monkeypatch):
    m = _manager(PLAN)

    def slow_list(cid, timeout=2.0):
        if cid == "b":        # a call sent while it was frozen times out, but it runs again:
            m.tracks["map"].last_rx = time.monotonic() + 0.001   # its heartbeat came meanwhile
            return None
        return {nid: "active" for nid in PLAN.container(cid).nodes}
    monkeypatch.setattr(m, "_list", slow_list)
    m._misses["b"] = [time.monotonic() - 10.0, time.monotonic() - 5.0]   # frozen before
    m.watch_once()
    assert m.container_state["b"] == "up" and m.tracks["map"].state == "active" and "b" not in m._misses


def test_misses_must_also_span_the_window():
    now = 100.0
    assert not LifecycleManager._unresponsive([now - 0.5, now - 0.3, now - 0.1], now)   # a burst
    assert not LifecycleManager._unresponsive([now - 5.0, now - 1.0], now)               # too few
    assert LifecycleManager._unresponsive([now - 3.5, now - 2.0, now - 0.5], now)


# ---------------------------------------------------------------- 2. restart backoff reset
class FakeChild:
    def __init__(self):
        self.code = None
        self.exit_codes, self.pids = [], []
        self.restarts = self.streak = 0
        self.restart_at = None
        self.gave_up = ""
        self.started_mono = 0.0
        self.log_path = "x.log"
        self.proc = types.SimpleNamespace(pid=1)

    def poll(self):
        return self.code

    def start(self):
        self.code = None
        self.started_mono = runner_mod.time.monotonic()

    def log_tail(self, n=8):
        return ""


def _crash_and_restart(r, child, now):
    child.code = -9
    r._check_containers(now)                        # schedules the restart
    delay = child.restart_at - now
    r._check_containers(child.restart_at)           # restarts it
    return delay


def test_restart_backoff_starts_over_after_the_container_ran_healthy(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(runner_mod.time, "monotonic", lambda: clock[0])
    r = runner_mod.Runner(PLAN, "p.json", "/tmp/unused", live=False, out=lambda _s: None, restart_reset_s=60.0)
    child = FakeChild()
    r.containers = {"b": child}
    backoff = PLAN.container("b").restart.backoff_s
    delays = []
    for _ in range(3):                              # crash loop: 1x, 2x, 4x
        delays.append(_crash_and_restart(r, child, clock[0]))
        clock[0] = child.started_mono + 1.0
    assert delays == [backoff, 2 * backoff, 4 * backoff]
    clock[0] += 60.0                                # healthy for a minute
    r._check_containers(clock[0])
    assert child.streak == 0
    assert _crash_and_restart(r, child, clock[0]) == backoff
    assert child.restarts == 4 and not child.gave_up   # the report still counts every restart
    # a crash a day for a month never reaches restart_limit nor a long delay
    for _ in range(30):
        clock[0] = child.started_mono + 86400.0
        assert _crash_and_restart(r, child, clock[0]) == backoff
    assert not child.gave_up and child.restarts == 34


# ---------------------------------------------------------------- 3. delivery health
def _feed(m, nid, counters, pid=7, n=1):
    t = m.tracks[nid]
    t.on_heartbeat({"packets_in": n, "packets_out": n, "drops": 0, "errors": 0, "pid": pid, "last_error": "",
                    "counters": {k: str(v) for k, v in counters.items()}}, time.monotonic())


def test_dead_lettered_rows_degrade_the_graph_and_the_report_names_the_sink():
    m = _manager(EGRESS_PLAN)
    _feed(m, "q", {"depth": 0, "oldest_age_ms": 0, "dead": 0})
    snap = m.snapshot()
    assert snap["status"] == "ok" and snap["delivery_problems"] == []
    _feed(m, "q", {"depth": 0, "oldest_age_ms": 0, "dead": 12, "dead_lettered": 12}, n=2)
    _feed(m, "http", {"rejected": 12, "delivered": 3})
    snap = m.snapshot()
    assert snap["status"] == "degraded"
    assert snap["delivery_problems"] == ["sink http: 12 rows dead-lettered (queue q)"]
    assert any(e["event"] == "delivery: sink http: 12 rows dead-lettered (queue q)" for e in m.events)
    # the container of q restarts: its counters start from zero, the run's figure adds up
    _feed(m, "q", {"depth": 0, "oldest_age_ms": 0, "dead": 15, "dead_lettered": 3}, pid=8)
    snap = m.snapshot()
    assert snap["delivery_problems"] == ["sink http: 15 rows dead-lettered (queue q)"]
    m.state = MState.FINISHED
    snap = m.snapshot()
    assert snap["status"] == "degraded"
    containers = {c.id: {"restarts": 0, "exit_codes": [], "gave_up": ""} for c in EGRESS_PLAN.containers}
    rep = build_report(EGRESS_PLAN, snap, started_at=0.0, ended_at=1.0, stopped_by="duration",
                       containers=containers)
    assert rep["status"] == "degraded"
    assert "sink http: 15 rows dead-lettered (queue q)" in rep["problems"], rep["problems"]


def test_rows_waiting_past_the_threshold_degrade_while_they_wait():
    m = _manager(EGRESS_PLAN)
    _feed(m, "http", {"retries": 40, "breaker_open": 2})
    _feed(m, "q", {"depth": 120, "oldest_age_ms": 2000})
    assert m.snapshot()["status"] == "ok"           # a short wait is normal
    _feed(m, "q", {"depth": 120, "oldest_age_ms": 45000}, n=2)
    snap = m.snapshot()
    assert snap["status"] == "degraded"
    assert snap["delivery_problems"] == [
        "sink http: 120 rows waiting in queue q, the oldest for 45 s (40 retries, breaker opened 2 times)"]
    _feed(m, "q", {"depth": 0, "oldest_age_ms": 0}, n=3)   # the backend is back: drained
    snap = m.snapshot()
    assert snap["status"] == "ok" and snap["delivery_problems"] == []
    # ... but the run report still says what happened
    assert snap["delivery_problems_seen"] and "120 rows waiting" in snap["delivery_problems_seen"][0]
    rep = build_report(EGRESS_PLAN, dict(snap, state="finished"), started_at=0.0, ended_at=1.0,
                       stopped_by="duration", containers={})
    assert rep["status"] == "degraded" and any("120 rows waiting" in p for p in rep["problems"])


def test_delivery_problems_with_several_sinks_name_the_queue():
    text = EGRESS.replace("  - {from: q.out, to: http.in}\n", "  - {from: q.out, to: r.in}\n"
                          "  - {from: r.a, to: http.in}\n  - {from: r.b, to: disk.in}\n") \
        .replace("  - {id: http,", "  - {id: r, plugin: t_router}\n  - {id: disk, plugin: t_sink, params: {path: b}}\n"
                 "  - {id: http,")
    plan = compile_graph(load_graph(text, file="e.yaml"), REG)
    probs = delivery_problems(plan, {"q": {"dead_lettered": "4", "depth": "3", "oldest_age_ms": "31000"},
                                     "http": {"rejected": "4", "retries": "9"}, "disk": {}})
    assert probs["q/dead"] == "queue q: 4 rows dead-lettered (rejected by sinks: http 4)"
    assert probs["q/waiting"] == "queue q: 3 rows waiting, the oldest for 31 s (sink http: 9 retries, 4 rejected)"


def test_the_stall_threshold_is_a_graph_setting_with_a_default_of_a_few_seconds():
    """A backend outage of a few seconds shows: the threshold is runtime.delivery_stall_s (5 s)."""
    assert EGRESS_PLAN.runtime["delivery_stall_s"] == 5.0
    m = _manager(EGRESS_PLAN)
    _feed(m, "q", {"depth": 7, "oldest_age_ms": 4000})
    assert m.snapshot()["status"] == "ok"
    _feed(m, "q", {"depth": 7, "oldest_age_ms": 6000}, n=2)
    snap = m.snapshot()
    assert snap["status"] == "degraded"
    assert snap["problems"] == ["sink http: 7 rows waiting in queue q, the oldest for 6 s"]
    slow = compile_graph(load_graph(EGRESS + "runtime: {delivery_stall_s: 20}\n", file="e.yaml"), REG)
    m = _manager(slow)
    _feed(m, "q", {"depth": 7, "oldest_age_ms": 6000})
    assert m.snapshot()["status"] == "ok"
    _feed(m, "q", {"depth": 7, "oldest_age_ms": 21000}, n=2)
    assert m.snapshot()["status"] == "degraded"


# ---------------------------------------------------------------- 4. a source that never sends
def test_a_source_silent_past_its_grace_degrades_the_graph_with_the_reason():
    from schnitzel_bringup.manager import graph_diagnostics
    m = _manager(EGRESS_PLAN)
    now = time.monotonic()
    for t in m.tracks.values():
        t.active_since = now - 3.0
    _feed(m, "src", {}, n=0)
    assert m.snapshot()["status"] == "ok"                   # within the 5 s grace: still connecting
    m.tracks["src"].active_since = now - 6.0
    snap = m.snapshot()
    why = "source src has sent nothing since its activation (grace 5 s)"
    assert snap["status"] == "degraded" and snap["problems"] == [why]
    assert why in runner_mod.status_line("egress", snap, 10.0, 0.0, 0)
    diag = graph_diagnostics(snap).status[0]
    assert diag.name == "egress" and diag.level == diag.WARN and diag.message == f"degraded: {why}"
    assert any(e["event"] == f"health: {why}" for e in m.events)
    _feed(m, "src", {}, n=4)                                # it produces: ok again
    snap = m.snapshot()
    assert snap["status"] == "ok" and snap["problems"] == []
    assert snap["source_problems_seen"] == [why]            # ... and the report still says what happened
    rep = build_report(EGRESS_PLAN, dict(snap, state="finished", degraded_episodes=1), started_at=0.0,
                       ended_at=1.0, stopped_by="duration", containers={})
    assert rep["status"] == "degraded" and why in rep["problems"]


def test_the_grace_period_is_a_graph_setting_with_a_per_node_override():
    g = EGRESS + "runtime: {source_grace_s: 2, source_grace: {src: 0}}\n"
    plan = compile_graph(load_graph(g, file="e.yaml"), REG)
    assert plan.source_grace_s("src") == 0.0 and plan.source_grace_s("other") == 2.0
    m = _manager(plan)
    m.tracks["src"].active_since = time.monotonic() - 60.0
    _feed(m, "src", {}, n=0)
    assert m.snapshot()["status"] == "ok"                   # 0: this source may stay silent
    plan = compile_graph(load_graph(EGRESS + "runtime: {source_grace_s: 30}\n", file="e.yaml"), REG)
    m = _manager(plan)
    m.tracks["src"].active_since = time.monotonic() - 20.0
    _feed(m, "src", {}, n=0)
    assert m.snapshot()["status"] == "ok"
    m.tracks["src"].active_since = time.monotonic() - 31.0
    assert "grace 30 s" in m.snapshot()["problems"][0]
