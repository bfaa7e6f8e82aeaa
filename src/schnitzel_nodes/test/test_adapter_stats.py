"""A node's Stats report latency as histogram bucket counts (they add up across container
processes in the manager's metrics) and per-input-port packet counts with the newest source stamp;
a delivery sink keeps its circuit breaker's state as a gauge counter."""
import tempfile

from schnitzel_core.packet import now_ns

from schnitzel_nodes.ros.adapter import LATENCY_BOUNDS_S, Stats


def test_latency_buckets_and_port_counts():
    s = Stats()
    t = now_ns()
    s.received(t - 3_000_000, "in")          # ~3 ms old
    s.received(t - 20_000_000_000, "in")     # ~20 s old: the +Inf bucket
    s.received(0, "aux")                     # no stamp: counted, no latency
    assert len(s.buckets) == len(LATENCY_BOUNDS_S) + 1 and sum(s.buckets) == 2
    assert s.buckets[-1] == 1
    assert s.buckets[LATENCY_BOUNDS_S.index(0.005)] == 1    # 2.5 ms < 3 ms <= 5 ms
    assert 20.0 < s.lat_sum_s < 21.0
    assert s.port_in["in"][0] == 2 and abs(s.port_in["in"][1] - (t - 3_000_000) / 1e9) < 1e-6
    assert s.port_in["aux"] == [1, 0.0]
    s.reset()   # a new activation counts from zero, like packets_in (the manager keeps the totals)
    assert sum(s.buckets) == 0 and s.port_in == {} and s.packets_in == 0


def test_a_delivery_sinks_breaker_state_is_a_gauge_counter():
    """0 closed, 1 half_open, 2 open: the metrics endpoint's schnitzel_sink_breaker_state."""
    from schnitzel_core.resilience import BreakerState
    from schnitzel_core.testing import LogicHarness
    from schnitzel_nodes.plugins.delivery import JsonlSinkLogic

    h = LogicHarness(JsonlSinkLogic, {"path": tempfile.mkdtemp() + "/out.jsonl"}, node_id="file")
    sink = h.logic
    seen = []
    for old, new in ((BreakerState.CLOSED, BreakerState.OPEN), (BreakerState.OPEN, BreakerState.HALF_OPEN),
                     (BreakerState.HALF_OPEN, BreakerState.OPEN), (BreakerState.OPEN, BreakerState.HALF_OPEN),
                     (BreakerState.HALF_OPEN, BreakerState.CLOSED)):
        sink._breaker_changed(old, new)
        seen.append(sink.ctx.counters["breaker_state"])
    sink.deactivate()
    assert seen == [2, 1, 2, 1, 0] and sink.ctx.counters["breaker_open"] == 2


def test_drops_are_counted_by_cause_and_add_up_to_the_total():
    """The metrics endpoint's schnitzel_node_drops_by_cause_total: every drop has one cause."""
    from schnitzel_nodes.mailbox import InputPolicy, Mailbox
    from schnitzel_nodes.ros.adapter import DROP_CAUSES

    s = Stats()
    s.dropped_input("in", cause="latest_only")
    s.dropped_input("in", 2, cause="inactive")
    s.dropped("publish_error")
    s.dropped("handover", 3)
    # a mailbox over its bound reports "overflow"; what is left at a stop, "stopped"
    held = []
    mb = Mailbox(lambda fn, *a: held.append(a), {"in": InputPolicy("drop_oldest", 1)}, on_drop=s.dropped_input)
    mb._drainer = -1   # a drainer elsewhere is busy: inputs queue up instead of running
    for i in range(3):
        mb.put(lambda *a: None, i, port="in")
    mb.clear()
    assert s.causes == {"latest_only": 1, "inactive": 2, "publish_error": 1, "handover": 3,
                        "overflow": 2, "stopped": 1}
    assert sum(s.causes.values()) == s.drops == 10
    assert set(s.causes) <= set(DROP_CAUSES)
    assert s.port_drops == {"in": 6}
