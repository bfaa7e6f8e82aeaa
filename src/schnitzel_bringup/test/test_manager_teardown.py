"""The lifecycle manager's own robustness (no DDS): the ordered tear-down runs even when the
watch raises, the watch survives a hot swap removing nodes under it, and the event log is
bounded."""
import signal
import time

from lifecycle_msgs.msg import Transition
from schnitzel_core.graph_loader import load_graph
from schnitzel_core.registry import Registry

from schnitzel_bringup import manager as mgr_mod
from schnitzel_bringup.compiler import compile_graph
from schnitzel_bringup.lifecycle_table import NODE_TRANSITIONS
from schnitzel_bringup.manager import LifecycleManager, MState

from _plugins import ALL
from test_compiler import ONE

REG = Registry.from_classes(ALL)
PLAN = compile_graph(load_graph(ONE, file="g.yaml"), REG)


class _NoRosManager(LifecycleManager):
    """The manager's real bring-up/tear-down logic with the ROS calls recorded, not made."""

    def __init__(self, plan, status_file=None, loaded_by_launch=False, log=print):
        self._init_state(plan, status_file, loaded_by_launch, lambda _s: None)
        self.calls = []

    def start(self):
        with self.lock:
            for t in self.tracks.values():
                t.loaded, t.state, t.last_rx = True, "active", time.monotonic()
            self.container_state = {c.id: "up" for c in self.plan.containers}
        self.state, self.ever_active = MState.ACTIVE, True
        return True

    def serve_hotswap(self):
        return False

    def watch_once(self):
        raise RuntimeError("a bug in the watch")

    def _answers(self, cid):
        return True

    def _drain(self, timeout=0.0):
        self.calls.append("drain")

    def _transition(self, n, verb, timeout=0.0):
        spec = NODE_TRANSITIONS[verb]
        self.calls.append((n.id, spec.id))
        with self.lock:
            self.tracks[n.id].state = spec.goal
        return True

    def close(self):
        self.calls.append("close")


def test_an_exception_in_the_watch_still_tears_the_graph_down_in_order(monkeypatch):
    made = []

    def factory(*a, **kw):
        made.append(_NoRosManager(*a, **kw))
        return made[-1]

    monkeypatch.setattr(mgr_mod, "LifecycleManager", factory)
    monkeypatch.setattr(mgr_mod.time, "sleep", lambda _s: None)
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = mgr_mod.run(PLAN, watch_period_s=0.0)
    finally:
        for s, h in before.items():
            signal.signal(s, h)
    m = made[0]
    assert code == 1                        # the manager failed: not a clean exit
    assert m.state == MState.ERROR and "a bug in the watch" in m.message
    D, C, S = (Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP,
               Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    # sources first, drain, the rest in data-flow order, then clean up and shut down; then close
    assert m.calls == ([("src", D), "drain"] + [(i, D) for i in ("map", "rule", "snk")]
                       + [x for i in PLAN.stop_order for x in ((i, C), (i, S))] + ["close"])
    assert sum("a bug in the watch" in e["event"] for e in m.events) == 1
    assert {s: signal.getsignal(s) for s in before} == before   # its handlers are undone


def test_the_watch_survives_a_hot_swap_removing_nodes_while_it_looks(monkeypatch):
    """A hot swap pops tracks (under the lock) while the watch walks the containers: the
    watch must read ``tracks`` under the lock and skip nodes that are gone."""
    m = _NoRosManager(PLAN)
    m.start()
    m._container_prefix = {c.id: f"/g/_containers/{c.id}" for c in PLAN.containers}
    m.tracks["rule"].state = "unknown"

    def listing(cid, timeout=0.0):
        with m.lock:                        # what _on_hotswap does meanwhile, on its own thread
            m.tracks.pop("map", None)
            m.tracks.pop("rule", None)
        return {"snk": "active", "src": "active"}

    monkeypatch.setattr(m, "_list", listing)
    monkeypatch.setattr(m, "_recover", lambda ids: m.calls.append(("recover", ids)))
    LifecycleManager.watch_once(m)          # no KeyError
    assert ("recover", ["map", "rule"]) not in m.calls   # gone nodes are not re-loaded
    assert m.container_state["main"] == "up"

    def silent(cid, timeout=0.0):
        with m.lock:
            m.tracks.pop("snk", None)
        return None

    monkeypatch.setattr(m, "_list", silent)
    m._misses = {"main": [time.monotonic() - 10.0] * 3}
    LifecycleManager.watch_once(m)          # marks the container down without a KeyError
    assert m.container_state["main"] == "down" and m.tracks["src"].state == "unknown"


def test_the_event_log_is_bounded_and_not_copied_for_every_snapshot():
    m = _NoRosManager(PLAN)
    m.start()
    for i in range(mgr_mod.EVENTS_MAX + 500):
        m._event(f"e{i}")
    snap = m.snapshot()
    assert len(snap["events"]) == mgr_mod.EVENTS_MAX
    assert snap["events"][-1]["event"] == f"e{mgr_mod.EVENTS_MAX + 499}"
    assert snap["events_dropped"] == 500
    assert m.snapshot()["events"] is snap["events"]       # nothing new: the same list, no copy
    m._event("one more")
    assert m.snapshot()["events"][-1]["event"] == "one more"


def test_an_overflow_reported_during_the_tear_down_leaves_the_run_failed():
    """A node's ``overflow: error`` arriving while the graph stops (its last heartbeat) makes the
    run fail; the tear-down's end must not turn that ERROR into FINISHED."""
    m = _NoRosManager(PLAN)
    m.start()

    def drain(timeout=0.0):
        m._set_state(MState.ERROR, "node snk: an input overflowed")   # what _on_status does
    m._drain = drain
    m.stop()
    assert m.state == MState.ERROR and "overflowed" in m.message


def test_an_overflow_during_the_bring_up_is_not_cleared_by_its_next_step():
    """The executor thread fails the run while the main thread is still bringing the graph up:
    the bring-up's next state (ACTIVE, 'all nodes active') must not clear the error."""
    m = _NoRosManager(PLAN)
    m._set_state(MState.WAITING_CONTAINERS)
    m._set_state(MState.LOADING)
    m._set_state(MState.ERROR, "node snk: an input overflowed")
    m._set_state(MState.CONFIGURING)
    m._set_state(MState.ACTIVE, "all nodes active")
    assert m.state == MState.ERROR and "overflowed" in m.message
    m._set_state(MState.STOPPING)           # the tear-down still runs
    assert m.state == MState.STOPPING
