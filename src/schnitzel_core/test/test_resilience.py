import random

import pytest

from schnitzel_core.resilience import Backoff, BreakerState, CircuitBreaker


def test_backoff_full_jitter_within_exponential_ceiling():
    b = Backoff(base_s=0.1, cap_s=2.0, rng=random.Random(1))
    assert [b.ceiling(i) for i in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 2.0])
    assert b.ceiling(10_000) == 2.0  # no overflow
    for attempt in range(8):
        ds = [b.delay(attempt) for _ in range(500)]
        assert all(0 <= d <= b.ceiling(attempt) for d in ds)
        # full jitter spreads over the whole range, not around the ceiling
        assert min(ds) < 0.1 * b.ceiling(attempt) and max(ds) > 0.9 * b.ceiling(attempt)


def test_backoff_rejects_bad_parameters():
    with pytest.raises(ValueError):
        Backoff(base_s=0)
    with pytest.raises(ValueError):
        Backoff(base_s=2, cap_s=1)


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_breaker_opens_probes_at_interval_and_closes_on_success():
    clock = FakeClock()
    changes = []
    br = CircuitBreaker(failure_threshold=3, probe_interval_s=1.0, clock=clock,
                        on_change=lambda a, b: changes.append((a.value, b.value)))
    for _ in range(2):
        assert br.allow()
        br.failure()
    assert br.state == BreakerState.CLOSED
    assert br.allow()
    br.failure()
    assert br.state == BreakerState.OPEN and br.opens == 1
    # open: nothing passes until the probe interval has elapsed
    assert not br.allow()
    clock.t += 0.5
    assert not br.allow() and br.time_to_probe() == pytest.approx(0.5)
    clock.t += 0.5
    assert br.allow() and br.state == BreakerState.HALF_OPEN
    assert not br.allow()  # only one probe per interval
    br.failure()  # failed probe: open again for another interval
    assert br.state == BreakerState.OPEN and not br.allow()
    # over 10 s of outage, exactly one attempt per probe interval
    allowed = 0
    for _ in range(100):
        clock.t += 0.1
        if br.allow():
            allowed += 1
            br.failure()
    assert allowed in (9, 10)  # float steps: 10 intervals, the last may land a hair short
    clock.t += 1.0
    assert br.allow()
    br.success()
    assert br.state == BreakerState.CLOSED and all(br.allow() for _ in range(5))
    assert ("closed", "open") in changes and ("half_open", "closed") in changes


def test_breaker_probe_that_never_reports_does_not_wedge_it():
    clock = FakeClock()
    br = CircuitBreaker(failure_threshold=1, probe_interval_s=2.0, clock=clock)
    br.failure()
    clock.t += 2
    assert br.allow()  # probe sent ... and lost
    clock.t += 1
    assert not br.allow()
    clock.t += 1.01
    assert br.allow()
