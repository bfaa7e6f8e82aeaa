"""The control plane (SCH8xx, docs/autonomic.md): a mixin of the validator's checker."""
from __future__ import annotations

from typing import Any, Dict, Set

from schnitzel_core import param_check

from .hints import _did_you_mean

NUMERIC = ("int", "float", "number")


def _problem(p: Any, value: Any) -> str:
    """Why ``value`` does not fit the parameter ``p`` ("" when it does), in a few words."""
    probs = param_check.param_problems(p, value)
    if not probs:
        return ""
    kind = probs[0].kind
    if kind == param_check.TYPE:
        return f"not of the parameter's type {p.type}"
    if kind == param_check.ENUM:
        return f"not one of the parameter's allowed values ({', '.join(map(repr, p.enum or ()))})"
    if kind in (param_check.MINIMUM, param_check.MAXIMUM):
        lo = "-inf" if p.minimum is None else f"{p.minimum:g}"
        hi = "inf" if p.maximum is None else f"{p.maximum:g}"
        return f"outside the parameter's schema [{lo}, {hi}]"
    return f"refused by the parameter's schema ({kind})"


class ControlChecks:
    """``controllers:`` entries: knobs, objectives, policies."""

    def check_controllers(self) -> None:
        """Each ``controllers:`` entry: well formed, its knobs live params of existing nodes
        (numeric with bounds inside the param's schema, or an enum knob whose every value the
        schema takes), its objectives on existing nodes, its policy installed, its modes set
        values their knobs take; no knob steered by two controllers."""
        from schnitzel_core.autonomic import ControlError, load_policies, spec_from_dict
        from schnitzel_core.autonomic_modes import mode_problems

        if not self.g.controllers:
            return
        policies = load_policies()
        ints = [f"{nid}.{p.name}" for nid, spec in self.specs.items() if spec is not None
                for p in spec.params if p.type == "int"]
        seen_names: Set[str] = set()
        owner: Dict[str, str] = {}
        for i, raw in enumerate(self.g.controllers):
            pos = self.g.controller_pos[i] if i < len(self.g.controller_pos) else self.g.pos
            try:
                c = spec_from_dict(raw, ints, check_modes=False)
            except ControlError as exc:
                self.add("SCH801", f"controllers[{i}]: {exc}", pos,
                         "see docs/autonomic.md for the keys of a controller")
                continue
            if c.name in seen_names:
                self.add("SCH801", f"controller name {c.name!r} is used twice", pos, "give each controller its own name")
            seen_names.add(c.name)
            params: Dict[str, Any] = {}    # node.param -> its Param, for the modes' values
            for k in c.knobs:
                n = self.nodes.get(k.node) or self.g.node(k.node)
                if n is None:
                    self.add("SCH802", f"controller {c.name!r}: knob {k.key} names node {k.node!r}, which is not "
                             "in the graph", pos, _did_you_mean(k.node, [x.id for x in self.g.nodes]) +
                             "use the id of a node under nodes:")
                    continue
                spec = self.specs.get(k.node)
                if spec is None:
                    continue   # its plugin is reported already
                p = spec.param(k.param)
                if p is None:
                    live = [q.name for q in spec.params if q.live]
                    self.add("SCH803", f"controller {c.name!r}: node {k.node!r} ({spec.name}) has no parameter "
                             f"{k.param!r}", pos, _did_you_mean(k.param, live) +
                             f"live parameters of {spec.name}: {', '.join(live) or 'none'}")
                    continue
                if not p.live:
                    # e.g. onnx_model's `provider`: read when the node is configured, so a new
                    # value means a new node (a hot replacement), which a controller never does
                    self.add("SCH804", f"controller {c.name!r}: parameter {k.param!r} of node {k.node!r} "
                             f"({spec.name}) is not live: the node reads it only when it is configured, so a "
                             "new value needs a replacement of the node (`schnitzel apply`), not a live "
                             "change; a knob must be a live parameter", pos,
                             f"choose a parameter marked live in `schnitzel plugins {spec.name}`, or change "
                             f"{k.param!r} with `schnitzel apply`")
                    continue
                if not k.enum and p.type not in NUMERIC:
                    self.add("SCH804", f"controller {c.name!r}: parameter {k.param!r} of node {k.node!r} is of "
                             f"type {p.type}; a knob with min/max must be a numeric parameter", pos,
                             "list the values it may take, in order, instead: `values: [...]`" +
                             (f" (allowed: {', '.join(map(str, p.enum))})" if p.enum else ""))
                    continue
                params[k.key] = p
                if k.enum:
                    for v in k.values or ():
                        why = _problem(p, v)
                        if why:
                            self.add("SCH805", f"controller {c.name!r}: knob {k.key} value {v!r} is {why}", pos,
                                     "list only values the parameter takes")
                    decl = self.g.node(k.node)
                    now = decl.params.get(k.param, p.default) if decl is not None else p.default
                    if not any(now == v for v in k.values or ()):
                        self.add("SCH805", f"controller {c.name!r}: node {k.node!r} starts with {k.param} = {now!r}, "
                                 f"which is not one of knob {k.key}'s values", pos,
                                 f"add {now!r} to values, or set the node's {k.param} to one of them")
                elif (p.minimum is not None and k.minimum < p.minimum) or (p.maximum is not None and k.maximum > p.maximum):
                    self.add("SCH805", f"controller {c.name!r}: knob {k.key} bounds [{k.minimum:g}, {k.maximum:g}] "
                             f"are outside the parameter's schema [{'-inf' if p.minimum is None else f'{p.minimum:g}'}, "
                             f"{'inf' if p.maximum is None else f'{p.maximum:g}'}]", pos,
                             "narrow min/max to the parameter's range")
                if k.key in owner and owner[k.key] != c.name:
                    self.add("SCH808", f"knob {k.key} is steered by controllers {owner[k.key]!r} and {c.name!r}",
                             pos, "give each knob to one controller")
                owner.setdefault(k.key, c.name)
            for problem in mode_problems(c):
                self.add("SCH809", f"controller {c.name!r}: {problem}", pos,
                         "a mode sets knobs of its controller, to values inside their min/max or values")
            for m in c.modes:
                for key, v in m.settings:
                    k = next((x for x in c.knobs if x.key == key), None)
                    fits = k is not None and not k.enum and not isinstance(v, str) and k.minimum <= v <= k.maximum
                    why = _problem(params[key], v) if fits and key in params else ""   # (else reported above)
                    if why:
                        self.add("SCH809", f"controller {c.name!r}: mode {m.name!r} sets {key} = {v!r}, {why}",
                                 pos, "a mode sets values the parameter takes")
            if c.policy not in policies:
                self.add("SCH806", f"controller {c.name!r}: no policy named {c.policy!r} is installed", pos,
                         _did_you_mean(c.policy, list(policies)) + f"installed: {', '.join(sorted(policies))}")
            else:
                try:
                    policies[c.policy](**dict(c.policy_params))
                except ControlError as exc:
                    self.add("SCH806", f"controller {c.name!r}: {exc}", pos, "see docs/autonomic.md#policies")
            for o in c.objectives:
                if self.g.node(o.node) is None:
                    self.add("SCH807", f"controller {c.name!r}: objective {o.key} names node {o.node!r}, which is "
                             "not in the graph", pos, _did_you_mean(o.node, [x.id for x in self.g.nodes]) +
                             "use the id of a node under nodes:")
