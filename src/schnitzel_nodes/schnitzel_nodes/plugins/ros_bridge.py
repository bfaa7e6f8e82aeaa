"""Bridges between plain ROS 2 topics and StreamPackets: ``ros_topic_source``, ``ros_topic_sink``.

``ros_topic_source`` subscribes to any ROS topic and turns each message into a packet:

===============================  ============  =============================================
message type                     default kind  payload
===============================  ============  =============================================
sensor_msgs/msg/Image            video.frame   raw pixels, ``image/raw;encoding;width;height;step``
sensor_msgs/msg/CompressedImage  video.frame   the JPEG/PNG bytes, ``image/jpeg`` / ``image/png``
sensor_msgs/msg/Imu              sensor.imu    JSON of the message fields (header -> stamp/frame_id)
sensor_msgs/msg/Range            sensor.range  JSON
sensor_msgs/msg/LaserScan        sensor.scan   JSON
schnitzel_msgs/msg/StreamPacket  (its own)     the packet itself, unchanged (robot-to-robot)
anything else                    telemetry     JSON through message introspection
===============================  ============  =============================================

JSON conversion walks ``get_fields_and_field_types()`` recursively: nested messages become
objects, arrays lists, ``uint8[]``/``char[]`` arrays base64 text, non-finite floats ``null``
(JSON has no NaN/inf). A ``std_msgs/Header`` field at the top sets the packet's stamp and
frame_id and is left out of the payload. Messages without a header are stamped on receipt.

``ros_topic_sink`` publishes packets to a ROS topic: a StreamPacket as it is; raw frames as
sensor_msgs/Image; JPEG/PNG frames as CompressedImage; any other type is filled from the
packet's JSON payload (``{"linear": {"x": 0.2}, "angular": {"z": 0.5}}`` -> geometry_msgs/Twist);
a top-level ``header`` the payload leaves out is filled from the packet's stamp and frame_id.
Packets that do not fit the message type are counted (``rejected``) and logged with the
reason, never raised.

Both need the hosting rclpy node (``ctx.ros_node``, set by the ROS adapter): the subscription
or publisher is created in ``activate`` and destroyed in ``deactivate``. rclpy and message
packages are imported lazily.
"""
from __future__ import annotations

import array
import base64
import importlib
import math
import time
from typing import Any, Dict, Optional

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import Category, In, Out, Param, PluginSpec
from schnitzel_nodes.base import SinkLogic, SourceLogic

STREAM_PACKET_TYPE = "schnitzel_msgs/msg/StreamPacket"
DEFAULT_KINDS = {
    "sensor_msgs/msg/Image": "video.frame",
    "sensor_msgs/msg/CompressedImage": "video.frame",
    "sensor_msgs/msg/Imu": "sensor.imu",
    "sensor_msgs/msg/Range": "sensor.range",
    "sensor_msgs/msg/LaserScan": "sensor.scan",
}
_INT_TYPES = {"byte", "octet", "char", "int8", "uint8", "int16", "uint16", "int32", "uint32",
              "int64", "uint64"}
_FLOAT_TYPES = {"float", "double", "float32", "float64", "long double"}
_BYTE_ELEMS = {"uint8", "octet", "byte", "char"}


class BridgeError(ValueError):
    """A message type or payload the bridge cannot convert; the text says why."""


# ---- message types -------------------------------------------------------------------------

def normalize_type(name: str) -> str:
    """``pkg/msg/Type`` from ``pkg/msg/Type``, ``pkg/Type`` or ``pkg.msg.Type``."""
    text = str(name or "").strip().replace(".", "/")
    parts = [p for p in text.split("/") if p]
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or parts[1] != "msg" or not parts[2][:1].isupper():
        raise BridgeError(f"message type {name!r} is not of the form package/msg/Type "
                          "(e.g. sensor_msgs/msg/Imu)")
    return "/".join(parts)


def resolve_type(name: str):
    """The generated message class for ``name``; BridgeError naming what is missing."""
    full = normalize_type(name)
    pkg, _, cls_name = full.split("/")
    try:
        module = importlib.import_module(f"{pkg}.msg")
    except ImportError as exc:
        raise BridgeError(f"message type {full}: package {pkg!r} is not installed or not "
                          f"sourced ({exc})") from None
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise BridgeError(f"message type {full}: {pkg}.msg has no {cls_name}")
    return cls


def type_name_of(cls_or_msg: Any) -> str:
    cls = cls_or_msg if isinstance(cls_or_msg, type) else type(cls_or_msg)
    pkg = cls.__module__.split(".")[0]
    return f"{pkg}/msg/{cls.__name__}"


def _is_message(value: Any) -> bool:
    return hasattr(type(value), "get_fields_and_field_types")


def _elem_type(ftype: str) -> Optional[str]:
    """Element type of a sequence/array field type string, else None."""
    if ftype.startswith("sequence<"):
        inner = ftype[len("sequence<"):-1]
        return inner.split(",")[0].strip()
    if "[" in ftype and ftype.endswith("]"):
        return ftype[:ftype.index("[")]
    return None


def _base_type(ftype: str) -> str:
    # "string<=10" -> "string", "double" -> "double"
    return ftype.split("<=")[0]


# ---- ROS -> JSON -----------------------------------------------------------------------------

def _jsonable(value: Any, ftype: str = "") -> Any:
    if _is_message(value):
        return msg_to_dict(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(bytes(value)).decode("ascii")
    elem = _elem_type(ftype) if ftype else None
    if isinstance(value, array.array):
        if value.typecode in ("B", "b") and (elem in _BYTE_ELEMS or elem is None):
            return base64.b64encode(value.tobytes()).decode("ascii")
        return [_jsonable(v) for v in value.tolist()]
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy arrays (fixed-size fields)
        if elem in _BYTE_ELEMS:
            return base64.b64encode(value.tobytes()).decode("ascii")
        return [_jsonable(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        inner = elem or ""
        return [_jsonable(v, inner) for v in value]
    return str(value)


def msg_to_dict(msg: Any) -> Dict[str, Any]:
    """A JSON-safe dict of any generated ROS message (recursive introspection)."""
    out: Dict[str, Any] = {}
    for name, ftype in type(msg).get_fields_and_field_types().items():
        out[name] = _jsonable(getattr(msg, name), ftype)
    return out


# ---- JSON -> ROS -----------------------------------------------------------------------------

def _coerce(value: Any, ftype: str, path: str, field_cls: Any = None) -> Any:
    base = _base_type(ftype)
    elem = _elem_type(ftype)
    if elem is not None:
        if elem in _BYTE_ELEMS and isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except ValueError:
                raise BridgeError(f"{path}: expected base64 text or a list of bytes") from None
        if not isinstance(value, (list, tuple)):
            raise BridgeError(f"{path}: expected a list, got {type(value).__name__}")
        return [_coerce(v, elem, f"{path}[{i}]") for i, v in enumerate(value)]
    if base in _FLOAT_TYPES:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if value is None:
                return float("nan")
            raise BridgeError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if base in _INT_TYPES:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if base == "char" and isinstance(value, str) and len(value) == 1:
                return ord(value)
            raise BridgeError(f"{path}: expected an integer, got {value!r}")
        return value
    if base == "boolean":
        if not isinstance(value, bool):
            raise BridgeError(f"{path}: expected true or false, got {value!r}")
        return value
    if base in ("string", "wstring"):
        if not isinstance(value, str):
            raise BridgeError(f"{path}: expected a string, got {value!r}")
        return value
    raise BridgeError(f"{path}: unsupported field type {ftype}")


def fill_msg(msg: Any, data: Any, path: str = "") -> Any:
    """Set the fields of ``msg`` from the dict ``data`` (unknown keys are an error)."""
    if not isinstance(data, dict):
        raise BridgeError(f"{path or type_name_of(msg)}: expected an object, got {type(data).__name__}")
    fields = type(msg).get_fields_and_field_types()
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            raise BridgeError(f"{where}: {type_name_of(msg)} has no field {key!r} "
                              f"(fields: {', '.join(fields)})")
        ftype = fields[key]
        current = getattr(msg, key)
        try:
            if _is_message(current):
                fill_msg(current, value, where)
                continue
            elem = _elem_type(ftype)
            if elem is not None and "/" in elem:
                if not isinstance(value, list):
                    raise BridgeError(f"{where}: expected a list of {elem}")
                elem_cls = resolve_type(elem)
                setattr(msg, key, [fill_msg(elem_cls(), v, f"{where}[{i}]") for i, v in enumerate(value)])
                continue
            setattr(msg, key, _coerce(value, ftype, where))
        except BridgeError:
            raise
        except (AssertionError, TypeError, ValueError, OverflowError) as exc:
            raise BridgeError(f"{where}: value {value!r} does not fit {ftype} ({exc})") from None
    return msg


# ---- helpers -----------------------------------------------------------------------------------

def _stamp_ns(msg: Any) -> int:
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None)
    if stamp is None:
        return 0
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _set_header(msg: Any, stamp_ns: int, frame_id: str) -> None:
    sec, nsec = divmod(int(stamp_ns), 1_000_000_000)
    msg.header.stamp.sec = sec
    msg.header.stamp.nanosec = nsec
    msg.header.frame_id = frame_id


def make_qos(reliability: str, durability: str, depth: int):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=int(depth),
        reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if durability == "transient_local"
                    else DurabilityPolicy.VOLATILE),
    )


_QOS_PARAMS = lambda rel_default: (  # noqa: E731
    Param("reliability", "str", rel_default, "QoS reliability of the ROS endpoint.",
          enum=("reliable", "best_effort")),
    Param("durability", "str", "volatile", "QoS durability of the ROS endpoint.",
          enum=("volatile", "transient_local")),
    Param("depth", "int", 10, "QoS history depth (keep-last).", minimum=1, maximum=10000),
)


def _need_node(ctx: Any, name: str) -> Any:
    node = getattr(ctx, "ros_node", None)
    if node is None:
        raise RuntimeError(f"{name}: no ROS node to attach to (ctx.ros_node is None); this plugin "
                           "runs inside a schnitzel container, or a test sets ctx.ros_node")
    return node


def _check_common(name: str, p: Dict[str, Any]) -> None:
    if not str(p.get("topic") or "").strip():
        raise ValueError(f"{name}: param 'topic' is empty; give the ROS topic, e.g. /scan")
    if p.get("reliability") not in ("reliable", "best_effort"):
        raise ValueError(f"{name}: param 'reliability' must be reliable or best_effort")
    if p.get("durability") not in ("volatile", "transient_local"):
        raise ValueError(f"{name}: param 'durability' must be volatile or transient_local")
    depth = p.get("depth")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"{name}: param 'depth' must be an integer >= 1, got {depth!r}")


# ---- ros_topic_source ------------------------------------------------------------------------

class RosTopicSourceLogic(SourceLogic):
    spec = PluginSpec(
        name="ros_topic_source",
        category=Category.SOURCE,
        version="1.0.0",
        description="Bridges an existing ROS topic (Image, CompressedImage, Imu, Range, LaserScan, "
                    "StreamPacket or any type as JSON) into StreamPackets.",
        ports=(Out("out", ("*",), qos="sensor", description="One packet per received message."),),
        params=(
            Param("topic", "str", description="ROS topic to subscribe to, e.g. /imu/data."),
            Param("msg_type", "str", description="Message type, e.g. sensor_msgs/msg/Imu."),
            Param("kind", "str", "", "Packet kind (default by type: video.frame, sensor.imu, "
                  "sensor.range, sensor.scan, else telemetry)."),
            *_QOS_PARAMS("best_effort"),
            Param("stream_id", "str", "", "Stream id of the packets (default: the node id)."),
            Param("frame_id", "str", "", "Override the messages' frame_id (default: keep it)."),
            Param("epoch", "int", 0, "Epoch of the packets.", minimum=0),
        ),
    )

    def configure(self) -> None:
        p = self.params
        _check_common("ros_topic_source", p)
        try:
            self.msg_cls = resolve_type(p.get("msg_type"))
        except BridgeError as exc:
            raise ValueError(f"ros_topic_source: {exc}") from None
        self.type_name = type_name_of(self.msg_cls)
        self.kind = str(p.get("kind") or DEFAULT_KINDS.get(self.type_name, "telemetry"))
        self._sub = None
        self.claim_live_epoch()  # a restarted bridge must not repeat an earlier run's keys

    def activate(self) -> None:
        node = _need_node(self.ctx, "ros_topic_source")
        p = self.params
        self._sub = node.create_subscription(self.msg_cls, str(p["topic"]), self.on_message,
                                             make_qos(p["reliability"], p["durability"], p["depth"]))

    def deactivate(self) -> None:
        if self._sub is not None:
            node = self.ctx.ros_node
            if node is not None:
                node.destroy_subscription(self._sub)
            self._sub = None

    def to_packet(self, msg: Any) -> Packet:
        """The packet for one message (next seq of this stream)."""
        if self.type_name == STREAM_PACKET_TYPE:
            from schnitzel_core.codecs.ros import from_msg

            return from_msg(msg)
        p = self.params
        stamp = _stamp_ns(msg) or self.ctx.clock_ns()
        frame_id = str(p.get("frame_id") or getattr(getattr(msg, "header", None), "frame_id", "") or "")
        self.seq += 1
        fields = dict(stream_id=self.stream_id, seq=self.seq, epoch=self.epoch, kind=self.kind,
                      stamp_ns=stamp, frame_id=frame_id, meta={"ros.type": self.type_name})
        if self.type_name == "sensor_msgs/msg/Image":
            from schnitzel_core.codecs.image import image_content_type

            return Packet(payload=bytes(msg.data),
                          content_type=image_content_type(msg.encoding, msg.width, msg.height,
                                                          msg.step, msg.is_bigendian), **fields)
        if self.type_name == "sensor_msgs/msg/CompressedImage":
            fmt = (msg.format or "").lower()
            media = "image/png" if "png" in fmt else "image/jpeg" if ("jpeg" in fmt or "jpg" in fmt) else "application/octet-stream"
            fields["meta"]["ros.format"] = msg.format
            return Packet(payload=bytes(msg.data), content_type=media, **fields)
        data = msg_to_dict(msg)
        if "header" in data and _is_message(getattr(msg, "header", None)):
            data.pop("header")
        return Packet.from_json(value=data, **fields)

    def on_message(self, msg: Any) -> None:
        try:
            pkt = self.to_packet(msg)
        except Exception as exc:  # noqa: BLE001 - a bad message must not kill the executor
            self.ctx.count("rejected")
            self.ctx.logger.warning("ros_topic_source: cannot convert a %s message: %s", self.type_name, exc)
            return
        self.ctx.count("messages")
        self.emit("out", pkt)


# ---- ros_topic_sink ----------------------------------------------------------------------------

class RosTopicSinkLogic(SinkLogic):
    spec = PluginSpec(
        name="ros_topic_sink",
        category=Category.SINK,
        version="1.0.0",
        description="Republishes packets to a ROS topic: StreamPacket as is, frames as Image or "
                    "CompressedImage, JSON payloads into any message type (e.g. geometry_msgs/Twist).",
        ports=(In("in", ("*",), qos="events", description="Packets to publish."),),
        params=(
            Param("topic", "str", description="ROS topic to publish on, e.g. /cmd_vel."),
            Param("msg_type", "str", STREAM_PACKET_TYPE, "Message type, e.g. geometry_msgs/msg/Twist."),
            *_QOS_PARAMS("reliable"),
        ),
    )

    def configure(self) -> None:
        p = self.params
        _check_common("ros_topic_sink", p)
        try:
            self.msg_cls = resolve_type(p.get("msg_type"))
        except BridgeError as exc:
            raise ValueError(f"ros_topic_sink: {exc}") from None
        self.type_name = type_name_of(self.msg_cls)
        self._pub = None
        self._last_warn = 0.0

    def activate(self) -> None:
        node = _need_node(self.ctx, "ros_topic_sink")
        p = self.params
        self._pub = node.create_publisher(self.msg_cls, str(p["topic"]),
                                          make_qos(p["reliability"], p["durability"], p["depth"]))

    def deactivate(self) -> None:
        if self._pub is not None:
            node = self.ctx.ros_node
            if node is not None:
                node.destroy_publisher(self._pub)
            self._pub = None

    def to_message(self, packet: Packet) -> Any:
        """The ROS message for ``packet``; BridgeError when it does not fit the type."""
        t = self.type_name
        if t == STREAM_PACKET_TYPE:
            from schnitzel_core.codecs.ros import to_msg

            return to_msg(packet)
        msg = self.msg_cls()
        media = (packet.content_type or "").split(";")[0].strip().lower()
        if t == "sensor_msgs/msg/Image":
            from schnitzel_core.codecs.image import parse_content_type

            if media != "image/raw":
                raise BridgeError(f"sensor_msgs/msg/Image needs a raw frame (image/raw;...), "
                                  f"got content type {packet.content_type!r}")
            _, cp = parse_content_type(packet.content_type)
            try:
                msg.encoding = cp["encoding"]
                msg.width, msg.height = int(cp["width"]), int(cp["height"])
                msg.step = int(cp.get("step") or (len(packet.payload) // max(1, msg.height)))
                msg.is_bigendian = 1 if cp.get("bigendian", "0") not in ("0", "", "false") else 0
            except (KeyError, ValueError) as exc:
                raise BridgeError(f"raw frame content type {packet.content_type!r} is incomplete ({exc})") from None
            if msg.step * msg.height != len(packet.payload):
                raise BridgeError(f"raw frame of {len(packet.payload)} bytes does not match "
                                  f"step {msg.step} x height {msg.height}")
            msg.data = packet.payload
        elif t == "sensor_msgs/msg/CompressedImage":
            if media not in ("image/jpeg", "image/png"):
                raise BridgeError(f"sensor_msgs/msg/CompressedImage needs image/jpeg or image/png, "
                                  f"got {packet.content_type!r}")
            msg.format = "png" if media == "image/png" else "jpeg"
            msg.data = packet.payload
        else:
            if not media.startswith("application/json"):
                raise BridgeError(f"{t} is filled from a JSON payload; packet {packet.packet_id} "
                                  f"has content type {packet.content_type!r}")
            try:
                data = packet.json()
            except ValueError as exc:
                raise BridgeError(str(exc)) from None
            if not isinstance(data, dict):
                raise BridgeError(f"{t} needs a JSON object payload, got {type(data).__name__}")
            fill_msg(msg, data)
            if "header" in type(msg).get_fields_and_field_types() and "header" not in data:
                _set_header(msg, packet.stamp_ns, packet.frame_id)
            return msg
        _set_header(msg, packet.stamp_ns, packet.frame_id)
        return msg

    def write(self, packet: Packet) -> None:
        try:
            msg = self.to_message(packet)
        except (BridgeError, ValueError) as exc:
            self.ctx.count("rejected")
            now = time.monotonic()
            if now - self._last_warn > 5.0:
                self._last_warn = now
                self.ctx.logger.warning("ros_topic_sink: packet %s not published to %s: %s",
                                        packet.packet_id, self.params.get("topic"), exc)
            return
        if self._pub is None:
            self.ctx.count("not_active")
            return
        try:
            self._pub.publish(msg)
        except Exception as exc:  # noqa: BLE001 - rclpy raises RCLError when a reader falls behind
            self.ctx.count("publish_errors")
            self.ctx.logger.warning("ros_topic_sink: publish on %s failed: %s", self.params.get("topic"), exc)
            return
        self.ctx.count("published")
