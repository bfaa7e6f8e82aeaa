"""The node mailbox on its own (no rclpy): order, per-port overflow policies, drain."""
from __future__ import annotations

import threading
from typing import Any, List

import pytest

from schnitzel_nodes.mailbox import InputPolicy, Mailbox


class Busy:
    """A runner whose first call blocks until released, so later puts only queue."""

    def __init__(self) -> None:
        self.ran: List[Any] = []
        self.gate = threading.Event()
        self.entered = threading.Event()

    def __call__(self, fn: Any, *args: Any) -> None:
        if not self.ran and not self.entered.is_set():
            self.entered.set()
            self.gate.wait(10)
        fn(*args)


def _held(policies: Any = None):
    """A mailbox whose drainer (another thread) is stuck on a first call until ``gate`` is set."""
    runner = Busy()
    drops: List[Any] = []
    mb = Mailbox(runner, policies, on_drop=lambda port, n, cause: drops.append((port, n)))
    t = threading.Thread(target=mb.put, args=(runner.ran.append, "first"), kwargs={"port": "in"})
    t.start()
    assert runner.entered.wait(5)
    return mb, runner, drops, t


@pytest.mark.parametrize("overflow,kept", [("drop_oldest", [1, 4, 5, 6]), ("drop_new", [1, 2, 3, 4])])
def test_overflow_drops_per_port_and_counts_it(overflow, kept):
    mb, runner, drops, t = _held({"in": InputPolicy(overflow, max_queued=3)})
    results = [mb.put(runner.ran.append, i, port="in") for i in range(1, 7)]
    mb.put(runner.ran.append, "tick")            # not an input: never dropped
    mb.put(runner.ran.append, "aux", port="aux")  # another port has its own bound (default)
    runner.gate.set()
    t.join(5)
    assert mb.wait_idle(5)
    ins = [x for x in runner.ran if isinstance(x, int)]
    assert ins == kept[1:] if overflow == "drop_oldest" else ins == kept[:3]
    assert "tick" in runner.ran and "aux" in runner.ran and runner.ran[0] == "first"
    assert mb.dropped == {"in": 3} and sum(n for _, n in drops) == 3
    if overflow == "drop_new":
        assert results.count("dropped") == 3
    else:
        assert results == ["queued"] * 6


def test_overflow_error_refuses_the_input_and_reports_it():
    mb, runner, drops, t = _held({"in": InputPolicy("error", max_queued=2)})
    assert [mb.put(runner.ran.append, i, port="in") for i in range(3)] == ["queued", "queued", "overflow"]
    runner.gate.set()
    t.join(5)
    assert mb.wait_idle(5)
    assert runner.ran == ["first", 0, 1] and drops == []


def test_wait_idle_waits_for_what_was_accepted():
    mb, runner, _, t = _held()
    for i in range(50):
        mb.put(runner.ran.append, i, port="in")
    assert not mb.wait_idle(0.05)                  # still held up: nothing lost, still queued
    assert mb.queued() == {"in": 50}
    runner.gate.set()
    assert mb.wait_idle(5)
    t.join(5)
    assert runner.ran == ["first"] + list(range(50)) and mb.queued() == {}


def test_clear_counts_what_it_drops():
    mb, runner, drops, t = _held()
    for i in range(4):
        mb.put(runner.ran.append, i, port="in")
    mb.put(runner.ran.append, "tick")
    assert mb.clear() == {"in": 4} and drops == [("in", 4)] and mb.dropped == {"in": 4}
    runner.gate.set()
    t.join(5)
    assert runner.ran == ["first"]


def test_policies_are_checked():
    assert InputPolicy.parse("in", {"overflow": "drop_new", "max_queued": 5}) == InputPolicy("drop_new", 5)
    with pytest.raises(ValueError, match="input 'in': overflow must be one of drop_oldest, drop_new, error"):
        InputPolicy.parse("in", {"overflow": "block"})
    with pytest.raises(ValueError, match="max_queued must be an integer >= 1"):
        InputPolicy.parse("in", {"max_queued": 0})
    with pytest.raises(ValueError, match="unknown key"):
        InputPolicy.parse("in", {"depth": 3})
