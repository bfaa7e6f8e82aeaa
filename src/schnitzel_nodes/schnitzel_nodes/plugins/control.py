"""Control: router, switch, duplicator.

Ports are static (the validator checks edges against the spec): outputs ``out0``..``out3``
(plus ``default`` for the router), inputs ``in0``..``in3`` for the switch. Leaving a port
unconnected is fine: packets sent there go nowhere.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Dict, List, Mapping, Optional, Tuple

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, In, Out, Param, PluginSpec

from ._common import ConfigError, Control
from .expr import Expression

OUTS = ("out0", "out1", "out2", "out3")
INS = ("in0", "in1", "in2", "in3")


class RouterLogic(Control):
    """Routes packets to ``out0``..``out3`` by kind, stream, meta or expression.

    ``routes`` is an ordered list of ``{port, kind?, stream?, meta?: {k: v}, when?}``; ``kind``
    and ``stream`` are glob patterns (``video.*``), ``meta`` values must match exactly (globs
    allowed), ``when`` is a safe expression. All given conditions must hold. ``mode: first``
    sends to the first matching route only, ``all`` to every matching one. Unmatched packets
    go to ``default`` (counted ``unmatched``).
    """

    spec = PluginSpec(
        name="router", category=Category.CONTROL, version="1.0.0",
        description="Route packets by kind, stream, meta or expression to out0..out3 (else default).",
        ports=(In("in", ("*",)),) + tuple(Out(n, ("*",)) for n in OUTS) + (Out("default", ("*",), description="unmatched packets"),),
        params=(
            Param("routes", "list", [], "ordered [{port: out0..out3, kind?, stream?, meta?, when?}]", live=True),
            Param("mode", "str", "first", "first: first matching route only; all: every matching route", enum=("first", "all"), live=True),
        ),
    )

    def configure(self) -> None:
        self._routes = self._compile(self.params["routes"])

    @staticmethod
    def _compile(routes: Any) -> List[Dict[str, Any]]:
        if not isinstance(routes, list):
            raise ConfigError("router: routes must be a list of {port, kind?, stream?, meta?, when?}")
        out = []
        for i, r in enumerate(routes):
            if not isinstance(r, dict):
                raise ConfigError(f"router: route {i} must be an object")
            unknown = set(r) - {"port", "kind", "stream", "meta", "when"}
            if unknown:
                raise ConfigError(f"router: route {i} has unknown keys {sorted(unknown)} (use port, kind, stream, meta, when)")
            if r.get("port") not in OUTS:
                raise ConfigError(f"router: route {i} port must be one of {', '.join(OUTS)}, got {r.get('port')!r}")
            meta = r.get("meta") or {}
            if not isinstance(meta, dict):
                raise ConfigError(f"router: route {i} meta must be a mapping")
            out.append({"port": r["port"], "kind": r.get("kind"), "stream": r.get("stream"),
                        "meta": {str(k): str(v) for k, v in meta.items()},
                        "when": Expression(str(r["when"]), f"router: route {i} 'when'") if r.get("when") else None})
        return out

    def on_params(self, changed: Mapping[str, Any]) -> None:
        if "routes" in changed:
            self._routes = self._compile(changed["routes"])
        self.params.update(changed)

    @staticmethod
    def matches(r: Dict[str, Any], packet: Packet) -> bool:
        if r["kind"] and not fnmatch.fnmatchcase(packet.kind, r["kind"]):
            return False
        if r["stream"] and not fnmatch.fnmatchcase(packet.stream_id, r["stream"]):
            return False
        for k, v in r["meta"].items():
            if k not in packet.meta or not fnmatch.fnmatchcase(packet.meta[k], v):
                return False
        return r["when"] is None or r["when"].test(packet)

    def process(self, port: str, packet: Packet) -> Any:
        out: List[Tuple[str, Packet]] = []
        for r in self._routes:
            if self.matches(r, packet) and all(r["port"] != o for o, _ in out):
                out.append((r["port"], packet))
                if self.params["mode"] == "first":
                    break
        if not out:
            self.ctx.count("unmatched")
            out.append(("default", packet))
        return out


class SwitchLogic(Control):
    """Passes packets from the ``active`` input (in0..in3) only; switch with a live parameter."""

    spec = PluginSpec(
        name="switch", category=Category.CONTROL, version="1.0.0",
        description="Forward one of up to four inputs, chosen by the live parameter 'active'.",
        ports=tuple(In(n, ("*",)) for n in INS) + (Out("out", ("*",)),),
        params=(
            Param("active", "str", "in0", "the input that passes; the others are dropped (counted)", enum=INS, live=True),
        ),
    )

    def configure(self) -> None:
        if self.params["active"] not in INS:
            raise ConfigError(f"switch: active must be one of {', '.join(INS)}, got {self.params['active']!r}")

    def on_params(self, changed: Mapping[str, Any]) -> None:
        if "active" in changed and changed["active"] not in INS:
            raise ConfigError(f"switch: active must be one of {', '.join(INS)}, got {changed['active']!r}")
        self.params.update(changed)

    def process(self, port: str, packet: Packet) -> Optional[Packet]:
        if port != self.params["active"]:
            self.ctx.count("dropped")
            return None
        return packet


class DuplicatorLogic(Control):
    """Sends every packet to every output (out0..out3); the same object, no copy."""

    spec = PluginSpec(
        name="duplicator", category=Category.CONTROL, version="1.0.0",
        description="Copy every input packet to all outputs out0..out3.",
        ports=(In("in", ("*",)),) + tuple(Out(n, ("*",)) for n in OUTS),
        params=(),
    )

    def process(self, port: str, packet: Packet) -> Any:
        return [(o, packet) for o in OUTS]


__all__ = ["RouterLogic", "SwitchLogic", "DuplicatorLogic"]
