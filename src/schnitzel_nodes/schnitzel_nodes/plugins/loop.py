"""Closed-loop control inside a graph: a PID controller and a simulated first-order plant.

They close a feedback cycle through a ``delay`` node (examples/pid_loop/, docs/autonomic.md):
``setpoint -> pid.setpoint``, ``pid.out -> plant.in -> delay.in``, ``delay.out -> pid.measurement``.
Both run in fixed steps of ``dt_s`` (one step per packet), so a replay gives the same trajectory
whatever the wall-clock rate.
"""
from __future__ import annotations

from typing import Any, List, Mapping, Optional, Tuple

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, In, Out, Param, PluginSpec

from ._common import BadPacket, ConfigError, Control, State, get_path, json_body, split_path, with_json


def _number(packet: Packet, field: str) -> float:
    doc = json_body(packet)
    try:
        v = get_path(doc, split_path(field))
    except (KeyError, IndexError, TypeError):
        raise BadPacket(f"payload has no number at {field!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise BadPacket(f"{field!r} must be a number, got {v!r}")
    return float(v)


class PidLogic(Control):
    """Discrete PID: on each ``setpoint`` packet, u = kp e + ki sum(e dt) + kd d(-y)/dt with the
    latest ``measurement`` (derivative on the measurement, so a setpoint step gives no kick;
    the integral stops while the output is saturated: no wind-up)."""

    spec = PluginSpec(
        name="pid", category=Category.CONTROL, version="1.0.0", stateful=True,
        description="PID controller: setpoint and measurement in, control value out, fixed step dt_s.",
        ports=(In("setpoint", ("*",), description="JSON with the setpoint at setpoint_field; each one is a step"),
               In("measurement", ("*",), description="JSON with the measured value at measurement_field"),
               Out("out", ("*",), description='{"value": u, "error": e, "setpoint": r, "measurement": y}')),
        params=(
            Param("kp", "float", 1.0, "proportional gain", live=True),
            Param("ki", "float", 0.0, "integral gain (per second)", live=True),
            Param("kd", "float", 0.0, "derivative gain (seconds)", live=True),
            Param("dt_s", "float", 0.05, "step length in seconds", minimum=1e-6),
            Param("out_min", "float", -1e9, "lowest control value", live=True),
            Param("out_max", "float", 1e9, "highest control value", live=True),
            Param("setpoint_field", "str", "value", "path of the setpoint in its payload"),
            Param("measurement_field", "str", "value", "path of the measurement in its payload"),
            Param("kind", "str", "control", "kind of the output packets"),
        ),
    )

    def configure(self) -> None:
        self.check_params(self.params)
        self.integral = 0.0
        self.y: Optional[float] = None
        self.y_prev: Optional[float] = None

    def check_params(self, params: Mapping[str, Any]) -> None:
        if float(params["out_min"]) > float(params["out_max"]):
            raise ConfigError(f"pid: out_min {params['out_min']} is above out_max {params['out_max']}")

    def process(self, port: str, packet: Packet) -> Any:
        p = self.params
        if port == "measurement":
            self.y = _number(packet, p["measurement_field"])
            return None
        r = _number(packet, p["setpoint_field"])
        y = self.y if self.y is not None else 0.0
        dt = float(p["dt_s"])
        e = r - y
        d = -(y - self.y_prev) / dt if self.y_prev is not None else 0.0
        self.y_prev = y
        lo, hi = float(p["out_min"]), float(p["out_max"])
        unclamped = float(p["kp"]) * e + float(p["ki"]) * (self.integral + e * dt) + float(p["kd"]) * d
        if lo < unclamped < hi:
            self.integral += e * dt
        u = min(hi, max(lo, unclamped))
        return with_json(packet, {"value": u, "error": e, "setpoint": r, "measurement": y}, kind=p["kind"])

    def get_state(self) -> Any:
        return {"integral": self.integral, "y": self.y, "y_prev": self.y_prev}

    def set_state(self, state: Any) -> None:
        if isinstance(state, dict):
            self.integral = float(state.get("integral") or 0.0)
            self.y, self.y_prev = state.get("y"), state.get("y_prev")


class SimPlantLogic(State):
    """A first-order plant: each input u advances y by one step, y += dt/tau (gain u - y)."""

    spec = PluginSpec(
        name="sim_plant", category=Category.STATE, version="1.0.0", stateful=True,
        description="Simulated first-order plant (time constant tau_s, static gain), one step of dt_s per input.",
        ports=(In("in", ("*",), description="JSON with the control value at input_field"),
               Out("out", ("*",), description='{"value": y, "u": u, "t": simulated seconds}')),
        params=(
            Param("tau_s", "float", 1.0, "time constant in seconds", minimum=1e-6, live=True),
            Param("gain", "float", 1.0, "static gain", live=True),
            Param("dt_s", "float", 0.05, "step length in seconds", minimum=1e-6),
            Param("initial", "float", 0.0, "output before the first step"),
            Param("disturbance", "float", 0.0, "constant added to the input (a load)", live=True),
            Param("input_field", "str", "value", "path of the control value in its payload"),
            Param("kind", "str", "sensor.plant", "kind of the output packets"),
        ),
    )

    def configure(self) -> None:
        self.y = float(self.params["initial"])
        self.t = 0.0

    def process(self, port: str, packet: Packet) -> Any:
        p = self.params
        u = _number(packet, p["input_field"])
        dt = float(p["dt_s"])
        self.y += dt / float(p["tau_s"]) * (float(p["gain"]) * (u + float(p["disturbance"])) - self.y)
        self.t += dt
        return with_json(packet, {"value": self.y, "u": u, "t": round(self.t, 9)}, kind=p["kind"])

    def get_state(self) -> Any:
        return {"y": self.y, "t": self.t}

    def set_state(self, state: Any) -> None:
        if isinstance(state, dict):
            self.y, self.t = float(state.get("y", self.y)), float(state.get("t", self.t))


def simulate(pid: Mapping[str, Any], plant: Mapping[str, Any], setpoint: float, steps: int) -> List[Tuple[float, float]]:
    """(t, y) of the closed loop run in process, the same order as the graph runs it: each step
    the PID reads the plant's previous output (the delay), then the plant advances one step."""
    from schnitzel_core.plugin import NodeContext

    ctl = PidLogic(NodeContext("pid", {**PidLogic.spec.defaults(), **pid}))
    sim = SimPlantLogic(NodeContext("plant", {**SimPlantLogic.spec.defaults(), **plant}))
    ctl.configure()
    sim.configure()
    out: List[Tuple[float, float]] = []
    y_pkt = None
    for i in range(steps):
        sp = Packet(stream_id="setpoint", seq=i, kind="sensor", payload=b"{\"value\": %r}" % setpoint,
                    content_type="application/json")
        if y_pkt is not None:
            ctl.process("measurement", y_pkt)
        u_pkt = ctl.process("setpoint", sp)
        y_pkt = sim.process("in", u_pkt)
        out.append((sim.t, sim.y))
    return out
