"""A node that keeps failing goes to the error state; the manager re-loads it while its
container's restart_limit allows, then leaves it in error and reports the graph as error."""
import json
import os
import sys
import time
from pathlib import Path

from schnitzel_core.testing import wait_for

from schnitzel_core.graph_loader import load_graph
from schnitzel_core.registry import Registry, load_registry

from schnitzel_bringup.compiler import compile_graph
from schnitzel_bringup.runner import container_command

import fault_plugins

GRAPH = """\
schnitzel: 1
name: errpol
containers: [{id: main, restart: on-failure, restart_limit: 2}]
nodes:
  - {id: src, plugin: synthetic_source, params: {mode: counter, rate_hz: 40}}
  - {id: bad, plugin: failing_sink}
edges:
  - {from: src.out, to: bad.in}
"""


class _Both:
    def __init__(self, *regs):
        self.regs = regs

    def get(self, name):
        for r in self.regs:
            e = r.get(name)
            if e is not None:
                return e
        return None


def test_failing_node_is_reloaded_up_to_the_limit_then_left_in_error(tmp_path, tagged, spawn):
    reg = _Both(Registry.from_classes([fault_plugins.FailingSink]), load_registry())
    plan = compile_graph(load_graph(GRAPH, file="errpol.yaml"), reg)
    plan.node("bad").plugin = "fault_plugins:FailingSink"   # importable by the container below
    plan_path = plan.write(tmp_path / "errpol.plan.json")
    env = dict(tagged.env)
    env["PYTHONPATH"] = f"{Path(__file__).parent}{os.pathsep}{env.get('PYTHONPATH', '')}"
    spawn(container_command(plan, "main"), env=env, name="container")
    status = tmp_path / "status.json"
    manager = spawn([sys.executable, "-m", "schnitzel_bringup.manager", "--plan", str(plan_path),
                     "--status-file", str(status)], env=env, name="manager")

    def state():
        try:
            return json.loads(status.read_text())
        except (OSError, ValueError):
            return {}

    def reloads():
        return [e for e in state().get("events", []) if e["event"] == "node bad is in error; re-loading it"]

    assert wait_for(lambda: len(reloads()) >= 2 and state()["nodes"]["bad"]["state"] == "error", 60), \
        spawn.output(manager)
    assert wait_for(lambda: state().get("status") == "error", 10), state()
    time.sleep(3.0)
    assert len(reloads()) == 2, reloads()                  # restart_limit: 2, then no more
    bad = state()["nodes"]["bad"]
    assert bad["errors"] >= 10 and "cannot store packet" in bad["last_error"], bad
    assert state()["nodes"]["src"]["state"] == "active"    # the failure stays with its node
    manager.terminate()
    manager.wait(timeout=30)
