"""synthetic_source: counter, pattern, sensor waveforms with seeded noise, imu, determinism."""
import math

import numpy as np
import pytest

from schnitzel_core.codecs.image import packet_image
from schnitzel_core.testing import LogicHarness
from schnitzel_nodes.plugins.sources.synthetic import SyntheticSourceLogic


def harness(**params):
    return LogicHarness(SyntheticSourceLogic, params, node_id="syn")


def test_counter_counts_and_stops_at_count():
    h = harness(mode="counter", count=3, rate_hz=50)
    assert h.logic.tick_period_s == pytest.approx(0.02)
    out = h.tick(5)
    assert [p.json() for p in out] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert [p.seq for p in out] == [1, 2, 3]
    assert all(p.kind == "telemetry" and p.stream_id == "syn" for p in out)
    assert len({p.idempotency_key for p in out}) == 3


def test_pattern_frames_are_deterministic_and_move():
    a = harness(mode="pattern", width=64, height=48, count=5).tick(5)
    b = harness(mode="pattern", width=64, height=48, count=5).tick(5)
    assert [p.payload for p in a] == [p.payload for p in b]
    img = packet_image(a[0])
    assert img.shape == (48, 64, 3) and a[0].kind == "video.frame"
    assert a[0].payload != a[1].payload          # the box moved
    # gradient: red rises left to right, green top to bottom (away from the box)
    assert img[47, 63, 0] > img[47, 0, 0] and img[47, 0, 1] > img[0, 0, 1]
    mono = harness(mode="pattern", width=32, height=16, encoding="mono8").tick(1)[0]
    assert packet_image(mono).shape == (16, 32)


def test_sensor_sine_without_noise_follows_the_formula():
    h = harness(mode="sensor", rate_hz=20, waveform="sine", amplitude=0.5, offset=2.0, period_s=1.0)
    out = h.tick(20)
    values = [p.json()["range"] for p in out]
    expected = [2.0 + 0.5 * math.sin(2 * math.pi * i / 20) for i in range(20)]
    assert values == pytest.approx(expected)
    assert out[0].kind == "sensor.range"


def test_square_saw_and_clamp():
    sq = [p.json()["v"] for p in harness(mode="sensor", field="v", waveform="square", rate_hz=4,
                                          period_s=1.0, amplitude=1, offset=0).tick(4)]
    assert sq == [1.0, 1.0, -1.0, -1.0]
    saw = [p.json()["range"] for p in harness(mode="sensor", waveform="saw", rate_hz=4, period_s=1.0,
                                               amplitude=1, offset=0, min_value=-0.25).tick(4)]
    assert saw == pytest.approx([-0.25, -0.25, 0.0, 0.5])


def test_noise_is_seeded():
    def run(seed):
        return [p.json()["range"] for p in harness(mode="sensor", noise_std=0.1, seed=seed,
                                                    waveform="constant").tick(50)]
    a, b, c = run(1), run(1), run(2)
    assert a == b and a != c
    assert 0.05 < float(np.std(a)) < 0.2 and abs(float(np.mean(a)) - 2.0) < 0.05


def test_deterministic_stamps_give_byte_identical_runs():
    params = dict(mode="sensor", noise_std=0.05, seed=7, rate_hz=20, deterministic_stamps=True,
                  start_ns=1_700_000_000_000_000_000)
    a = [p.to_dict() for p in harness(**params).tick(10)]
    b = [p.to_dict() for p in harness(**params).tick(10)]
    assert a == b
    assert [d["stamp_ns"] for d in a] == [1_700_000_000_000_000_000 + i * 50_000_000 for i in range(10)]


def test_rate_is_live_and_changes_sample_step():
    h = harness(mode="counter", rate_hz=10, deterministic_stamps=True, start_ns=10**18)
    h.tick(2)
    h.logic.on_params({"rate_hz": 100.0})
    assert h.logic.tick_period_s == pytest.approx(0.01)
    out = h.tick(2)
    assert out[1].stamp_ns - out[0].stamp_ns == 10_000_000
    assert SyntheticSourceLogic.spec.param("rate_hz").live


def test_silence_window_produces_a_gap():
    h = harness(mode="sensor", rate_hz=10, silence_at_s=0.5, silence_s=1.0, deterministic_stamps=True,
                start_ns=10**18)
    out = h.tick(30)
    assert len(out) == 20 and h.ctx.counters["silenced"] == 10
    gaps = [(b.stamp_ns - a.stamp_ns) / 1e9 for a, b in zip(out, out[1:])]
    assert max(gaps) == pytest.approx(1.1)


def test_imu_has_gravity_and_a_unit_quaternion():
    d = harness(mode="imu", rate_hz=100).tick(3)[2].json()
    q = d["orientation"]
    assert math.isclose(q["x"] ** 2 + q["y"] ** 2 + q["z"] ** 2 + q["w"] ** 2, 1.0)
    assert d["linear_acceleration"]["z"] == pytest.approx(9.80665)
    assert d["angular_velocity"]["z"] == pytest.approx(0.1)


@pytest.mark.parametrize("params, text", [
    ({"mode": "video"}, "mode"),
    ({"rate_hz": 0}, "rate_hz"),
    ({"mode": "sensor", "waveform": "noise"}, "waveform"),
])
def test_bad_params_are_clear_errors(params, text):
    with pytest.raises(ValueError, match=text):
        harness(**params)
