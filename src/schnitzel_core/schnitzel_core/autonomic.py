"""The autonomic controller's pure core: knobs, objectives, guardrails, policies, overrides, audit.

A controller watches a few metrics (its **objectives**, each an upper limit such as "p95 latency
at ``detector`` <= 150 ms") and moves a few live node parameters (its **knobs**, such as the
source's ``fps``) to keep the objectives met while running as much work as the limits allow.
It belongs to the control plane: it reads the status the lifecycle manager already receives and
sets parameters through the nodes' ROS parameter services; it never sees a packet.

Everything here is plain Python with an injected clock (``now`` in seconds), so every guardrail
is testable without ROS (docs/autonomic.md). The ROS host is
``schnitzel_bringup.controller_node``.

One step (:meth:`Controller.step`) in this order:

1. suspended -> nothing (an operator override always wins);
2. a missing metric -> nothing (never judge on no data);
3. a change still in its **dwell** time -> nothing; after the dwell it is judged: a change
   towards more load (``cost`` direction) that left the pressure worse than before (by more
   than ``rollback_tolerance``) and over the limit is **rolled back** to the old value, else
   it is **kept** (both are audit records);
4. the policy proposes a new value per knob; pinned knobs, knobs in their **cooldown** and a
   spent **budget** (changes per minute) hold; the proposal is limited to ``max_step`` and
   clamped to ``[min, max]``; at most one knob changes per step, so each change is judged alone.

An enum knob (``values:``, e.g. model files) moves by its position in the list under the same
guardrails. A controller's **modes** (named knob sets switched together, e.g. ``low_power``) are
``schnitzel_core.autonomic_modes``; they step between 2. and 4.
"""
from __future__ import annotations

import dataclasses
import math
from collections import deque
from importlib import metadata
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Tuple

#: Entry point group of controller policies (``name = module:PolicyClass``), found like plugins.
POLICY_ENTRY_POINT_GROUP = "schnitzel.policies"

#: Metrics an objective may name, with what each one measures.
METRICS: Dict[str, str] = {
    "latency_p95_ms": "95th percentile latency from the source stamp to the node's input over the last 2 s, ms",
    "drop_rate": "packets dropped / (packets taken in + dropped) at the node since the last status, 0..1",
    "cpu_percent": "CPU of the process (container) hosting the node, % of one core",
    "queue_oldest_age_s": "age of the oldest row held by a durable queue node, s (its counter oldest_age_ms)",
}


class ControlError(ValueError):
    """A controller declaration or an override that cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class Knob:
    """A node's live parameter the controller may move within ``[minimum, maximum]``.

    An **enum knob** (``values``: an ordered list of choices, e.g. model files or presets) is
    moved by its *position* in the list: ``minimum``/``maximum`` are then 0 and ``len - 1``,
    the policies and guardrails see positions, and the node is set to ``values[position]``.
    ``cost: increasing`` means a later value is more load (list the lightest first).
    """

    node: str
    param: str
    minimum: float
    maximum: float
    max_step: Optional[float] = None   # largest change in one decision (None: the whole range)
    integer: bool = False              # the param is an int: values are rounded
    cost: str = "increasing"           # "increasing": a higher value means more load (fps, width);
    #                                    "decreasing": a lower value means more load (sampler n)
    values: Optional[Tuple[Any, ...]] = None   # an enum knob's choices, in order

    @property
    def key(self) -> str:
        return f"{self.node}.{self.param}"

    @property
    def enum(self) -> bool:
        return self.values is not None

    def position(self, value: Any) -> float:
        """Where ``value`` sits on the knob's scale: the value itself, or an enum's index."""
        if self.values is None:
            return float(value)
        return float(self.values.index(value))

    def value_at(self, position: float) -> Any:
        """The parameter value for a (clamped) position; the inverse of :meth:`position`."""
        if self.values is None:
            return position
        return self.values[int(position)]

    def choice(self, value: Any) -> Any:
        """The enum value an operator means by ``value`` (itself, or its text); ControlError if none."""
        assert self.values is not None
        for v in self.values:            # the value itself first, then its text
            if v == value and isinstance(v, str) == isinstance(value, str):
                return v
        for v in self.values:
            if str(v) == str(value):
                return v
        raise ControlError(f"{value!r} is not one of knob {self.key}'s values "
                           f"({', '.join(map(str, self.values))})")

    def lightest(self) -> float:
        """The position that sheds the most load."""
        return self.minimum if self.cost == "increasing" else self.maximum

    def clamp(self, value: float) -> float:
        value = min(self.maximum, max(self.minimum, value))
        if self.integer or self.values is not None:
            # round inside the bounds (a fractional bound must not round outside itself)
            value = float(min(math.floor(self.maximum), max(math.ceil(self.minimum), round(value))))
        return value

    def heavier(self, new: float, old: float) -> bool:
        """Does moving from ``old`` to ``new`` add load?"""
        return new > old if self.cost == "increasing" else new < old


@dataclasses.dataclass(frozen=True)
class Objective:
    """An upper limit on one metric of one node: ``metric`` at ``node`` <= ``limit``."""

    node: str
    metric: str
    limit: float

    @property
    def key(self) -> str:
        return f"{self.node}.{self.metric}"


@dataclasses.dataclass(frozen=True)
class Guardrails:
    cooldown_s: float = 10.0           # least time between two changes of the same knob
    dwell_s: float = 5.0               # time a change runs before it is judged (and before the next)
    rollback: bool = True              # undo a load-adding change that made the objectives worse
    rollback_tolerance: float = 0.1    # "worse" = pressure above before x (1 + tolerance)
    max_changes_per_min: int = 6       # budget over any 60 s window (rollbacks and overrides excluded)


@dataclasses.dataclass
class Decision:
    """One audit record: a change, its cause and (later) its outcome."""

    id: int
    t: float
    controller: str
    knob: str                          # "node.param"; "*" for suspend/resume; "mode" for a mode switch
    old: Any                           # the knob's value (an enum knob: the list's entry); a mode switch:
    new: Any                           # the mode's name (None: no mode)
    rule: str                          # e.g. "aimd:decrease", "rollback", "override:pin", "mode:enter"
    metrics: Dict[str, float]
    pressure: Optional[float]
    outcome: str = "pending"           # pending -> kept | rolled_back; overrides: "override"
    ref: Optional[int] = None          # a rollback/outcome record: the decision it refers to
    changes: Optional[Dict[str, List[Any]]] = None   # a mode switch: knob -> [old, new], every knob it set

    def to_json(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- policies

class Policy:
    """Proposes a knob's next value from the current pressure (max of metric / limit).

    ``pressure`` > 1 means an objective is violated; < 1 is headroom. A policy is stateless
    between calls except for what it keeps in ``memory`` (one dict per knob, owned by the
    controller). Guardrails are applied after the policy; a policy need not clamp.
    """

    name = "policy"
    #: the policy's settings with their defaults (the graph's ``policy_params`` override them)
    defaults: Dict[str, float] = {}

    def __init__(self, **params: float) -> None:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ControlError(f"policy {self.name!r} has no setting {', '.join(map(repr, unknown))} "
                               f"(settings: {', '.join(sorted(self.defaults)) or 'none'})")
        self.params = {**self.defaults, **{k: float(v) for k, v in params.items()}}

    def propose(self, knob: Knob, value: float, pressure: float,
                memory: Dict[str, Any]) -> Tuple[float, str]:
        """(new value, rule); return ``value`` unchanged to hold."""
        raise NotImplementedError


class AimdPolicy(Policy):
    """Additive increase, multiplicative decrease (as adaptive concurrency control does).

    Over the limit (pressure > 1): multiply the load by ``decrease_factor`` (a ``cost:
    decreasing`` knob is divided by it), unless the pressure is still falling since the policy
    last looked (by more than ``improving``, a fraction): then the last decrease is still
    draining a backlog and a further one would overshoot. With headroom (pressure <
    ``headroom``): add ``increase_step`` (a fraction of the knob's range) towards more load.
    Between: hold.
    """

    name = "aimd"
    defaults = {"increase_step": 0.05, "decrease_factor": 0.7, "headroom": 0.8, "improving": 0.05}

    def propose(self, knob: Knob, value: float, pressure: float,
                memory: Dict[str, Any]) -> Tuple[float, str]:
        p = self.params
        up = 1.0 if knob.cost == "increasing" else -1.0
        last = memory.get("pressure")
        memory["pressure"] = pressure
        if pressure > 1.0:
            if last is not None and pressure < last * (1.0 - p["improving"]):
                return value, "aimd:improving"
            f = p["decrease_factor"]
            if knob.enum:
                # the load position (0: lightest) shrinks by the factor, by one entry at least
                load = value - knob.minimum if up > 0 else knob.maximum - value
                load = min(load - 1.0, math.floor(load * f))
                return (knob.minimum + load if up > 0 else knob.maximum - load), "aimd:decrease"
            new = value * f if up > 0 else (value / f if f > 0 else knob.maximum)
            if new == value:   # a zero value cannot shrink multiplicatively: step instead
                new = value - up * p["increase_step"] * (knob.maximum - knob.minimum)
            return new, "aimd:decrease"
        if pressure < p["headroom"]:
            step = p["increase_step"] * (knob.maximum - knob.minimum)
            if knob.enum:
                step = 1.0             # one entry up the list
            elif knob.integer:
                step = max(step, 1.0)
            return value + up * step, "aimd:increase"
        return value, "aimd:hold"


class GradientPolicy(Policy):
    """Steer the pressure to ``setpoint`` with the slope measured on the previous change.

    slope = d(pressure)/d(knob) from the last judged change (used only when it has the sign the
    knob's ``cost`` implies); without one the step is ``gain x (setpoint - pressure) x range``.
    Within ``deadband`` of the setpoint: hold.
    """

    name = "gradient"
    defaults = {"setpoint": 0.8, "gain": 0.5, "deadband": 0.1}

    def propose(self, knob: Knob, value: float, pressure: float,
                memory: Dict[str, Any]) -> Tuple[float, str]:
        p = self.params
        err = p["setpoint"] - pressure
        prev = memory.get("prev")
        memory["prev"] = (value, pressure)
        if abs(err) <= p["deadband"]:
            return value, "gradient:hold"
        up = 1.0 if knob.cost == "increasing" else -1.0
        slope = None
        if prev is not None and prev[0] != value:
            s = (pressure - prev[1]) / (value - prev[0])
            if s * up > 1e-12:        # more load -> more pressure, as expected
                slope = s
        if slope is not None:
            new, rule = value + p["gain"] * err / slope, "gradient:slope"
        else:
            new, rule = value + up * p["gain"] * err * (knob.maximum - knob.minimum), "gradient:proportional"
        if knob.enum and new != value:
            new = value + (1.0 if new > value else -1.0)    # an enum knob moves one entry at a time
        return new, rule


BUILTIN_POLICIES: Dict[str, type] = {"aimd": AimdPolicy, "gradient": GradientPolicy}


def load_policies(group: str = POLICY_ENTRY_POINT_GROUP) -> Dict[str, type]:
    """Policy classes by name: the built-ins plus every ``Policy`` subclass under ``group``.

    A broken entry point is skipped (its name is absent, so the validator reports the graph
    naming it as an unknown policy with the list of the ones that load)."""
    found: Dict[str, type] = dict(BUILTIN_POLICIES)
    for ep in metadata.entry_points(group=group):
        try:
            obj = ep.load()
        except Exception:  # noqa: BLE001 - one broken policy must not break the others
            continue
        if isinstance(obj, type) and issubclass(obj, Policy):
            found[ep.name] = obj
    return found


# --------------------------------------------------------------------------- the controller

@dataclasses.dataclass(frozen=True)
class ControllerSpec:
    name: str
    knobs: Tuple[Knob, ...]
    objectives: Tuple[Objective, ...]
    policy: str = "aimd"
    policy_params: Mapping[str, float] = dataclasses.field(default_factory=dict)
    guardrails: Guardrails = Guardrails()
    modes: Tuple[Any, ...] = ()        # schnitzel_core.autonomic_modes.Mode, in declared order


def pressure_of(objectives: Sequence[Objective], metrics: Mapping[str, float]) -> Optional[float]:
    """max(metric / limit) over the objectives; None when a metric is missing."""
    worst = 0.0
    for o in objectives:
        v = metrics.get(o.key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        worst = max(worst, v / o.limit if o.limit > 0 else (math.inf if v > 0 else 0.0))
    return worst


class Controller:
    """One controller's decisions; the host applies them (``apply``) and records them (``audit``).

    ``apply(knob, value) -> bool`` sets the parameter (False: the node refused it, the value is
    not taken); ``audit(record)`` receives every :class:`Decision` and outcome record.
    """

    def __init__(self, spec: ControllerSpec, initial: Mapping[str, float],
                 apply: Callable[[Knob, float], bool] = lambda k, v: True,
                 audit: Callable[[Decision], None] = lambda d: None,
                 policies: Optional[Mapping[str, type]] = None) -> None:
        classes = policies if policies is not None else load_policies()
        if spec.policy not in classes:
            raise ControlError(f"unknown policy {spec.policy!r} (installed: {', '.join(sorted(classes))})")
        self.spec = spec
        self.policy: Policy = classes[spec.policy](**dict(spec.policy_params))
        self.values: Dict[str, Any] = {}   # a numeric knob's float, an enum knob's list entry
        for k in spec.knobs:
            if k.key not in initial:
                raise ControlError(f"no initial value for knob {k.key}")
            v = initial[k.key]
            if k.enum and not any(v == x for x in k.values or ()):
                raise ControlError(f"knob {k.key}: the node's value {v!r} is not one of its values "
                                   f"({', '.join(map(str, k.values or ()))})")
            self.values[k.key] = k.choice(v) if k.enum else float(v)
        self._apply = apply
        self._audit = audit
        self.pinned: Dict[str, float] = {}
        self.suspended = False
        self.decisions: List[Decision] = []
        self._next_id = 1
        self._pending: Optional[Decision] = None
        self._last_change: Dict[str, float] = {}
        self._last_dir: Dict[str, int] = {}
        self._budget: Deque[float] = deque()
        self._memory: Dict[str, Dict[str, Any]] = {k.key: {} for k in spec.knobs}
        self.reversals = 0
        from .autonomic_modes import ModeLogic   # (that module builds on this one)

        self.modes = ModeLogic(self)

    # ----------------------------------------------------------------- helpers
    def knob(self, key: str) -> Knob:
        for k in self.spec.knobs:
            if k.key == key:
                return k
        raise ControlError(f"controller {self.spec.name!r} has no knob {key!r} "
                           f"(knobs: {', '.join(k.key for k in self.spec.knobs)})")

    def _record(self, now: float, knob: str, old: Any, new: Any, rule: str,
                metrics: Mapping[str, float], pressure: Optional[float], outcome: str = "pending",
                ref: Optional[int] = None, changes: Optional[Dict[str, List[Any]]] = None) -> Decision:
        d = Decision(self._next_id, now, self.spec.name, knob, old, new, rule,
                     {k: float(v) for k, v in metrics.items()}, pressure, outcome, ref, changes)
        self._next_id += 1
        self.decisions.append(d)
        self._audit(d)
        return d

    def _set(self, knob: Knob, value: Any) -> bool:
        if not self._apply(knob, value):
            return False
        self.values[knob.key] = value
        return True

    def _count_direction(self, key: str, new: float, old: float) -> None:
        """A change against the knob's previous direction (a rollback included) is a reversal."""
        direction = 1 if new > old else -1
        if self._last_dir.get(key, 0) == -direction:
            self.reversals += 1
        self._last_dir[key] = direction

    # ----------------------------------------------------------------- operator override
    def pin(self, key: str, value: Any, now: float) -> Decision:
        """Hold ``key`` at ``value`` until released; the controller never moves a pinned knob.
        An enum knob takes one of its values (or its text)."""
        knob = self.knob(key)
        if knob.enum:
            value = knob.choice(value)
        else:
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ControlError(f"knob {key} takes a number, got {value!r}") from None
        old = self.values[key]
        if self._pending is not None and self._pending.knob == key:
            self._pending = None     # the operator replaced that change: nothing left to judge
        if not self._set(knob, value):
            raise ControlError(f"node {knob.node!r} refused {knob.param}={value!r}")
        self.pinned[key] = value
        return self._record(now, key, old, value, "override:pin", {}, None, "override")

    def release(self, key: str, now: float) -> Decision:
        self.knob(key)
        self.pinned.pop(key, None)
        v = self.values[key]
        self._last_change[key] = now   # the controller resumes from here after a cooldown
        return self._record(now, key, v, v, "override:release", {}, None, "override")

    def suspend(self, now: float) -> Decision:
        self.suspended = True
        self._pending = None
        return self._record(now, "*", math.nan, math.nan, "override:suspend", {}, None, "override")

    def resume(self, now: float) -> Decision:
        self.suspended = False
        for k in self.spec.knobs:
            self._last_change[k.key] = now
        return self._record(now, "*", math.nan, math.nan, "override:resume", {}, None, "override")

    # ----------------------------------------------------------------- one step
    def step(self, now: float, metrics: Mapping[str, float]) -> Optional[Decision]:
        """Judge the pending change and maybe make one new one; returns the decision made."""
        if self.suspended:
            return None
        pressure = pressure_of(self.spec.objectives, metrics)
        if pressure is None:
            return None
        seen = metrics
        metrics = {o.key: metrics[o.key] for o in self.spec.objectives}   # what the audit shows
        g = self.spec.guardrails
        pending = self._pending
        if pending is not None:
            if now - pending.t < g.dwell_s:
                return None
            self._pending = None
            before = pending.pressure if pending.pressure is not None else pressure
            worse = g.rollback and pressure > before * (1.0 + g.rollback_tolerance) and pressure > 1.0
            if pending.knob == self.modes.KNOB:
                rolled = self.modes.judge(now, pending, worse, metrics, pressure)
                if rolled is not None:
                    return rolled
            else:
                knob = self.knob(pending.knob)
                old_pos, new_pos = knob.position(pending.old), knob.position(pending.new)
                if worse and knob.heavier(new_pos, old_pos) and pending.knob not in self.pinned \
                        and pending.knob not in self.modes.held():
                    if self._set(knob, pending.old):
                        pending.outcome = "rolled_back"
                        self._last_change[knob.key] = now
                        self._count_direction(knob.key, old_pos, new_pos)
                        return self._record(now, knob.key, pending.new, pending.old, "rollback", metrics,
                                            pressure, "rolled_back", ref=pending.id)
            pending.outcome = "kept"
            self._record(now, pending.knob, pending.old, pending.new, "judged", metrics, pressure,
                         "kept", ref=pending.id)
        while self._budget and now - self._budget[0] >= 60.0:
            self._budget.popleft()
        switched = self.modes.step(now, seen, pressure, metrics)
        if switched is not None:
            return switched
        if len(self._budget) >= g.max_changes_per_min:
            return None
        held = self.modes.held()
        for knob in self.spec.knobs:
            key = knob.key
            if key in self.pinned or key in held:
                continue
            last = self._last_change.get(key)
            if last is not None and now - last < g.cooldown_s:
                continue
            old = self.values[key]
            pos = knob.position(old)
            proposed, rule = self.policy.propose(knob, pos, pressure, self._memory[key])
            if proposed is None or not math.isfinite(proposed):
                continue
            if knob.max_step is not None:
                proposed = min(pos + knob.max_step, max(pos - knob.max_step, proposed))
            new_pos = knob.clamp(proposed)
            if new_pos == pos:
                continue
            new = knob.value_at(new_pos)
            if not self._set(knob, new):
                continue
            self._count_direction(key, new_pos, pos)
            self._last_change[key] = now
            self._budget.append(now)
            d = self._record(now, key, old, new, rule, metrics, pressure)
            self._pending = d
            return d
        return None


# --------------------------------------------------------------------------- graph declaration

CONTROLLER_KEYS = ("name", "policy", "policy_params", "interval_s", "knobs", "objectives", "guardrails",
                   "modes", "description")
KNOB_KEYS = ("node", "param", "min", "max", "values", "max_step", "cost")
OBJECTIVE_KEYS = ("node", "metric", "max")
GUARDRAIL_KEYS = tuple(f.name for f in dataclasses.fields(Guardrails))
DEFAULT_INTERVAL_S = 1.0


def _num(value: Any, where: str, minimum: Optional[float] = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ControlError(f"{where} must be a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise ControlError(f"{where} must be >= {minimum:g}, got {value!r}")
    return float(value)


def _keys(d: Any, allowed: Sequence[str], where: str, required: Sequence[str] = ()) -> Dict[str, Any]:
    if not isinstance(d, dict):
        raise ControlError(f"{where} must be a mapping, got {type(d).__name__}")
    for k in d:
        if k not in allowed:
            raise ControlError(f"unknown key {k!r} in {where} (allowed: {', '.join(allowed)})")
    for k in required:
        if k not in d:
            raise ControlError(f"{where} needs `{k}`")
    return d


def _enum_values(k: Mapping[str, Any], kw: str) -> Tuple[Any, ...]:
    """An enum knob's ``values``: two or more distinct scalars, and no ``min``/``max``."""
    both = [x for x in ("min", "max") if x in k]
    if both:
        raise ControlError(f"{kw}: a knob with `values` takes no {' or '.join(both)} (its bounds are the "
                           "first and the last value); give either values or min/max")
    vals = k["values"]
    if not isinstance(vals, list) or len(vals) < 2:
        raise ControlError(f"{kw}.values must be a list of two or more values, got {vals!r}")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (str, int, float)):
            raise ControlError(f"{kw}.values: {v!r} is not a text or a number")
    if len({(type(v) is str, v) for v in vals}) != len(vals):
        raise ControlError(f"{kw}.values lists a value twice: {vals!r}")
    return tuple(vals)


def objective_from_dict(o: Any, ow: str) -> Objective:
    """``{node, metric, max}`` -> :class:`Objective` (an objective, or a mode's trigger)."""
    o = _keys(o, OBJECTIVE_KEYS, ow, ("node", "metric", "max"))
    if o["metric"] not in METRICS:
        raise ControlError(f"{ow}.metric {o['metric']!r} is not a metric (metrics: {', '.join(METRICS)})")
    return Objective(str(o["node"]), o["metric"], _num(o["max"], f"{ow}.max", 0.0))


def spec_from_dict(d: Any, integer_params: Sequence[str] = (), check_modes: bool = True) -> ControllerSpec:
    """A graph's ``controllers:`` entry -> :class:`ControllerSpec`; ControlError names the field.

    ``integer_params``: the ``node.param`` keys whose schema type is int (their values round).
    ``check_modes``: a mode that sets a value its knob cannot take is an error here (the validator
    passes False and reports each such problem on its own, SCH809)."""
    d = _keys(d, CONTROLLER_KEYS, "a controller", ("name", "knobs", "objectives"))
    name = d["name"]
    if not isinstance(name, str) or not name:
        raise ControlError(f"a controller's name must be a non-empty string, got {name!r}")
    where = f"controller {name!r}"
    policy = d.get("policy", "aimd")
    if not isinstance(policy, str):
        raise ControlError(f"{where}: policy must be a policy name, got {policy!r}")
    pparams = _keys(d.get("policy_params") or {}, list(d.get("policy_params") or {}), f"{where}: policy_params")
    pparams = {k: _num(v, f"{where}: policy_params.{k}") for k, v in pparams.items()}
    if "interval_s" in d:
        _num(d["interval_s"], f"{where}: interval_s", 0.05)
    knobs: List[Knob] = []
    if not isinstance(d["knobs"], list) or not d["knobs"]:
        raise ControlError(f"{where}: knobs must be a non-empty list")
    for i, k in enumerate(d["knobs"]):
        kw = f"{where}: knobs[{i}]"
        k = _keys(k, KNOB_KEYS, kw, ("node", "param"))
        values: Optional[Tuple[Any, ...]] = None
        if "values" in k:
            values = _enum_values(k, kw)
            lo, hi = 0.0, float(len(values) - 1)      # positions in the list
        else:
            for x in ("min", "max"):
                if x not in k:
                    raise ControlError(f"{kw} needs `{x}` (or `values`, a list of the values it may take)")
            lo, hi = _num(k["min"], f"{kw}.min"), _num(k["max"], f"{kw}.max")
            if lo > hi:
                raise ControlError(f"{kw}: min {lo:g} is above max {hi:g}")
        step = _num(k["max_step"], f"{kw}.max_step", 0.0) if k.get("max_step") is not None else None
        cost = k.get("cost", "increasing")
        if cost not in ("increasing", "decreasing"):
            raise ControlError(f"{kw}.cost must be increasing or decreasing, got {cost!r}")
        knob = Knob(str(k["node"]), str(k["param"]), lo, hi, step,
                    values is None and f"{k['node']}.{k['param']}" in integer_params, cost, values)
        if knob.key in {x.key for x in knobs}:
            raise ControlError(f"{kw}: knob {knob.key} is declared twice")
        knobs.append(knob)
    objectives: List[Objective] = []
    if not isinstance(d["objectives"], list) or not d["objectives"]:
        raise ControlError(f"{where}: objectives must be a non-empty list")
    for i, o in enumerate(d["objectives"]):
        objectives.append(objective_from_dict(o, f"{where}: objectives[{i}]"))
    g = _keys(d.get("guardrails") or {}, GUARDRAIL_KEYS, f"{where}: guardrails")
    gkw: Dict[str, Any] = {}
    for k, v in g.items():
        if k == "rollback":
            if not isinstance(v, bool):
                raise ControlError(f"{where}: guardrails.rollback must be true or false, got {v!r}")
            gkw[k] = v
        elif k == "max_changes_per_min":
            gkw[k] = int(_num(v, f"{where}: guardrails.{k}", 1.0))
        else:
            gkw[k] = _num(v, f"{where}: guardrails.{k}", 0.0)
    from .autonomic_modes import mode_problems, modes_from_dict   # (that module builds on this one)

    spec = ControllerSpec(name, tuple(knobs), tuple(objectives), policy, pparams, Guardrails(**gkw),
                          modes_from_dict(d.get("modes"), where))
    if check_modes:
        problems = mode_problems(spec)
        if problems:
            raise ControlError(f"{where}: {problems[0]}")
    return spec


# --------------------------------------------------------------------------- metrics from status

class MetricReader:
    """Objective metrics from the lifecycle manager's per-node status (GraphStatus / status.json).

    ``feed(now, nodes, cpu_s)``: ``nodes`` maps node id -> {packets_in, drops, counters, pid}
    (counters' values may be text); ``cpu_s`` maps pid -> CPU seconds used so far (user + system).
    Rates (drop_rate, cpu_percent) are over the time since the previous feed; the first feed has
    none, so it yields only the latency and queue metrics.
    """

    def __init__(self) -> None:
        self._prev: Dict[str, Tuple[float, float]] = {}     # node -> (packets_in, drops)
        self._prev_cpu: Dict[int, Tuple[float, float]] = {}  # pid -> (now, cpu_s)

    @staticmethod
    def _counter(counters: Mapping[str, Any], key: str) -> Optional[float]:
        try:
            return float(counters[key])
        except (KeyError, TypeError, ValueError):
            return None

    def feed(self, now: float, nodes: Mapping[str, Mapping[str, Any]],
             cpu_s: Mapping[int, float]) -> Dict[str, float]:
        out: Dict[str, float] = {}
        for nid, s in nodes.items():
            counters = s.get("counters") or {}
            lat = self._counter(counters, "latency_p95_recent_ms")
            if lat is not None:
                out[f"{nid}.latency_p95_ms"] = lat
            age = self._counter(counters, "oldest_age_ms")
            if age is not None:
                out[f"{nid}.queue_oldest_age_s"] = age / 1000.0
            pin, drops = float(s.get("packets_in") or 0), float(s.get("drops") or 0)
            prev = self._prev.get(nid)
            self._prev[nid] = (pin, drops)
            if prev is not None and pin >= prev[0] and drops >= prev[1]:   # else: counters restarted
                d_in, d_drop = pin - prev[0], drops - prev[1]
                out[f"{nid}.drop_rate"] = d_drop / (d_in + d_drop) if d_in + d_drop > 0 else 0.0
            pid = int(s.get("pid") or 0)
            if pid and pid in cpu_s:
                pc = self._prev_cpu.get(pid)
                if pc is not None and now > pc[0] and cpu_s[pid] >= pc[1]:
                    out[f"{nid}.cpu_percent"] = 100.0 * (cpu_s[pid] - pc[1]) / (now - pc[0])
        for pid, v in cpu_s.items():
            pc = self._prev_cpu.get(pid)
            if pc is None or now > pc[0]:
                self._prev_cpu[pid] = (now, v)
        return out
