"""``video_source``: video files, RTSP/HTTP streams and webcams (V4L2) through OpenCV.

- Files (a path, ``file://path``) play at the file's own pace (``realtime: true``) or as fast
  as possible (``realtime: false``), optionally looping. Stamps follow the media clock
  (start + frame index / file fps), so a file replays with the same relative stamps.
- Live sources (``rtsp://``, ``rtsp(s)``/``http(s)`` URLs, ``/dev/videoN``, an integer index)
  are opened in the source's own thread; while a camera is unreachable the node keeps trying
  with exponential backoff and jitter (``reconnect_min_s`` .. ``reconnect_max_s``) and never
  blocks other nodes. A stream with no frame for ``stall_timeout_s`` is closed and reopened.
  Every successful reopen bumps ``epoch`` (seq restarts at 1), so idempotency keys never repeat.
- ``fps`` (live parameter) caps the output rate: frames that arrive earlier than 1/fps after the
  last emitted one are dropped here and counted (``dropped``). The ROS adapter's keep-last-1
  QoS makes delivery latest-only on top of that.

Counters: ``frames``, ``dropped``, ``reconnects``, ``stalls``, ``open_failures``, ``loops``.
"""
from __future__ import annotations

import os
import re
import threading
import time
from typing import Any, Optional, Tuple, Union

from schnitzel_core.plugin import Category, Out, Param, PluginSpec
from schnitzel_nodes.base import SourceLogic

from ._common import Backoff, check_enum, check_range

NODE = "video_source"
_LIVE_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
# OPENCV_FFMPEG_CAPTURE_OPTIONS is read at open time; serialise opens that set it.
_OPEN_LOCK = threading.Lock()


def classify_uri(uri: Any) -> Tuple[str, Union[str, int]]:
    """``("file", path)``, ``("stream", url)`` or ``("device", index_or_path)``; ValueError if empty."""
    if isinstance(uri, bool):
        raise ValueError(f"{NODE}: param 'uri' must be a path, URL, /dev/videoN or camera index, got {uri!r}")
    if isinstance(uri, int):
        return "device", uri
    text = str(uri or "").strip()
    if not text:
        raise ValueError(f"{NODE}: param 'uri' is empty; give a file path, file://..., rtsp://..., "
                         "/dev/videoN or a camera index")
    if re.fullmatch(r"\d+", text):
        return "device", int(text)
    lower = text.lower()
    if lower.startswith("file://"):
        return "file", text[len("file://"):]
    if lower.startswith(_LIVE_PREFIXES):
        return "stream", text
    if text.startswith("/dev/video"):
        return "device", text
    if "://" in text:
        raise ValueError(f"{NODE}: unsupported URI scheme in {text!r}; use a file path, file://, "
                         "rtsp://, http(s)://, /dev/videoN or a camera index")
    return "file", text


class VideoSourceLogic(SourceLogic):
    spec = PluginSpec(
        name=NODE,
        category=Category.SOURCE,
        version="1.0.0",
        description="Frames from a video file, an RTSP/HTTP stream or a webcam (OpenCV), "
                    "with reconnect, stall detection and epoch bumps.",
        ports=(
            Out("frames", ("video.frame",), qos="frames",
                description="Raw frames (image/raw;encoding=rgb8|bgr8;width;height;step), latest-only."),
        ),
        params=(
            Param("uri", "str", description="File path, file://path, rtsp://..., http(s)://..., "
                  "/dev/videoN or a camera index (\"0\")."),
            Param("fps", "float", 0.0, "Output rate cap in frames/s (0 = the source's own rate). "
                  "Files with realtime=false are paced at exactly this rate.", minimum=0.0,
                  maximum=1000.0, live=True),
            Param("loop", "bool", False, "Files: start again at the end instead of finishing."),
            Param("realtime", "bool", True, "Files: play at the file's frame rate (true) or as fast "
                  "as possible (false)."),
            Param("stall_timeout_s", "float", 5.0, "Live: reopen the stream when no frame arrived "
                  "for this long.", minimum=0.5, maximum=600.0),
            Param("open_timeout_s", "float", 5.0, "Live: give up one open attempt after this long.",
                  minimum=0.5, maximum=120.0),
            Param("reconnect_min_s", "float", 0.5, "First reconnect delay (doubles each failure, "
                  "with jitter).", minimum=0.01, maximum=60.0),
            Param("reconnect_max_s", "float", 10.0, "Longest reconnect delay.", minimum=0.01,
                  maximum=600.0),
            Param("width", "int", 0, "Resize frames to this width (0 = keep; with height 0 the "
                  "aspect ratio is kept).", minimum=0, maximum=16384),
            Param("height", "int", 0, "Resize frames to this height (0 = keep; with width 0 the "
                  "aspect ratio is kept).", minimum=0, maximum=16384),
            Param("encoding", "str", "rgb8", "Pixel encoding of the frames.", enum=("rgb8", "bgr8")),
            Param("rtsp_transport", "str", "tcp", "RTSP lower transport.", enum=("tcp", "udp")),
            Param("stream_id", "str", "", "Stream id of the packets (default: the node id)."),
            Param("frame_id", "str", "", "frame_id (sensor frame) of the packets."),
            Param("epoch", "int", 0, "Initial epoch (bumped on every reconnect).", minimum=0),
        ),
    )
    threaded = True

    def configure(self) -> None:
        import cv2  # heavy: only here

        self._cv2 = cv2
        p = self.params
        self.source_type, self.target = classify_uri(p.get("uri"))
        for name in ("fps", "stall_timeout_s", "open_timeout_s", "reconnect_min_s", "reconnect_max_s"):
            check_range(NODE, p, name, 0.0)
        for name in ("width", "height"):
            check_range(NODE, p, name, 0, 16384)
        check_enum(NODE, p, "encoding", ("rgb8", "bgr8"))
        check_enum(NODE, p, "rtsp_transport", ("tcp", "udp"))
        if p["reconnect_max_s"] < p["reconnect_min_s"]:
            raise ValueError(f"{NODE}: reconnect_max_s ({p['reconnect_max_s']}) must be >= "
                             f"reconnect_min_s ({p['reconnect_min_s']})")
        self.file_fps = 0.0
        if self.source_type == "file":
            path = str(self.target)
            if not os.path.isfile(path):
                raise ValueError(f"{NODE}: video file not found: {path}")
            cap = cv2.VideoCapture(path)
            try:
                if not cap.isOpened():
                    raise ValueError(f"{NODE}: OpenCV cannot open {path} as a video "
                                     "(unsupported container or codec?)")
                fps = cap.get(cv2.CAP_PROP_FPS)
                self.file_fps = float(fps) if fps and 0 < fps < 1000 else 25.0
            finally:
                cap.release()
        else:
            self.claim_live_epoch()  # a restarted camera must not repeat an earlier run's keys
        self.status = "configured"
        self.last_frame_wall: Optional[float] = None

    # ---- opening -----------------------------------------------------------
    def _open(self):
        cv2 = self._cv2
        p = self.params
        if self.source_type == "file":
            return cv2.VideoCapture(str(self.target))
        if self.source_type == "device":
            cap = cv2.VideoCapture(self.target)
            if cap.isOpened():
                if p["width"]:
                    cap.set(cv2.CAP_PROP_FRAME_WIDTH, p["width"])
                if p["height"]:
                    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, p["height"])
            return cap
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(p["open_timeout_s"] * 1000),
                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(p["stall_timeout_s"] * 1000)]
        with _OPEN_LOCK:
            old = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
            if str(self.target).lower().startswith(("rtsp://", "rtsps://")):
                os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{p['rtsp_transport']}"
            try:
                return cv2.VideoCapture(str(self.target), cv2.CAP_FFMPEG, timeouts)
            finally:
                if old is None:
                    os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
                else:
                    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = old

    # ---- frames --------------------------------------------------------------
    def _convert(self, frame):
        cv2 = self._cv2
        p = self.params
        if frame.ndim == 2:
            frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.shape[2] == 4:
            frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
        w, h = int(p.get("width") or 0), int(p.get("height") or 0)
        if w or h:
            fh, fw = frame.shape[:2]
            if not w:
                w = max(1, round(fw * h / fh))
            if not h:
                h = max(1, round(fh * w / fw))
            if (w, h) != (fw, fh):
                frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        if p["encoding"] == "rgb8":
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        return frame

    def _emit_frame(self, frame, stamp_ns: int, meta=None) -> None:
        from schnitzel_core.codecs.image import image_packet

        arr = self._convert(frame)
        self.seq += 1
        pkt = image_packet(arr, self.params["encoding"], self.stream_id, self.seq, epoch=self.epoch,
                           stamp_ns=stamp_ns, frame_id=str(self.params.get("frame_id") or ""),
                           meta=meta or {})
        self.ctx.count("frames")
        self.emit("frames", pkt)

    def _cap_fps(self) -> float:
        fps = self.params.get("fps") or 0.0
        try:
            return max(0.0, float(fps))
        except (TypeError, ValueError):
            return 0.0

    # ---- main loop -------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        if self.source_type == "file":
            self._run_file(stop)
        else:
            self._run_live(stop)

    def _run_file(self, stop: threading.Event) -> None:
        cv2 = self._cv2
        cap = self._open()
        if not cap.isOpened():
            self.ctx.count("open_failures")
            self.ctx.logger.error("%s: cannot open %s", NODE, self.target)
            self.status = "error"
            return
        self.status = "streaming"
        file_period = 1.0 / self.file_fps
        start_wall = time.monotonic()
        start_ns = self.ctx.clock_ns()
        media_index = 0          # frames read so far, over all loops
        next_out_media = 0.0     # media time at which the next frame may go out (fps cap, realtime)
        next_out_wall = start_wall  # wall time of the next frame (realtime=false with fps)
        try:
            while not stop.is_set():
                ok, frame = cap.read()
                if not ok:
                    if media_index == 0 or not self.params.get("loop"):
                        self.status = "finished"
                        self.ctx.logger.info("%s: end of %s after %d frames", NODE, self.target, media_index)
                        return
                    self.ctx.count("loops")
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    ok, frame = cap.read()
                    if not ok:  # seek not supported: reopen
                        cap.release()
                        cap = self._open()
                        ok, frame = cap.read()
                        if not ok:
                            self.status = "error"
                            return
                media_t = media_index * file_period
                media_index += 1
                cap_fps = self._cap_fps()
                if self.params.get("realtime", True):
                    if cap_fps and cap_fps < self.file_fps and media_t + 1e-9 < next_out_media:
                        self.ctx.count("dropped")
                        continue
                    if cap_fps:
                        next_out_media = max(next_out_media + 1.0 / cap_fps, media_t)
                    delay = start_wall + media_t - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        return
                elif cap_fps:
                    delay = next_out_wall - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        return
                    next_out_wall = max(next_out_wall + 1.0 / cap_fps, time.monotonic() - 1.0 / cap_fps)
                self.last_frame_wall = time.monotonic()
                self._emit_frame(frame, start_ns + int(round(media_t * 1e9)))
        finally:
            cap.release()

    def _run_live(self, stop: threading.Event) -> None:
        p = self.params
        backoff = Backoff(p["reconnect_min_s"], p["reconnect_max_s"])
        opened_before = False
        stall = float(p["stall_timeout_s"])
        while not stop.is_set():
            self.status = "connecting"
            cap = self._open()
            if not cap.isOpened():
                cap.release()
                self.ctx.count("open_failures")
                self.status = "backoff"
                delay = backoff.next_delay()
                self.ctx.logger.warning("%s: cannot open %s; retrying in %.2f s", NODE, self.target, delay)
                if stop.wait(delay):
                    return
                continue
            if opened_before:
                self.bump_epoch()
                self.ctx.count("reconnects")
                self.ctx.logger.info("%s: reconnected to %s (epoch %d)", NODE, self.target, self.epoch)
            opened_before = True
            self.status = "streaming"
            got_frame = False
            last_frame = time.monotonic()
            next_out = 0.0
            try:
                while not stop.is_set():
                    ok, frame = cap.read()
                    now = time.monotonic()
                    if not ok or frame is None:
                        if now - last_frame >= stall:
                            self.ctx.count("stalls")
                            self.ctx.logger.warning("%s: no frame from %s for %.1f s; reopening",
                                                    NODE, self.target, now - last_frame)
                        else:
                            self.ctx.logger.warning("%s: stream %s ended or failed; reopening", NODE, self.target)
                        break
                    if now - last_frame >= stall and got_frame:
                        # A frame finally came, but the stream had stalled: count it as a stall.
                        self.ctx.count("stalls")
                    last_frame = now
                    if not got_frame:
                        got_frame = True
                        backoff.reset()
                    cap_fps = self._cap_fps()
                    if cap_fps:
                        period = 1.0 / cap_fps
                        # 10 % tolerance for arrival jitter; the schedule stays on a grid so the
                        # average output rate is the cap, not less.
                        if now < next_out - 0.1 * period:
                            self.ctx.count("dropped")
                            continue
                        next_out = max(next_out + period, now - 0.5 * period)
                    self.last_frame_wall = now
                    self._emit_frame(frame, self.ctx.clock_ns())
            finally:
                cap.release()
            if stop.is_set():
                return
            self.status = "backoff"
            if stop.wait(backoff.next_delay()):
                return

    def deactivate(self) -> None:
        self.status = "inactive"
