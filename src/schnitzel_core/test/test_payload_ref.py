"""Payloads by reference (schnitzel_core.payload_ref): write, read, verify, tamper, GC."""
import os

import pytest

from schnitzel_core.packet import Packet
from schnitzel_core.payload_ref import BlobStore, PayloadRefError, RefSettings
from schnitzel_core.store import DurableStore


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def frame(seq: int, n: int = 1920 * 1080 * 3) -> Packet:
    body = bytes([seq % 251]) * 1000 + seq.to_bytes(8, "big")
    return Packet(stream_id="cam0", seq=seq, kind="video.frame", payload=(body * (n // len(body) + 1))[:n],
                  content_type="image/raw;encoding=rgb8;width=1920;height=1080;step=5760")


@pytest.fixture
def blobs(tmp_path):
    return BlobStore("g", str(tmp_path), ttl_s=30.0, clock=Clock())


def test_write_read_roundtrip_above_threshold_only(blobs):
    small, big = frame(1, 100), frame(2)
    assert blobs.externalise(small, 1000) is small          # below the threshold: inline
    ref = blobs.externalise(big, 1000)
    assert ref.payload == b"" and ref.payload_ref.size == len(big.payload)
    assert ref.payload_ref.uri == "file://" + os.path.join(blobs.dir, ref.payload_ref.sha256)
    assert len(ref.payload_ref.sha256) == 64 and big.payload_ref is None    # the original is untouched
    back = blobs.resolve(ref)
    assert back == big and back.payload_ref is None
    # same content again: one blob (content-addressed), a fresh lease
    blobs.externalise(big, 1000)
    assert blobs.blobs() == [ref.payload_ref.sha256]


def test_tampered_or_missing_blob_is_an_error_never_bytes(blobs):
    ref = blobs.externalise(frame(3), 0 + 1)
    path = ref.payload_ref.uri[len("file://"):]
    data = bytearray(open(path, "rb").read())
    data[100] ^= 0xFF                                       # same size, one byte flipped
    open(path, "wb").write(bytes(data))
    with pytest.raises(PayloadRefError) as e:
        blobs.resolve(ref)
    assert e.value.reason == "sha256"
    open(path, "wb").write(bytes(data[:-1]))                 # truncated
    with pytest.raises(PayloadRefError) as e:
        blobs.resolve(ref)
    assert e.value.reason == "size"
    os.unlink(path)
    with pytest.raises(PayloadRefError) as e:
        blobs.resolve(ref)
    assert e.value.reason == "missing"


def test_only_this_graphs_blobs_are_resolved(blobs, tmp_path):
    other = BlobStore("other", str(tmp_path), clock=Clock())
    theirs = other.externalise(frame(4), 1)
    assert blobs.resolve(theirs) is theirs                  # not ours: passed on as is
    outside = Packet("s", 1, "k", payload_ref=theirs.payload_ref.__class__(uri="file:///etc/passwd",
                                                                         size=1, sha256="0" * 64))
    assert blobs.resolve(outside) is outside
    with pytest.raises(PayloadRefError) as e:
        blobs.read(outside.payload_ref)
    assert e.value.reason == "uri"


def test_gc_by_ttl(blobs):
    ref = blobs.externalise(frame(5), 1)
    sha = ref.payload_ref.sha256
    blobs.clock.t += 29
    assert blobs.sweep() == 0 and blobs.blobs() == [sha]     # within its lease
    blobs.clock.t += 2
    assert blobs.sweep() == 1 and blobs.blobs() == []        # lease over, no hold: gone
    with pytest.raises(PayloadRefError):
        blobs.resolve(ref)


def test_gc_by_last_ack_of_the_holding_rows(blobs):
    ref = blobs.externalise(frame(6), 1)
    twin = Packet(**{**ref.__dict__, "seq": 7, "packet_id": "", "idempotency_key": ""})   # same bytes, other row
    assert blobs.hold(ref, "q") and blobs.hold(twin, "q")
    blobs.clock.t += 3600                                    # far past the lease: held blobs stay
    assert blobs.sweep() == 0 and blobs.resolve(ref).payload
    assert blobs.release("q", ref.idempotency_key)           # first row acked: the other still holds it
    assert blobs.blobs() == [ref.payload_ref.sha256]
    assert blobs.release("q", twin.idempotency_key)          # last ack: deleted at once
    assert blobs.blobs() == [] and list(blobs.holds()) == []
    assert not blobs.release("q", twin.idempotency_key)      # twice: harmless


def test_hold_of_a_missing_blob_is_refused(blobs):
    ref = blobs.externalise(frame(8), 1)
    os.unlink(ref.payload_ref.uri[len("file://"):])
    with pytest.raises(PayloadRefError):
        blobs.hold(ref, "q")
    assert list(blobs.holds()) == []


def test_no_unbounded_growth_under_a_stream(blobs):
    """1,000 distinct payloads, one per 0.1 s: the directory never holds more than a
    lease's worth (ttl / period + the sweep interval)."""
    most = 0
    for seq in range(1000):
        blobs.externalise(Packet("cam0", seq, "video.frame", payload=seq.to_bytes(4, "big") * 256), 1)
        blobs.clock.t += 0.1
        most = max(most, len(blobs.blobs()))
    assert most <= int(30 / 0.1) + int(30 / 4 / 0.1) + 1
    blobs.clock.t += 31
    blobs.sweep()
    assert blobs.blobs() == []


def test_queue_rows_keep_their_blob_across_a_reopen_and_release_it_when_delivered(blobs, tmp_path):
    """A durable-queue row stores the reference; the blob outlives the lease and a restart
    of the store while the row is queued, and goes when the row is acknowledged."""
    path = str(tmp_path / "q.db")
    packets = [blobs.externalise(frame(s), 1) for s in (10, 11)]
    st = DurableStore(path)
    for p in packets:
        blobs.hold(p, "q")
    st.enqueue(packets)
    st.close()
    blobs.clock.t += 3600
    blobs.sweep()
    st = DurableStore(path)                                  # "restart"
    assert blobs.reconcile("q", st.has_key) == 0             # both rows still queued
    rows = st.lease(10)
    assert [blobs.resolve(r.packet).payload for r in rows] == [frame(10).payload, frame(11).payload]
    st.ack([rows[0].id])
    assert blobs.reconcile("q", st.has_key) == 1
    assert len(blobs.blobs()) == 1
    st.dead_letter([rows[1].id], "test")                     # dead letters may be redriven: kept
    assert blobs.reconcile("q", st.has_key) == 0
    st.purge(dead=True)
    assert blobs.reconcile("q", st.has_key) == 1 and blobs.blobs() == []
    st.close()


def test_settings_are_checked():
    assert RefSettings.from_dict({"threshold_bytes": 10}).ttl_s == 30.0
    for bad in ({"threshold_bytes": -1}, {"threshold_bytes": "1M"}, {"ttl_s": 0}, {"dir": "rel/dir"},
                {"treshold_bytes": 1}):
        with pytest.raises(ValueError):
            RefSettings.from_dict(bad)


def _graph(extra: str):
    from schnitzel_core.graph_loader import parse_graph
    return parse_graph("schnitzel: 1\nname: g\n" + extra + "nodes:\n  - {id: a, plugin: synthetic_source}\n",
                       env={})


def test_graph_setting_is_read_and_checked_with_its_line():
    g, issues = _graph("payload_ref: {threshold_bytes: 1048576}\n")
    assert not issues and g.payload_ref == {"threshold_bytes": 1048576, "ttl_s": 30.0, "dir": "/dev/shm/schnitzel"}
    g, issues = _graph("")
    assert g.payload_ref == {}                                   # off unless the graph asks
    for text, code, words in (("payload_ref: {treshold_bytes: 1}\n", "SCH103", "treshold_bytes"),
                              ("payload_ref: {threshold_bytes: 1MB}\n", "SCH104", "threshold_bytes"),
                              ("payload_ref: {ttl_s: -1}\n", "SCH104", "ttl_s"),
                              ("payload_ref: 5\n", "SCH104", "mapping")):
        _g, issues = _graph(text)
        [i] = issues
        assert (i.code, i.line) == (code, 3) and words in i.message, (text, i)
