"""What `schnitzel run --record` records and how `schnitzel replay` rewrites a graph (no DDS)."""
import json

import pytest
import yaml

from schnitzel_bringup.cmd_record import build_trace, format_trace, parse_remaps, replay_graph
from schnitzel_bringup.compiler import validate_and_compile
from schnitzel_bringup.record_proc import RECORDER_PORT, expose_for_recording, record_topics
from schnitzel_core.registry import load_registry

GRAPH = """\
schnitzel: 1
name: g
nodes:
  - {id: cam, plugin: synthetic_source, params: {mode: pattern, width: 16, height: 16}}
  - {id: view, plugin: stdout_sink}
  - {id: src, plugin: synthetic_source, params: {mode: counter}}
  - {id: q, plugin: durable_queue, params: {path: /tmp/none.db}}
  - {id: out, plugin: jsonl_sink, params: {path: /tmp/none.jsonl}}
edges:
  - {from: cam.out, to: view.in}
  - {from: src.out, to: q.in}
  - {from: q.out, to: out.in}
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = tmp_path_factory.mktemp("g") / "g.yaml"
    path.write_text(GRAPH)
    report, plan = validate_and_compile(str(path))
    assert plan is not None, report.format_text()
    return path, plan


def test_record_topics_and_inproc_ports_exposed_with_a_recorder_edge(compiled):
    _, plan = compiled
    topics = record_topics(plan, load_registry())
    assert [t["topic"] for t in topics] == ["/g/cam/out", "/g/src/out", "/g/q/out"]
    # ports that may carry anything are checked at run time for frames (dropped without --record-frames)
    assert [t["drop_if_frames"] for t in topics] == [True, True, True]
    assert all(not t["drop_if_frames"] for t in record_topics(plan, load_registry(), frames=True))
    assert expose_for_recording(plan, topics) == 3      # one container: every edge was inproc only
    for t in topics:
        assert "dds" in plan.node(t["node"]).ports["out"][t["port"]]["transports"]
    rec_edges = [e for e in plan.edges if e.dst == RECORDER_PORT]
    assert [e.topic for e in rec_edges] == [t["topic"] for t in topics] and {e.transport for e in rec_edges} == {"dds"}
    # while recording, reliable writers keep a history the recorder gets even if it matches late;
    # best-effort ports that may carry anything (frames too) are left as they are
    qos = {t["topic"]: plan.node(t["node"]).ports["out"][t["port"]]["qos"] for t in topics}
    assert qos["/g/q/out"]["durability"] == "transient_local" and qos["/g/q/out"]["depth"] == 100
    assert [t.get("reader_durability") for t in topics] == [None, None, "transient_local"]
    for t in ("/g/cam/out", "/g/src/out"):
        assert (qos[t]["reliability"], qos[t]["durability"], qos[t]["depth"]) == ("best_effort", "volatile", 10)
    assert all(t["qos"]["durability"] == "volatile" for t in topics)   # the file keeps the graph's own QoS
    assert [e.writer_qos["reliability"] for e in plan.edges if e.dst != RECORDER_PORT] == [
        "best_effort", "best_effort", "reliable"]   # the graph's edges are unchanged
    # every recorded port's writer waits, when it activates, for the recorder's reader too
    assert {t["node"]: plan.node(t["node"]).dds_readers for t in topics} == {
        "cam": {"out": 1}, "src": {"out": 1}, "q": {"out": 1}}
    assert json.loads(plan.node("src").load_options("g")["dds_readers"]) == {"out": 1}


def test_replay_graph_replaces_recorded_sources_and_keeps_the_rest(compiled):
    path, _ = compiled
    doc = yaml.safe_load(path.read_text())
    new, replaced, live = replay_graph(doc, ["/g/src/out"], "/x/r.mcap", load_registry(), rate=0.0, start_s=1.0,
                                       end_s=0.0, remaps={})
    assert replaced == ["src"] and live == ["cam"]
    src = next(n for n in new["nodes"] if n["id"] == "src")
    assert src["plugin"] == "replay_source" and src["params"]["topics"] == ["/g/src/out"]
    assert src["params"]["rate"] == 0.0 and src["params"]["start_s"] == 1.0
    assert {"from": "src.out", "to": "q.in"} in new["edges"]
    # a recording of another graph: named with --remap
    remaps = parse_remaps(["/robot/cam0/frames:=/g/cam/out"])
    new, replaced, _ = replay_graph(doc, ["/robot/cam0/frames"], "/x/r.mcap", load_registry(), rate=1.0,
                                    start_s=0.0, end_s=0.0, remaps=remaps)
    assert replaced == ["cam"]
    assert next(n for n in new["nodes"] if n["id"] == "cam")["params"]["topics"] == ["/robot/cam0/frames"]
    with pytest.raises(ValueError, match=":="):
        parse_remaps(["/a=/b"])


def test_trace_of_an_unknown_key_says_so(tmp_path):
    (tmp_path / "delivery-q.jsonl").write_text(json.dumps({"t": 1, "event": "queued", "node": "q", "key": "k1",
                                                           "queue": "q", "status": "queued"}) + "\n")
    tr = build_trace("nope", run_dir=str(tmp_path))
    assert tr["events"] == [] and "nothing known" in format_trace(tr)
    tr = build_trace("k1", run_dir=str(tmp_path))
    assert [e["event"] for e in tr["events"]] == ["queued"]


def test_hot_replacement_compiles_the_graph_file_the_way_the_recorded_run_was_compiled(tmp_path):
    """A run started with --record differs from what its graph file compiles to (exposed ports,
    recorder edges); hot replacement must compare and compile with the same recording applied."""
    from schnitzel_core.graph_loader import load_graph

    from schnitzel_bringup.record_proc import prepare
    from schnitzel_bringup.replace.services import _check_same_graph

    path = tmp_path / "g.yaml"
    path.write_text(GRAPH)
    _, plan = validate_and_compile(str(path))
    prepare(plan, tmp_path, str(tmp_path / "r.mcap"))
    assert plan.runtime["record"] == {"frames": False, "topics": ["/g/cam/out", "/g/src/out", "/g/q/out"]}
    _check_same_graph(plan, load_graph(str(path)), load_registry())     # the same graph: accepted
    path.write_text(GRAPH.replace("mode: counter", "mode: counter, rate_hz: 7"))   # edited since
    from schnitzel_bringup.replace.protocol import ReplaceError
    with pytest.raises(ReplaceError, match="was changed after the graph started"):
        _check_same_graph(plan, load_graph(str(path)), load_registry())


def test_a_payload_sent_by_reference_is_recorded_inline(tmp_path):
    """With the graph's payload_ref, frames cross DDS as references to /dev/shm blobs that expire:
    the recording holds the bytes instead, so it replays anywhere."""
    from rclpy.serialization import deserialize_message, serialize_message
    from schnitzel_core.codecs import ros as codec
    from schnitzel_core.packet import Packet
    from schnitzel_core.payload_ref import BlobStore
    from schnitzel_msgs.msg import StreamPacket

    from schnitzel_bringup.record_proc import inline_payload

    store = BlobStore("g", str(tmp_path / "blobs"), threshold_bytes=1024)
    frame = bytes(range(256)) * 64                       # 16 KiB
    sent = store.externalise(Packet("cam", 7, "video.frame", payload=frame), 1024)
    assert sent.payload == b"" and sent.payload_ref is not None
    data = serialize_message(codec.to_msg(sent))
    out, why = inline_payload(data, store, StreamPacket)
    assert why == ""
    got = codec.from_msg(deserialize_message(out, StreamPacket))
    assert got.payload == frame and got.payload_ref is None and got.seq == 7
    small = serialize_message(codec.to_msg(Packet("ev", 1, "event", payload=b"{}")))
    assert inline_payload(small, store, StreamPacket) == (small, "")     # inline already: untouched
    import os
    os.unlink(store.path_of(sent.payload_ref.sha256))                   # the blob expired
    out, why = inline_payload(data, store, StreamPacket)
    assert out == data and "missing" in why
