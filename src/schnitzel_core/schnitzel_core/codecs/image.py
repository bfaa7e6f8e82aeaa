"""Raw images: numpy array ⇄ sensor_msgs/Image fields ⇄ raw-image packets.

Supported encodings (names as in sensor_msgs/image_encodings and cv_bridge):

=========  ===========  ========  =====================================
encoding   numpy dtype  channels  array shape
=========  ===========  ========  =====================================
rgb8       uint8        3         (height, width, 3)
bgr8       uint8        3         (height, width, 3)
rgba8      uint8        4         (height, width, 4)
bgra8      uint8        4         (height, width, 4)
mono8      uint8        1         (height, width)
mono16     uint16       1         (height, width)
16UC1      uint16       1         (height, width)  (depth images)
32FC1      float32      1         (height, width)
=========  ===========  ========  =====================================

Arrays are never converted between encodings or dtypes: a float64 array for ``32FC1`` or a
(H, W) array for ``rgb8`` is refused with a :class:`CodecError` naming the expected shape or
dtype, because a silent cast hides bugs upstream.

Decoding is zero-copy where possible: the returned array is a view on the message or packet
bytes (read-only when those are ``bytes``); rows padded beyond ``width * bytes_per_pixel``
(``step`` larger than needed) are handled with strides. Pass ``copy=True`` for a writable,
contiguous array.

A raw frame packet carries the image bytes as its payload and describes them in its
content type: ``image/raw;encoding=rgb8;width=640;height=480;step=1920`` (plus
``;bigendian=1`` for big-endian 16/32-bit data, which x86 and ARM hosts never produce).
"""
from __future__ import annotations

import sys
from typing import Any, Dict, NamedTuple, Optional, Tuple

import numpy as np

from ..packet import Packet
from . import CodecError

FRAME_KIND = "video.frame"
RAW_MEDIA_TYPE = "image/raw"


class Encoding(NamedTuple):
    dtype: np.dtype  # little-endian element type
    channels: int

    @property
    def pixel_bytes(self) -> int:
        return self.dtype.itemsize * self.channels


ENCODINGS: Dict[str, Encoding] = {
    "rgb8": Encoding(np.dtype("u1"), 3),
    "bgr8": Encoding(np.dtype("u1"), 3),
    "rgba8": Encoding(np.dtype("u1"), 4),
    "bgra8": Encoding(np.dtype("u1"), 4),
    "mono8": Encoding(np.dtype("u1"), 1),
    "mono16": Encoding(np.dtype("<u2"), 1),
    "16UC1": Encoding(np.dtype("<u2"), 1),
    "32FC1": Encoding(np.dtype("<f4"), 1),
}

_HOST_BIG_ENDIAN = sys.byteorder == "big"


def encoding_info(encoding: str) -> Encoding:
    """The dtype and channel count of ``encoding``; CodecError for unknown encodings."""
    try:
        return ENCODINGS[encoding]
    except (KeyError, TypeError):
        raise CodecError(
            f"unsupported image encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}"
        ) from None


def _expected_shape(enc: Encoding) -> str:
    return "(height, width)" if enc.channels == 1 else f"(height, width, {enc.channels})"


def _check_array(arr: Any, encoding: str) -> Tuple[np.ndarray, Encoding]:
    enc = encoding_info(encoding)
    if not isinstance(arr, np.ndarray):
        raise CodecError(f"image must be a numpy array, got {type(arr).__name__}")
    shape = arr.shape
    ok_shape = (
        (arr.ndim == 2 and enc.channels == 1)
        or (arr.ndim == 3 and shape[2] == enc.channels)
    )
    if not ok_shape:
        raise CodecError(
            f"{encoding} image must have shape {_expected_shape(enc)}, got {shape}"
        )
    # Same kind and size, any byte order (byte order is carried as is_bigendian).
    if arr.dtype.kind != enc.dtype.kind or arr.dtype.itemsize != enc.dtype.itemsize:
        raise CodecError(
            f"{encoding} image must have dtype {enc.dtype.name}, got {arr.dtype.name} "
            f"(convert it explicitly, e.g. arr.astype(np.{enc.dtype.name}))"
        )
    return arr, enc


def _is_big_endian(dtype: np.dtype) -> bool:
    if dtype.itemsize == 1:
        return False
    order = dtype.byteorder
    return order == ">" or (order in ("=", "|") and _HOST_BIG_ENDIAN)


def image_to_fields(arr: np.ndarray, encoding: str) -> Dict[str, Any]:
    """The sensor_msgs/Image fields of ``arr``: encoding, height, width, step, is_bigendian, data.

    ``data`` is ``bytes`` (tightly packed rows, ``step = width * bytes_per_pixel``).
    """
    arr, enc = _check_array(arr, encoding)
    height, width = int(arr.shape[0]), int(arr.shape[1])
    return {
        "encoding": encoding,
        "height": height,
        "width": width,
        "step": width * enc.pixel_bytes,
        "is_bigendian": 1 if _is_big_endian(arr.dtype) else 0,
        # tobytes() copies once into C order; it also packs non-contiguous views.
        "data": arr.tobytes(),
    }


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise CodecError(f"image {name} must be an integer, got {value!r}")
    if value < 0:
        raise CodecError(f"image {name} must be >= 0, got {value}")
    return int(value)


def fields_to_image(data: Any, encoding: str, width: int, height: int,
                    step: Optional[int] = None, is_bigendian: Any = 0,
                    copy: bool = False) -> np.ndarray:
    """A numpy array over raw image bytes described by sensor_msgs/Image fields.

    ``data`` is anything exposing the buffer protocol (bytes, bytearray, memoryview,
    array.array('B') as rclpy gives for uint8[]). Zero-copy unless ``copy=True``.
    ``step`` defaults to the packed row size. Raises CodecError when sizes disagree.
    """
    enc = encoding_info(encoding)
    width = _as_int("width", width)
    height = _as_int("height", height)
    row = width * enc.pixel_bytes
    step = row if step is None else _as_int("step", step)
    if step < row:
        raise CodecError(
            f"{encoding} image step {step} is smaller than width {width} x {enc.pixel_bytes} "
            f"bytes per pixel = {row}"
        )
    try:
        buf = np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError) as exc:
        raise CodecError(f"image data must be a bytes-like object, got {type(data).__name__} ({exc})") from None
    expected = step * height
    if buf.size != expected:
        raise CodecError(
            f"{encoding} image data has {buf.size} bytes; expected step {step} x height {height} "
            f"= {expected} for {width}x{height}"
        )
    dtype = enc.dtype.newbyteorder(">" if is_bigendian else "<")
    shape: Tuple[int, ...] = (height, width) if enc.channels == 1 else (height, width, enc.channels)
    strides: Tuple[int, ...] = (step, enc.pixel_bytes) if enc.channels == 1 else (step, enc.pixel_bytes, enc.dtype.itemsize)
    if height == 0 or width == 0:
        out = np.zeros(shape, dtype=dtype)
    else:
        # A strided view: honours row padding without copying; stays read-only over bytes.
        out = np.ndarray(shape, dtype=dtype, buffer=buf, offset=0, strides=strides)
    if copy:
        out = np.ascontiguousarray(out).copy()
    return out


# ---- sensor_msgs/Image -------------------------------------------------------

def to_ros_image(arr: np.ndarray, encoding: str, stamp_ns: int = 0, frame_id: str = "") -> Any:
    """A sensor_msgs/msg/Image holding ``arr`` (imports sensor_msgs lazily; no rclpy)."""
    from sensor_msgs.msg import Image  # generated message class, no rclpy needed

    fields = image_to_fields(arr, encoding)
    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    msg.header.frame_id = frame_id
    msg.height = fields["height"]
    msg.width = fields["width"]
    msg.encoding = encoding
    msg.is_bigendian = fields["is_bigendian"]
    msg.step = fields["step"]
    # bytes assignment is a fast memcpy; an ndarray or memoryview is copied element by element.
    msg.data = fields["data"]
    return msg


def from_ros_image(msg: Any, copy: bool = False) -> np.ndarray:
    """The numpy array of a sensor_msgs/msg/Image (a view on msg.data unless ``copy``)."""
    return fields_to_image(msg.data, msg.encoding, msg.width, msg.height, msg.step,
                           msg.is_bigendian, copy=copy)


# ---- raw-image packets -------------------------------------------------------

def image_content_type(encoding: str, width: int, height: int, step: int,
                       is_bigendian: Any = 0) -> str:
    ct = f"{RAW_MEDIA_TYPE};encoding={encoding};width={width};height={height};step={step}"
    return ct + (";bigendian=1" if is_bigendian else "")


def parse_content_type(content_type: str) -> Tuple[str, Dict[str, str]]:
    """Split ``type/subtype;k=v;...`` into the media type and its parameters."""
    parts = [p.strip() for p in (content_type or "").split(";")]
    params: Dict[str, str] = {}
    for p in parts[1:]:
        if not p:
            continue
        key, sep, value = p.partition("=")
        if not sep:
            raise CodecError(f"content type {content_type!r}: parameter {p!r} is not key=value")
        params[key.strip().lower()] = value.strip()
    return parts[0].lower(), params


def image_packet(arr: np.ndarray, encoding: str, stream_id: str, seq: int,
                 kind: str = FRAME_KIND, **fields: Any) -> Packet:
    """A raw-frame packet (payload = packed image bytes, described by its content type)."""
    f = image_to_fields(arr, encoding)
    return Packet(stream_id=stream_id, seq=seq, kind=kind, payload=f["data"],
                  content_type=image_content_type(encoding, f["width"], f["height"], f["step"],
                                                  f["is_bigendian"]),
                  **fields)


def packet_image(packet: Packet, copy: bool = False) -> np.ndarray:
    """The numpy array of a raw-frame packet (a read-only view on its payload unless ``copy``)."""
    media, params = parse_content_type(packet.content_type)
    if media != RAW_MEDIA_TYPE:
        raise CodecError(
            f"packet {packet.packet_id}: content type {packet.content_type!r} is not "
            f"{RAW_MEDIA_TYPE};encoding=...;width=...;height=...;step=..."
        )
    missing = [k for k in ("encoding", "width", "height") if k not in params]
    if missing:
        raise CodecError(f"packet {packet.packet_id}: content type {packet.content_type!r} lacks {', '.join(missing)}")
    try:
        width, height = int(params["width"]), int(params["height"])
        step = int(params["step"]) if "step" in params else None
    except ValueError:
        raise CodecError(f"packet {packet.packet_id}: content type {packet.content_type!r} has a non-integer size") from None
    if not packet.payload and packet.payload_ref is not None and packet.payload_ref.uri:
        raise CodecError(
            f"packet {packet.packet_id}: the image is out of band at {packet.payload_ref.uri}; "
            "read it from there and call fields_to_image()"
        )
    try:
        return fields_to_image(packet.payload, params["encoding"], width, height, step,
                               params.get("bigendian", "0") not in ("0", "false", ""), copy=copy)
    except CodecError as exc:
        raise CodecError(f"packet {packet.packet_id}: {exc}") from None


__all__ = [
    "CodecError", "ENCODINGS", "Encoding", "FRAME_KIND", "encoding_info", "image_to_fields",
    "fields_to_image", "to_ros_image", "from_ros_image", "image_content_type",
    "parse_content_type", "image_packet", "packet_image",
]
