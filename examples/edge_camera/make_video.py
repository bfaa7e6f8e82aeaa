"""Generate the edge_camera demo video: a fixed scene with objects crossing a loading dock.

Nothing is downloaded: every frame is drawn with OpenCV from a fixed seed, so two runs
write the same pictures. Three objects cross the scene one after the other, each walking
through the ``dock`` zone of examples/edge_camera/graph.yaml (the bottom-centre of their box
enters it), so a motion detector, a tracker and the zone node turn them into zone events.

    python examples/edge_camera/make_video.py .cache/demo/edge_camera.mp4          # skips an existing file
    python examples/edge_camera/make_video.py OUT.mp4 --seconds 12 --force

Exit codes: 0 written (or already there), 2 bad arguments or the file cannot be written.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Tuple

WIDTH, HEIGHT, FPS, SECONDS = 640, 360, 15, 24

# (start s, end s, (x0, y0) bottom-centre at start, (x1, y1) at end, (w, h), BGR colour)
OBJECTS: List[Tuple[float, float, Tuple[float, float], Tuple[float, float], Tuple[int, int],
                    Tuple[int, int, int]]] = [
    (1.0, 8.0, (-40.0, 300.0), (680.0, 300.0), (36, 90), (235, 235, 245)),   # a person walking right
    (9.0, 15.5, (690.0, 335.0), (-60.0, 335.0), (96, 54), (40, 200, 250)),  # a cart going left
    (16.5, 23.0, (330.0, 170.0), (330.0, 420.0), (40, 96), (250, 170, 60)),  # someone walking to the camera
]


def background(width: int, height: int):
    import numpy as np

    rng = np.random.default_rng(7)
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    img = np.empty((height, width, 3), dtype=np.float32)
    img[..., 0] = 70 + 40 * y          # blue-ish wall fading into a darker floor
    img[..., 1] = 75 + 30 * y
    img[..., 2] = 80 + 20 * y
    img += rng.normal(0.0, 3.0, size=(height, width, 1)).astype(np.float32)  # fixed texture
    img = np.clip(img, 0, 255).astype(np.uint8)
    import cv2

    # static furniture: shelves and a door; never moves, so the background model learns it
    cv2.rectangle(img, (20, 40), (140, 180), (60, 90, 110), -1)
    cv2.rectangle(img, (500, 30), (610, 200), (50, 60, 70), -1)
    cv2.line(img, (0, 210), (width, 210), (110, 110, 110), 2)
    # the dock floor marking: the zone polygon of graph.yaml, in pixels of 640x360
    cv2.polylines(img, [np.array([[240, 230], [420, 230], [440, 359], [220, 359]], dtype=np.int32)],
                  True, (0, 200, 255), 2)
    return img


def frame_at(bg, t: float):
    import cv2

    img = bg.copy()
    h, w = img.shape[:2]
    sx, sy = w / WIDTH, h / HEIGHT
    for start, end, (x0, y0), (x1, y1), (ow, oh), colour in OBJECTS:
        if not start <= t <= end:
            continue
        a = (t - start) / (end - start)
        cx, by = (x0 + a * (x1 - x0)) * sx, (y0 + a * (y1 - y0)) * sy
        # grow a little when coming towards the camera (perspective)
        grow = 1.0 + 0.6 * max(0.0, (by / sy - 170.0) / 250.0) if y1 > y0 else 1.0
        bw, bh = ow * sx * grow, oh * sy * grow
        p1 = (int(round(cx - bw / 2)), int(round(by - bh)))
        p2 = (int(round(cx + bw / 2)), int(round(by)))
        cv2.rectangle(img, p1, p2, colour, -1)
        cv2.rectangle(img, p1, p2, (20, 20, 20), 2)
    return img


def write_video(path: str, seconds: float = SECONDS, fps: int = FPS, width: int = WIDTH,
                height: int = HEIGHT, progress: bool = True) -> int:
    """Write the video; returns the number of frames."""
    import cv2

    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".part.mp4"
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    writer = cv2.VideoWriter(tmp, fourcc, float(fps), (width, height))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write an mp4 file at {tmp}")
    bg = background(width, height)
    n = int(round(seconds * fps))
    try:
        for i in range(n):
            writer.write(frame_at(bg, i / fps))
            if progress and (i % fps == 0 or i == n - 1):
                pct = 100 * (i + 1) // n
                bar = "#" * (pct // 5)
                sys.stderr.write(f"\r  generating demo video [{bar:<20}] {pct:3d}% ({i + 1}/{n} frames)")
                sys.stderr.flush()
    finally:
        writer.release()
    if progress:
        sys.stderr.write("\n")
    cap = cv2.VideoCapture(tmp)
    ok = cap.isOpened() and cap.read()[0]
    cap.release()
    if not ok:
        os.unlink(tmp)
        raise OSError(f"the video written at {tmp} cannot be read back by OpenCV")
    os.replace(tmp, path)
    return n


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Generate the edge_camera demo video (deterministic, no downloads).")
    ap.add_argument("out", help="output .mp4 file")
    ap.add_argument("--seconds", type=float, default=SECONDS)
    ap.add_argument("--fps", type=int, default=FPS)
    ap.add_argument("--width", type=int, default=WIDTH)
    ap.add_argument("--height", type=int, default=HEIGHT)
    ap.add_argument("--force", action="store_true", help="overwrite an existing file")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.seconds <= 0 or not 1 <= a.fps <= 120 or not (16 <= a.width <= 4096 and 16 <= a.height <= 4096):
        print("make_video: --seconds must be > 0, --fps 1..120, --width/--height 16..4096", file=sys.stderr)
        return 2
    if os.path.exists(a.out) and not a.force:
        if not a.quiet:
            print(f"demo video already there: {a.out}", file=sys.stderr)
        return 0
    try:
        n = write_video(a.out, a.seconds, a.fps, a.width, a.height, progress=not a.quiet)
    except OSError as exc:
        print(f"make_video: {exc}", file=sys.stderr)
        return 2
    if not a.quiet:
        print(f"demo video written: {a.out} ({n} frames, {a.width}x{a.height} @ {a.fps} fps)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
