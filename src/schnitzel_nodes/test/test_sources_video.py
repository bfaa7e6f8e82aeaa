"""video_source on files made at test time (cv2.VideoWriter, mp4v), plus live-source start-up
against an unreachable camera. The RTSP reconnect/stall tests live in test/nodes_io/."""
import socket
import threading
import time

import numpy as np
import pytest

from schnitzel_core.codecs.image import packet_image
from schnitzel_core.testing import LogicHarness
from schnitzel_nodes.plugins.sources._common import Backoff
from schnitzel_nodes.plugins.sources.video import VideoSourceLogic, classify_uri

cv2 = pytest.importorskip("cv2")


def make_video(path, n=20, fps=20.0, size=(64, 48)):
    """A red (BGR (0,0,255)) video whose frame i has a white bar at column 2*i."""
    w, h = size
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    assert wr.isOpened()
    for i in range(n):
        f = np.zeros((h, w, 3), np.uint8)
        f[:, :] = (0, 0, 200)
        f[:, 2 * i:2 * i + 2] = 255
        wr.write(f)
    wr.release()
    return path


@pytest.fixture
def video(tmp_path):
    return make_video(tmp_path / "clip.mp4")


class Run:
    """Runs a threaded source's ``run(stop)`` like the adapter does."""

    def __init__(self, h):
        self.h, self.stop = h, threading.Event()
        self.thread = threading.Thread(target=h.logic.run, args=(self.stop,), daemon=True)
        self.t0 = time.monotonic()
        self.thread.start()

    def join(self, timeout=10.0):
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def halt(self, timeout=10.0):
        self.stop.set()
        ok = self.join(timeout)
        self.h.stop()
        return ok


def test_file_as_fast_as_possible_emits_every_frame_in_order(video):
    h = LogicHarness(VideoSourceLogic, {"uri": str(video), "realtime": False}, node_id="cam")
    r = Run(h)
    assert r.join(10)
    out = h.out("frames")
    assert [p.seq for p in out] == list(range(1, 21))
    assert all(p.epoch == 0 and p.stream_id == "cam" and p.kind == "video.frame" for p in out)
    img = packet_image(out[5])
    assert img.shape == (48, 64, 3)
    assert img[5, 40, 0] > 150 and img[5, 40, 2] < 60        # rgb8: red is channel 0
    assert img[5, 10:12].min() > 200 and img[5, 20].max() < 240  # the bar of frame 6 (index 5)
    stamps = [p.stamp_ns for p in out]
    assert all(b - a == 50_000_000 for a, b in zip(stamps, stamps[1:]))  # media clock, 20 fps
    assert h.logic.status == "finished" and h.ctx.counters["frames"] == 20


def test_bgr8_and_resize_keep_aspect(video):
    h = LogicHarness(VideoSourceLogic, {"uri": f"file://{video}", "realtime": False, "encoding": "bgr8",
                                        "width": 32})
    Run(h).join(10)
    img = packet_image(h.out("frames")[0])
    assert img.shape == (24, 32, 3) and img[5, 20, 2] > 150 and img[5, 20, 0] < 60
    assert "encoding=bgr8;width=32;height=24" in h.out("frames")[0].content_type


def test_realtime_plays_at_the_file_rate(video):
    h = LogicHarness(VideoSourceLogic, {"uri": str(video)})
    r = Run(h)
    assert r.join(10)
    elapsed = time.monotonic() - r.t0
    assert len(h.out()) == 20
    assert 0.9 <= elapsed < 3.0, elapsed     # 20 frames at 20 fps: 0.95 s of media


def test_fps_cap_drops_and_counts_on_realtime_file(tmp_path):
    clip = make_video(tmp_path / "c30.mp4", n=30, fps=30.0)
    h = LogicHarness(VideoSourceLogic, {"uri": str(clip), "fps": 10.0})
    assert Run(h).join(10)
    n = len(h.out())
    assert 9 <= n <= 11 and h.ctx.counters["dropped"] == 30 - n


def test_fps_is_live_on_paced_file(video):
    h = LogicHarness(VideoSourceLogic, {"uri": str(video), "realtime": False, "fps": 5.0, "loop": True})
    assert VideoSourceLogic.spec.param("fps").live
    r = Run(h)
    time.sleep(1.0)
    slow = len(h.out())
    h.logic.on_params({"fps": 100.0})
    time.sleep(1.0)
    fast = len(h.out()) - slow
    assert r.halt()
    assert 3 <= slow <= 8 and fast >= 30, (slow, fast)


def test_loop_continues_seq_and_counts_loops(video):
    h = LogicHarness(VideoSourceLogic, {"uri": str(video), "realtime": False, "fps": 200.0, "loop": True})
    r = Run(h)
    deadline = time.monotonic() + 10
    while len(h.out()) < 45 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.halt()
    out = h.out()
    assert len(out) >= 45 and h.ctx.counters["loops"] >= 2
    assert [p.seq for p in out] == list(range(1, len(out) + 1))
    assert len({p.idempotency_key for p in out}) == len(out)
    stamps = [p.stamp_ns for p in out]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))


def test_unreachable_camera_does_not_block_and_keeps_retrying():
    with socket.socket() as s:          # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    h = LogicHarness(VideoSourceLogic, {"uri": f"rtsp://127.0.0.1:{port}/cam", "reconnect_min_s": 0.1,
                                        "reconnect_max_s": 0.3, "open_timeout_s": 1.0})
    assert time.monotonic() - t0 < 1.0   # configure/activate never touch the network
    r = Run(h)
    time.sleep(2.0)
    assert h.ctx.counters.get("open_failures", 0) >= 3
    assert h.logic.status in ("backoff", "connecting") and h.out() == []
    t1 = time.monotonic()
    assert r.halt(5)
    assert time.monotonic() - t1 < 2.0   # stop is honoured during backoff


@pytest.mark.parametrize("uri, text", [
    ("/nonexistent/clip.mp4", "not found"),
    ("", "empty"),
    ("ftp://host/x.mp4", "unsupported URI scheme"),
])
def test_bad_uri_is_a_clear_error(uri, text):
    with pytest.raises(ValueError, match=text):
        LogicHarness(VideoSourceLogic, {"uri": uri})


def test_not_a_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(ValueError, match="cannot open"):
        LogicHarness(VideoSourceLogic, {"uri": str(bad)})


def test_classify_uri():
    assert classify_uri("0") == ("device", 0)
    assert classify_uri(2) == ("device", 2)
    assert classify_uri("/dev/video1") == ("device", "/dev/video1")
    assert classify_uri("RTSP://h/x")[0] == "stream"
    assert classify_uri("file:///a/b.mp4") == ("file", "/a/b.mp4")


def test_backoff_grows_caps_and_jitters():
    b = Backoff(0.5, 4.0)
    caps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0] + [4.0] * 40
    ceilings = []
    delays = []
    for _ in caps:
        ceilings.append(b.ceiling())
        delays.append(b.next_delay())
    assert ceilings == caps
    assert all(0 <= d <= c for d, c in zip(delays, caps))
    assert len(set(round(d, 6) for d in delays)) > 40          # jitter: not lock-step
    assert sum(delays[8:]) / 40 == pytest.approx(2.0, abs=0.6)  # full jitter: mean = cap / 2
    b.reset()
    assert b.ceiling() == 0.5 and b.next_delay() <= 0.5
