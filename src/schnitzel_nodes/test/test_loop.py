"""The PID and simulated-plant plugins (examples/pid_loop, docs/autonomic.md "Feedback loops")."""
import pytest

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import NodeContext
from schnitzel_nodes.plugins.loop import PidLogic, SimPlantLogic, simulate

SETTLE_S = 2.0      # stated in examples/pid_loop/graph.yaml
PID = {"kp": 2.0, "ki": 2.0, "dt_s": 0.05, "out_min": 0.0, "out_max": 10.0}
PLANT = {"tau_s": 1.0, "gain": 1.0, "dt_s": 0.05}


def _pkt(value, port="value"):
    return Packet(stream_id="s", seq=0, kind="sensor", payload=b'{"%s": %r}' % (port.encode(), value),
                  content_type="application/json")


def _settled_after(trace, target, band=0.02):
    return max([t for t, y in trace if abs(y - target) > band * abs(target)] or [0.0])


def test_the_closed_loop_settles_within_the_stated_time():
    trace = simulate(PID, PLANT, 2.0, 200)
    assert _settled_after(trace, 2.0) <= SETTLE_S
    assert trace[-1][1] == pytest.approx(2.0, abs=1e-3)


def test_integral_removes_a_constant_disturbance_and_p_alone_does_not():
    with_i = simulate(PID, {**PLANT, "disturbance": -0.5}, 2.0, 400)
    p_only = simulate({**PID, "ki": 0.0}, {**PLANT, "disturbance": -0.5}, 2.0, 400)
    assert with_i[-1][1] == pytest.approx(2.0, abs=0.01)
    assert abs(p_only[-1][1] - 2.0) > 0.3


def test_output_is_clamped_and_the_integral_does_not_wind_up():
    ctx = NodeContext("pid", {**PidLogic.spec.defaults(), **PID, "out_max": 1.0})
    pid = PidLogic(ctx)
    pid.configure()
    for _ in range(100):   # the plant never answers: a saturated output must not integrate
        out = pid.process("setpoint", _pkt(5.0))
    import json
    assert json.loads(out.payload)["value"] == 1.0 and pid.integral == 0.0


def test_a_measurement_without_the_field_is_a_counted_drop():
    pid = PidLogic(NodeContext("pid", {**PidLogic.spec.defaults(), **PID}))
    pid.configure()
    pid.on_packet("measurement", _pkt(1.0, port="other"))
    assert pid.ctx.counters.get("invalid") == 1 and pid.y is None


def test_bounds_are_checked_on_a_live_change():
    pid = PidLogic(NodeContext("pid", {**PidLogic.spec.defaults(), **PID}))
    pid.configure()
    with pytest.raises(ValueError, match="out_min 5 is above out_max 1"):
        pid.on_params({"out_min": 5, "out_max": 1})
    assert pid.params["out_max"] == 10.0


def test_plant_steps_towards_gain_times_input():
    plant = SimPlantLogic(NodeContext("plant", {**SimPlantLogic.spec.defaults(), **PLANT, "gain": 2.0}))
    plant.configure()
    for _ in range(400):
        plant.process("in", _pkt(1.5))
    assert plant.y == pytest.approx(3.0, abs=1e-3) and plant.t == pytest.approx(20.0)
