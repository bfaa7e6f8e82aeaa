"""The autonomic controller's guardrails, policies and overrides (pure logic, injected clock)."""
import math

import pytest
from hypothesis import given, settings, strategies as st

from schnitzel_core.autonomic import (AimdPolicy, ControlError, Controller, ControllerSpec,
                                      GradientPolicy, Guardrails, Knob, Objective, Policy,
                                      load_policies, pressure_of)

FPS = Knob("cam", "fps", 2.0, 30.0, integer=True)
LAT = Objective("det", "latency_p95_ms", 100.0)


def make(knobs=(FPS,), policy="aimd", params=None, initial=None, apply=None, **guard):
    g = dict(cooldown_s=0.0, dwell_s=0.0, max_changes_per_min=1000)
    g.update(guard)
    spec = ControllerSpec("c", tuple(knobs), (LAT,), policy, params or {}, Guardrails(**g))
    log = []
    init = initial or {k.key: 20.0 for k in knobs}
    c = Controller(spec, init, apply=apply or (lambda k, v: True), audit=log.append)
    return c, log


def lat(ms):
    return {"det.latency_p95_ms": ms}


def test_pressure_is_the_worst_objective_and_none_without_data():
    objs = (LAT, Objective("det", "drop_rate", 0.1))
    assert pressure_of(objs, {"det.latency_p95_ms": 50.0, "det.drop_rate": 0.2}) == pytest.approx(2.0)
    assert pressure_of(objs, {"det.latency_p95_ms": 50.0}) is None


def test_aimd_decreases_multiplicatively_over_the_limit_and_increases_additively_with_headroom():
    c, _ = make()
    d = c.step(0.0, lat(200))
    assert (d.old, d.new, d.rule) == (20.0, 14.0, "aimd:decrease")
    d = c.step(1.0, lat(10))
    assert (d.old, d.new, d.rule) == (14.0, 15.0, "aimd:increase")   # 14 + 0.05 x 28, rounded
    assert c.step(2.0, lat(90)) is None and c.values["cam.fps"] == 15.0   # between: hold


def test_bounds_clamp_every_proposal():
    c, _ = make(initial={"cam.fps": 3.0})
    for t in range(10):
        c.step(float(t), lat(1000))
    assert c.values["cam.fps"] == 2.0
    c2, _ = make(initial={"cam.fps": 29.0})
    for t in range(10):
        c2.step(float(t), lat(1))
    assert c2.values["cam.fps"] == 30.0
    assert all(2.0 <= d.new <= 30.0 for d in c.decisions + c2.decisions)


def test_max_step_limits_one_change():
    knob = Knob("cam", "fps", 2.0, 30.0, max_step=2.0)
    c, _ = make(knobs=(knob,))
    d = c.step(0.0, lat(1000))
    assert (d.old, d.new) == (20.0, 18.0)


def test_cooldown_holds_a_knob_after_a_change():
    c, _ = make(cooldown_s=10.0)
    assert c.step(0.0, lat(500)) is not None
    assert c.step(5.0, lat(500)) is None
    assert c.values["cam.fps"] == 14.0
    assert c.step(10.0, lat(500)).new == 10.0   # 14 * 0.7 = 9.8, rounded


def test_dwell_defers_judging_and_new_changes():
    c, log = make(dwell_s=5.0)
    c.step(0.0, lat(500))
    assert c.step(4.9, lat(500)) is None and [d.rule for d in log] == ["aimd:decrease"]
    c.step(5.0, lat(500))
    assert [d.rule for d in log] == ["aimd:decrease", "judged", "aimd:decrease"]
    assert log[1].ref == log[0].id and log[0].outcome == "kept"


def test_rollback_when_a_load_adding_change_made_the_objective_worse():
    c, log = make(dwell_s=5.0, cooldown_s=5.0)
    up = c.step(0.0, lat(50))                     # headroom: increase
    assert up.rule == "aimd:increase" and up.new == 21.0
    back = c.step(5.0, lat(150))                  # worse than before and over the limit
    assert back.rule == "rollback" and back.new == 20.0 and back.ref == up.id
    assert up.outcome == "rolled_back" and c.values["cam.fps"] == 20.0


def test_no_rollback_when_not_worse_or_rollback_off_or_change_shed_load():
    c, _ = make(dwell_s=5.0, cooldown_s=100.0)
    up = c.step(0.0, lat(50))
    c.step(5.0, lat(55))                          # not worse by 10 %: kept
    assert up.outcome == "kept" and c.values["cam.fps"] == 21.0
    c, _ = make(dwell_s=5.0, cooldown_s=100.0, rollback=False)
    up = c.step(0.0, lat(50))
    c.step(5.0, lat(500))
    assert up.outcome == "kept"
    c, _ = make(dwell_s=5.0, cooldown_s=100.0)
    down = c.step(0.0, lat(200))                  # shedding load is never undone
    c.step(5.0, lat(400))
    assert down.outcome == "kept" and c.values["cam.fps"] == 14.0


def test_budget_limits_changes_per_minute():
    c, _ = make(max_changes_per_min=3, rollback=False)
    made = [c.step(float(t), lat(1000 if t % 2 else 1)) for t in range(20)]
    changes = [d for d in made if d is not None]
    assert len(changes) == 3
    assert c.step(60.0, lat(1000)) is not None    # the window moved on


def test_override_pin_wins_and_is_logged_release_resumes():
    applied = []
    c, log = make(apply=lambda k, v: applied.append((k.key, v)) or True)
    c.pin("cam.fps", 25.0, now=0.0)
    for t in range(1, 5):
        assert c.step(float(t), lat(1000)) is None
    assert c.values["cam.fps"] == 25.0 and applied == [("cam.fps", 25.0)]
    assert log[-1].rule == "override:pin" and log[-1].outcome == "override"
    c.release("cam.fps", now=5.0)
    assert log[-1].rule == "override:release"
    assert c.step(6.0, lat(1000)).old == 25.0


def test_suspend_stops_every_decision_resume_restarts():
    c, log = make()
    c.suspend(0.0)
    assert all(c.step(float(t), lat(1000)) is None for t in range(1, 5))
    c.resume(5.0)
    assert [d.rule for d in log] == ["override:suspend", "override:resume"]
    assert c.step(6.0, lat(1000)) is not None


def test_pin_of_unknown_knob_is_a_clear_error():
    c, _ = make()
    with pytest.raises(ControlError, match="no knob 'cam.width'"):
        c.pin("cam.width", 1, 0.0)


def test_a_refused_change_is_not_taken():
    c, log = make(apply=lambda k, v: False)
    assert c.step(0.0, lat(1000)) is None and c.values["cam.fps"] == 20.0 and log == []


def test_second_knob_moves_when_the_first_is_at_its_bound():
    width = Knob("rs", "width", 160.0, 640.0, integer=True)
    c, _ = make(knobs=(FPS, width), initial={"cam.fps": 2.0, "rs.width": 640.0})
    d = c.step(0.0, lat(1000))
    assert d.knob == "rs.width" and d.new == 448.0


def test_cost_decreasing_knob_moves_up_under_pressure():
    n = Knob("s", "n", 1.0, 10.0, integer=True, cost="decreasing")
    c, _ = make(knobs=(n,), initial={"s.n": 2.0})
    assert c.step(0.0, lat(1000)).new == 3.0       # 2 / 0.7 = 2.86 -> 3


def test_gradient_uses_the_measured_slope():
    pol = GradientPolicy()
    mem = {}
    v, rule = pol.propose(FPS, 20.0, 1.2, mem)
    assert rule == "gradient:proportional" and v == pytest.approx(20.0 + 0.5 * -0.4 * 28)
    v2, rule = pol.propose(FPS, 10.0, 0.6 + 0.0, mem)     # slope 0.06/fps
    assert rule == "gradient:slope" and v2 == pytest.approx(10.0 + 0.5 * 0.2 / 0.06)


def test_policies_are_pluggable_and_settings_are_checked():
    assert {"aimd", "gradient"} <= set(load_policies())

    class Fixed(Policy):
        name = "fixed"
        defaults = {"to": 5.0}

        def propose(self, knob, value, pressure, memory):
            return self.params["to"], "fixed"

    spec = ControllerSpec("c", (FPS,), (LAT,), "fixed", {"to": 7}, Guardrails(dwell_s=0, cooldown_s=0))
    c = Controller(spec, {"cam.fps": 20.0}, policies={"fixed": Fixed})
    assert c.step(0.0, lat(1)).new == 7.0
    with pytest.raises(ControlError, match="no setting 'gain'"):
        AimdPolicy(gain=1)
    with pytest.raises(ControlError, match="unknown policy 'pid'"):
        Controller(ControllerSpec("c", (FPS,), (LAT,), "pid"), {"cam.fps": 20.0})


def test_reversals_are_counted():
    c, _ = make()
    c.step(0.0, lat(1000))
    c.step(1.0, lat(1))
    c.step(2.0, lat(1000))
    assert c.reversals == 2


metric_values = st.one_of(st.floats(min_value=0, max_value=1e6, allow_nan=False),
                          st.just(math.nan), st.just(math.inf), st.just(0.0))


@settings(max_examples=200, deadline=None)
@given(policy=st.sampled_from(["aimd", "gradient"]),
       lo=st.floats(min_value=-100, max_value=100), span=st.floats(min_value=0, max_value=1000),
       integer=st.booleans(), cost=st.sampled_from(["increasing", "decreasing"]),
       start=st.floats(min_value=0, max_value=1), max_step=st.one_of(st.none(), st.floats(0.01, 100)),
       stream=st.lists(st.tuples(st.floats(min_value=0, max_value=30), metric_values), max_size=60),
       pins=st.lists(st.tuples(st.integers(0, 59), st.sampled_from(["pin", "release", "suspend", "resume",
                                                                    "force", "unforce"])),
                     max_size=5))
def test_never_outside_bounds_under_a_fuzzed_metric_stream(policy, lo, span, integer, cost, start,
                                                           max_step, stream, pins):
    from schnitzel_core.autonomic_modes import Mode
    if integer and math.floor(lo + span) < math.ceil(lo):
        span = 1.0
    knob = Knob("n", "k", lo, lo + span, max_step=max_step, integer=integer, cost=cost)
    low = Mode("low", ((knob.key, knob.clamp(lo)),), enter_after_s=1.0, exit_after_s=3.0)   # modes switch it too
    spec = ControllerSpec("c", (knob,), (LAT,), policy, {},
                          Guardrails(cooldown_s=1.0, dwell_s=2.0, max_changes_per_min=20), (low,))
    set_to = []
    initial = knob.clamp(lo + start * span)
    c = Controller(spec, {knob.key: initial}, apply=lambda k, v: set_to.append(v) or True)
    t = 0.0
    ops = dict(pins)
    for i, (dt, value) in enumerate(stream):
        t += dt
        op = ops.get(i)
        if op == "pin":
            c.pin(knob.key, initial, t)
        elif op == "release":
            c.release(knob.key, t)
        elif op == "suspend":
            c.suspend(t)
        elif op == "resume":
            c.resume(t)
        elif op == "force":
            c.modes.force("low", t)
        elif op == "unforce" and c.modes.forced:
            c.modes.release(t)
        c.step(t, lat(value))
        assert knob.minimum <= c.values[knob.key] <= knob.maximum
    assert all(knob.minimum <= v <= knob.maximum for v in set_to)


def test_spec_from_a_graph_entry_and_its_errors():
    from schnitzel_core.autonomic import spec_from_dict
    spec = spec_from_dict({"name": "c", "policy": "gradient", "policy_params": {"gain": 0.3},
                           "knobs": [{"node": "cam", "param": "fps", "min": 2, "max": 30, "max_step": 4}],
                           "objectives": [{"node": "det", "metric": "latency_p95_ms", "max": 150}],
                           "guardrails": {"cooldown_s": 3, "rollback": False}}, integer_params=["cam.fps"])
    assert spec.knobs[0] == Knob("cam", "fps", 2.0, 30.0, 4.0, True)
    assert spec.guardrails.cooldown_s == 3.0 and not spec.guardrails.rollback
    assert spec.policy_params == {"gain": 0.3}
    bad = {"name": "c", "knobs": [{"node": "cam", "param": "fps", "min": 9, "max": 3}],
           "objectives": [{"node": "det", "metric": "latency_p95_ms", "max": 1}]}
    with pytest.raises(ControlError, match=r"knobs\[0\]: min 9 is above max 3"):
        spec_from_dict(bad)
    bad["knobs"][0].update(min=1, speed=2)
    with pytest.raises(ControlError, match="unknown key 'speed'"):
        spec_from_dict(bad)
    with pytest.raises(ControlError, match="'p50' is not a metric"):
        spec_from_dict({"name": "c", "knobs": [{"node": "a", "param": "b", "min": 0, "max": 1}],
                        "objectives": [{"node": "det", "metric": "p50", "max": 1}]})


def test_metric_reader_rates_and_counters():
    from schnitzel_core.autonomic import MetricReader
    r = MetricReader()
    nodes = {"det": {"packets_in": 100, "drops": 0, "pid": 7,
                     "counters": {"latency_p95_recent_ms": "42.5", "oldest_age_ms": "1500"}}}
    first = r.feed(10.0, nodes, {7: 1.0})
    assert first == {"det.latency_p95_ms": 42.5, "det.queue_oldest_age_s": 1.5}
    nodes["det"].update(packets_in=130, drops=10)
    second = r.feed(12.0, nodes, {7: 2.0})
    assert second["det.drop_rate"] == pytest.approx(0.25) and second["det.cpu_percent"] == pytest.approx(50.0)
    nodes["det"].update(packets_in=5, drops=0, counters={})   # container restarted: no rate, no latency
    assert r.feed(13.0, nodes, {7: 2.0}) == {"det.cpu_percent": 0.0}


def test_aimd_waits_while_the_pressure_is_still_falling_after_a_decrease():
    c, _ = make()
    assert c.step(0.0, lat(400)).new == 14.0            # over the limit: decrease
    assert c.step(1.0, lat(300)) is None                # still over, but falling: a backlog drains
    assert c.decisions[-1].rule == "judged"
    assert c.step(2.0, lat(300)).new == 10.0            # over and no longer falling: decrease again


# --------------------------------------------------------------------------- enum knobs

MODELS = ("det_n.onnx", "det_s.onnx", "det_m.onnx", "det_l.onnx", "det_x.onnx")   # lightest first


def enum_knob(values=MODELS, **kw):
    return Knob("det", "model", 0.0, float(len(values) - 1), values=tuple(values), **kw)


def test_enum_knob_aimd_one_entry_up_and_a_decrease_jumps_further_down():
    k = enum_knob()
    c, log = make(knobs=(k,), initial={k.key: "det_x.onnx"})
    assert (c.step(0.0, lat(1000)).new, log[-1].old) == ("det_m.onnx", "det_x.onnx")   # load 4 -> 2
    assert c.step(1.0, lat(1000)).new == "det_s.onnx"                                 # 2 -> 1
    assert c.step(2.0, lat(1000)).new == "det_n.onnx"                                 # 1 -> 0
    assert c.step(3.0, lat(1000)) is None and c.values[k.key] == "det_n.onnx"         # the lightest
    assert c.step(4.0, lat(1)).new == "det_s.onnx"                                    # one entry up
    assert c.step(5.0, lat(1)).new == "det_m.onnx"
    assert all(d.new in MODELS for d in c.decisions)


def test_enum_knob_cost_decreasing_lists_the_heaviest_first():
    k = enum_knob(tuple(reversed(MODELS)), cost="decreasing")
    c, _ = make(knobs=(k,), initial={k.key: "det_x.onnx"})
    assert c.step(0.0, lat(1000)).new == "det_m.onnx"
    assert c.step(1.0, lat(1)).new == "det_l.onnx"


def test_enum_knob_gradient_moves_one_entry_at_a_time():
    k = enum_knob()
    c, _ = make(knobs=(k,), policy="gradient", initial={k.key: "det_x.onnx"})
    assert c.step(0.0, lat(5000)).new == "det_l.onnx"
    assert c.step(1.0, lat(5000)).new == "det_m.onnx"
    assert c.step(2.0, lat(10)).new == "det_l.onnx"


def test_enum_knob_guardrails_rollback_cooldown_max_step_and_pin():
    k = enum_knob(max_step=1)
    c, log = make(knobs=(k,), initial={k.key: "det_s.onnx"}, dwell_s=2.0, cooldown_s=5.0)
    assert c.step(0.0, lat(10)).new == "det_m.onnx"                 # headroom: one up
    assert c.step(1.0, lat(10)) is None                             # dwell
    rb = c.step(2.0, lat(500))                                      # worse and over: back
    assert (rb.rule, rb.old, rb.new) == ("rollback", "det_m.onnx", "det_s.onnx")
    assert c.step(4.0, lat(10)) is None                             # cooldown after the rollback
    c2, _ = make(knobs=(k,), initial={k.key: "det_x.onnx"})
    assert c2.step(0.0, lat(1000)).new == "det_l.onnx"              # max_step: one entry, not two
    pin = c.pin(k.key, "det_x.onnx", 10.0)
    assert (pin.old, pin.new, c.values[k.key]) == ("det_s.onnx", "det_x.onnx", "det_x.onnx")
    with pytest.raises(ControlError, match="'det_q.onnx' is not one of knob det.model's values"):
        c.pin(k.key, "det_q.onnx", 11.0)
    batch = Knob("det", "batch", 0.0, 2.0, values=(1, 4, 8))
    cb, _ = make(knobs=(batch,), initial={batch.key: 8})
    assert cb.pin(batch.key, "4", 0.0).new == 4                     # the CLI sends text


def test_enum_knob_initial_value_must_be_listed():
    k = enum_knob()
    with pytest.raises(ControlError, match="the node's value 'yolo.onnx' is not one of its values"):
        make(knobs=(k,), initial={k.key: "yolo.onnx"})


def test_enum_knob_from_a_graph_entry_and_its_errors():
    from schnitzel_core.autonomic import spec_from_dict
    entry = {"name": "c", "knobs": [{"node": "det", "param": "model", "values": list(MODELS[:2])}],
             "objectives": [{"node": "det", "metric": "latency_p95_ms", "max": 150}]}
    k = spec_from_dict(entry).knobs[0]
    assert (k.values, k.minimum, k.maximum, k.enum) == (MODELS[:2], 0.0, 1.0, True)
    entry["knobs"][0]["max"] = 3
    with pytest.raises(ControlError, match=r"knobs\[0\]: a knob with `values` takes no max"):
        spec_from_dict(entry)
    for bad, words in ((["a"], "two or more"), (["a", "a"], "lists a value twice"), ([[1], 2], "not a text")):
        entry["knobs"][0] = {"node": "det", "param": "model", "values": bad}
        with pytest.raises(ControlError, match=words):
            spec_from_dict(entry)
    entry["knobs"][0] = {"node": "det", "param": "model"}
    with pytest.raises(ControlError, match=r"needs `min` \(or `values`"):
        spec_from_dict(entry)


@settings(max_examples=200, deadline=None)
@given(policy=st.sampled_from(["aimd", "gradient"]),
       values=st.lists(st.one_of(st.text(min_size=1, max_size=4), st.integers(-5, 50)), min_size=2, max_size=6,
                       unique_by=lambda v: (type(v) is str, v)),
       cost=st.sampled_from(["increasing", "decreasing"]), start=st.integers(0, 5),
       max_step=st.one_of(st.none(), st.integers(1, 3)),
       stream=st.lists(st.tuples(st.floats(min_value=0, max_value=30), metric_values), max_size=60),
       ops=st.lists(st.tuples(st.integers(0, 59), st.sampled_from(["pin", "release", "suspend", "resume",
                                                                   "force", "unforce"]),
                              st.integers(0, 5)), max_size=5))
def test_an_enum_knob_never_takes_a_value_outside_its_list(policy, values, cost, start, max_step, stream, ops):
    from schnitzel_core.autonomic_modes import Mode
    knob = Knob("n", "k", 0.0, float(len(values) - 1), max_step=max_step, cost=cost, values=tuple(values))
    low = Mode("low", ((knob.key, values[-1]),), enter_after_s=1.0, exit_after_s=3.0)   # modes too
    spec = ControllerSpec("c", (knob,), (LAT,), policy, {},
                          Guardrails(cooldown_s=1.0, dwell_s=2.0, max_changes_per_min=20), (low,))
    set_to = []
    c = Controller(spec, {knob.key: values[start % len(values)]}, apply=lambda k, v: set_to.append(v) or True)
    t = 0.0
    todo = {i: (op, j) for i, op, j in ops}
    for i, (dt, value) in enumerate(stream):
        t += dt
        op, j = todo.get(i, (None, 0))
        if op == "pin":
            c.pin(knob.key, values[j % len(values)], t)
        elif op == "release":
            c.release(knob.key, t)
        elif op == "suspend":
            c.suspend(t)
        elif op == "resume":
            c.resume(t)
        elif op == "force":
            c.modes.force("low", t)
        elif op == "unforce" and c.modes.forced:
            c.modes.release(t)
        c.step(t, lat(value))
        assert any(c.values[knob.key] == v and type(c.values[knob.key]) is type(v) for v in values)
    assert all(any(s == v and type(s) is type(v) for v in values) for s in set_to)
    assert all(d.new in values for d in c.decisions if d.knob == knob.key)
