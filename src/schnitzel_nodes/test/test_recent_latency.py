"""The heartbeat's `latency_p95_recent_ms`: p95 of the last few seconds only (docs/runtime.md)."""
from schnitzel_core.packet import now_ns
from schnitzel_nodes.ros import stats as adapter   # Stats lives in ros/stats.py since the adapter split


def test_recent_p95_forgets_packets_older_than_its_window(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(adapter.time, "monotonic", lambda: clock[0])
    s = adapter.Stats()
    assert s.recent_p95() is None
    for _ in range(20):
        s.received(now_ns() - 500_000_000)        # 500 ms old
    assert 480 < s.recent_p95() < 2000
    clock[0] += adapter.RECENT_LATENCY_S + 1      # those are now outside the window
    for _ in range(20):
        s.received(now_ns() - 10_000_000)         # 10 ms old
    assert s.recent_p95() < 400
    assert s.percentiles()[2] >= 480              # the 2048-packet window still holds them
