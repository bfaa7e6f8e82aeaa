"""Test helpers: a harness to unit-test node logic without DDS, a poll-until, and a reader of
what a JSONL sink wrote.

    h = LogicHarness(ZonesLogic, {"zones": [...]})
    h.send("in", packet)
    assert h.out("events") == [...]
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Type

from .packet import Packet
from .plugin import NodeContext, NodeLogic


class LogicHarness:
    def __init__(self, logic_cls: Type[NodeLogic], params: Optional[Mapping[str, Any]] = None,
                 node_id: str = "node", graph: str = "test", clock_ns: Optional[Any] = None,
                 blackboard: Any = None, activate: bool = True) -> None:
        merged: Dict[str, Any] = dict(logic_cls.spec.defaults())
        merged.update(params or {})
        self.ctx = NodeContext(node_id, merged, graph=graph, clock=clock_ns,
                               logger=logging.getLogger(f"test.{node_id}"), blackboard=blackboard)
        self.logic = logic_cls(self.ctx)
        self.logic.configure()
        if activate:
            self.logic.activate()

    def send(self, port: str, packet: Packet) -> List[Packet]:
        """Deliver one packet; returns everything emitted as a result, in order."""
        before = len(self.ctx.emitted)
        self.logic.on_packet(port, packet)
        return [p for _, p in self.ctx.emitted[before:]]

    def tick(self, n: int = 1) -> List[Packet]:
        before = len(self.ctx.emitted)
        for _ in range(n):
            self.logic.tick()
        return [p for _, p in self.ctx.emitted[before:]]

    def out(self, port: Optional[str] = None) -> List[Packet]:
        return [p for name, p in self.ctx.emitted if port is None or name == port]

    def clear(self) -> None:
        self.ctx.emitted.clear()

    def stop(self) -> None:
        self.logic.deactivate()
        self.logic.cleanup()


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, step: float = 0.02) -> Any:
    """Call ``cond`` every ``step`` seconds until it returns something truthy or ``timeout``
    passes; returns that value (or the last falsy one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    return cond()


def jsonl_rows(path: Any) -> List[Dict[str, Any]]:
    """The JSON objects of a JSONL file, one per line; a line still being written (or not an
    object) is skipped, a file not there yet reads as empty."""
    import json

    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        return []
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
