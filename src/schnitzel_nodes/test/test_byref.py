"""Payloads by reference in the adapter's conversions (ros/byref.py) and the durable queue."""
import logging
import os
import shutil

from schnitzel_core.codecs import ros as codec
from schnitzel_core.packet import Packet
from schnitzel_core.payload_ref import BlobStore
from schnitzel_core.plugin import Ack, NodeContext
from schnitzel_nodes.plugins.delivery import DurableQueueLogic
from schnitzel_nodes.ros import byref
from schnitzel_nodes.ros.wire import wire_for


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def big(seq: int, n: int = 300_000) -> Packet:
    return Packet("cam0", seq, "video.frame", payload=seq.to_bytes(4, "big") * (n // 4))


def test_dds_output_goes_by_reference_above_the_threshold_and_resolves_on_input(tmp_path):
    store = byref.blob_store("g", {"payload_ref": {"threshold_bytes": 1000, "dir": str(tmp_path)}})
    assert byref.blob_store("g", {"in": {}, "out": {}}) is None          # the graph did not ask
    wire = byref.externalising(wire_for(""), store)
    small, p = Packet("s", 1, "telemetry", payload=b"x" * 1000), big(2)
    assert bytes(wire.to_msg(small).payload) == small.payload             # at the threshold: inline
    msg = wire.to_msg(p)
    assert len(msg.payload) == 0 and msg.payload_ref.size == len(p.payload)
    got = byref.resolve_input(store, codec.from_msg(msg), lambda m, e: None)
    assert got == p                                                       # the plugin's view: inline


def test_unwritable_blob_directory_sends_inline_and_says_so(tmp_path):
    store = byref.blob_store("g", {"payload_ref": {"threshold_bytes": 1000, "dir": str(tmp_path)}})
    shutil.rmtree(store.dir)
    open(store.dir, "w").close()                                          # the directory is gone
    seen = []
    msg = byref.externalising(wire_for(""), store, seen.append).to_msg(big(1))
    assert bytes(msg.payload) == big(1).payload and msg.payload_ref.uri == ""
    assert len(seen) == 1 and isinstance(seen[0], OSError)


def test_tampered_blob_is_an_error_and_a_queue_row_is_rejected(tmp_path):
    store = BlobStore("g", str(tmp_path))
    p = store.externalise(big(3), 1).with_meta(**{"schnitzel.queue": "q", "schnitzel.row_id": 7})
    path = p.payload_ref.uri[len("file://"):]
    data = bytearray(open(path, "rb").read())
    data[5] ^= 1
    open(path, "wb").write(bytes(data))
    errors, acks = [], []
    assert byref.resolve_input(store, p, lambda m, e: errors.append(e.reason),
                               lambda pk, reason: acks.append(reason)) is None
    assert errors == ["sha256"] and len(acks) == 1 and "sha256" in acks[0]
    plain = store.externalise(big(4), 1)
    os.unlink(plain.payload_ref.uri[len("file://"):])
    assert byref.resolve_input(store, plain, lambda m, e: errors.append(e.reason),
                               lambda pk, reason: acks.append(reason)) is None
    assert errors[-1] == "missing" and len(acks) == 1                    # not a queue row: no ack


def queue(tmp_path, blobs):
    params = dict(DurableQueueLogic.spec.defaults())
    params.update(path=str(tmp_path / "q.db"), commit_ms=1.0)
    ctx = NodeContext("q", params, graph="g", logger=logging.getLogger("test.q"))
    ctx.payload_refs = blobs
    logic = DurableQueueLogic(ctx)
    logic.configure()
    logic.activate()
    return ctx, logic


def test_queue_stores_the_reference_holds_the_blob_and_releases_it_after_the_ack(tmp_path):
    blobs = BlobStore("g", str(tmp_path / "blobs"), ttl_s=5, clock=Clock())
    ctx, q = queue(tmp_path, blobs)
    p = blobs.externalise(big(1), 1)
    q.on_packet("in", p)
    assert q.committer.flush(5)
    assert [k for _h, _s, k in blobs.holds("q")] == [p.idempotency_key]
    q.tick()
    [sent] = [x for _port, x in ctx.emitted]
    assert sent.payload == b"" and sent.payload_ref == p.payload_ref       # forwarded as a reference
    blobs.clock.t += 60
    blobs.sweep()
    assert blobs.blobs() == [p.payload_ref.sha256]                        # held past its lease
    q.on_ack(Ack("q", "sink", p.idempotency_key, int(sent.meta["schnitzel.row_id"])))
    assert q.committer.flush(5)
    q._release_blobs()
    assert list(blobs.holds("q")) == [] and blobs.blobs() == []          # last ack: collected
    assert ctx.counters["payload_refs_released"] == 1
    q.deactivate()
    q.cleanup()


def test_queue_refuses_a_reference_whose_blob_is_gone(tmp_path):
    blobs = BlobStore("g", str(tmp_path / "blobs"))
    ctx, q = queue(tmp_path, blobs)
    p = blobs.externalise(big(2), 1)
    os.unlink(p.payload_ref.uri[len("file://"):])
    q.on_packet("in", p)
    assert q.committer.flush(5)
    assert ctx.counters["payload_ref_errors"] == 1 and q.store.stats().depth == 0
    assert list(blobs.holds("q")) == []
    q.deactivate()
    q.cleanup()
