"""ros_topic_source / ros_topic_sink against real rclpy topics (one process, DDS on localhost),
plus the message <-> JSON conversion on its own."""
import threading
import time
import uuid

import numpy as np
import pytest

from schnitzel_core.codecs.image import image_packet, packet_image
from schnitzel_core.packet import Packet
from schnitzel_core.testing import LogicHarness
from schnitzel_nodes.plugins.ros_bridge import (BridgeError, RosTopicSinkLogic, RosTopicSourceLogic,
                                                 fill_msg, msg_to_dict, normalize_type)

rclpy = pytest.importorskip("rclpy")
from geometry_msgs.msg import Twist  # noqa: E402
from sensor_msgs.msg import Image, Imu, LaserScan, Range  # noqa: E402
from schnitzel_core.testing import wait_for


# ---- conversion without DDS -------------------------------------------------------------------

def test_msg_to_dict_and_back_for_imu():
    m = Imu()
    m.header.frame_id = "imu_link"
    m.orientation.w = 1.0
    m.linear_acceleration.z = 9.81
    m.orientation_covariance[0] = -1.0
    d = msg_to_dict(m)
    assert d["linear_acceleration"] == {"x": 0.0, "y": 0.0, "z": 9.81}
    assert d["orientation_covariance"][0] == -1.0 and len(d["orientation_covariance"]) == 9
    assert d["header"]["frame_id"] == "imu_link"
    back = fill_msg(Imu(), d)
    assert back == m


def test_non_finite_floats_become_null_and_bytes_base64():
    s = LaserScan()
    s.ranges = [1.0, float("inf"), float("nan")]
    assert msg_to_dict(s)["ranges"] == [1.0, None, None]
    img = Image()
    img.data = b"\x00\x01\xff"
    assert msg_to_dict(img)["data"] == "AAH/"
    assert bytes(fill_msg(Image(), {"data": "AAH/"}).data) == b"\x00\x01\xff"


@pytest.mark.parametrize("data, text", [
    ({"linear": {"q": 1}}, "has no field 'q'"),
    ({"linear": {"x": "fast"}}, "expected a number"),
    ({"linear": 3}, "expected an object"),
])
def test_fill_msg_errors_name_the_field(data, text):
    with pytest.raises(BridgeError, match=text):
        fill_msg(Twist(), data)


def test_type_names():
    assert normalize_type("sensor_msgs/Imu") == "sensor_msgs/msg/Imu"
    assert normalize_type("sensor_msgs.msg.Imu") == "sensor_msgs/msg/Imu"
    with pytest.raises(BridgeError):
        normalize_type("imu")


def test_bad_type_and_missing_node_are_clear_errors():
    with pytest.raises(ValueError, match="not installed"):
        LogicHarness(RosTopicSourceLogic, {"topic": "/x", "msg_type": "nosuch_msgs/msg/Foo"})
    with pytest.raises(ValueError, match="has no Bogus"):
        LogicHarness(RosTopicSinkLogic, {"topic": "/x", "msg_type": "sensor_msgs/msg/Bogus"})
    with pytest.raises(RuntimeError, match="ctx.ros_node"):
        LogicHarness(RosTopicSinkLogic, {"topic": "/x", "msg_type": "geometry_msgs/msg/Twist"})


def test_sink_rejects_what_does_not_fit_without_raising():
    h = LogicHarness(RosTopicSinkLogic, {"topic": "/x", "msg_type": "geometry_msgs/msg/Twist"},
                     activate=False)
    h.logic.write(Packet.from_json("s", 1, "cmd", {"linear": {"x": "fast"}}))
    h.logic.write(Packet(stream_id="s", seq=2, kind="cmd", payload=b"\x01", content_type="application/octet-stream"))
    assert h.ctx.counters == {"rejected": 2}


# ---- real topics -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ros():
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"io_bridge_test_{uuid.uuid4().hex[:6]}", context=context)
    ex = SingleThreadedExecutor(context=context)
    ex.add_node(node)
    t = threading.Thread(target=ex.spin, daemon=True)
    t.start()
    yield node
    ex.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)
    t.join(2)


def topic():
    return f"/io_test_{uuid.uuid4().hex[:8]}"


def with_node(logic_cls, params, node, activate=True):
    h = LogicHarness(logic_cls, params, activate=False, node_id="bridge")
    h.ctx.ros_node = node
    if activate:
        h.logic.activate()
    return h


def publish_until(pub, msg, cond, timeout=10.0):
    """Publish repeatedly until ``cond`` (discovery takes a moment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.publish(msg)
        if wait_for(cond, 0.2):
            return True
    return False


def test_source_range_becomes_sensor_range_packet(ros):
    tp = topic()
    h = with_node(RosTopicSourceLogic, {"topic": tp, "msg_type": "sensor_msgs/msg/Range"}, ros)
    pub = ros.create_publisher(Range, tp, 10)
    m = Range()
    m.header.stamp.sec, m.header.stamp.nanosec = 1_700_000_000, 5
    m.header.frame_id = "sonar_front"
    m.range, m.min_range, m.max_range = 1.5, 0.1, 4.0
    try:
        assert publish_until(pub, m, lambda: h.out())
        p = h.out()[0]
        assert p.kind == "sensor.range" and p.frame_id == "sonar_front"
        assert p.stamp_ns == 1_700_000_000_000_000_005
        d = p.json()
        assert d["range"] == 1.5 and d["max_range"] == 4.0 and "header" not in d
        assert p.meta["ros.type"] == "sensor_msgs/msg/Range"
    finally:
        h.stop()
        ros.destroy_publisher(pub)
    assert h.logic._sub is None


def test_source_image_round_trips_pixels(ros):
    tp = topic()
    h = with_node(RosTopicSourceLogic, {"topic": tp, "msg_type": "sensor_msgs/msg/Image"}, ros)
    pub = ros.create_publisher(Image, tp, 10)
    from schnitzel_core.codecs.image import to_ros_image

    arr = np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)
    try:
        assert publish_until(pub, to_ros_image(arr, "bgr8", stamp_ns=10**18, frame_id="cam"), lambda: h.out())
        p = h.out()[0]
        assert p.kind == "video.frame" and np.array_equal(packet_image(p), arr)
        assert "encoding=bgr8" in p.content_type and p.stamp_ns == 10**18
    finally:
        h.stop()
        ros.destroy_publisher(pub)


def test_source_any_type_as_json_without_header(ros):
    tp = topic()
    h = with_node(RosTopicSourceLogic, {"topic": tp, "msg_type": "geometry_msgs/Twist",
                                        "stream_id": "odom"}, ros)
    pub = ros.create_publisher(Twist, tp, 10)
    m = Twist()
    m.linear.x, m.angular.z = 0.5, -0.25
    try:
        assert publish_until(pub, m, lambda: h.out())
        p = h.out()[0]
        assert p.kind == "telemetry" and p.stream_id == "odom"
        assert p.json() == {"linear": {"x": 0.5, "y": 0.0, "z": 0.0}, "angular": {"x": 0.0, "y": 0.0, "z": -0.25}}
        assert abs(p.age_s) < 10   # stamped on receipt
    finally:
        h.stop()
        ros.destroy_publisher(pub)


def test_sink_json_to_twist(ros):
    tp = topic()
    got = []
    sub = ros.create_subscription(Twist, tp, got.append, 10)
    h = with_node(RosTopicSinkLogic, {"topic": tp, "msg_type": "geometry_msgs/msg/Twist"}, ros)
    try:
        pkt = Packet.from_json("planner", 1, "cmd", {"linear": {"x": 0.2}, "angular": {"z": 1}})
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            h.send("in", pkt)
            wait_for(lambda: got, 0.2)
        assert got and got[0].linear.x == 0.2 and got[0].angular.z == 1.0 and got[0].linear.y == 0.0
    finally:
        h.stop()
        ros.destroy_subscription(sub)


def test_stream_packet_sink_to_source_is_lossless(ros):
    tp = topic()
    src = with_node(RosTopicSourceLogic, {"topic": tp, "msg_type": "schnitzel_msgs/msg/StreamPacket",
                                          "reliability": "reliable"}, ros)
    sink = with_node(RosTopicSinkLogic, {"topic": tp}, ros)
    pkt = image_packet(np.arange(24, dtype=np.uint8).reshape(2, 4, 3), "rgb8", "cam7", 42, epoch=3,
                       stamp_ns=1_700_000_000_123_456_789, frame_id="cam", meta={"a": "b"})
    try:
        deadline = time.monotonic() + 10
        while not src.out() and time.monotonic() < deadline:
            sink.send("in", pkt)
            wait_for(lambda: src.out(), 0.2)
        assert src.out() and src.out()[0] == pkt
    finally:
        src.stop()
        sink.stop()


def test_sink_image_from_raw_frame(ros):
    tp = topic()
    got = []
    sub = ros.create_subscription(Image, tp, got.append, 10)
    h = with_node(RosTopicSinkLogic, {"topic": tp, "msg_type": "sensor_msgs/msg/Image"}, ros)
    arr = np.full((6, 8, 3), 7, np.uint8)
    try:
        pkt = image_packet(arr, "rgb8", "cam", 1, stamp_ns=2_000_000_001, frame_id="optical")
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            h.send("in", pkt)
            wait_for(lambda: got, 0.2)
        m = got[0]
        assert (m.width, m.height, m.encoding, m.step) == (8, 6, "rgb8", 24)
        assert bytes(m.data) == arr.tobytes() and m.header.frame_id == "optical"
        assert (m.header.stamp.sec, m.header.stamp.nanosec) == (2, 1)
    finally:
        h.stop()
        ros.destroy_subscription(sub)
