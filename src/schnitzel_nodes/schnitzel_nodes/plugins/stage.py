"""A simulated processing stage that queues its inputs: the load in sizing and control benchmarks.

Unlike ``synthetic_model`` (a compute node: latest-only input, so a slow model drops frames and
its latency stays bounded), this is a transform: its input port queues (``inputs:`` sets
``max_queued`` and ``overflow``), so inputs faster than it can work pile up and the latency from
the source grows with the queue, as a buffered pipeline stage does (bench/bench_autonomic.py).
"""
from __future__ import annotations

from typing import Any

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, In, Out, Param, PluginSpec

from ._common import Transform, spend_time


class SyntheticStageLogic(Transform):
    spec = PluginSpec(
        name="synthetic_stage", category=Category.TRANSFORM, version="1.0.0",
        description="Simulated queued stage: spends latency_ms per packet (sleep or busy CPU), forwards it unchanged.",
        ports=(In("in", ("*",), description="any packets, queued (inputs: max_queued/overflow)"),
               Out("out", ("*",), description="the same packets, after the work")),
        params=(
            Param("latency_ms", "float", 50.0, "time spent per packet", minimum=0.0, maximum=60000.0, live=True),
            Param("busy", "bool", False, "burn CPU for the time instead of sleeping", live=True),
        ),
    )

    def process(self, port: str, packet: Packet) -> Any:
        spend_time(float(self.params["latency_ms"]), bool(self.params["busy"]))
        return packet
