"""Resolved QoS mappings (schnitzel_core.qos) -> rclpy QoSProfile.

Accepts what LoadNode's ``ports_json`` carries: a resolved mapping
(reliability, durability, history, depth, deadline_ms, lifespan_ms), a preset
name ("frames", "sensor", "events", "state"), a ``schnitzel_core.qos.QoS`` or
None (the "events" preset). Invalid values raise ``QosError`` with the reason.
"""
from __future__ import annotations

from typing import Any

from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from schnitzel_core import qos as core_qos
from schnitzel_core.qos import QoS, QosError

_REL = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}
_DUR = {"volatile": DurabilityPolicy.VOLATILE, "transient_local": DurabilityPolicy.TRANSIENT_LOCAL}
_HIST = {"keep_last": HistoryPolicy.KEEP_LAST, "keep_all": HistoryPolicy.KEEP_ALL}


def resolve(spec: Any) -> QoS:
    """The schnitzel QoS for a preset name, mapping, QoS or None (raises QosError)."""
    if isinstance(spec, QoS):
        return spec
    return core_qos.resolve(spec)


def to_profile(spec: Any) -> QoSProfile:
    """An rclpy QoSProfile for a preset name, resolved mapping, QoS or None."""
    q = resolve(spec)
    kw = dict(reliability=_REL[q.reliability], durability=_DUR[q.durability],
              history=_HIST[q.history], depth=int(q.depth))
    if q.deadline_ms:
        kw["deadline"] = Duration(nanoseconds=int(q.deadline_ms * 1e6))
    if q.lifespan_ms:
        kw["lifespan"] = Duration(nanoseconds=int(q.lifespan_ms * 1e6))
    return QoSProfile(**kw)


__all__ = ["QosError", "resolve", "to_profile"]
