"""Recordings: StreamPacket topics in MCAP files laid out the way rosbag2 writes them.

What a file holds (docs/record-replay.md), so ``ros2 bag info`` / ``ros2 bag play`` read it:

- header profile ``ros2``; one schema per message type, encoding ``ros2msg``, named
  ``pkg/msg/Type``, whose text is the type's ``.msg`` followed by every type it references
  (each after a line of 80 ``=`` and ``MSG: pkg/Type``);
- one channel per topic, message encoding ``cdr``, metadata ``offered_qos_profiles`` (the
  writer's QoS as rosbag2's YAML list) and ``topic_type_hash`` (empty);
- messages: CDR bytes, ``log_time`` = when the recorder got it, ``publish_time`` = the
  packet's source stamp;
- chunked and compressed (zstd by default); every finished chunk goes straight to the
  operating system (no user-space buffer), and a chunk is closed at least every
  ``flush_interval_s``, so a recorder killed with SIGKILL leaves every chunk it finished
  readable (:func:`recover` writes a clean copy);
- at the end, the summary and the ``rosbag2`` metadata record (``serialized_metadata``: the
  bag's metadata YAML, version 9, and ``ROS_DISTRO``).

This module is pure Python (no rclpy): the CDR codec of StreamPacket is written out here
(little-endian XCDR1, as rmw_fastrtps serialises it; a test checks it byte for byte
against ``rclpy.serialization``), so recording from node logic and replaying need no ROS.
"""
from __future__ import annotations

import os
import struct
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from .packet import Packet, PayloadRef

STREAM_PACKET = "schnitzel_msgs/msg/StreamPacket"
PROFILE = "ros2"
SCHEMA_ENCODING = "ros2msg"
MESSAGE_ENCODING = "cdr"
METADATA_NAME = "rosbag2"
BAG_METADATA_VERSION = 9
#: rmw's RMW_DURATION_INFINITE as rosbag2 writes it (deadline, lifespan, lease duration).
INFINITE = {"sec": 9223372036, "nsec": 854775807}
_NS = 1_000_000_000

# ---------------------------------------------------------------------------
# CDR codec of StreamPacket (XCDR1, little endian, alignment relative to the body)

_CDR_LE = b"\x00\x01\x00\x00"


class _Enc:
    __slots__ = ("parts", "n")

    def __init__(self) -> None:
        self.parts: List[bytes] = [_CDR_LE]
        self.n = 0   # bytes of body written (alignment is relative to the body start)

    def _align(self, a: int) -> None:
        pad = (-self.n) % a
        if pad:
            self.parts.append(b"\x00" * pad)
            self.n += pad

    def u32(self, v: int) -> None:
        self._align(4)
        self.parts.append(struct.pack("<I", v & 0xFFFFFFFF))
        self.n += 4

    def i32(self, v: int) -> None:
        self._align(4)
        self.parts.append(struct.pack("<i", v))
        self.n += 4

    def u64(self, v: int) -> None:
        self._align(8)
        self.parts.append(struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF))
        self.n += 8

    def string(self, s: str) -> None:
        b = s.encode("utf-8")
        self.u32(len(b) + 1)
        self.parts.append(b + b"\x00")
        self.n += len(b) + 1

    def octets(self, b: bytes) -> None:
        self.u32(len(b))
        self.parts.append(b)
        self.n += len(b)


def encode_packet(p: Packet) -> bytes:
    """StreamPacket CDR bytes of ``p`` (what ``rclpy.serialization.serialize_message`` gives)."""
    e = _Enc()
    sec, nsec = divmod(int(p.stamp_ns), _NS)
    e.i32(sec)
    e.u32(nsec)
    e.string(p.frame_id)
    e.string(p.packet_id)
    e.string(p.stream_id)
    e.u64(int(p.seq))
    e.u32(int(p.epoch))
    e.string(p.kind)
    e.string(p.schema)
    e.string(p.content_type)
    e.octets(bytes(p.payload))
    ref = p.payload_ref or PayloadRef()
    e.string(ref.uri)
    e.u64(int(ref.size))
    e.string(ref.sha256)
    e.string(p.idempotency_key)
    e.u32(len(p.meta))
    for k, v in p.meta.items():
        e.string(k)
        e.string(v)
    return b"".join(e.parts)


class CdrError(ValueError):
    """Bytes that are not a StreamPacket in CDR."""


class _Dec:
    __slots__ = ("b", "o")

    def __init__(self, b: bytes) -> None:
        if len(b) < 4 or b[1] != 1:
            raise CdrError("not little-endian CDR (encapsulation header 00 01)")
        self.b = memoryview(b)[4:]
        self.o = 0

    def _align(self, a: int) -> None:
        self.o += (-self.o) % a

    def _take(self, n: int) -> memoryview:
        if self.o + n > len(self.b):
            raise CdrError(f"truncated CDR: need {n} bytes at offset {self.o}, have {len(self.b) - self.o}")
        v = self.b[self.o:self.o + n]
        self.o += n
        return v

    def u32(self) -> int:
        self._align(4)
        return struct.unpack("<I", self._take(4))[0]

    def i32(self) -> int:
        self._align(4)
        return struct.unpack("<i", self._take(4))[0]

    def u64(self) -> int:
        self._align(8)
        return struct.unpack("<Q", self._take(8))[0]

    def string(self) -> str:
        n = self.u32()
        raw = self._take(n)
        return bytes(raw[:-1] if n else raw).decode("utf-8")

    def octets(self) -> bytes:
        n = self.u32()
        return bytes(self._take(n))


def decode_packet(data: bytes) -> Packet:
    """The Packet in StreamPacket CDR bytes (raises CdrError)."""
    d = _Dec(data)
    try:
        sec = d.i32()
        nsec = d.u32()
        frame_id = d.string()
        packet_id = d.string()
        stream_id = d.string()
        seq = d.u64()
        epoch = d.u32()
        kind = d.string()
        schema = d.string()
        content_type = d.string()
        payload = d.octets()
        uri = d.string()
        size = d.u64()
        sha = d.string()
        key = d.string()
        meta = {}
        for _ in range(d.u32()):
            k = d.string()
            meta[k] = d.string()
    except UnicodeDecodeError as exc:
        raise CdrError(f"a string field is not UTF-8: {exc}") from None
    return Packet(stream_id=stream_id, seq=seq, kind=kind, payload=payload, epoch=epoch,
                  stamp_ns=sec * _NS + nsec, frame_id=frame_id, schema=schema, content_type=content_type,
                  packet_id=packet_id, idempotency_key=key,
                  payload_ref=PayloadRef(uri, size, sha) if uri else None, meta=meta)


def cdr_kind(data: bytes) -> str:
    """The ``kind`` of StreamPacket CDR bytes, read without touching the payload ("" if unreadable)."""
    try:
        d = _Dec(data)
        d.i32(), d.u32(), d.string(), d.string(), d.string(), d.u64(), d.u32()
        return d.string()
    except (CdrError, UnicodeDecodeError):
        return ""


def cdr_stamp_ns(data: bytes) -> int:
    """The header stamp of a message that starts with std_msgs/Header (StreamPacket, Image)."""
    if len(data) < 12:
        return 0
    sec, nsec = struct.unpack_from("<iI", data, 4)
    return max(0, sec * _NS + nsec)


# ---------------------------------------------------------------------------
# message definitions (ros2msg with dependencies) from the installed share/ directories

_PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32",
               "uint32", "int64", "uint64", "string", "wstring", "time", "duration"}


class DefinitionError(LookupError):
    """A message type whose .msg file is not installed."""


def _msg_file(pkg: str, name: str) -> Path:
    roots = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    for root in roots:
        cand = Path(root) / "share" / pkg / "msg" / f"{name}.msg"
        if cand.is_file():
            return cand
    raise DefinitionError(f"message definition {pkg}/msg/{name}.msg not found under AMENT_PREFIX_PATH "
                          f"({', '.join(roots) or 'unset'}); source scripts/env.sh (or a ROS 2 setup) first")


def _deps(text: str, pkg: str) -> List[str]:
    """Non-primitive field types a .msg references, as ``pkg/Type``, in file order."""
    out: List[str] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) < 2 or "=" in words[1] or (len(words) > 2 and words[2].startswith("=")):
            continue   # blank, or a constant
        base = words[0].split("[", 1)[0].split("<=", 1)[0]
        if base in _PRIMITIVES:
            continue
        if "/" not in base:
            base = "std_msgs/Header" if base == "Header" else f"{pkg}/{base}"
        if base not in out:
            out.append(base)
    return out


def message_definition(msg_type: str) -> str:
    """The ``ros2msg`` schema text of ``pkg/msg/Type``: its .msg text, then each type it
    references (depth first, once each), each after rosbag2's delimiter line."""
    pkg, _, name = msg_type.replace("/msg/", "/").partition("/")
    text = _msg_file(pkg, name).read_text(encoding="utf-8")
    out = text if text.endswith("\n") else text + "\n"
    seen: List[str] = []
    stack = list(reversed(_deps(text, pkg)))
    while stack:
        dep = stack.pop()
        if dep in seen:
            continue
        seen.append(dep)
        dpkg, dname = dep.split("/", 1)
        dtext = _msg_file(dpkg, dname).read_text(encoding="utf-8")
        out += "=" * 80 + f"\nMSG: {dep}\n" + (dtext if dtext.endswith("\n") else dtext + "\n")
        stack.extend(reversed([d for d in _deps(dtext, dpkg) if d not in seen]))
    return out


# ---------------------------------------------------------------------------
# QoS as rosbag2 writes it (offered_qos_profiles)

def qos_profile_yaml(qos: Mapping[str, Any]) -> str:
    """rosbag2's ``offered_qos_profiles`` text (a YAML list with one profile) for a schnitzel
    QoS dict (reliability, durability, history, depth)."""
    def dur(d: Mapping[str, int]) -> str:
        return f"\n    sec: {d['sec']}\n    nsec: {d['nsec']}"
    history = str(qos.get("history", "keep_last"))
    depth = int(qos.get("depth", 0) or 0) if history == "keep_last" else 0
    return ("- history: " + history + "\n"
            f"  depth: {depth}\n"
            f"  reliability: {qos.get('reliability', 'reliable')}\n"
            f"  durability: {qos.get('durability', 'volatile')}\n"
            f"  deadline:{dur(INFINITE)}\n"
            f"  lifespan:{dur(INFINITE)}\n"
            "  liveliness: automatic\n"
            f"  liveliness_lease_duration:{dur(INFINITE)}\n"
            "  avoid_ros_namespace_conventions: false")


def _yaml_str(s: str) -> str:
    import json
    return json.dumps(s)   # a JSON string is a valid YAML double-quoted scalar


def bag_metadata_yaml(path: str, topics: Sequence[Tuple[str, str, str, int]], start_ns: int, end_ns: int,
                      count: int, ros_distro: str) -> str:
    """rosbag2's BagMetadata YAML (version 9) for the ``rosbag2`` metadata record.
    ``topics``: (name, type, offered_qos_profiles text, message count)."""
    dur = max(0, end_ns - start_ns) if count else 0
    lines = [f"version: {BAG_METADATA_VERSION}", "storage_identifier: mcap",
             f"duration:\n  nanoseconds: {dur}",
             f"starting_time:\n  nanoseconds_since_epoch: {start_ns if count else 0}",
             f"message_count: {count}", "topics_with_message_count:"]
    if not topics:
        lines[-1] += " []"
    for name, typ, qos_text, n in topics:
        lines += ["  - topic_metadata:", f"      name: {_yaml_str(name)}", f"      type: {_yaml_str(typ)}",
                  f"      serialization_format: {MESSAGE_ENCODING}",
                  f"      offered_qos_profiles: {_yaml_str(qos_text)}",
                  "      type_description_hash: \"\"", f"    message_count: {n}"]
    base = os.path.basename(path)
    # compression_format stays empty: the chunks are compressed by the MCAP storage itself, a
    # rosbag2 compression format would make readers decompress the whole file first
    lines += ["compression_format: \"\"", "compression_mode: \"\"",
              f"relative_file_paths:\n  - {_yaml_str(base)}",
              f"files:\n  - path: {_yaml_str(base)}\n    starting_time:\n      nanoseconds_since_epoch: "
              f"{start_ns if count else 0}\n    duration:\n      nanoseconds: {dur}\n    message_count: {count}",
              "custom_data: {}", f"ros_distro: {_yaml_str(ros_distro)}"]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------
# writing

class _Unbuffered:
    """A file the mcap writer writes straight to the OS: a finished chunk survives SIGKILL."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.pos = 0

    def write(self, data: Any) -> int:
        mv = memoryview(data)
        while mv:
            n = os.write(self.fd, mv)
            mv = mv[n:]
            self.pos += n
        return len(data)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class RecordingError(OSError):
    """A recording that cannot be written or read."""


class Recorder:
    """Writes one MCAP file in rosbag2's layout. Thread-safe: ``write`` may be called from
    several subscription callbacks at once."""

    def __init__(self, path: str, *, compression: str = "zstd", chunk_size: int = 4 * 1024 * 1024,
                 flush_interval_s: float = 1.0) -> None:
        from mcap.writer import CompressionType, Writer

        comp = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
        if compression not in comp:
            raise ValueError(f"compression must be one of {', '.join(comp)}, got {compression!r}")
        self.path = str(path)
        self.compression = "" if compression == "none" else compression
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file = _Unbuffered(self.path)
        except OSError as exc:
            raise RecordingError(f"cannot write recording {self.path}: {exc.strerror or exc}") from None
        self._w = Writer(self._file, chunk_size=chunk_size, compression=comp[compression])
        self._w.start(profile=PROFILE, library="schnitzel")
        self._lock = threading.Lock()
        self._schemas: Dict[str, int] = {}
        self._channels: Dict[str, int] = {}
        self._topics: Dict[str, List[Any]] = {}   # topic -> [type, qos text, count]
        self.flush_interval_s = float(flush_interval_s)
        self._last_flush = time.monotonic()
        self._pending = 0
        self.count = 0
        self.bytes_in = 0
        self.start_ns = 0
        self.end_ns = 0
        self.closed = False

    def add_topic(self, topic: str, msg_type: str = STREAM_PACKET, qos: Optional[Mapping[str, Any]] = None) -> int:
        """Declare ``topic`` (its type and the QoS its writer offers); returns the channel id."""
        with self._lock:
            return self._add_topic(topic, msg_type, qos)

    def _add_topic(self, topic: str, msg_type: str, qos: Optional[Mapping[str, Any]]) -> int:
        if topic in self._channels:
            return self._channels[topic]
        sid = self._schemas.get(msg_type)
        if sid is None:
            sid = self._w.register_schema(msg_type, SCHEMA_ENCODING, message_definition(msg_type).encode("utf-8"))
            self._schemas[msg_type] = sid
        qos_text = qos_profile_yaml(qos or {"reliability": "reliable", "durability": "volatile",
                                            "history": "keep_last", "depth": 10})
        cid = self._w.register_channel(topic, MESSAGE_ENCODING, sid,
                                       {"offered_qos_profiles": qos_text, "topic_type_hash": ""})
        self._channels[topic] = cid
        self._topics[topic] = [msg_type, qos_text, 0]
        return cid

    def write(self, topic: str, data: bytes, log_time_ns: Optional[int] = None,
              publish_time_ns: Optional[int] = None) -> None:
        """One message (CDR bytes) on a declared topic (undeclared: a StreamPacket topic)."""
        log_t = int(log_time_ns if log_time_ns is not None else time.time_ns())
        pub_t = int(publish_time_ns if publish_time_ns is not None else cdr_stamp_ns(data))
        with self._lock:
            if self.closed:
                return
            cid = self._channels.get(topic) or self._add_topic(topic, STREAM_PACKET, None)
            t = self._topics[topic]
            t[2] += 1
            self._w.add_message(cid, log_time=log_t, data=data, publish_time=pub_t, sequence=t[2])
            self.count += 1
            self.bytes_in += len(data)
            if not self.start_ns or log_t < self.start_ns:
                self.start_ns = log_t
            self.end_ns = max(self.end_ns, log_t)
            self._pending += 1
            self._maybe_flush()

    def write_packet(self, topic: str, packet: Packet, log_time_ns: Optional[int] = None) -> None:
        self.write(topic, encode_packet(packet), log_time_ns, packet.stamp_ns)

    def _maybe_flush(self) -> None:
        now = time.monotonic()
        if self._pending and now - self._last_flush >= self.flush_interval_s:
            self._w.flush()   # close the chunk: it is on disk even if we are killed next
            self._pending = 0
            self._last_flush = now

    def tick(self) -> None:
        """Close a chunk that has waited ``flush_interval_s`` (call it from a timer)."""
        with self._lock:
            if not self.closed:
                self._maybe_flush()

    def close(self) -> None:
        """Finish the file: last chunk, summary, the ``rosbag2`` metadata record."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            topics = [(name, t[0], t[1], t[2]) for name, t in self._topics.items()]
            distro = os.environ.get("ROS_DISTRO", "kilted")
            self._w.add_metadata(METADATA_NAME, {
                "serialized_metadata": bag_metadata_yaml(self.path, topics, self.start_ns, self.end_ns,
                                                         self.count, distro),
                "ROS_DISTRO": distro})
            self._w.finish()
            self._file.close()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---------------------------------------------------------------------------
# reading

class Message(NamedTuple):
    topic: str
    msg_type: str
    log_time_ns: int
    publish_time_ns: int
    data: bytes


def _open_reader(path: str) -> Any:
    from mcap.reader import make_reader
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise RecordingError(f"cannot read recording {path}: {exc.strerror or exc}") from None
    return f, make_reader(f)


def read_messages(path: str, topics: Optional[Sequence[str]] = None, start_ns: Optional[int] = None,
                  end_ns: Optional[int] = None) -> Iterator[Message]:
    """Messages in log-time order (``start_ns`` inclusive, ``end_ns`` exclusive)."""
    f, reader = _open_reader(path)
    try:
        try:
            it = reader.iter_messages(topics=list(topics) if topics else None, starting_at=start_ns,
                                      ending_before=end_ns, log_time_order=True)
            for schema, channel, msg in it:
                yield Message(channel.topic, schema.name if schema else "", msg.log_time, msg.publish_time, msg.data)
        except Exception as exc:  # noqa: BLE001 - the mcap library raises several types
            if isinstance(exc, (GeneratorExit, KeyboardInterrupt)):
                raise
            raise RecordingError(f"recording {path} cannot be read ({type(exc).__name__}: {exc}); "
                                 f"if its recorder was killed, run `schnitzel record recover {path}`") from None
    finally:
        f.close()


def info(path: str) -> Dict[str, Any]:
    """Profile, time range and per-topic type/count/QoS of a finished recording."""
    f, reader = _open_reader(path)
    try:
        try:
            header = reader.get_header()
            summary = reader.get_summary()
            metadata = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
        except Exception as exc:  # noqa: BLE001
            raise RecordingError(f"recording {path} has no readable summary ({type(exc).__name__}: {exc}); "
                                 f"if its recorder was killed, run `schnitzel record recover {path}`") from None
    finally:
        f.close()
    if summary is None:
        raise RecordingError(f"recording {path} has no summary (not finished); "
                             f"run `schnitzel record recover {path}`")
    st = summary.statistics
    topics = {}
    for cid, ch in summary.channels.items():
        sc = summary.schemas.get(ch.schema_id)
        topics[ch.topic] = {"type": sc.name if sc else "", "count": st.channel_message_counts.get(cid, 0),
                            "message_encoding": ch.message_encoding, "metadata": dict(ch.metadata)}
    return {"path": path, "profile": header.profile, "messages": st.message_count,
            "start_ns": st.message_start_time, "end_ns": st.message_end_time, "chunks": st.chunk_count,
            "topics": topics, "metadata": metadata}


def recover(src: str, dst: str, *, compression: str = "zstd") -> Dict[str, Any]:
    """Copy every message of ``src`` that sits in a complete chunk (or a complete record
    outside chunks) to a clean, finished file ``dst``; returns what was kept."""
    from mcap.records import Channel, Chunk, Message as McapMessage, Schema
    from mcap.stream_reader import StreamReader, breakup_chunk

    if os.path.abspath(src) == os.path.abspath(dst):
        raise RecordingError("recover writes a copy: give an output path other than the input")
    try:
        fin = open(src, "rb")
    except OSError as exc:
        raise RecordingError(f"cannot read recording {src}: {exc.strerror or exc}") from None
    schemas: Dict[int, Any] = {}
    channels: Dict[int, Any] = {}
    msgs: List[Any] = []
    chunks = 0
    problem = ""
    try:
        reader = StreamReader(fin, emit_chunks=True)
        try:
            for rec in reader.records:
                recs = [rec]
                if isinstance(rec, Chunk):
                    try:
                        recs = breakup_chunk(rec, validate_crc=True)
                    except Exception as exc:  # noqa: BLE001 - a damaged chunk ends the good part
                        problem = f"chunk {chunks + 1} is damaged ({exc})"
                        break
                    chunks += 1
                for r in recs:
                    if isinstance(r, Schema):
                        schemas[r.id] = r
                    elif isinstance(r, Channel):
                        channels[r.id] = r
                    elif isinstance(r, McapMessage):
                        msgs.append(r)
        except Exception as exc:  # noqa: BLE001 - a truncated tail: keep what was complete
            problem = f"stopped at a truncated record ({type(exc).__name__}: {exc})" if str(exc) else \
                f"stopped at a truncated record ({type(exc).__name__})"
    finally:
        fin.close()
    msgs.sort(key=lambda m: m.log_time)
    rec = Recorder(dst, compression=compression)
    kept = 0
    for m in msgs:
        ch = channels.get(m.channel_id)
        if ch is None:
            continue
        sc = schemas.get(ch.schema_id)
        with rec._lock:   # re-declare with the original schema text and channel metadata
            if ch.topic not in rec._channels:
                sid = rec._schemas.get(sc.name) if sc else 0
                if sc and sid is None:
                    sid = rec._w.register_schema(sc.name, sc.encoding, sc.data)
                    rec._schemas[sc.name] = sid
                rec._channels[ch.topic] = rec._w.register_channel(ch.topic, ch.message_encoding, sid or 0,
                                                                  dict(ch.metadata))
                rec._topics[ch.topic] = [sc.name if sc else "", ch.metadata.get("offered_qos_profiles", ""), 0]
        rec.write(ch.topic, m.data, m.log_time, m.publish_time)
        kept += 1
    rec.close()
    return {"source": src, "output": dst, "chunks": chunks, "messages": kept, "problem": problem}


__all__ = ["STREAM_PACKET", "CdrError", "DefinitionError", "Message", "Recorder", "RecordingError",
           "bag_metadata_yaml", "cdr_kind", "cdr_stamp_ns", "decode_packet", "encode_packet", "info",
           "message_definition", "qos_profile_yaml", "read_messages", "recover"]
