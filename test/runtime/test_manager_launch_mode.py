"""The lifecycle manager under `ros2 launch`: launch_ros's ComposableNodeContainer loads the
nodes itself, and `schnitzel_manager --loaded-by-launch` only drives their lifecycle.

launch_ros is not installable here, so the test plays launch's part: it starts the container
as the generated launch file would and loads every node through the container's service in
the launch file's order, then starts the manager the way the launch file does, and ends both
with SIGINT at once, as Ctrl-C does under `ros2 launch`."""
import json
import os
import signal
import sys

from rt_helpers import read_lines
from schnitzel_core.testing import wait_for

from schnitzel_bringup.compiler import validate_and_compile
from schnitzel_bringup.runner import container_command

GRAPH = """\
schnitzel: 1
name: lmode
nodes:
  - {{id: src, plugin: synthetic_source, params: {{mode: counter, rate_hz: 20}}}}
  - {{id: q, plugin: durable_queue, params: {{path: {dir}/q.db}}}}
  - {{id: out, plugin: jsonl_sink, params: {{path: {dir}/out.jsonl}}}}
edges:
  - {{from: src.out, to: q.in}}
  - {{from: q.out, to: out.in}}
"""


def test_manager_drives_nodes_loaded_by_launch_without_loading_them_again(tmp_path, tagged, spawn):
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from schnitzel_msgs.msg import KeyValue
    from schnitzel_msgs.srv import ListNodes, LoadNode

    g = tmp_path / "lmode.yaml"
    g.write_text(GRAPH.format(dir=tmp_path))
    report, plan = validate_and_compile(str(g))
    assert plan is not None, report.format_text()
    plan_path = plan.write(tmp_path / "lmode.plan.json")
    container = spawn(container_command(plan, "main"), env=tagged.env, name="container")

    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("fake_launch", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)

    def call(srv, name, req):
        cli = node.create_client(srv, name)
        assert cli.wait_for_service(timeout_sec=60), name
        fut = cli.call_async(req)
        ex.spin_until_future_complete(fut, timeout_sec=30)
        return fut.result()

    try:
        prefix = plan.container("main").full_name
        for nid in plan.container("main").nodes:       # what LoadComposableNodes does
            n = plan.node(nid)
            res = call(LoadNode, f"{prefix}/load_node", LoadNode.Request(
                plugin=n.plugin, node_name=n.id, node_namespace=n.namespace,
                parameters_json=n.parameters_json(),
                options=[KeyValue(key=k, value=v) for k, v in n.load_options(plan.graph).items()]))
            assert res.success, res.error_message
        status = tmp_path / "status.json"
        manager = spawn([sys.executable, "-m", "schnitzel_bringup.manager", "--plan", str(plan_path),
                         "--loaded-by-launch", "--status-file", str(status)], env=tagged.env, name="manager")

        def state():
            try:
                return json.loads(status.read_text())
            except (OSError, ValueError):
                return {}

        assert wait_for(lambda: state().get("state") == "active", 60), spawn.output(manager)
        assert wait_for(lambda: len(read_lines(tmp_path / "out.jsonl")) >= 5, 20), spawn.output(manager)
        events = [e["event"] for e in state()["events"]]
        assert not [e for e in events if e.startswith("load ")], events   # nothing loaded twice
        assert [e.split()[1] for e in events if e.startswith("activate ")] == ["out", "q", "src"]
        listed = call(ListNodes, f"{prefix}/list_nodes", ListNodes.Request())
        assert sorted(listed.full_node_names) == ["/lmode/out", "/lmode/q", "/lmode/src"]
        # Ctrl-C under ros2 launch: SIGINT reaches the manager and the container at once. The
        # container keeps serving until the manager has torn its nodes down in order.
        os.killpg(manager.pid, signal.SIGINT)
        os.killpg(container.pid, signal.SIGINT)
        manager.wait(timeout=30)
        container.wait(timeout=30)
        assert manager.returncode == 0, spawn.output(manager)
        assert container.returncode == 0, spawn.output(container)
        assert state()["state"] == "finished"
        events = [e["event"] for e in state()["events"]]
        assert [e.split()[1] for e in events if e.startswith("deactivate ")] == ["src", "q", "out"], events
        assert sorted(e.split()[1] for e in events if e.startswith("shutdown ")) == ["out", "q", "src"], events
        assert "more for the lifecycle manager's tear-down" in spawn.output(container)
    finally:
        node.destroy_node()
        ex.shutdown()
        rclpy.shutdown(context=ctx)
