"""ros_topic_source -> ros_topic_sink inside a real graph (`schnitzel run`): the plugins use
the container's rclpy node (ctx.ros_node) to bridge a plain ROS topic in and out again.
The test process is an ordinary ROS 2 node publishing geometry_msgs/Twist and listening."""
from __future__ import annotations

import sys
import threading
import time
import uuid

import pytest

rclpy = pytest.importorskip("rclpy")


def test_twist_round_trips_through_a_graph(spawn, tmp_path):
    from geometry_msgs.msg import Twist
    from rclpy.executors import SingleThreadedExecutor

    tag = uuid.uuid4().hex[:8]
    t_in, t_out = f"/io_bridge_{tag}/cmd_in", f"/io_bridge_{tag}/cmd_out"
    graph = tmp_path / "graph.yaml"
    graph.write_text(f"""
schnitzel: 1
name: io_bridge_{tag}
nodes:
  - id: rin
    plugin: ros_topic_source
    params: {{topic: {t_in}, msg_type: geometry_msgs/msg/Twist, reliability: reliable}}
  - id: rout
    plugin: ros_topic_sink
    params: {{topic: {t_out}, msg_type: geometry_msgs/msg/Twist}}
edges:
  - {{from: rin.out, to: rout.in}}
""")
    runner = spawn([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(graph), "--duration", "10",
                    "--run-dir", str(tmp_path / "run"), "-q"], name="schnitzel_run")
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"io_bridge_probe_{tag}", context=context)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(node)
    got = []
    node.create_subscription(Twist, t_out, got.append, 10)
    pub = node.create_publisher(Twist, t_in, 10)
    spinner = threading.Thread(target=ex.spin, daemon=True)
    spinner.start()
    msg = Twist()
    msg.linear.x, msg.angular.z = 0.3, -1.25
    try:
        deadline = time.monotonic() + 40
        while not got and time.monotonic() < deadline:
            assert runner.poll() is None, spawn.output(runner)
            pub.publish(msg)
            time.sleep(0.2)
        assert got, f"nothing came back through the graph: {spawn.output(runner)}"
        assert got[0].linear.x == 0.3 and got[0].angular.z == -1.25 and got[0].linear.y == 0.0
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        spinner.join(2)
    runner.wait(60)
    assert runner.returncode == 0, spawn.output(runner)
