"""``schnitzel run --record FILE``: which topics to record, and the recorder process.

Like ``ros2 bag record``, the recorder is its own process with one subscription per topic
that takes the serialized CDR bytes as they arrive (``raw=True``: nothing is decoded or
re-encoded) and writes them with :class:`schnitzel_core.recording.Recorder`.

What is recorded (:func:`record_topics`): every output port of the plan that feeds an edge
and carries StreamPacket, except frames unless ``frames`` is set: a port whose kinds are all
``video.*`` (or that carries sensor_msgs/Image, recorded as Image with ``frames``) is left out,
and a port that may carry anything (kinds ``*``) is dropped by the recorder at its first
``video.*`` packet. An inproc-only port is also published on DDS for the recorder
(:func:`expose_for_recording`), which costs one serialisation per packet on that port.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from schnitzel_core.plugin import STREAM_PACKET

IMAGE = "sensor_msgs/msg/Image"


def _is_frames(port: Any) -> bool:
    kinds = list(getattr(port, "kinds", ()) or ())
    return getattr(port, "msg_type", STREAM_PACKET) == IMAGE or (
        bool(kinds) and all(k.startswith("video.") for k in kinds))


def record_topics(plan: Any, registry: Any, *, frames: bool = False) -> List[Dict[str, Any]]:
    """[{topic, type, qos, node, port}] to record, in plan order, one per output port with an edge."""
    out: List[Dict[str, Any]] = []
    seen = set()
    for e in plan.edges:
        node_id, port_name = e.src.split(".", 1)
        node = plan.node(node_id)
        entry = registry.get(node.plugin) if node else None
        port = entry.spec.port(port_name) if entry is not None and getattr(entry, "spec", None) else None
        if port is None or e.topic in seen or e.dst == RECORDER_PORT:
            continue
        msg_type = getattr(port, "msg_type", STREAM_PACKET) or STREAM_PACKET
        if msg_type not in (STREAM_PACKET, IMAGE) or (_is_frames(port) and not frames):
            continue
        seen.add(e.topic)
        # a port that may carry anything (kinds "*"): its frames are found at run time
        kinds = tuple(getattr(port, "kinds", ()) or ("*",))
        wildcard = any("*" in k for k in kinds)
        out.append({"topic": e.topic, "type": msg_type, "qos": dict(e.writer_qos), "node": node_id,
                    "port": port_name, "drop_if_frames": msg_type == STREAM_PACKET and not frames and wildcard,
                    "small": not wildcard and not _is_frames(port)})
    return out


RECORDER_PORT = "_record.in"


def expose_for_recording(plan: Any, topics: List[Dict[str, Any]]) -> int:
    """Make every recorded output port publish on DDS too (inproc-only ports do not), and add a
    DDS edge ``node.port -> _record.in`` per recorded topic, so the lifecycle manager waits for
    the recorder's subscription to match before it activates anything (a packet published
    before that would not be recorded). Returns how many ports had to be exposed."""
    from .plan import PlanEdge

    changed = 0
    for t in topics:
        out = (plan.node(t["node"]).ports.get("out") or {}).get(t["port"]) if plan.node(t["node"]) else None
        if out is not None and isinstance(out.get("qos"), dict):
            # Each recorded writer waits, when it activates, until it matched the recorder's
            # reader (dds_readers, below; bounded). Beyond that bound, while recording, a
            # reliable writer keeps its history for late joiners (transient local) and the
            # recorder asks for it; a port that declares small
            # kinds (no wildcard, no frames) is made reliable and at least 100 deep for that. A
            # best-effort port that may carry frames is left as it is. The graph's own readers
            # keep their QoS and get no history.
            q = dict(out["qos"])
            if t.get("small"):
                q.update(reliability="reliable", depth=max(int(q.get("depth") or 1), 100))
            if q.get("reliability") == "reliable":
                out["qos"] = dict(q, durability="transient_local")
                t["reader_durability"] = "transient_local"
        plan.edges.append(PlanEdge(src=f"{t['node']}.{t['port']}", dst=RECORDER_PORT, topic=t["topic"],
                                   transport="dds", qos=dict(t["qos"]), writer_qos=dict(t["qos"])))
        node = plan.node(t["node"])
        out = (node.ports.get("out") or {}).get(t["port"]) if node else None
        if out is not None and "dds" not in out.get("transports", []) and "shm" not in out.get("transports", []):
            out.setdefault("transports", []).append("dds")
            changed += 1
    plan.count_dds_readers()   # each recorded port's writer also waits for the recorder's reader
    return changed


class RecorderProcess:
    """Starts the recorder process and stops it (SIGTERM: it finishes the file)."""

    def __init__(self, path: str, topics: List[Dict[str, Any]], run_dir: Path, graph: str,
                 payload_ref: Optional[Dict[str, Any]] = None) -> None:
        self.path = path
        self.spec = run_dir / "record.json"
        self.ready = run_dir / "record.ready"
        self.log = run_dir / "recorder.log"
        spec = {"path": os.path.abspath(path), "graph": graph, "topics": topics}
        if payload_ref:
            spec["payload_ref"] = payload_ref   # the graph's blobs: the recorder writes their bytes
        self.spec.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout_s: float = 30.0) -> None:
        """Start it and wait until its subscriptions exist (so the first packets are recorded)."""
        try:
            self.ready.unlink()
        except FileNotFoundError:
            pass
        from .runner import _die_with_parent

        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.record_proc",
                                          "--spec", str(self.spec), "--ready", str(self.ready)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout_s
        while not self.ready.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"the recorder exited with {self.proc.returncode} before it was ready; "
                                   f"see {self.log}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the recorder was not ready after {timeout_s:.0f} s; see {self.log}")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 30.0) -> Optional[int]:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def prepare(plan: Any, run_dir: Path, path: str, *, frames: bool = False) -> "RecorderProcess":
    """For ``schnitzel run --record``: choose the topics, expose inproc ones on DDS (before the
    plan is written), and return the (not yet started) recorder process."""
    from schnitzel_core.registry import load_registry

    topics = record_topics(plan, load_registry(), frames=frames)
    expose_for_recording(plan, topics)
    # kept in the plan, so that hot replacement compiles its new plans the same way
    plan.runtime["record"] = {"frames": bool(frames), "topics": [t["topic"] for t in topics]}
    refs = next((n.ports["payload_ref"] for n in plan.nodes if n.ports.get("payload_ref")), None)
    return RecorderProcess(path, topics, run_dir, plan.graph, payload_ref=refs)


#: A StreamPacket whose payload went by reference is a small message; larger ones carry their
#: payload inline and are written as they are, without being decoded.
REF_CHECK_MAX_BYTES = 64 * 1024


def inline_payload(data: bytes, store: Any, msg_cls: Any) -> Tuple[bytes, str]:
    """The serialized StreamPacket ``data`` with a payload the graph sent by reference (a blob of
    ``store``) put back inline, so the recording holds the bytes and replays anywhere: (data,
    "") or, when the blob cannot be read (expired, another size or sha256), the message as it
    came and the reason."""
    if len(data) > REF_CHECK_MAX_BYTES:
        return data, ""
    from rclpy.serialization import deserialize_message, serialize_message

    from schnitzel_core.codecs import ros as codec
    from schnitzel_core.payload_ref import PayloadRefError

    msg = deserialize_message(data, msg_cls)
    if not msg.payload_ref.uri:      # an event or a small payload: inline already
        return data, ""
    packet = codec.from_msg(msg)
    if packet.payload_ref is None or not store.owns(packet.payload_ref):
        return data, ""
    try:
        return serialize_message(codec.to_msg(store.resolve(packet))), ""
    except PayloadRefError as exc:
        return data, str(exc)


def as_recorded(plan: Any, running: Any, registry: Any) -> Any:
    """``plan`` (just compiled from the graph file) made the way ``running`` was made for
    ``--record``: the same ports exposed on DDS, the same QoS and recorder edges, for the topics
    the recorder subscribed to at the start (a port an apply adds is not recorded). Plans
    without recording are returned as they are. Hot replacement compares and compiles with it."""
    rec = (getattr(running, "runtime", None) or {}).get("record")
    if not rec:
        return plan
    if registry is None:
        from schnitzel_core.registry import load_registry

        registry = load_registry()
    wanted = set(rec.get("topics") or [])
    topics = [t for t in record_topics(plan, registry, frames=bool(rec.get("frames"))) if t["topic"] in wanted]
    expose_for_recording(plan, topics)
    plan.runtime["record"] = dict(rec)
    return plan


# ---------------------------------------------------------------------------
# the process itself

def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="schnitzel_recorder", description="record graph topics to MCAP")
    ap.add_argument("--spec", required=True, help="record.json written by schnitzel run --record")
    ap.add_argument("--ready", default="", help="file created once every subscription exists")
    args = ap.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text(encoding="utf-8"))

    import importlib

    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.qos import HistoryPolicy

    from schnitzel_core.recording import Recorder, cdr_kind, cdr_stamp_ns
    from schnitzel_nodes.ros.qos import to_profile

    stop = {"now": False}

    def on_signal(_sig: int, _frame: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rclpy.init(args=None, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    node = rclpy.create_node("recorder", namespace=f"/{spec.get('graph') or 'schnitzel'}/_record")
    rec = Recorder(spec["path"])
    subs: Dict[str, Any] = {}
    store = None
    if spec.get("payload_ref"):
        from schnitzel_core.payload_ref import BlobStore, RefSettings
        store = BlobStore.for_settings(spec.get("graph") or "schnitzel", RefSettings.from_dict(spec["payload_ref"]))
    unresolved: Dict[str, int] = {}
    for t in spec["topics"]:
        pkg, _, name = t["type"].split("/")
        cls = getattr(importlib.import_module(f"{pkg}.msg"), name)
        rec.add_topic(t["topic"], t["type"], t["qos"])
        late = t.get("reader_durability") == "transient_local"   # the writer keeps history for us
        profile = to_profile(dict(t["qos"], **({"durability": "transient_local", "reliability": "reliable"}
                                               if late else {})))
        profile.history = HistoryPolicy.KEEP_LAST
        profile.depth = max(int(profile.depth), 1000)   # a slow disk must not make the reader drop

        by_ref = store is not None and t["type"] == STREAM_PACKET

        def cb(data: bytes, topic: str = t["topic"], check: bool = bool(t.get("drop_if_frames")),
               cls: Any = cls, by_ref: bool = by_ref) -> None:
            if check and cdr_kind(data).startswith("video."):
                # frames on a port that may carry anything, without --record-frames: stop taking
                # them (a 1080p stream is ~190 MB/s); the channel stays, with what came before
                if topic in subs:
                    node.destroy_subscription(subs.pop(topic))
                    print(f"schnitzel recorder: {topic} carries frames; not recorded (--record-frames "
                          "records them)", flush=True)
                return
            if by_ref:
                data, why = inline_payload(data, store, cls)
                if why:   # recorded as it came (the reference); said once per topic, counted
                    unresolved[topic] = unresolved.get(topic, 0) + 1
                    if unresolved[topic] == 1:
                        print(f"schnitzel recorder: {topic}: a payload sent by reference could not be "
                              f"read, recorded as the reference: {why}", flush=True)
            rec.write(topic, data, time.time_ns(), cdr_stamp_ns(data))
        subs[t["topic"]] = node.create_subscription(cls, t["topic"], cb, profile, raw=True)
    node.create_timer(0.25, rec.tick)
    matched: Dict[str, int] = {}

    def note_matches() -> None:   # the recorder log says when each topic's writers were matched
        for topic, sub in list(subs.items()):
            n = sub.get_publisher_count()
            if n != matched.get(topic, 0):
                matched[topic] = n
                print(f"schnitzel recorder: {time.time():.3f} {topic}: {n} writer(s) matched, {rec.count} messages "
                      "so far", flush=True)
    node.create_timer(0.1, note_matches)
    if args.ready:
        Path(args.ready).write_text(str(os.getpid()), encoding="utf-8")
    ex = SingleThreadedExecutor()
    ex.add_node(node)
    try:
        while not stop["now"]:
            ex.spin_once(timeout_sec=0.1)
        # take what is still queued in the subscriptions, then finish the file
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            ex.spin_once(timeout_sec=0.05)
    except ExternalShutdownException:
        pass
    finally:
        rec.close()
        node.destroy_node()
        try:
            rclpy.shutdown()
        except Exception:  # noqa: BLE001
            pass
    print(f"schnitzel recorder: {rec.count} messages, {rec.bytes_in} bytes to {spec['path']}", flush=True)
    for topic, n in sorted(unresolved.items()):
        print(f"schnitzel recorder: {topic}: {n} message(s) recorded as their payload reference (blob unreadable)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
