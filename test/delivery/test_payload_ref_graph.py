"""Large payloads by reference through `schnitzel run` (docs/packet.md, docs/delivery.md).

Run 1: synthetic_source (320x240 rgb8 frames, 230,400 bytes, above the 100,000-byte
threshold) in container ``a`` -> DDS -> durable_queue in container ``q``, no sink: the rows
store references, the queue holds their blobs, and the producer process ends.
Between the runs one blob is tampered with (one byte flipped) and a sweep far past the
lease runs: held blobs stay.
Run 2 (same graph name and queue file, no source): durable_queue -> DDS -> jsonl_sink in
container ``s``. The sink's adapter resolves every reference: 11 frames arrive with exactly
the bytes the source made; the tampered one is a counted error at the sink
(``payload_ref_errors``), rejected back to the queue and dead-lettered with the reason,
never delivered. After the last acknowledgement the delivered rows' blobs are gone; the
dead-lettered row still holds its own.
"""
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from schnitzel_core.payload_ref import BlobStore
from schnitzel_core.store import DurableStore
from schnitzel_nodes.plugins.sources.synthetic import pattern_frame

W, H, COUNT = 320, 240, 12

HEAD = """\
schnitzel: 1
name: {name}
payload_ref: {{threshold_bytes: 100000, ttl_s: 2, dir: {blobs}}}
containers:
{containers}
nodes:
  - id: q
    plugin: durable_queue
    container: q
    params: {{path: {db}}}
"""
RUN1 = HEAD + """\
  - id: src
    plugin: synthetic_source
    container: a
    params: {{mode: pattern, width: {w}, height: {h}, count: {count}, rate_hz: 20}}
    qos: {{out: events}}
edges:
  - {{from: src.out, to: q.in}}
"""
RUN2 = HEAD + """\
  - id: sink
    plugin: jsonl_sink
    container: s
    params: {{path: {out}}}
edges:
  - {{from: q.out, to: sink.in}}
"""


def run(tmp: Path, text: str, tag: str, env, *args: str) -> dict:
    graph = tmp / f"{tag}.yaml"
    graph.write_text(text)
    report = tmp / f"{tag}.report.json"
    out = subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(graph), "--quiet",
                          "--run-dir", str(tmp / f"{tag}.run"), "--report", str(report), *args],
                         env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode in (0, 3), out.stdout + out.stderr
    return json.loads(report.read_text())


@pytest.mark.slow
def test_frames_by_reference_survive_the_queue_and_a_restart_and_are_collected(tmp_path, ros_env):
    name = f"pref_{uuid.uuid4().hex[:8]}"
    blobs_dir, db, out = tmp_path / "blobs", tmp_path / "queue.db", tmp_path / "out.jsonl"
    fmt = dict(name=name, blobs=blobs_dir, db=db, out=out, w=W, h=H, count=COUNT)

    # Run 1: produce; the queue stores references (rows are small) and holds the blobs.
    rep1 = run(tmp_path, RUN1.format(containers="  - {id: a}\n  - {id: q}", **fmt), "run1", ros_env,
               "--duration", "4")
    assert rep1["nodes"]["q"]["counters"].get("accepted") == str(COUNT), rep1["nodes"]
    with DurableStore(str(db)) as st:
        rows = st.peek(COUNT)
    assert len(rows) == COUNT
    assert all(r.packet.payload == b"" and r.packet.payload_ref.size == W * H * 3 for r in rows)
    assert os.path.getsize(db) < W * H * 3        # the frames are not in the file
    store = BlobStore(name, str(blobs_dir), ttl_s=2)
    assert len(list(store.holds("q"))) == COUNT

    # The producer is gone; far past the lease, a sweep leaves every held blob alone.
    later = BlobStore(name, str(blobs_dir), ttl_s=2, clock=lambda: time.time() + 3600)
    assert later.sweep() == 0 and len(later.blobs()) == COUNT
    bad = rows[0]
    path = bad.packet.payload_ref.uri[len("file://"):]
    data = bytearray(Path(path).read_bytes())
    data[W * 3 * 10] ^= 0xFF
    Path(path).write_bytes(bytes(data))

    # Run 2: deliver from the queue file through DDS; the sink checks nothing itself: the
    # adapter resolved and verified each reference before the plugin saw the packet.
    rep2 = run(tmp_path, RUN2.format(containers="  - {id: q}\n  - {id: s}", **fmt), "run2", ros_env,
               "--max-packets", str(COUNT - 1))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    got = {p["seq"]: base64.b64decode(p["payload"]) for p in lines}
    assert sorted(got) == [r.packet.seq for r in rows[1:]]
    for seq, payload in got.items():
        assert payload == pattern_frame(seq, W, H).tobytes(), f"frame {seq}: bytes differ"
    assert all(p["payload_ref"] is None for p in lines)
    sink = rep2["nodes"]["sink"]
    assert sink["counters"].get("payload_ref_errors") == "1" and sink["errors"] >= 1, sink

    with DurableStore(str(db)) as st:
        assert st.stats().depth == 0
        [dead] = st.dlq(10)
    assert dead.key == bad.key and "sha256" in dead.reason, dead.reason
    # GC after the last acknowledgement: only the dead-lettered row's blob is left, held.
    assert [k for _h, _s, k in store.holds("q")] == [bad.key]
    assert store.blobs() == [bad.packet.payload_ref.sha256]
