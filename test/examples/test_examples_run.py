"""Every example in examples/ runs under `schnitzel run` for a bounded time and produces what its
README promises. Each run gets its own reference backend (127.0.0.1, a free port), its own data
directory (durable queue + JSONL) and the session's ROS_DOMAIN_ID.

What is checked, for all three: the run report says ok, and the events/packets at the backend
are exactly the ones in the JSONL file, by idempotency key (the durable queue delivered every
row to both sinks, once) and exactly the ones the graph produced (nothing lost on the way).
Then what each example is for:

- edge_camera: the generated video's objects cross the dock zone -> zone_enter/zone_exit events
  of several tracks, in event protocol v0.2 shape; annotated frames arrive as sensor_msgs/Image
  on /edge_camera/annotated;
- sensor_fusion: every zone event carries the simulated range sensor's reading (within its
  0.2..4 m range) and the IMU's yaw rate, stamped within the 200 ms fusion window;
- robot_telemetry: a simulated robot (examples/robot_telemetry/sim_robot.py, a plain rclpy
  process) is bridged: 1 s IMU windows with the robot's yaw rate, poses at 2 per second, battery
  readings tagged `alert=battery_low` exactly when below 20 %.
"""
from __future__ import annotations

import json
import sys
import threading
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, List

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DURATION_S = 18


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def _start_backend(spawn, tmp_path: Path, port: int) -> str:
    proc = spawn.module("schnitzel_bringup.reference_backend", "--port", str(port),
                        "--db", str(tmp_path / "backend.db"), name="backend")
    assert spawn.wait_for_line(proc, "listening on", 30), spawn.output(proc)
    return f"http://127.0.0.1:{port}"


def _run(spawn, graph: Path, tmp_path: Path, env: Dict[str, str], duration: float = DURATION_S) -> Dict[str, Any]:
    report = tmp_path / "report.json"
    proc = spawn([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(graph), "--duration", str(duration),
                  "--report", str(report), "--run-dir", str(tmp_path / "run"), "-q"], env=env, name="schnitzel_run")
    try:
        proc.wait(timeout=duration + 150)
    except Exception:  # noqa: BLE001 - report the output, the fixture kills the group
        pytest.fail("schnitzel run did not finish:\n" + spawn.output(proc)[-4000:])
    out = spawn.output(proc)
    assert proc.returncode in (0, 3), f"schnitzel run exited {proc.returncode}:\n{out[-4000:]}"
    rep = json.loads(report.read_text())
    # ok, or degraded only because a container answered late for a moment (this machine is shared
    # and small): no node error, no restart, nothing lost (checked below)
    assert rep["status"] in ("ok", "degraded"), rep["problems"]
    assert rep["totals"]["errors"] == 0 and not any(c["restarts"] for c in rep["containers"].values()), rep
    assert all("was degraded" in p for p in rep["problems"]), rep["problems"]
    assert rep["timeline"], "the run report has no timeline"
    return rep


def _jsonl(path: Path) -> List[Dict[str, Any]]:
    assert path.is_file(), f"{path} was not written"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _check_delivery(rep: Dict[str, Any], base: str, rows: List[Dict[str, Any]], producers: List[str]) -> None:
    """Backend == JSONL by key, each once, and == what the producers handed to the queue."""
    keys_file = [r["idempotency_key"] for r in rows]
    assert keys_file, "the JSONL file is empty"
    assert len(keys_file) == len(set(keys_file)), "the JSONL file holds a key twice"
    keys_backend = _get(base + "/keys")["keys"]
    assert set(keys_backend) == set(keys_file), (
        f"backend and JSONL disagree: only at the backend {sorted(set(keys_backend) - set(keys_file))[:5]}, "
        f"only in the JSONL {sorted(set(keys_file) - set(keys_backend))[:5]}")
    stats = _get(base + "/stats")
    assert stats["rejected"] == 0 and stats["bad_requests"] == 0, stats
    produced = sum(rep["nodes"][p]["packets_out"] for p in producers)
    assert rep["nodes"]["queue"]["packets_in"] == produced
    assert len(keys_file) == produced, f"{produced} packets went into the queue, {len(keys_file)} came out"
    assert int(rep["nodes"]["queue"]["counters"].get("depth", 0)) == 0


def _env(ros_env: Dict[str, str], tmp_path: Path, base: str, **extra: str) -> Dict[str, str]:
    env = dict(ros_env)
    env.update({"SCHNITZEL_DATA": str(tmp_path / "data"), "SCHNITZEL_BACKEND_URL": base + "/events",
                "SCHNITZEL_SITE": "test-site"}, **extra)
    return env


class ImageProbe:
    """A plain rclpy node listening for sensor_msgs/Image on a topic (in a thread)."""

    def __init__(self, topic: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"example_probe_{uuid.uuid4().hex[:8]}", context=self.context)
        self.got: List[Any] = []
        self.node.create_subscription(Image, topic, lambda m: self.got.append(
            (m.width, m.height, m.encoding, len(m.data))) if len(self.got) < 50 else None, qos_profile_sensor_data)
        self.ex = SingleThreadedExecutor(context=self.context)
        self.ex.add_node(self.node)
        self.thread = threading.Thread(target=self.ex.spin, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.ex.shutdown()
        self.node.destroy_node()
        self.rclpy.shutdown(context=self.context)
        self.thread.join(2)


def test_edge_camera(spawn, ros_env, tmp_path, free_port):
    sys.path.insert(0, str(EXAMPLES / "edge_camera"))
    try:
        import make_video
    finally:
        sys.path.pop(0)
    video = tmp_path / "dock.mp4"
    make_video.write_video(str(video), progress=False)
    base = _start_backend(spawn, tmp_path, free_port)
    probe = ImageProbe("/edge_camera/annotated")
    try:
        rep = _run(spawn, EXAMPLES / "edge_camera" / "graph.yaml", tmp_path,
                   _env(ros_env, tmp_path, base, SCHNITZEL_CAMERA=str(video)))
    finally:
        probe.close()
    rows = _jsonl(tmp_path / "data" / "events.jsonl")
    _check_delivery(rep, base, rows, ["events"])

    n = rep["nodes"]
    assert n["cam"]["packets_out"] >= 10 * DURATION_S * 0.5, n["cam"]      # a 15 fps file, played in real time
    assert 0 < n["sample"]["packets_out"] < n["cam"]["packets_out"]         # 10 of 15 frames per second kept
    assert n["det"]["packets_out"] > 0 and n["track"]["packets_out"] > 0
    for r in rows:
        ev = r["payload"]
        assert r["kind"] == "event" and r["schema"] == "legacy.event/0.2"
        assert ev["event_id"] == r["idempotency_key"]
        assert ev["zone"] == "dock" and ev["event_type"] in ("zone_enter", "zone_exit")
        assert ev["camera_id"] == "dock_cam" and ev["site_id"] == "test-site" and ev["severity"] == "high"
        x1, y1, x2, y2 = ev["bbox"]
        assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 360
    enters = {r["payload"]["track_id"] for r in rows if r["payload"]["event_type"] == "zone_enter"}
    assert enters, [r["payload"] for r in rows]
    # objects cross at 1-8 s and 9-15.5 s of the video (the second enters the dock at 11.2 s): once
    # 13 s of video went through (a loaded machine may play it slower), two different tracks entered
    played = n["cam"]["packets_out"] + int(n["cam"]["counters"].get("dropped", 0))
    if played >= 13 * 15:
        assert len(enters) >= 2, [r["payload"] for r in rows]
    assert any(r["payload"]["event_type"] == "zone_exit" for r in rows)
    # annotated frames: published by the graph and received here as sensor_msgs/Image
    assert int(n["viewer"]["counters"].get("published", 0)) > 0, n["viewer"]
    assert probe.got, "no sensor_msgs/Image arrived on /edge_camera/annotated"
    w, h, enc, size = probe.got[0]
    assert (w, h, enc) == (640, 360, "rgb8") and size == 640 * 360 * 3


def test_sensor_fusion(spawn, ros_env, tmp_path, free_port):
    base = _start_backend(spawn, tmp_path, free_port)
    rep = _run(spawn, EXAMPLES / "sensor_fusion" / "graph.yaml", tmp_path, _env(ros_env, tmp_path, base))
    rows = _jsonl(tmp_path / "data" / "events.jsonl")
    _check_delivery(rep, base, rows, ["events"])
    n = rep["nodes"]
    assert n["range"]["packets_out"] > 0 and n["imu"]["packets_out"] > n["range"]["packets_out"]
    fused = 0
    for r in rows:
        ev = r["payload"]
        assert ev["zone"] == "aisle" and ev["event_type"] in ("zone_enter", "zone_exit")
        s = ev["sensor"]
        assert s["frame"] == "base_link"
        if s["range_m"] is not None:
            assert 0.2 <= s["range_m"] <= 4.0 and abs(s["range_dt_ms"]) <= 200
            fused += 1
        if s["yaw_rate_rad_s"] is not None:
            assert abs(s["yaw_rate_rad_s"]) < 1.0 and abs(s["imu_dt_ms"]) <= 200
    # the sensors tick at 20 and 50 Hz: a miss is possible on a loaded machine, but not for most events
    assert fused >= max(1, len(rows) // 2), [r["payload"]["sensor"] for r in rows]


def test_robot_telemetry(spawn, ros_env, tmp_path, free_port):
    ns = f"/rt_{uuid.uuid4().hex[:8]}"
    base = _start_backend(spawn, tmp_path, free_port)
    robot = spawn.script(EXAMPLES / "robot_telemetry" / "sim_robot.py", "--ns", ns, "--battery", "0.32",
                         "--drain", "0.01", name="sim_robot")
    assert spawn.wait_for_line(robot, "publishing", 30), spawn.output(robot)
    rep = _run(spawn, EXAMPLES / "robot_telemetry" / "graph.yaml", tmp_path,
               _env(ros_env, tmp_path, base, SCHNITZEL_ROBOT_NS=ns, SCHNITZEL_ROBOT_ID="robot7"))
    assert robot.poll() is None, spawn.output(robot)
    rows = _jsonl(tmp_path / "data" / "telemetry.jsonl")
    _check_delivery(rep, base, rows, ["imu_stats", "pose_2hz", "battery_alert"])

    by_kind: Dict[str, List[Dict[str, Any]]] = {}
    for r in rows:
        by_kind.setdefault(r["kind"], []).append(r)
    assert set(by_kind) == {"telemetry", "robot.pose", "robot.battery"}, set(by_kind)

    imu = by_kind["telemetry"]
    assert all(r["stream_id"] == "robot7.imu" for r in imu)
    full = [r["payload"] for r in imu if r["payload"]["count"] >= 30]   # whole 1 s windows of the 50 Hz IMU
    assert full, [r["payload"] for r in imu]
    for w in full:
        assert w["field"] == "angular_velocity.z" and w["end_ns"] - w["start_ns"] == 1_000_000_000
        assert abs(w["mean"] - 0.25) < 0.02 and w["min"] <= w["mean"] <= w["max"]   # 0.5 m/s on a 2 m circle

    poses = by_kind["robot.pose"]
    assert all(r["stream_id"] == "robot7.pose" and r["meta"]["ros.type"] == "geometry_msgs/msg/PoseStamped"
               for r in poses)
    assert all(abs(r["payload"]["pose"]["position"]["x"]) <= 2.0 + 1e-6 for r in poses)
    seconds = {r["stamp_ns"] // 1_000_000_000 for r in poses}
    assert len(poses) <= 2 * len(seconds) + 2                    # sampled to 2 per second of stamps
    assert len(poses) >= DURATION_S                              # ... of a 10 Hz topic

    battery = by_kind["robot.battery"]
    assert len(battery) >= DURATION_S // 2
    low = [r for r in battery if r["payload"]["percentage"] < 0.2]
    # 32 % draining 1 %/s from the robot's start crosses 20 % 12 s after it started: a bring-up
    # shorter than that sees readings above 20 % first and, over the 18 s run, below it too
    assert low and len(low) < len(battery), [r["payload"]["percentage"] for r in battery]
    for r in battery:
        assert (r["meta"].get("alert") == "battery_low") == (r["payload"]["percentage"] < 0.2), r
