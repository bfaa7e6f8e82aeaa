"""A controller's modes (docs/autonomic.md#modes): knob sets switched together, their triggers,
guardrails and the operator's force/release (pure logic, injected clock)."""
import pytest

from schnitzel_core.autonomic import (ControlError, Controller, ControllerSpec, Guardrails, Knob,
                                      Objective, spec_from_dict)
from schnitzel_core.autonomic_modes import Mode, mode_problems

FPS = Knob("cam", "fps", 2.0, 30.0, integer=True)
WIDTH = Knob("rs", "width", 160.0, 1280.0, integer=True)
LAT = Objective("det", "latency_p95_ms", 100.0)
CPU = Objective("det", "cpu_percent", 80.0)
LOW = Mode("low_power", (("cam.fps", 5), ("rs.width", 320)), enter_after_s=3.0, exit_after_s=10.0)


def make(modes=(LOW,), initial=None, apply=None, **guard):
    g = dict(cooldown_s=0.0, dwell_s=0.0, max_changes_per_min=1000)
    g.update(guard)
    spec = ControllerSpec("c", (FPS, WIDTH), (LAT,), "aimd", {}, Guardrails(**g), tuple(modes))
    log = []
    c = Controller(spec, initial or {"cam.fps": 2.0, "rs.width": 160.0}, apply=apply or (lambda k, v: True),
                   audit=log.append)
    return c, log


def lat(ms, cpu=None):
    m = {"det.latency_p95_ms": ms}
    if cpu is not None:
        m["det.cpu_percent"] = cpu
    return m


def test_entered_when_the_knobs_can_do_no_more_after_enter_after_s_all_knobs_in_one_record():
    set_to = []
    c, log = make(apply=lambda k, v: set_to.append((k.key, v)) or True)   # both knobs at their lightest
    assert c.step(0.0, lat(500)) is None          # violated and saturated: the trigger starts holding
    assert c.step(2.0, lat(500)) is None          # not yet enter_after_s
    d = c.step(3.0, lat(500))
    assert (d.knob, d.old, d.new, d.rule, d.outcome) == ("mode", None, "low_power", "mode:enter", "pending")
    assert d.changes == {"cam.fps": [2.0, 5.0], "rs.width": [160.0, 320.0]}
    assert set_to == [("cam.fps", 5.0), ("rs.width", 320.0)] and c.modes.active == "low_power"
    assert [r.rule for r in log] == ["mode:enter"]


def test_not_entered_while_a_knob_can_still_shed_load_or_the_violation_ends():
    c, _ = make(initial={"cam.fps": 20.0, "rs.width": 160.0})
    for t in range(0, 10):
        d = c.step(float(t), lat(500))
        assert d is None or d.knob == "cam.fps"   # the policy sheds load knob by knob first
    assert c.values["cam.fps"] == 2.0 and c.modes.active is None
    c2, _ = make()
    c2.step(0.0, lat(500))
    c2.step(2.0, lat(90))                         # met again: the trigger's clock starts over
    assert c2.step(4.0, lat(500)) is None and c2.step(6.0, lat(500)) is None
    assert c2.step(7.0, lat(500)).rule == "mode:enter"


def test_left_after_exit_after_s_below_exit_below_knobs_back_and_held_meanwhile():
    c, log = make(initial={"cam.fps": 2.0, "rs.width": 160.0})
    c.step(0.0, lat(500))
    c.step(3.0, lat(500))                         # entered
    for t in (4.0, 5.0, 8.0):                          # headroom, but the mode holds its knobs
        c.step(t, lat(10))
    assert c.values == {"cam.fps": 5.0, "rs.width": 320.0}
    c.step(9.0, lat(90))                          # above exit_below (0.8): the exit clock restarts
    c.step(10.0, lat(10))
    assert c.step(19.0, lat(10)) is None
    d = c.step(20.0, lat(10))
    assert (d.old, d.new, d.rule) == ("low_power", None, "mode:leave")
    assert d.changes == {"cam.fps": [5.0, 2.0], "rs.width": [320.0, 160.0]}
    assert c.values == {"cam.fps": 2.0, "rs.width": 160.0} and c.modes.active is None


def test_a_trigger_of_its_own_cpu_over_z_percent():
    cpu_mode = Mode("low_power", (("cam.fps", 5),), trigger=(CPU,), enter_after_s=2.0, exit_after_s=2.0)
    c, _ = make(modes=(cpu_mode,), initial={"cam.fps": 20.0, "rs.width": 640.0})
    c.step(0.0, lat(90, cpu=95))                  # (pressure 0.9: the policy holds)
    d = c.step(2.0, lat(90, cpu=95))              # objectives met, knobs not saturated: the CPU decides
    assert d.rule == "mode:enter" and d.metrics["det.cpu_percent"] == 95 and c.values["cam.fps"] == 5.0
    assert c.step(3.0, lat(50)) is None or c.modes.active == "low_power"   # no CPU figure: stays
    c.step(4.0, lat(50, cpu=10))
    assert c.step(6.0, lat(50, cpu=10)).rule == "mode:leave" and c.values["cam.fps"] == 20.0


def test_cooldown_and_budget_hold_a_switch():
    c, _ = make(cooldown_s=20.0)
    c.step(0.0, lat(500))
    c.step(3.0, lat(500))                         # entered at 3
    for t in (4.0, 14.0, 22.0):
        assert c.step(t, lat(10)) is None         # exit_after_s reached at 14, cooldown until 23
    assert c.step(23.0, lat(10)).rule == "mode:leave"
    b, _ = make(max_changes_per_min=1)
    b._budget.append(0.0)                         # one change already this minute
    b.step(0.0, lat(500))
    assert b.step(3.0, lat(500)) is None and b.step(59.0, lat(500)) is None
    assert b.step(60.0, lat(500)).rule == "mode:enter"


def test_a_leave_that_made_things_worse_is_rolled_back_into_the_mode():
    c, log = make(dwell_s=2.0)
    c.step(0.0, lat(500))
    c.step(3.0, lat(500))                         # entered
    c.step(5.0, lat(10))                          # judged kept; the exit clock starts
    leave = c.step(15.0, lat(10))
    assert leave.rule == "mode:leave"
    rb = c.step(17.0, lat(900))                   # after the dwell: worse than before and over
    assert (rb.rule, rb.old, rb.new, rb.ref, rb.outcome) == ("rollback", None, "low_power", leave.id,
                                                             "rolled_back")
    assert leave.outcome == "rolled_back" and c.values == {"cam.fps": 5.0, "rs.width": 320.0}


def test_force_wins_holds_until_release_and_a_pinned_knob_keeps_the_operators_value():
    c, log = make(initial={"cam.fps": 20.0, "rs.width": 640.0})
    c.pin("rs.width", 480, 0.0)
    f = c.modes.force("low_power", 1.0)
    assert (f.rule, f.outcome, f.changes) == ("override:mode", "override", {"cam.fps": [20.0, 5.0]})
    assert c.values == {"cam.fps": 5.0, "rs.width": 480.0}
    for t in range(2, 60, 5):                     # fine for long: a forced mode is not left
        c.step(float(t), lat(10))
    assert c.modes.active == "low_power" and c.values["cam.fps"] == 5.0
    r = c.modes.release(60.0)
    assert (r.rule, r.old, r.new, r.changes) == ("override:mode_release", "low_power", None, {"cam.fps": [5.0, 20.0]})
    with pytest.raises(ControlError, match="no forced mode"):
        c.modes.release(61.0)
    with pytest.raises(ControlError, match=r"no mode 'eco' \(modes: low_power\)"):
        c.modes.force("eco", 61.0)


def test_modes_from_a_graph_entry_and_their_problems():
    entry = {"name": "c", "knobs": [{"node": "cam", "param": "fps", "min": 2, "max": 30},
                                    {"node": "det", "param": "model", "values": ["n.onnx", "s.onnx"]}],
             "objectives": [{"node": "det", "metric": "latency_p95_ms", "max": 150}],
             "modes": {"low_power": {"set": {"cam.fps": 5, "det.model": "n.onnx"},
                                     "trigger": [{"node": "det", "metric": "cpu_percent", "max": 90}],
                                     "enter_after_s": 4, "exit_after_s": 20, "exit_below": 0.5}}}
    m = spec_from_dict(entry, ["cam.fps"]).modes[0]
    assert m == Mode("low_power", (("cam.fps", 5), ("det.model", "n.onnx")),
                     (Objective("det", "cpu_percent", 90.0),), 4.0, 20.0, 0.5)
    for edit, words in (({"cam.fps": 50}, "cam.fps = 50 is outside the knob's bounds [2, 30]"),
                        ({"cam.fps": 5.5}, "cam.fps = 5.5 is not whole"),
                        ({"det.model": "x.onnx"}, "det.model = 'x.onnx' is not one of the knob's values"),
                        ({"rs.width": 320}, "sets rs.width, which is not a knob of this controller")):
        bad = {**entry, "modes": {"low_power": {"set": edit}}}
        with pytest.raises(ControlError, match=words.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
            spec_from_dict(bad, ["cam.fps"])
        assert len(mode_problems(spec_from_dict(bad, ["cam.fps"], check_modes=False))) == 1
    for modes, words in (({"low_power": {"cam.fps": 5}}, "unknown key 'cam.fps'"),
                         ({"low power": {"set": {"cam.fps": 5}}}, "must be a word"),
                         ({"low_power": {"set": {}}}, "set must map knobs"),
                         ({"low_power": {"set": {"cam.fps": 5}, "exit_below": 2}}, "at most 1")):
        with pytest.raises(ControlError, match=words):
            spec_from_dict({**entry, "modes": modes}, ["cam.fps"])
