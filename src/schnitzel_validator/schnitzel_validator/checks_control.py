"""The control plane (SCH8xx, docs/autonomic.md): a mixin of the validator's checker."""
from __future__ import annotations

from typing import Dict, Set

from .hints import _did_you_mean


class ControlChecks:
    """``controllers:`` entries: knobs, objectives, policies."""

    def check_controllers(self) -> None:
        """Each ``controllers:`` entry: well formed, its knobs live numeric params of existing
        nodes with bounds inside the param's schema, its objectives on existing nodes, its
        policy installed; no knob steered by two controllers."""
        from schnitzel_core.autonomic import ControlError, load_policies, spec_from_dict

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
                c = spec_from_dict(raw, ints)
            except ControlError as exc:
                self.add("SCH801", f"controllers[{i}]: {exc}", pos,
                         "see docs/autonomic.md for the keys of a controller")
                continue
            if c.name in seen_names:
                self.add("SCH801", f"controller name {c.name!r} is used twice", pos, "give each controller its own name")
            seen_names.add(c.name)
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
                    live = [q.name for q in spec.params if q.live and q.type in ("int", "float", "number")]
                    self.add("SCH803", f"controller {c.name!r}: node {k.node!r} ({spec.name}) has no parameter "
                             f"{k.param!r}", pos, _did_you_mean(k.param, live) +
                             f"live numeric parameters of {spec.name}: {', '.join(live) or 'none'}")
                    continue
                if not p.live or p.type not in ("int", "float", "number"):
                    why = "not live (it cannot change on a running node)" if not p.live else f"of type {p.type}"
                    self.add("SCH804", f"controller {c.name!r}: parameter {k.param!r} of node {k.node!r} is {why}; "
                             "a knob must be a live numeric parameter", pos,
                             "choose a parameter marked live in `schnitzel plugins " + spec.name + "`")
                    continue
                if (p.minimum is not None and k.minimum < p.minimum) or (p.maximum is not None and k.maximum > p.maximum):
                    self.add("SCH805", f"controller {c.name!r}: knob {k.key} bounds [{k.minimum:g}, {k.maximum:g}] "
                             f"are outside the parameter's schema [{'-inf' if p.minimum is None else f'{p.minimum:g}'}, "
                             f"{'inf' if p.maximum is None else f'{p.maximum:g}'}]", pos,
                             "narrow min/max to the parameter's range")
                if k.key in owner and owner[k.key] != c.name:
                    self.add("SCH808", f"knob {k.key} is steered by controllers {owner[k.key]!r} and {c.name!r}",
                             pos, "give each knob to one controller")
                owner.setdefault(k.key, c.name)
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
