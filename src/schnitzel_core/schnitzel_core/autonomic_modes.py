"""A controller's **modes** (docs/autonomic.md#modes): named sets of knob values switched together.

A mode such as ``low_power`` sets several of its controller's knobs at once (``set: {src.rate_hz:
5, rs.width: 320}``), as a robot drops into a degraded mode: all or nothing, one audit record.

- **Enter** (automatically, no mode active): the mode's trigger has held for ``enter_after_s``.
  The trigger is its own limits (``trigger:``, objectives' format: e.g. a container's CPU), or
  by default the controller's objectives *once its knobs can shed no more load* (each knob that
  is not pinned at its lightest bound): the violation the knobs one by one cannot fix.
- **Leave**: the trigger's pressure has stayed below ``exit_below`` for ``exit_after_s``; the
  knobs go back to the values they had before the mode.
- Guardrails: a switch counts against ``max_changes_per_min`` and waits for it; two switches
  are ``cooldown_s`` apart; a switch is judged after ``dwell_s`` like a change, and a leave
  (it adds load back) that left the objectives worse is rolled back into the mode. While a mode
  is active the policy does not move its knobs; a pinned knob keeps the operator's value.
- Override: :meth:`ModeLogic.force` holds a mode until :meth:`ModeLogic.release`.

Pure logic with an injected clock, like schnitzel_core.autonomic, whose Controller owns one
:class:`ModeLogic`.
"""
from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Set, Tuple

from .autonomic import (ControlError, ControllerSpec, Decision, Objective, _keys, _num,
                        objective_from_dict, pressure_of)

if TYPE_CHECKING:   # pragma: no cover
    from .autonomic import Controller

MODE_KEYS = ("set", "trigger", "enter_after_s", "exit_after_s", "exit_below", "description")
MODE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    settings: Tuple[Tuple[str, Any], ...]      # (knob "node.param", value), in declared order
    trigger: Tuple[Objective, ...] = ()        # (): the objectives, once the knobs can do no more
    enter_after_s: float = 5.0                 # the trigger holds this long before the mode is entered
    exit_after_s: float = 30.0                 # the pressure stays below exit_below this long to leave
    exit_below: float = 0.8                    # (hysteresis: leave only with headroom)


def modes_from_dict(raw: Any, where: str) -> Tuple[Mode, ...]:
    """A controller's ``modes:`` mapping (name -> mode) -> Modes; ControlError names the field."""
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not raw:
        raise ControlError(f"{where}: modes must be a mapping of mode names to modes, got {raw!r}")
    out: List[Mode] = []
    for name, m in raw.items():
        if not isinstance(name, str) or not MODE_NAME.match(name) or name == "none":
            raise ControlError(f"{where}: mode name {name!r} must be a word (letters, digits, _ or -, "
                               "a letter first; not `none`)")
        mw = f"{where}: modes.{name}"
        m = _keys(m, MODE_KEYS, mw, ("set",))
        settings = m["set"]
        if not isinstance(settings, dict) or not settings:
            raise ControlError(f"{mw}.set must map knobs (node.param) to values, got {settings!r}")
        for key, v in settings.items():
            if isinstance(v, bool) or not isinstance(v, (str, int, float)):
                raise ControlError(f"{mw}.set.{key}: {v!r} is not a text or a number")
        trig = m.get("trigger")
        if trig is not None and (not isinstance(trig, list) or not trig):
            raise ControlError(f"{mw}.trigger must be a non-empty list of limits ({{node, metric, max}})")
        trigger = tuple(objective_from_dict(o, f"{mw}.trigger[{i}]") for i, o in enumerate(trig or []))
        kw: Dict[str, float] = {}
        for k in ("enter_after_s", "exit_after_s"):
            if k in m:
                kw[k] = _num(m[k], f"{mw}.{k}", 0.0)
        if "exit_below" in m:
            kw["exit_below"] = _num(m["exit_below"], f"{mw}.exit_below", 0.0)
            if not 0.0 < kw["exit_below"] <= 1.0:
                raise ControlError(f"{mw}.exit_below must be above 0 and at most 1, got {m['exit_below']!r}")
        out.append(Mode(name, tuple((str(k), v) for k, v in settings.items()), trigger, **kw))
    return tuple(out)


def mode_problems(spec: ControllerSpec) -> List[str]:
    """Each mode setting its knob cannot take: a key that is not a knob of this controller, a
    number outside the knob's bounds (or not whole for an int knob), a value not in an enum
    knob's ``values``."""
    knobs = {k.key: k for k in spec.knobs}
    out: List[str] = []
    for m in spec.modes:
        for key, v in m.settings:
            k = knobs.get(key)
            if k is None:
                out.append(f"mode {m.name!r} sets {key}, which is not a knob of this controller (knobs: "
                           f"{', '.join(knobs)}); declare it under knobs:")
            elif k.enum:
                if v not in (k.values or ()):
                    out.append(f"mode {m.name!r}: {key} = {v!r} is not one of the knob's values "
                               f"({', '.join(map(str, k.values or ()))})")
            elif isinstance(v, str):
                out.append(f"mode {m.name!r}: {key} = {v!r} is not a number (the knob is numeric)")
            elif not k.minimum <= v <= k.maximum:
                out.append(f"mode {m.name!r}: {key} = {v:g} is outside the knob's bounds "
                           f"[{k.minimum:g}, {k.maximum:g}]")
            elif k.integer and float(v) != int(v):
                out.append(f"mode {m.name!r}: {key} = {v:g} is not whole (the parameter is an int)")
    return out


class ModeLogic:
    """The modes of one :class:`~schnitzel_core.autonomic.Controller` (which calls it each step)."""

    KNOB = "mode"      # the audit's ``knob`` of a mode switch (no knob key is a bare word)

    def __init__(self, controller: "Controller") -> None:
        self.c = controller
        self.modes: Dict[str, Mode] = {m.name: m for m in controller.spec.modes}
        self.active: Optional[str] = None
        self.forced = False                       # the active mode is the operator's
        self.saved: Dict[str, Any] = {}           # the knobs' values from before the mode
        self._since: Dict[str, float] = {}        # mode -> since when its trigger holds
        self._fine_since: Optional[float] = None  # since when the active mode's pressure is low
        self._last_switch: Optional[float] = None

    def held(self) -> Set[str]:
        """The knobs the active mode holds (the policy leaves them alone)."""
        return {k for k, _ in self.modes[self.active].settings} if self.active else set()

    def mode(self, name: str) -> Mode:
        if name not in self.modes:
            raise ControlError(f"controller {self.c.spec.name!r} has no mode {name!r} "
                               f"(modes: {', '.join(self.modes) or 'none'})")
        return self.modes[name]

    # ----------------------------------------------------------------- automatic switching
    def _saturated(self) -> bool:
        """No knob can shed more load: each one not pinned is at its lightest bound."""
        c = self.c
        return all(k.key in c.pinned or k.position(c.values[k.key]) == k.clamp(k.lightest())
                   for k in c.spec.knobs)

    @staticmethod
    def _pressure(m: Mode, seen: Mapping[str, float], pressure: float) -> Optional[float]:
        return pressure_of(m.trigger, seen) if m.trigger else pressure

    @staticmethod
    def _shown(m: Mode, seen: Mapping[str, float], metrics: Mapping[str, float]) -> Dict[str, float]:
        return {**metrics, **{o.key: seen[o.key] for o in m.trigger if o.key in seen}}

    def step(self, now: float, seen: Mapping[str, float], pressure: float,
             metrics: Mapping[str, float]) -> Optional[Decision]:
        """Enter or leave a mode if its time has come (None: nothing switched)."""
        if not self.modes or self.forced:
            return None
        c, g = self.c, self.c.spec.guardrails
        ready = (self._last_switch is None or now - self._last_switch >= g.cooldown_s) \
            and len(c._budget) < g.max_changes_per_min
        if self.active is not None:
            m = self.modes[self.active]
            tp = self._pressure(m, seen, pressure)
            if tp is None or tp >= m.exit_below:      # no data, or not fine: start over
                self._fine_since = None
                return None
            if self._fine_since is None:
                self._fine_since = now
            if now - self._fine_since >= m.exit_after_s and ready:
                c._budget.append(now)
                return self._switch(now, None, "mode:leave", self._shown(m, seen, metrics), pressure, "pending")
            return None
        for m in self.modes.values():
            tp = self._pressure(m, seen, pressure)
            if tp is None or tp <= 1.0 or not (m.trigger or self._saturated()):
                self._since.pop(m.name, None)
                continue
            since = self._since.setdefault(m.name, now)
            if now - since >= m.enter_after_s and ready:
                c._budget.append(now)
                return self._switch(now, m.name, "mode:enter", self._shown(m, seen, metrics), pressure, "pending")
        return None

    def judge(self, now: float, pending: Decision, worse: bool, metrics: Mapping[str, float],
              pressure: float) -> Optional[Decision]:
        """After the dwell: a leave (load back on) that left the objectives worse goes back in."""
        if worse and pending.old is not None and pending.new is None and self.active is None \
                and not self.forced:
            pending.outcome = "rolled_back"
            return self._switch(now, pending.old, "rollback", metrics, pressure, "rolled_back", pending.id)
        return None

    # ----------------------------------------------------------------- operator override
    def force(self, name: str, now: float) -> Decision:
        """Enter ``name`` now and hold it until :meth:`release` (automatic switching stops)."""
        self.mode(name)
        c = self.c
        if c._pending is not None and c._pending.knob == self.KNOB:
            c._pending = None      # the operator decided: nothing left to judge
        d = self._switch(now, name, "override:mode", {}, None, "override")
        self.forced = True
        return d

    def release(self, now: float) -> Decision:
        """Leave the forced mode now (knobs back to their values from before it)."""
        if not self.forced:
            raise ControlError(f"controller {self.c.spec.name!r} has no forced mode "
                               f"(active: {self.active or 'none'})")
        self.forced = False
        return self._switch(now, None, "override:mode_release", {}, None, "override")

    # ----------------------------------------------------------------- the switch itself
    def _switch(self, now: float, target: Optional[str], rule: str, metrics: Mapping[str, float],
                pressure: Optional[float], outcome: str, ref: Optional[int] = None) -> Decision:
        """Every knob at once: the target's values, the others back to their saved values."""
        c = self.c
        old_mode = self.active
        restore = dict(self.saved) if old_mode is not None else {}
        target_vals = dict(self.modes[target].settings) if target else {}
        want = {k: v for k, v in restore.items() if k not in target_vals}
        want.update(target_vals)
        saved = {k: restore.get(k, c.values[k]) for k in target_vals}   # before anything moves
        changes: Dict[str, List[Any]] = {}
        for key, v in want.items():
            if key in c.pinned:
                continue          # the operator's value wins
            knob = c.knob(key)
            pos = knob.clamp(knob.position(v) if knob.enum else float(v))
            new, old = knob.value_at(pos), c.values[key]
            if new == old or not c._set(knob, new):
                continue
            changes[key] = [old, new]
            c._last_change[key] = now
            c._count_direction(key, pos, knob.position(old))
        self.saved = saved
        self.active = target
        self._last_switch = now
        self._since.clear()
        self._fine_since = None
        d = c._record(now, self.KNOB, old_mode, target, rule, metrics, pressure, outcome, ref, changes)
        if outcome == "pending":
            c._pending = d
        return d
