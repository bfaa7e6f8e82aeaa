"""router, switch, duplicator (LogicHarness, no DDS)."""
import pytest

from schnitzel_core.packet import Packet
from schnitzel_core.testing import LogicHarness
from schnitzel_nodes.plugins._common import ConfigError
from schnitzel_nodes.plugins.control import DuplicatorLogic, RouterLogic, SwitchLogic

T0 = 1_700_000_000_000_000_000


def p(seq, kind="telemetry", stream="s", value=None, **meta):
    return Packet.from_json(stream, seq, kind, value or {"v": seq}, stamp_ns=T0, meta=meta)


ROUTES = [{"port": "out0", "kind": "video.*"},
          {"port": "out1", "stream": "cam*", "meta": {"zone": "dock"}},
          {"port": "out2", "when": "payload.v >= 10"},
          {"port": "out3", "kind": "event"}]


def test_router_first_match_and_default():
    h = LogicHarness(RouterLogic, {"routes": ROUTES})
    h.send("in", p(1, kind="video.frame"))
    h.send("in", p(2, stream="cam0", zone="dock"))
    h.send("in", p(3, stream="cam0", zone="gate"))
    h.send("in", p(10, kind="event"))
    h.send("in", p(4, kind="event"))
    got = {port: [x.seq for x in h.out(port)] for port in ("out0", "out1", "out2", "out3", "default")}
    assert got == {"out0": [1], "out1": [2], "out2": [10], "out3": [4], "default": [3]}
    assert h.ctx.counters["unmatched"] == 1


def test_router_all_mode_and_live_change():
    h = LogicHarness(RouterLogic, {"routes": ROUTES, "mode": "all"})
    assert [port for port, _ in h.ctx.emitted] == []
    h.send("in", p(10, kind="event"))
    assert [port for port, _ in h.ctx.emitted] == ["out2", "out3"]
    h.logic.on_params({"routes": [{"port": "out1", "kind": "*"}]})
    h.send("in", p(11))
    assert h.ctx.emitted[-1][0] == "out1"


def test_router_bad_routes():
    with pytest.raises(ConfigError, match="out0, out1"):
        LogicHarness(RouterLogic, {"routes": [{"port": "out9"}]})
    with pytest.raises(ConfigError, match="unknown keys"):
        LogicHarness(RouterLogic, {"routes": [{"port": "out0", "knd": "x"}]})
    with pytest.raises(ConfigError, match="only calls of the listed functions"):
        LogicHarness(RouterLogic, {"routes": [{"port": "out0", "when": "__import__('os')"}]})


def test_switch_passes_only_active_input_live():
    h = LogicHarness(SwitchLogic, {"active": "in1"})
    assert h.send("in0", p(1)) == [] and [x.seq for x in h.send("in1", p(2))] == [2]
    h.logic.on_params({"active": "in0"})
    assert [x.seq for x in h.send("in0", p(3))] == [3] and h.send("in1", p(4)) == []
    assert h.ctx.counters["dropped"] == 2
    with pytest.raises(ConfigError):
        h.logic.on_params({"active": "in7"})


def test_duplicator_sends_to_every_output():
    h = LogicHarness(DuplicatorLogic)
    h.send("in", p(1))
    assert [port for port, _ in h.ctx.emitted] == ["out0", "out1", "out2", "out3"]
    assert all(x.seq == 1 for _, x in h.ctx.emitted)


def test_control_ports_are_static_in_the_spec():
    assert [x.name for x in RouterLogic.spec.outputs] == ["out0", "out1", "out2", "out3", "default"]
    assert [x.name for x in SwitchLogic.spec.inputs] == ["in0", "in1", "in2", "in3"]
