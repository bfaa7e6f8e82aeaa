"""video_source against a real RTSP server on 127.0.0.1 (fault injection).

Two levels: the stall test drives the logic directly in a thread (exactly as the ROS adapter
runs a threaded source: ``run(stop)`` on its own thread, ``ctx.emit`` from there); the kill
test runs a real graph with ``schnitzel run`` (one container, DDS/in-process transport as the
runtime chooses) and reads what a stdout_sink printed.

The server is GStreamer's RTSP server (``rtsp_server.py`` beside this file, run with the
system python3: Debian packages python3-gi gir1.2-gst-rtsp-server-1.0
gstreamer1.0-plugins-base gstreamer1.0-plugins-good). The camera is killed (SIGKILL) for 4 s
and started again; meanwhile a second video_source in the same graph plays a file.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from schnitzel_core.packet import Packet
from schnitzel_core.plugin import NodeContext
from schnitzel_nodes.plugins.sources.video import VideoSourceLogic

cv2 = pytest.importorskip("cv2")

HERE = Path(__file__).resolve().parent
SYSTEM_PY = shutil.which("python3", path="/usr/bin:/bin") or "/usr/bin/python3"


def _gst_rtsp_available() -> bool:
    try:
        r = subprocess.run([SYSTEM_PY, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


pytestmark = pytest.mark.skipif(
    not _gst_rtsp_available(),
    reason="needs an RTSP server: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 "
           "gstreamer1.0-plugins-base gstreamer1.0-plugins-good")


class Recorder:
    """A NodeContext whose emit records (monotonic time, packet)."""

    def __init__(self, node_id: str, params: dict) -> None:
        merged = dict(VideoSourceLogic.spec.defaults())
        merged.update(params)
        self.items: list[tuple[float, Packet]] = []
        self.lock = threading.Lock()
        self.ctx = NodeContext(node_id, merged, graph="io_test", emit=self._emit)
        self.logic = VideoSourceLogic(self.ctx)
        self.logic.configure()
        self.logic.activate()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.logic.run, args=(self.stop,), daemon=True)

    def _emit(self, port: str, packet: Packet) -> None:
        with self.lock:
            self.items.append((time.monotonic(), packet))

    def snapshot(self):
        with self.lock:
            return list(self.items)

    def first_after(self, t: float, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ts, p in self.snapshot():
                if ts >= t:
                    return ts, p
            time.sleep(0.02)
        return None

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.logic.deactivate()


def start_camera(spawn, port: int):
    proc = spawn([SYSTEM_PY, str(HERE / "rtsp_server.py"), "--port", str(port), "--fps", "15",
                  "--width", "160", "--height", "120"], name="rtsp_camera")
    assert spawn.wait_for_line(proc, "READY", timeout=20), spawn.output(proc)
    return proc


def make_clip(path: Path, n: int = 40, fps: float = 20.0) -> Path:
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (96, 64))
    for i in range(n):
        f = np.full((64, 96, 3), (i * 6) % 255, np.uint8)
        wr.write(f)
    wr.release()
    return path


def test_rtsp_stall_is_detected_and_the_stream_reopened(spawn, free_port):
    cam = start_camera(spawn, free_port)
    rtsp = Recorder("cam", {"uri": f"rtsp://127.0.0.1:{free_port}/cam", "reconnect_min_s": 0.25,
                            "reconnect_max_s": 1.0, "stall_timeout_s": 1.5, "open_timeout_s": 2.0})
    rtsp.thread.start()
    try:
        assert rtsp.first_after(0, 15) is not None
        time.sleep(1.0)
        os.killpg(cam.pid, signal.SIGSTOP)                      # frozen: connection open, no data
        t_stop = time.monotonic()
        deadline = t_stop + 8
        while rtsp.ctx.counters.get("stalls", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        stalled_after = time.monotonic() - t_stop
        assert rtsp.ctx.counters.get("stalls", 0) >= 1, rtsp.ctx.counters
        os.killpg(cam.pid, signal.SIGCONT)
        t_cont = time.monotonic()
        first = rtsp.first_after(t_cont, 10)
        assert first is not None, rtsp.ctx.counters
    finally:
        try:
            os.killpg(cam.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        rtsp.halt()
    assert 1.0 <= stalled_after < 4.0, stalled_after
    items = rtsp.snapshot()
    assert first[1].epoch >= 1
    keys = [p.idempotency_key for _, p in items]
    assert len(keys) == len(set(keys))


# ---- the same fault through the real runtime: `schnitzel run` on a graph ---------------------

def _parse_sink_lines(text: str):
    """(received wall time s, stream, epoch, seq) for every stdout_sink line in a log."""
    import datetime as dt
    import re

    out = []
    for m in re.finditer(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (\w+)/(\d+)/(\d+) video\.frame",
                         text, re.M):
        t = dt.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.timezone.utc)
        out.append((t.timestamp(), m.group(2), int(m.group(3)), int(m.group(4))))
    return out


def test_graph_run_survives_camera_kill_and_keeps_file_rate(spawn, free_port, tmp_path):
    import sys

    clip = make_clip(tmp_path / "clip.mp4")
    cam = start_camera(spawn, free_port)
    name = f"io_rtsp_{os.getpid()}"
    graph = tmp_path / "graph.yaml"
    graph.write_text(f"""
schnitzel: 1
name: {name}
nodes:
  - id: cam
    plugin: video_source
    params: {{uri: "rtsp://127.0.0.1:{free_port}/cam", reconnect_min_s: 0.25, reconnect_max_s: 1.0,
             stall_timeout_s: 3.0, open_timeout_s: 3.0, width: 80}}
  - id: replay
    plugin: video_source
    params: {{uri: "{clip}", loop: true, width: 48}}
  - id: out
    plugin: stdout_sink
    params: {{time: received}}
edges:
  - {{from: cam.frames, to: out.in}}
  - {{from: replay.frames, to: out.in}}
""")
    run_dir = tmp_path / "run"
    runner = spawn([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(graph), "--duration", "17",
                    "--run-dir", str(run_dir), "-q", "--report", str(tmp_path / "report.json")],
                   name="schnitzel_run")
    log = run_dir / "container-main.log"

    def lines():
        return _parse_sink_lines(log.read_text(errors="replace")) if log.exists() else []

    deadline = time.monotonic() + 40
    while not any(s == "cam" for _, s, _, _ in lines()) and time.monotonic() < deadline:
        assert runner.poll() is None, spawn.output(runner)
        time.sleep(0.2)
    assert any(s == "cam" for _, s, _, _ in lines()), spawn.output(runner)
    time.sleep(2.0)
    t_kill = time.time()
    os.killpg(cam.pid, signal.SIGKILL)
    cam.wait(5)
    time.sleep(4.0)
    t_restart = time.time()
    cam = start_camera(spawn, free_port)
    runner.wait(60)
    assert runner.returncode in (0, 3), spawn.output(runner)   # ok or degraded (the outage)

    got = lines()
    cam_lines = [x for x in got if x[1] == "cam"]
    after = [x for x in cam_lines if x[0] >= t_restart]
    before = [x for x in cam_lines if x[0] < t_kill]
    assert after, f"no camera frame after the restart: {spawn.output(runner)}"
    assert after[0][0] - t_restart < 5.0, after[0][0] - t_restart
    assert after[0][2] > before[-1][2] and after[0][3] == 1          # new epoch, seq restarts
    assert not [x for x in cam_lines if t_kill + 1.0 <= x[0] < t_restart], "frames from a dead camera"
    report = json.loads((tmp_path / "report.json").read_text())
    cam_counters = report["nodes"]["cam"]["counters"]
    assert int(cam_counters["reconnects"]) >= 1 and int(cam_counters["open_failures"]) >= 1, cam_counters
    assert report["nodes"]["replay"]["errors"] == 0
    ids = [(e, s) for _, _, e, s in cam_lines]
    assert len(ids) == len(set(ids)), "a (epoch, seq) — hence an idempotency key — repeated"
    replay = [x for x in got if x[1] == "replay"]
    t0, t1 = replay[0][0] + 0.5, max(x[0] for x in replay) - 0.5
    counts = []
    t = t0
    while t + 1.0 <= t1:
        counts.append(sum(1 for x in replay if t <= x[0] < t + 1.0))
        t += 1.0
    assert len(counts) >= 10 and min(counts) >= 16, counts
    print(f"\ngraph: camera back {after[0][0] - t_restart:.2f} s after restart (epoch {after[0][2]}); "
          f"file source per-second counts {counts}")
