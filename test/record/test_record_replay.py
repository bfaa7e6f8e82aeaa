"""Record and replay end to end (docs/record-replay.md), through `schnitzel run` / `replay` / `trace`:

- a real run (frames + events, one through a durable queue to a jsonl_sink) recorded with
  --record: read back with the mcap reader (schemas, channel metadata, counts per topic, stamps);
  `ros2 bag info` on it where rosbag2 is installed;
- the recording replayed at rate 1 and as fast as possible: byte-identical JSONL, same keys
  (also identical to the live run's); replayed again into the queue that already delivered
  those keys: nothing is delivered twice;
- `schnitzel trace` of a key that went through a backend outage: the failed attempts, then the
  delivery and the acknowledgement.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "delivery"))
from _faults import Backend, free_port  # noqa: E402

from schnitzel_core import recording as rec  # noqa: E402
from schnitzel_core.testing import wait_for  # noqa: E402

GRAPH = """\
schnitzel: 1
name: {name}
nodes:
  - id: cam
    plugin: synthetic_source
    params: {{mode: pattern, width: 32, height: 24, encoding: mono8, rate_hz: 10, count: 10}}
    qos: {{out: {{reliability: reliable, depth: 20}}}}   # reliable, deeper than the run: a late recorder match loses nothing
  - id: view
    plugin: stdout_sink
  - id: src
    plugin: synthetic_source
    params: {{mode: counter, rate_hz: 20, count: 20}}
    qos: {{out: events}}
  - id: q
    plugin: durable_queue
    params: {{path: {db}}}
  - id: out
    plugin: jsonl_sink
    params: {{path: {out}}}
edges:
  - {{from: cam.out, to: view.in}}
  - {{from: src.out, to: q.in}}
  - {{from: q.out, to: out.in}}
"""


def schnitzel(args, env, cwd, timeout=180):
    r = subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", *args], env=env, cwd=cwd,
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def lines(p: Path):
    return p.read_bytes().splitlines() if p.exists() else []


@pytest.mark.slow
def test_record_a_run_then_replay_at_any_rate_gives_identical_output(tmp_path, ros_env):
    name = f"rec_{uuid.uuid4().hex[:6]}"
    graph = tmp_path / "graph.yaml"
    db, out = tmp_path / "q.db", tmp_path / "out.jsonl"
    graph.write_text(GRAPH.format(name=name, db=db, out=out))
    mcap = tmp_path / "run.mcap"
    code, log = schnitzel(["run", str(graph), "--record", str(mcap), "--record-frames", "--max-packets", "30", "--run-dir",
                           str(tmp_path / "run"), "--quiet"], ros_env, tmp_path)
    assert code == 0, log
    live = lines(out)
    assert len(live) == 20

    # --- the file, read back with the mcap reader
    meta = rec.info(str(mcap))
    assert meta["profile"] == "ros2"
    topics = {f"/{name}/cam/out": 10, f"/{name}/src/out": 20, f"/{name}/q/out": 20}
    assert {t: d["count"] for t, d in meta["topics"].items()} == topics, (tmp_path / "run" / "recorder.log").read_text()
    for t, d in meta["topics"].items():
        assert d["type"] == "schnitzel_msgs/msg/StreamPacket" and d["message_encoding"] == "cdr"
        [qos] = yaml.safe_load(d["metadata"]["offered_qos_profiles"])
        assert qos["reliability"] in ("reliable", "best_effort") and qos["history"] == "keep_last"
    bag = yaml.safe_load(meta["metadata"]["rosbag2"]["serialized_metadata"])
    assert bag["message_count"] == 50
    from mcap.reader import make_reader
    with open(mcap, "rb") as f:
        [schema] = make_reader(f).get_summary().schemas.values()
    assert schema.encoding == "ros2msg" and "MSG: std_msgs/Header" in schema.data.decode()
    frames = [rec.decode_packet(m.data) for m in rec.read_messages(str(mcap), [f"/{name}/cam/out"])]
    assert [p.seq for p in frames] == list(range(1, 11)) and all(len(p.payload) == 32 * 24 for p in frames)
    for m in rec.read_messages(str(mcap)):
        p = rec.decode_packet(m.data)
        assert m.publish_time_ns == p.stamp_ns <= m.log_time_ns   # source stamp, then when recorded
    recorded_keys = [json.loads(x)["idempotency_key"] for x in live]
    assert [rec.decode_packet(m.data).idempotency_key
            for m in rec.read_messages(str(mcap), [f"/{name}/q/out"])] == recorded_keys

    # --- replay at rate 1 and as fast as possible, each into a fresh queue and file
    outputs = {}
    for rate in ("1", "0"):
        for p in (db, out):
            for f in p.parent.glob(p.name + "*"):
                f.unlink()
        code, log = schnitzel(["replay", str(mcap), str(graph), "--rate", rate, "--max-packets", "30",
                               "--run-dir", str(tmp_path / f"replay{rate}"), "--quiet"], ros_env, tmp_path)
        assert code == 0, log
        outputs[rate] = lines(out)
    assert outputs["1"] == outputs["0"] == live   # byte-identical, same keys

    # --- once more into the queue that already delivered those keys: nothing twice
    code, log = schnitzel(["replay", str(mcap), str(graph), "--rate", "0", "--duration", "4",
                           "--run-dir", str(tmp_path / "again"), "--quiet"], ros_env, tmp_path)
    assert code == 0, log
    assert lines(out) == live
    from schnitzel_core.store import DurableStore
    with DurableStore(str(db)) as st:
        assert st.counters["duplicates"] == 20 and st.depth == 0


def test_ros2_bag_info_reads_a_recording(tmp_path, ros_env):
    """Where rosbag2 (with its MCAP storage) is installed, `ros2 bag info` reads what we write."""
    ros2 = shutil.which("ros2")
    has_bag = ros2 and subprocess.run([ros2, "bag", "--help"], capture_output=True, env=ros_env).returncode == 0
    if not has_bag:
        pytest.skip("rosbag2 is not installed here (no `ros2 bag`); the recording format is checked with "
                    "the mcap reader in test_record_a_run_then_replay_at_any_rate_gives_identical_output")
    from schnitzel_core.packet import Packet
    mcap = tmp_path / "r.mcap"
    with rec.Recorder(str(mcap)) as r:
        for i in range(1, 8):
            r.write_packet("/g/src/out", Packet.from_json("src", i, "event", {"n": i}))
    res = subprocess.run([ros2, "bag", "info", str(mcap)], capture_output=True, text=True, env=ros_env)
    assert res.returncode == 0, res.stderr
    assert "/g/src/out" in res.stdout and "schnitzel_msgs/msg/StreamPacket" in res.stdout
    assert "Messages:          7" in res.stdout or "Messages: 7" in " ".join(res.stdout.split())


TRACE_GRAPH = """\
schnitzel: 1
name: {name}
nodes:
  - id: src
    plugin: synthetic_source
    params: {{mode: counter, rate_hz: 20, count: 5}}
  - id: q
    plugin: durable_queue
    params: {{path: {db}}}
  - id: http
    plugin: http_sink
    params: {{url: "{url}/events", backoff_base_s: 0.05, backoff_cap_s: 0.3, probe_interval_s: 0.3}}
edges:
  - {{from: src.out, to: q.in}}
  - {{from: q.out, to: http.in}}
"""


@pytest.mark.slow
def test_trace_shows_failed_attempts_through_an_outage_then_the_delivery(tmp_path, ros_env):
    name = f"trc_{uuid.uuid4().hex[:6]}"
    port = free_port()
    be = Backend(tmp_path, port=port)           # not started: the backend is down at first
    graph = tmp_path / "graph.yaml"
    graph.write_text(TRACE_GRAPH.format(name=name, db=tmp_path / "q.db", url=be.url))
    run_dir = tmp_path / "run"
    log = open(tmp_path / "run.log", "wb")
    mcap = tmp_path / "run.mcap"
    runner = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(graph), "--run-dir",
                               str(run_dir), "--quiet", "--record", str(mcap)], env=ros_env, stdout=log,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    sink_log = run_dir / "delivery-http.jsonl"
    src_topic = f"/{name}/src/out"

    def chunked_seqs():   # what a recovery of the file as it is now would hold, on the source's topic
        rec.recover(str(mcap), str(tmp_path / "probe.mcap"))
        return [rec.decode_packet(m.data).seq for m in rec.read_messages(str(tmp_path / "probe.mcap"), [src_topic])]
    try:
        assert wait_for(lambda: sink_log.exists() and sink_log.read_text().count('"result":"retry"') >= 10, 90), \
            (tmp_path / "run.log").read_text()
        # the recorder dies mid-run (SIGKILL) once the source's packets are in a finished chunk
        assert wait_for(lambda: mcap.exists() and chunked_seqs() == [1, 2, 3, 4, 5], 30)
        os.kill(int((run_dir / "record.ready").read_text()), signal.SIGKILL)
        be.start()
        assert wait_for(lambda: be.stats()["unique_keys"] == 5, 60)
    finally:
        if runner.poll() is None:
            runner.send_signal(signal.SIGINT)
            try:
                runner.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(runner.pid, signal.SIGKILL)
        be.kill()
    first = json.loads(sink_log.read_text().splitlines()[0])["key"]
    code, text = schnitzel(["trace", first, "--run", str(run_dir), "--format", "json"], ros_env, tmp_path)
    assert code == 0, text
    tr = json.loads(text)
    evs = [(e["event"], e["detail"]) for e in tr["events"]]
    attempts = [d for e, d in evs if e == "attempt"]
    assert len(attempts) >= 2 and all(": retry" in d for d in attempts[:-1]) and attempts[-1].endswith(": delivered")
    kinds = [e for e, _ in evs]
    assert kinds.index("queued") < kinds.index("attempt")
    assert any(e == "ack" and "delivered" in d for e, d in evs)
    last_attempt = max(i for i, k in enumerate(kinds) if k == "attempt")
    assert any(k == "ack" and "delivered" in evs[i][1] for i, k in enumerate(kinds) if i > last_attempt)
    assert [s["event"] for s in tr["state"]] == ["delivered"]
    assert "record recover" in tr["problems"][0]   # the killed recorder's file is named, not a traceback
    code, text = schnitzel(["trace", first, "--run", str(run_dir)], ros_env, tmp_path)
    assert code == 0 and "retry" in text and "now: delivered" in text, text

    # the killed recorder's file: recover writes a clean copy with every finished chunk
    with pytest.raises(rec.RecordingError):
        rec.info(str(mcap))
    code, text = schnitzel(["record", "recover", str(mcap), "-o", str(tmp_path / "clean.mcap")], ros_env, tmp_path)
    assert code == 0, text
    clean = str(tmp_path / "clean.mcap")
    assert rec.info(clean)["topics"][src_topic]["count"] == 5
    # and the trace from the queue and the recovered recording: captured ... delivered
    code, text = schnitzel(["trace", first, "--queue", str(tmp_path / "q.db"), "--recording", clean,
                            "--format", "json"], ros_env, tmp_path)
    tr = json.loads(text)
    assert tr["events"][0]["event"] == "captured" and [s["event"] for s in tr["state"]] == ["delivered"]
