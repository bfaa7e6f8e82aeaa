"""The launch files under the real launch / launch_ros (what `ros2 launch` runs), end to end.

Skipped where launch, launch_ros or composition_interfaces are not importable (they are ROS 2
packages, not on PyPI); on a ROS 2 install, or with them on PYTHONPATH / AMENT_PREFIX_PATH, it
runs: the generated `<name>.launch.py` and `graph.launch.py graph:=FILE` start the containers,
launch_ros loads the nodes through the containers' `_container/load_node`
(composition_interfaces), `schnitzel_manager --loaded-by-launch` brings them to active, packets
reach the sink, the hot-replacement services and the controllers' override service (the graph
declares a controller: its host runs under launch too) answer under their documented names, and Ctrl-C
(SIGINT to the whole process group, as a terminal sends it) ends every process cleanly after the
manager's ordered tear-down (sources first).
An invalid graph given to graph.launch.py prints the validator's errors and starts nothing.
"""
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from rt_helpers import read_lines, schnitzel_processes
from schnitzel_core.testing import wait_for


def _missing() -> str:
    try:
        import composition_interfaces.srv  # noqa: F401
        import launch_ros.actions  # noqa: F401
        from launch import LaunchService  # noqa: F401
    except ImportError as exc:
        return f"needs the real launch, launch_ros and composition_interfaces (ROS 2 packages, not on PyPI): {exc}"
    return ""


pytestmark = pytest.mark.skipif(bool(_missing()), reason=_missing() or "n/a")

# What `ros2 launch FILE name:=value ...` does (ros2cli is not needed for the test).
DRIVER = """\
import sys
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource

path, *rest = sys.argv[1:]
ls = LaunchService(argv=rest)
ls.include_launch_description(LaunchDescription([IncludeLaunchDescription(
    PythonLaunchDescriptionSource(path), launch_arguments=[tuple(a.split(":=", 1)) for a in rest])]))
sys.exit(ls.run())
"""

GRAPH = """\
schnitzel: 1
name: {name}
containers:
  - {{id: a, restart: on-failure, restart_backoff_s: 0.5}}
  - {{id: b}}
nodes:
  - {{id: src, plugin: synthetic_source, container: a, params: {{mode: counter, rate_hz: 20}}}}
  - {{id: q, plugin: durable_queue, container: b, params: {{path: {dir}/q.db}}}}
  - {{id: out, plugin: jsonl_sink, container: b, params: {{path: {dir}/out.jsonl, fsync: never}}}}
edges:
  - {{from: src.out, to: q.in}}
  - {{from: q.out, to: out.in}}
controllers:
  - name: rate
    knobs: [{{node: src, param: rate_hz, min: 5, max: 40}}]
    objectives: [{{node: out, metric: latency_p95_ms, max: 1000}}]
"""


def _graph_launch_file() -> str:
    try:
        from ament_index_python.packages import get_package_share_directory
        path = Path(get_package_share_directory("schnitzel_bringup")) / "launch" / "graph.launch.py"
        if path.exists():
            return str(path)
    except Exception:  # noqa: BLE001 - not installed: the source tree's copy
        pass
    return str(Path(__file__).resolve().parents[2] / "src" / "schnitzel_bringup" / "launch" / "graph.launch.py")


def _graph_names(graph: str, services, nodes, timeout: float):
    """(node names, service names) under /<graph>, once every expected one is seen (discovery lags)."""
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx)
    probe = rclpy.create_node(f"real_launch_probe_{os.getpid()}", context=ctx)
    try:
        deadline = time.monotonic() + timeout
        while True:
            have_s = sorted(s for s, _ in probe.get_service_names_and_types() if s.startswith(f"/{graph}/"))
            have_n = sorted(f"{ns.rstrip('/')}/{n}" for n, ns in probe.get_node_names_and_namespaces()
                            if ns.startswith(f"/{graph}"))
            if (set(services) <= set(have_s) and set(nodes) <= set(have_n)) or time.monotonic() > deadline:
                return have_n, have_s
            time.sleep(0.2)
    finally:
        probe.destroy_node()
        rclpy.shutdown(context=ctx)


@pytest.mark.parametrize("how", ["generated", "graph.launch.py"])
def test_real_launch_runs_the_graph_and_ctrl_c_ends_every_process(how, tmp_path, tagged, spawn):
    from schnitzel_bringup.compiler import validate_and_compile
    from schnitzel_bringup.launch_gen import write_outputs

    name = "rl_gen" if how == "generated" else "rl_graph"
    g = tmp_path / f"{name}.yaml"
    g.write_text(GRAPH.format(name=name, dir=tmp_path))
    driver = tmp_path / "drive.py"
    driver.write_text(DRIVER)
    if how == "generated":
        report, plan = validate_and_compile(str(g))
        assert plan is not None, report.format_text()
        argv = [str(write_outputs(plan, tmp_path / "out")["launch"])]
    else:
        argv = [_graph_launch_file(), f"graph:={g}", f"plan_dir:={tmp_path / 'plan'}"]
    proc = spawn([sys.executable, str(driver), *argv], env=tagged.env, name=f"launch-{name}")
    out = tmp_path / "out.jsonl"
    try:
        assert wait_for(lambda: len(read_lines(out)) >= 5 or proc.poll() is not None, 120), spawn.output(proc)
        assert proc.poll() is None, spawn.output(proc)
        log = spawn.output(proc)
        for nid, cid in (("src", "a"), ("q", "b"), ("out", "b")):
            # launch_ros's LoadComposableNodes, through the container's composition_interfaces service
            assert f"Loaded node '/{name}/{nid}' in container '/{name}/_containers/{cid}'" in log, log
        assert f"graph '{name}' active: 3 node(s)" in log, log
        assert "manager: load " not in log, log                 # nothing loaded twice
        expected = [f"/{name}/_manager/replace_node", f"/{name}/_manager/apply_graph",
                    f"/{name}/_containers/a/_container/load_node", f"/{name}/_containers/b/_container/load_node",
                    f"/{name}/_control/override"]
        expected_nodes = [f"/{name}/schnitzel_manager", f"/{name}/_manager", f"/{name}/_containers/a",
                          f"/{name}/_control"]
        names, services = _graph_names(name, expected, expected_nodes, 30)
        assert set(expected) <= set(services) and set(expected_nodes) <= set(names), (names, services)
        assert names.count(f"/{name}/schnitzel_manager") == 1, names   # one manager node, not two
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)   # Ctrl-C in a terminal: every process of the group
    try:
        proc.wait(timeout=60)
    except Exception:  # noqa: BLE001
        pytest.fail("launch did not end within 60 s of SIGINT:\n" + spawn.output(proc))
    log = spawn.output(proc)
    assert proc.returncode == 0, log
    assert log.count("process has finished cleanly") == 4, log   # 2 containers, the manager, the controllers' host
    # the manager's ordered tear-down reached the nodes (the containers waited for it)
    order = [log.find(f"manager: deactivate {n}\n") for n in ("src", "q", "out")]
    assert -1 not in order and order == sorted(order), log
    assert "more for the lifecycle manager's tear-down" in log, log
    assert wait_for(lambda: not schnitzel_processes(tagged.tag), 10), schnitzel_processes(tagged.tag)
    lines = read_lines(out)
    assert len(lines) >= 5


def test_real_graph_launch_invalid_graph_starts_nothing(tmp_path, tagged, spawn):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schnitzel: 1\nname: rl_bad\nnodes:\n  - {id: a, plugin: no_such_plugin_xyz}\n")
    driver = tmp_path / "drive.py"
    driver.write_text(DRIVER)
    proc = spawn([sys.executable, str(driver), _graph_launch_file(), f"graph:={bad}",
                  f"plan_dir:={tmp_path / 'plan'}"], env=tagged.env, name="launch-bad")
    proc.wait(timeout=60)
    log = spawn.output(proc)
    assert proc.returncode != 0, log
    assert "SCH301" in log and "no_such_plugin_xyz" in log, log
    assert "nothing was started" in log, log
    assert "process started" not in log, log
    assert not (tmp_path / "plan").exists()
    assert not schnitzel_processes(tagged.tag)


def test_real_launch_sigterm_leaves_no_container_behind(tmp_path, tagged, spawn):
    """SIGTERM to the launch process only (as systemd or a supervisor sends it to the main pid):
    launch may exit without stopping its children; they get SIGTERM from the kernel when their
    parent goes (PR_SET_PDEATHSIG in their entry points) and shut down in order."""
    from schnitzel_bringup.compiler import validate_and_compile
    from schnitzel_bringup.launch_gen import write_outputs

    name = "rl_term"
    g = tmp_path / f"{name}.yaml"
    g.write_text(GRAPH.format(name=name, dir=tmp_path))
    driver = tmp_path / "drive.py"
    driver.write_text(DRIVER)
    report, plan = validate_and_compile(str(g))
    assert plan is not None, report.format_text()
    proc = spawn([sys.executable, str(driver), str(write_outputs(plan, tmp_path / "out")["launch"])],
                 env=tagged.env, name=f"launch-{name}")
    out = tmp_path / "out.jsonl"
    try:
        assert wait_for(lambda: len(read_lines(out)) >= 5 or proc.poll() is not None, 120), spawn.output(proc)
        assert proc.poll() is None, spawn.output(proc)
        assert len([c for c in schnitzel_processes(tagged.tag).values() if "schnitzel_container" in c]) == 2
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)   # the launch process alone, not its group
    try:
        proc.wait(timeout=60)
    except Exception:  # noqa: BLE001
        pytest.fail("launch did not end within 60 s of SIGTERM:\n" + spawn.output(proc))
    assert wait_for(lambda: not schnitzel_processes(tagged.tag), 20), (schnitzel_processes(tagged.tag),
                                                                      spawn.output(proc))
