"""Carry out a graph difference (``schnitzel apply``) on a running graph.

:func:`apply_actions` runs the actions of ``schnitzel_core.graph_diff.plan_application``
in order, each as steps of a :class:`~.protocol.StepRunner`; node replacements and live
parameter changes go through :class:`~.protocol.ReplaceProtocol`.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from .protocol import OPT_NODE_ID, NodeLoad, NodeRef, ReplaceProtocol, Step, StepFailed

@dataclasses.dataclass
class ApplyResult:
    success: bool
    message: str
    steps: List[Step]
    serving: Dict[str, NodeRef]        # node id -> node now running (added/replaced/changed ones)
    removed: List[str]                 # node ids unloaded
    done: List[str]                    # the actions carried out, as text

    def step_lines(self) -> List[str]:
        return [s.line() for s in self.steps]


def _no_container_control(_cid: str) -> None:
    raise StepFailed("the lifecycle manager does not start, stop or change container processes "
                     "(the runner or launch owns them); restart the graph to change containers")


def apply_actions(proto: ReplaceProtocol, actions: Sequence[Any], running: Mapping[str, NodeRef],
                  loads: Mapping[str, NodeLoad], namespace: str,
                  containers: Optional[Mapping[str, Callable[[str], None]]] = None) -> ApplyResult:
    """Carry out ``graph_diff.plan_application`` actions in order with ``proto``'s transport.

    ``running``: node id -> the node as it runs now; ``loads``: node id -> what the new plan
    runs (for load, replace and set_params); ``containers``: callables
    ``{"start_container": f(cid), "stop_container": f(cid), "update_container": f(cid)}``
    the manager provides (a missing one fails that action with a clear reason).
    Stops at the first failed action: what was done stays done (reported in ``done``).
    """
    t, to = proto.t, proto.timeout_s
    steps: List[Step] = []
    run = proto.runner(steps).run
    serving: Dict[str, NodeRef] = {}
    removed: List[str] = []
    done: List[str] = []
    containers = containers or {}

    def fail(why: str) -> ApplyResult:
        applied = f"; already applied: {'; '.join(done)}" if done else "; nothing was changed"
        return ApplyResult(False, f"{why}{applied}", steps, serving, removed, done)

    for a in actions:
        kind, nid = a.action, a.target
        if kind in ("start_container", "stop_container", "update_container"):
            fn = containers.get(kind) or _no_container_control
            ok, why = run(kind, f"container {nid}", lambda f=fn, c=nid: f(c))
            if not ok:
                return fail(f"{a}: {why}")
        elif kind == "load":
            new = loads[nid]
            cid = new.container or a.container
            options = {**new.options, OPT_NODE_ID: nid}
            full = f"{namespace.rstrip('/')}/{nid}"
            params_json = json.dumps(new.params, sort_keys=True)
            ok, loaded = run("load", full, lambda: t.load_node(cid, new.plugin, nid, namespace, params_json,
                                                               options, new.remappings, to),
                             detail=f"plugin {new.plugin} in container {cid}")
            if not ok:
                return fail(f"{a}: {loaded}")
            ref = NodeRef(nid, cid, nid, namespace, int(loaded[1]), new.plugin, dict(new.params), options,
                          new.stateful)
            for tr in ("configure", "activate"):
                ok, why = run(tr, full, lambda tr=tr: t.change_state(full, tr, to))
                if not ok:
                    run("rollback_unload", full, lambda: t.unload_node(cid, ref.unique_id, nid, to))
                    return fail(f"{a}: new node failed to {tr}: {why}")
            serving[nid] = ref
        elif kind == "set_params":
            res = proto.set_live_params(running[nid], dict(a.params))
            steps.extend(res.steps)
            if not res.success:
                return fail(res.message)
            serving[nid] = res.serving  # type: ignore[assignment]
        elif kind == "replace":
            res = proto.replace(running[nid], loads[nid])
            steps.extend(res.steps)
            if not res.success:
                return fail(res.message)
            serving[nid] = res.serving  # type: ignore[assignment]
        elif kind == "unload":
            old = running[nid]
            run("deactivate", old.full_name, lambda: t.change_state(old.full_name, "deactivate", to))
            run("drain", old.full_name, lambda: t.sleep(proto.drain_s))
            run("cleanup", old.full_name, lambda: t.change_state(old.full_name, "cleanup", to))
            ok, why = run("unload", old.full_name,
                          lambda: t.unload_node(old.container, old.unique_id, old.node_name, to))
            if not ok:
                return fail(f"{a}: {why}")
            removed.append(nid)
        else:
            return fail(f"unknown action {kind!r}")
        done.append(str(a))
    return ApplyResult(True, f"applied {len(done)} action(s)" if done else "no changes", steps, serving,
                       removed, done)
