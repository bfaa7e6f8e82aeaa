"""A node input declared `overflow: error` that overflows ends the run: the node goes to the
error state, the manager stops the graph in order with status error and exits 1 (issue 20)."""
import json
import os
import sys
from pathlib import Path

from schnitzel_core.graph_loader import load_graph
from schnitzel_core.registry import Registry, load_registry
from schnitzel_core.testing import wait_for

from schnitzel_bringup.compiler import compile_graph
from schnitzel_bringup.runner import container_command

import fault_plugins
from test_node_error_policy import _Both

GRAPH = """\
schnitzel: 1
name: ovf
containers: [{id: main, restart: on-failure, restart_limit: 2}]
nodes:
  - {id: src, plugin: synthetic_source, params: {mode: counter, rate_hz: 200}}
  - {id: pulse, plugin: pulse_source}
  - id: slow
    plugin: slow_sink
    inputs: {in: {overflow: error, max_queued: 20}}
edges:
  - {from: src.out, to: slow.in}
  - {from: pulse.out, to: slow.in}
"""


def test_overflow_error_ends_the_run_with_status_error_and_exit_1(tmp_path, tagged, spawn):
    reg = _Both(Registry.from_classes([fault_plugins.SlowSink, fault_plugins.PulseSource]), load_registry())
    plan = compile_graph(load_graph(GRAPH, file="ovf.yaml"), reg)
    plan.node("slow").plugin = "fault_plugins:SlowSink"   # importable by the container below
    plan.node("pulse").plugin = "fault_plugins:PulseSource"
    plan_path = plan.write(tmp_path / "ovf.plan.json")
    env = dict(tagged.env)
    env["PYTHONPATH"] = f"{Path(__file__).parent}{os.pathsep}{env.get('PYTHONPATH', '')}"
    spawn(container_command(plan, "main"), env=env, name="container")
    status = tmp_path / "status.json"
    manager = spawn([sys.executable, "-m", "schnitzel_bringup.manager", "--plan", str(plan_path),
                     "--status-file", str(status)], env=env, name="manager")
    assert wait_for(lambda: manager.poll() is not None, 90), spawn.output(manager)
    assert manager.returncode == 1, spawn.output(manager)
    st = json.loads(status.read_text())
    assert st["status"] == "error" and "input 'in' overflowed" in st["message"], st
    assert "overflow: error" in st["message"] and "node slow" in st["message"]
    # it was not re-loaded as an ordinary failing node: the run ended
    assert not any(e["event"] == "node slow is in error; re-loading it" for e in st["events"]), st["events"]
