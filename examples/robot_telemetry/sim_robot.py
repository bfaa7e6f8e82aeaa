"""A simulated robot for the robot_telemetry example: a plain rclpy node, nothing schnitzel.

It drives a circle and publishes what a mobile base usually does:

- ``<ns>/imu``      sensor_msgs/msg/Imu          50 Hz  (yaw rate of the circle, gravity on z)
- ``<ns>/pose``     geometry_msgs/msg/PoseStamped 10 Hz (x, y on a 2 m circle, yaw as a quaternion)
- ``<ns>/battery``  sensor_msgs/msg/BatteryState  1 Hz  (draining from ``--battery`` percent)

Values depend only on the time since start and ``--seed``, so two runs look the same.

    python examples/robot_telemetry/sim_robot.py                  # namespace /sim_robot, until Ctrl-C
    python examples/robot_telemetry/sim_robot.py --ns /robot1 --duration 30
"""
from __future__ import annotations

import argparse
import math
import random
import signal
import sys
import time
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="Simulated robot publishing Imu, PoseStamped and BatteryState.")
    ap.add_argument("--ns", default="/sim_robot", help="topic namespace (default /sim_robot)")
    ap.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0 = until Ctrl-C)")
    ap.add_argument("--battery", type=float, default=0.35, help="battery fraction at start (0..1)")
    ap.add_argument("--drain", type=float, default=0.01, help="battery fraction lost per second")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    ns = "/" + a.ns.strip("/") if a.ns.strip("/") else ""
    if not 0.0 <= a.battery <= 1.0 or a.drain < 0 or a.duration < 0:
        print("sim_robot: --battery must be 0..1, --drain and --duration >= 0", file=sys.stderr)
        return 2

    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import ExternalShutdownException
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import BatteryState, Imu

    rclpy.init()
    node = rclpy.create_node("sim_robot", namespace=ns or "/")
    reliable = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
    pub_imu = node.create_publisher(Imu, f"{ns}/imu", reliable)
    pub_pose = node.create_publisher(PoseStamped, f"{ns}/pose", reliable)
    pub_bat = node.create_publisher(BatteryState, f"{ns}/battery", reliable)
    rng = random.Random(a.seed)
    t0 = time.monotonic()
    radius, speed = 2.0, 0.5                     # m, m/s -> yaw rate 0.25 rad/s
    yaw_rate = speed / radius
    counts = {"imu": 0, "pose": 0, "battery": 0}

    def stamp(msg, frame: str) -> None:
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = frame

    def on_imu() -> None:
        t = time.monotonic() - t0
        m = Imu()
        stamp(m, "imu_link")
        yaw = yaw_rate * t
        m.orientation.z, m.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        m.angular_velocity.z = yaw_rate + rng.gauss(0.0, 0.005)
        m.linear_acceleration.x = rng.gauss(0.0, 0.02)
        m.linear_acceleration.y = speed * yaw_rate + rng.gauss(0.0, 0.02)   # centripetal
        m.linear_acceleration.z = 9.80665 + rng.gauss(0.0, 0.02)
        pub_imu.publish(m)
        counts["imu"] += 1

    def on_pose() -> None:
        t = time.monotonic() - t0
        m = PoseStamped()
        stamp(m, "odom")
        yaw = yaw_rate * t
        m.pose.position.x, m.pose.position.y = radius * math.sin(yaw), radius * (1 - math.cos(yaw))
        m.pose.orientation.z, m.pose.orientation.w = math.sin(yaw / 2), math.cos(yaw / 2)
        pub_pose.publish(m)
        counts["pose"] += 1

    def on_battery() -> None:
        t = time.monotonic() - t0
        m = BatteryState()
        stamp(m, "base_link")
        m.percentage = max(0.0, a.battery - a.drain * t)
        m.voltage = 22.0 + 3.2 * m.percentage
        m.current = -1.8
        m.present = True
        m.location = "base"
        pub_bat.publish(m)
        counts["battery"] += 1

    node.create_timer(0.02, on_imu)
    node.create_timer(0.1, on_pose)
    node.create_timer(1.0, on_battery)
    print(f"sim_robot: publishing {ns}/imu (50 Hz), {ns}/pose (10 Hz), {ns}/battery (1 Hz)", flush=True)

    stop = {"now": False}

    def on_signal(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        while not stop["now"] and (a.duration <= 0 or time.monotonic() - t0 < a.duration):
            rclpy.spin_once(node, timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        print(f"sim_robot: sent {counts}", flush=True)
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
