"""Soak benchmark (issue 6): a 1080p file loop through sampler -> model -> sink under ``schnitzel run``
for N minutes, watching the resident memory (RSS) of every container process.

    source scripts/env.sh && python bench/bench_soak.py [--minutes 10] [--model onnx|motion] [--append-results]

What it does:
- generates a 1080p test video with ``cv2.VideoWriter`` (a few seconds of moving shapes on a
  textured background; cached under ``.cache/bench_soak/``) and, for ``--model onnx``, a small
  ONNX detector (``schnitzel_nodes.plugins.testmodels.brightest_spot_detector``; the video's
  brightest thing is a white square, so every frame gets a box);
- writes a graph: ``video_source`` (loop, realtime) -> ``sampler`` (fps) -> ``onnx_model`` or
  ``motion_detector`` in container ``vision``, and ``stdout_sink`` (``--sink queue``: ``durable_queue``
  -> ``jsonl_sink``, size-rotated) in container ``sink`` (the detections cross a DDS hop);
- runs it with ``schnitzel run --duration``; every ``--interval`` seconds it reads ``VmRSS``
  (plus threads and open fds) from ``/proc/<pid>/status`` of each container process (found in the
  runner's process tree by their ``--container ID`` argument; descendants are added to their
  container) and the manager, and the packet counts from the run's ``status.json``;
- treats the first 60 s after the graph became active (10 % of the run when that is shorter) as
  warm-up; reports RSS at warm-up end and at the end (medians over 30 s windows, 10 % of shorter
  runs: one 1080p frame is a 6 MB allocation, so single readings swing by that), the growth, the slope after warm-up
  (least squares, MB/min), the peak, and the packets processed; PASS when the containers'
  total RSS grew by less than ``--target-mb`` (50 MB) and packets kept reaching the sink;
- ``--leak-control 480`` adds a side branch that keeps every sampled frame (resized; a ``delay``
  of 100000 steps) to show that the bench catches a leak: that run must FAIL;
- prints a table; ``--append-results`` adds a dated entry to the "Soak (node library)" section of
  bench/RESULTS.md (with the machine: nproc, CPU model) and writes the RSS plot next to it as
  ``bench/soak_rss.svg`` (an inline SVG; without the flag the plot goes into the run directory).

Exit code: 0 PASS, 1 FAIL (or the run did not work), 2 bad arguments.
Not part of the default test command: it runs for minutes.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = ROOT / ".cache" / "bench_soak"
RESULTS = HERE / "RESULTS.md"
SECTION = "## Soak (node library)"
WIDTH, HEIGHT = 1920, 1080
MODEL_W, MODEL_H = 320, 192
GRAPH_NAME = "soak_bench"


# ---- inputs ---------------------------------------------------------------------------------

def make_video(path: Path, seconds: float, fps: int) -> Path:
    """1080p mp4: a textured, fixed background with a white square circling (the brightest spot) and
    two coloured shapes bouncing. Deterministic; skipped when the file already exists."""
    if path.is_file():
        return path
    import cv2
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(6)
    y = np.linspace(0.0, 1.0, HEIGHT, dtype=np.float32)[:, None, None]
    bg = np.empty((HEIGHT, WIDTH, 3), np.float32)
    bg[...] = np.array([60.0, 65.0, 70.0], np.float32) + y * np.array([40.0, 30.0, 20.0], np.float32)
    bg += rng.normal(0.0, 4.0, (HEIGHT, WIDTH, 1)).astype(np.float32)
    bg = np.clip(bg, 0, 200).astype(np.uint8)          # nothing in the background reaches white
    cv2.rectangle(bg, (80, 120), (420, 560), (70, 100, 120), -1)
    cv2.rectangle(bg, (1500, 90), (1820, 600), (50, 60, 75), -1)
    cv2.line(bg, (0, 640), (WIDTH, 640), (120, 120, 120), 4)
    tmp = path.with_name(path.stem + ".part.mp4")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot write an mp4 file at {tmp}")
    n = max(1, int(round(seconds * fps)))
    try:
        for i in range(n):
            a = 2 * np.pi * i / n                          # one full cycle per loop: the loop is seamless
            img = bg.copy()
            cx, cy = int(WIDTH / 2 + 600 * np.cos(a)), int(HEIGHT / 2 + 300 * np.sin(a))
            cv2.rectangle(img, (cx - 60, cy - 60), (cx + 60, cy + 60), (255, 255, 255), -1)
            bx = int(200 + (WIDTH - 400) * (0.5 - 0.5 * np.cos(a)))
            cv2.circle(img, (bx, 820), 90, (40, 180, 240), -1)
            cv2.rectangle(img, (900 - int(300 * np.sin(a)), 700), (1140 - int(300 * np.sin(a)), 1000),
                          (200, 90, 40), -1)
            writer.write(img)
    finally:
        writer.release()
    cap = cv2.VideoCapture(str(tmp))
    ok = cap.isOpened() and cap.read()[0]
    cap.release()
    if not ok:
        tmp.unlink(missing_ok=True)
        raise OSError(f"the video written at {tmp} cannot be read back by OpenCV")
    os.replace(tmp, path)
    return path


def make_model(path: Path) -> Path:
    if not path.is_file():
        from schnitzel_nodes.plugins.testmodels import brightest_spot_detector

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + ".part.onnx")
        brightest_spot_detector(str(tmp), width=MODEL_W, height=MODEL_H, box=24, classes=2)
        os.replace(tmp, path)
    return path


def graph_yaml(video: Path, model: str, model_path: Optional[Path], sample_fps: float, sink: str,
               data_dir: Path, leak_width: int = 0) -> str:
    if model == "onnx":
        det = (f"    plugin: onnx_model\n    container: vision\n"
               f"    params: {{model: {json.dumps(str(model_path))}, class_map: [spot, other], "
               f"score_threshold: 0.25, provider: cpu, intra_op_threads: 1, inter_op_threads: 1}}\n")
    else:
        det = ("    plugin: motion_detector\n    container: vision\n"
               "    params: {min_area: 400, process_width: 320, warmup_frames: 5}\n")
    if sink == "queue":   # the delivery path: durable queue (SQLite) -> jsonl file, both in container "sink"
        out = (f"""  - id: queue
    plugin: durable_queue
    container: sink
    params: {{path: {json.dumps(str(data_dir / "queue.db"))}, sinks: [out], synchronous: NORMAL}}
  - id: out
    plugin: jsonl_sink
    container: sink
    params: {{path: {json.dumps(str(data_dir / "detections.jsonl"))}, fsync: interval, rotate_bytes: 2000000, rotate_keep: 1}}
""", "  - {from: det.out, to: queue.in}\n  - {from: queue.out, to: out.in}\n")
    else:
        out = ("""  - id: out
    plugin: stdout_sink
    container: sink
    params: {format: line, max_payload_chars: 80}
""", "  - {from: det.out, to: out.in}\n")
    leak = ("", "")
    if leak_width:   # negative control: a side branch that keeps every sampled frame (shrunk) forever
        leak = (f"""  - id: shrink
    plugin: resize
    container: vision
    params: {{width: {leak_width}}}
  - id: hoard
    plugin: delay
    container: vision
    params: {{steps: 100000}}
""", "  - {from: sample.out, to: shrink.in}\n  - {from: shrink.out, to: hoard.in}\n")
    return f"""# generated by bench/bench_soak.py
schnitzel: 1
name: {GRAPH_NAME}
description: 1080p file loop -> sampler -> {model} model -> {sink} sink (soak benchmark)

containers:
  - {{id: vision, restart: never}}
  - {{id: sink, restart: never}}

nodes:
  - id: cam
    plugin: video_source
    container: vision
    params: {{uri: {json.dumps(str(video))}, loop: true, realtime: true}}
  - id: sample
    plugin: sampler
    container: vision
    params: {{mode: fps, fps: {sample_fps}}}
  - id: det
{det}{out[0]}{leak[0]}
edges:
  - {{from: cam.frames, to: sample.in}}
  - {{from: sample.out, to: det.in}}
{out[1]}{leak[1]}"""


# ---- /proc ----------------------------------------------------------------------------------

def _ppid_map() -> Dict[int, int]:
    out: Dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read().decode("utf-8", "replace")
            out[int(d)] = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return out


def descendants(root: int) -> List[int]:
    ppids = _ppid_map()
    children: Dict[int, List[int]] = {}
    for pid, pp in ppids.items():
        children.setdefault(pp, []).append(pid)
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> List[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def proc_mem(pid: int) -> Optional[Dict[str, int]]:
    """VmRSS (KiB), Threads and open fds of a process; None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return None
    d = {"rss_kb": 0, "threads": 0}
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            d["rss_kb"] = int(line.split()[1])
        elif line.startswith("Threads:"):
            d["threads"] = int(line.split()[1])
    try:
        d["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        d["fds"] = 0
    return d


def classify(runner_pid: int) -> Dict[str, List[int]]:
    """Group the runner's descendants: container id (by ``--container ID``), ``manager``, or the
    container/manager they descend from."""
    ppids = _ppid_map()
    owner: Dict[int, str] = {}
    for pid in descendants(runner_pid):
        args = cmdline(pid)
        if "--container" in args and args.index("--container") + 1 < len(args):
            owner[pid] = args[args.index("--container") + 1]
        elif "--plan" in args:
            owner[pid] = "manager"
    groups: Dict[str, List[int]] = {}
    for pid in descendants(runner_pid):
        p, name = pid, None
        while p and p != runner_pid:
            if p in owner:
                name = owner[p]
                break
            p = ppids.get(p, 0)
        if name is not None:
            groups.setdefault(name, []).append(pid)
    return groups


# ---- the soak -------------------------------------------------------------------------------

def machine() -> Dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1048576:.0f} GiB"
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    return {"nproc": nproc, "cpu": model, "mem": mem, "python": platform.python_version(),
            "kernel": platform.release(), "loadavg_start": os.getloadavg()[0]}


def read_status(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def soak(args: argparse.Namespace) -> Dict[str, Any]:
    duration = args.minutes * 60.0
    warmup = args.warmup_s if args.warmup_s is not None else min(60.0, 0.1 * duration)
    interval = args.interval if args.interval is not None else (5.0 if duration >= 300 else 2.0)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    rdir = Path(args.run_dir) if args.run_dir else CACHE / f"run-{stamp}"
    rdir.mkdir(parents=True, exist_ok=True)
    video = make_video(CACHE / f"soak_1080p_{args.video_seconds:g}s_{args.video_fps}fps.mp4",
                       args.video_seconds, args.video_fps)
    model_path = make_model(CACHE / f"brightest_{MODEL_W}x{MODEL_H}.onnx") if args.model == "onnx" else None
    graph = rdir / "soak.yaml"
    graph.write_text(graph_yaml(video, args.model, model_path, args.sample_fps, args.sink, rdir, args.leak_control))
    report_path = rdir / "report.json"
    exe = shutil.which("schnitzel")
    cmd = ([exe] if exe else [sys.executable, "-m", "schnitzel_bringup.cli"]) + [
        "run", str(graph), "--duration", f"{duration:g}", "--report", str(report_path),
        "--run-dir", str(rdir / "run"), "--quiet"]
    print(f"bench_soak: {args.minutes:g} min, {args.model} model, warm-up {warmup:g} s, sample every "
          f"{interval:g} s; run dir {rdir}", file=sys.stderr, flush=True)
    status_path = rdir / "run" / "status.json"
    log = open(rdir / "schnitzel-run.log", "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    samples: List[Dict[str, Any]] = []
    active_at: Optional[float] = None
    pids_seen: Dict[str, set] = {}
    last_print = 0.0
    try:
        while proc.poll() is None:
            now = time.monotonic()
            st = read_status(status_path) or {}
            state = st.get("state", "?")
            if state == "active" and active_at is None:
                active_at = now
            if active_at is not None and state in ("active", "recovering") and now - active_at <= duration + 1:
                groups = classify(proc.pid)
                procs: Dict[str, Dict[str, int]] = {}
                for name, pids in groups.items():
                    agg = {"rss_kb": 0, "threads": 0, "fds": 0, "n": 0}
                    for pid in pids:
                        m = proc_mem(pid)
                        if m:
                            for k in ("rss_kb", "threads", "fds"):
                                agg[k] += m[k]
                            agg["n"] += 1
                    procs[name] = agg
                    pids_seen.setdefault(name, set()).update(pids)
                nodes = {nid: {"in": int(s.get("packets_in", 0) or 0), "out": int(s.get("packets_out", 0) or 0),
                               "drops": int(s.get("drops", 0) or 0)}
                         for nid, s in (st.get("nodes") or {}).items()}
                samples.append({"t": round(now - active_at, 2), "procs": procs, "nodes": nodes})
                if now - last_print >= max(30.0, interval) or len(samples) == 1:
                    tot = sum(v["rss_kb"] for k, v in procs.items() if k != "manager") / 1024
                    sink_in = nodes.get("out", {}).get("in", 0)
                    print(f"  t={now - active_at:6.0f} s  containers RSS {tot:7.1f} MB  sink took {sink_in}",
                          file=sys.stderr, flush=True)
                    last_print = now
            elif active_at is None and now - t0 > 120:
                print("bench_soak: the graph did not become active within 120 s", file=sys.stderr)
                proc.send_signal(signal.SIGINT)
                break
            time.sleep(max(0.05, interval - (time.monotonic() - now)))
        proc.wait(timeout=120)
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        raise
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    report = read_status(report_path) or {}
    (rdir / "samples.json").write_text(json.dumps(samples) + "\n")
    return {"samples": samples, "report": report, "warmup_s": warmup, "interval_s": interval,
            "duration_s": duration, "exit_code": proc.returncode, "run_dir": str(rdir),
            "pids": {k: sorted(v) for k, v in pids_seen.items()}, "video": str(video), "wall_s": time.monotonic() - t0}


# ---- analysis -------------------------------------------------------------------------------

def _slope(points: List[Tuple[float, float]]) -> float:
    """Least-squares slope of (t s, MB) points, in MB/min."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return 0.0 if den == 0 else 60.0 * sum((t - mt) * (v - mv) for t, v in points) / den


def _median(xs: List[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return 0.0 if not n else (xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2)


def analyse(res: Dict[str, Any], target_mb: float) -> Dict[str, Any]:
    samples, warm = res["samples"], res["warmup_s"]
    names = sorted({k for s in samples for k in s["procs"]}, key=lambda k: (k == "manager", k))
    containers = [k for k in names if k != "manager"]
    series: Dict[str, List[Tuple[float, float]]] = {k: [] for k in names + ["containers total"]}
    for s in samples:
        for k in names:
            if k in s["procs"]:
                series[k].append((s["t"], s["procs"][k]["rss_kb"] / 1024))
        series["containers total"].append((s["t"], sum(s["procs"].get(k, {}).get("rss_kb", 0)
                                                       for k in containers) / 1024))
    rows = []
    for k in containers + ["containers total"] + [n for n in names if n == "manager"]:
        pts = series[k]
        post = [p for p in pts if p[0] >= warm]
        if not post:
            rows.append({"name": k, "ok": False})
            continue
        # a 1080p frame is a 6 MB allocation, so a single reading swings by a frame or two: the RSS
        # "at warm-up end" and "at the end" are medians over a window (30 s, 10 % of shorter runs)
        w = max(2 * res["interval_s"], min(30.0, 0.1 * res["duration_s"]))
        start = _median([v for t, v in post if t <= post[0][0] + w])
        end = _median([v for t, v in post if t >= post[-1][0] - w])
        first_thr = [s["procs"].get(k, {}) for s in samples if s["t"] >= warm]
        rows.append({"name": k, "ok": True, "rss_first": pts[0][1], "rss_warm": start, "rss_end": end,
                     "growth": end - start, "peak": max(v for _, v in post), "slope": _slope(post),
                     "threads": (first_thr[0].get("threads"), first_thr[-1].get("threads")) if k in names else None,
                     "fds": (first_thr[0].get("fds"), first_thr[-1].get("fds")) if k in names else None})
    total = next((r for r in rows if r["name"] == "containers total"), {"ok": False})
    rep = res["report"]
    nodes = rep.get("nodes", {})
    packets = {nid: {"in": v.get("packets_in", 0), "out": v.get("packets_out", 0), "drops": v.get("drops", 0)}
               for nid, v in nodes.items()}
    sink_in = packets.get("out", {}).get("in", 0)
    # packets kept flowing after warm-up: the sink's count grew during the measured window
    post = [s for s in samples if s["t"] >= warm]
    flowing = len(post) >= 2 and post[-1]["nodes"].get("out", {}).get("in", 0) > post[0]["nodes"].get("out", {}).get("in", 0)
    problems = list(rep.get("problems", []))
    restarts = sum(int(c.get("restarts", 0)) for c in (rep.get("containers") or {}).values())
    if restarts or any(len(v) > 1 for k, v in res["pids"].items()):
        problems.append("a container was restarted during the soak: RSS series are not comparable")
    if not flowing:
        problems.append("no packet reached the sink after warm-up")
    if not total.get("ok"):
        problems.append("no RSS sample after warm-up")
    measured = max((s["t"] for s in samples), default=0.0)
    if measured < 0.9 * res["duration_s"]:
        problems.append(f"sampled only {measured:.0f} s of the {res['duration_s']:.0f} s run")
    passed = bool(total.get("ok")) and total["growth"] < target_mb and not problems
    return {"rows": rows, "series": series, "packets": packets, "sink_in": sink_in, "problems": problems,
            "passed": passed, "total": total, "status": rep.get("status", "?"), "measured_s": measured}


# ---- output ---------------------------------------------------------------------------------

def table(a: Dict[str, Any], res: Dict[str, Any], target_mb: float) -> List[str]:
    lines = ["| process | RSS when active (MB) | RSS at warm-up end (MB) | RSS at end (MB) | growth (MB) | "
             "peak after warm-up (MB) | slope (MB/min) | threads | fds |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in a["rows"]:
        if not r["ok"]:
            lines.append(f"| {r['name']} | - | - | - | - | - | - | - | - |")
            continue
        name = f"**{r['name']}**" if r["name"] == "containers total" else (
            r["name"] + (" (not counted)" if r["name"] == "manager" else " container"))
        thr = f"{r['threads'][0]} -> {r['threads'][1]}" if r.get("threads") else ""
        fds = f"{r['fds'][0]} -> {r['fds'][1]}" if r.get("fds") else ""
        lines.append(f"| {name} | {r['rss_first']:.1f} | {r['rss_warm']:.1f} | {r['rss_end']:.1f} | "
                     f"{r['growth']:+.1f} | {r['peak']:.1f} | {r['slope']:+.2f} | {thr} | {fds} |")
    return lines


def packets_line(a: Dict[str, Any], res: Dict[str, Any]) -> str:
    p = a["packets"]
    g = lambda n, k: p.get(n, {}).get(k, 0)  # noqa: E731
    smp = res["samples"]
    rate = 0.0
    if len(smp) >= 2 and smp[-1]["t"] > smp[0]["t"]:
        rate = ((smp[-1]["nodes"].get("cam", {}).get("out", 0) - smp[0]["nodes"].get("cam", {}).get("out", 0))
                / (smp[-1]["t"] - smp[0]["t"]))
    return (f"packets: cam sent {g('cam', 'out')} frames (1080p, {rate:.1f}/s), sampler kept "
            f"{g('sample', 'out')}, model took {g('det', 'in')} (latest-only drops {g('det', 'drops')}) and emitted "
            f"{g('det', 'out')}, sink took {g('out', 'in')}")


def svg_plot(a: Dict[str, Any], warm: float, target_mb: float, title: str) -> str:
    W, H, L, R, T, B = 860, 420, 70, 170, 40, 50
    series = {k: v for k, v in a["series"].items() if v}
    if not series:
        return ""
    tmax = max(t for v in series.values() for t, _ in v) or 1.0
    vals = [x for v in series.values() for _, x in v]
    limit = a["total"]["rss_warm"] + target_mb if a["total"].get("ok") else None
    vmax = max(vals + ([limit] if limit else [])) * 1.05
    vmin = 0.0
    X = lambda t: L + (W - L - R) * t / tmax  # noqa: E731
    Y = lambda v: T + (H - T - B) * (1 - (v - vmin) / (vmax - vmin))  # noqa: E731
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="22" font-size="14">{title}</text>']
    for i in range(6):   # y grid
        v = vmin + (vmax - vmin) * i / 5
        out.append(f'<line x1="{L}" y1="{Y(v):.1f}" x2="{W - R}" y2="{Y(v):.1f}" stroke="#ddd"/>'
                   f'<text x="{L - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    for i in range(6):   # x grid
        t = tmax * i / 5
        out.append(f'<line x1="{X(t):.1f}" y1="{T}" x2="{X(t):.1f}" y2="{H - B}" stroke="#eee"/>'
                   f'<text x="{X(t):.1f}" y="{H - B + 16}" text-anchor="middle">{t / 60:.1f}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">minutes since the graph became active</text>')
    out.append(f'<text x="16" y="{(T + H - B) / 2}" transform="rotate(-90 16 {(T + H - B) / 2})" '
               f'text-anchor="middle">RSS (MB)</text>')
    out.append(f'<line x1="{X(warm):.1f}" y1="{T}" x2="{X(warm):.1f}" y2="{H - B}" stroke="#888" stroke-dasharray="4 3"/>'
               f'<text x="{X(warm) + 4:.1f}" y="{T + 12}" fill="#666">warm-up end</text>')
    if limit:
        out.append(f'<line x1="{X(warm):.1f}" y1="{Y(limit):.1f}" x2="{W - R}" y2="{Y(limit):.1f}" stroke="#d62728" '
                   f'stroke-dasharray="6 3"/><text x="{W - R + 6}" y="{Y(limit) + 4:.1f}" fill="#d62728">'
                   f'limit (+{target_mb:g} MB)</text>')
    for i, (k, pts) in enumerate(series.items()):
        c = "#000" if k == "containers total" else colours[i % len(colours)]
        path = " ".join(f"{X(t):.1f},{Y(v):.1f}" for t, v in pts)
        out.append(f'<polyline fill="none" stroke="{c}" stroke-width="{2 if k == "containers total" else 1.5}" points="{path}"/>')
        ly = T + 40 + 18 * i
        out.append(f'<line x1="{W - R + 6}" y1="{ly}" x2="{W - R + 26}" y2="{ly}" stroke="{c}" stroke-width="2"/>'
                   f'<text x="{W - R + 30}" y="{ly + 4}">{k}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


SECTION_INTRO = """`python bench/bench_soak.py --minutes 10 --append-results` (issue 6: a 10-minute soak of a 1080p file
loop through sampler -> model -> sink grows RSS by < 50 MB after warm-up). A generated 1920x1080 mp4
(moving shapes) loops through `video_source` (realtime) -> `sampler` (fps) -> `onnx_model` (a generated
brightest-spot detector, CPU) in container `vision`, detections over DDS to `stdout_sink` (or, with
`--sink queue`, `durable_queue` -> `jsonl_sink`) in container `sink`, under `schnitzel run --duration`.
RSS is `VmRSS` of each container process, sampled every few seconds; warm-up is the first 60 s after
the graph became active; growth = RSS at the end - RSS at warm-up end, each the median over a 30 s
window (single readings swing by a 6 MB frame buffer), summed over the containers (the lifecycle
manager is shown, not counted). Plot of the latest entry: [soak_rss.svg](soak_rss.svg).
"""


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--minutes", type=float, default=10.0, help="soak length after the graph became active (default 10)")
    ap.add_argument("--model", choices=("onnx", "motion"), default="onnx",
                    help="onnx_model with a generated detector (default) or motion_detector")
    ap.add_argument("--sink", choices=("stdout", "queue"), default="stdout",
                    help="stdout_sink (default; its lines go to the container log) or durable_queue -> jsonl_sink")
    ap.add_argument("--leak-control", type=int, default=0, metavar="WIDTH",
                    help="negative control: add a side branch that resizes every sampled frame to WIDTH px wide "
                         "and holds it (delay, steps 100000): the soak must FAIL (480: about 115 MB/min at 5 fps)")
    ap.add_argument("--interval", type=float, default=None, help="seconds between RSS samples (default 5; 2 under 5 min)")
    ap.add_argument("--warmup-s", type=float, default=None, help="warm-up (default 60 s, at most 10%% of the run)")
    ap.add_argument("--video-seconds", type=float, default=4.0)
    ap.add_argument("--video-fps", type=int, default=15)
    ap.add_argument("--sample-fps", type=float, default=5.0, help="sampler rate into the model (event time)")
    ap.add_argument("--target-mb", type=float, default=50.0)
    ap.add_argument("--run-dir", default=None, help="default .cache/bench_soak/run-<UTC time>")
    ap.add_argument("--svg", default=None, help="RSS plot (default bench/soak_rss.svg with --append-results, "
                                                 "else in the run directory)")
    ap.add_argument("--append-results", action="store_true", help="record the figures in bench/RESULTS.md (replaces the last ones)")
    a = ap.parse_args(argv)
    if a.minutes <= 0 or not 1 <= a.video_fps <= 120 or a.video_seconds <= 0 or a.sample_fps <= 0:
        print("bench_soak: --minutes, --video-seconds, --sample-fps must be > 0 and --video-fps 1..120", file=sys.stderr)
        return 2
    mach = machine()
    res = soak(a)
    an = analyse(res, a.target_mb)
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    verdict = "PASS" if an["passed"] else "FAIL"
    t = an["total"]
    head = (("NEGATIVE CONTROL (frames resized to %d px wide held forever): " % a.leak_control if a.leak_control else "")
            + f"{a.minutes:g} min soak ({an['measured_s'] / 60:.1f} min sampled), `{'onnx_model' if a.model == 'onnx' else 'motion_detector'}`, "
            f"{WIDTH}x{HEIGHT} @ {a.video_fps} fps loop, sampler {a.sample_fps:g} fps, RSS every {res['interval_s']:g} s, "
            f"warm-up {res['warmup_s']:g} s; run status {an['status']}; {date}; {mach['cpu']}, nproc {mach['nproc']}, "
            f"{mach['mem']} RAM, load average {mach['loadavg_start']:.1f} at start and {os.getloadavg()[0]:.1f} at the end "
            f"(shared machine), Python {mach['python']}, "
            f"Linux {mach['kernel']}")
    verdict_line = (f"**{verdict}**: containers' RSS grew by {t['growth']:+.1f} MB after warm-up "
                    f"(target < {a.target_mb:g} MB), slope {t['slope']:+.2f} MB/min."
                    if t.get("ok") else f"**{verdict}**: no RSS sample after warm-up.")
    body = table(an, res, a.target_mb)
    lines = [head, "", *body, "", packets_line(an, res) + ".", "", verdict_line]
    if an["problems"]:
        lines += [""] + [f"- problem: {p}" for p in an["problems"]]
    print("\n" + "\n".join(lines) + f"\n\nrun directory: {res['run_dir']}")
    title = f"schnitzel soak: containers' RSS, {a.minutes:g} min, {a.model} model, 1080p loop ({date})"
    svg = svg_plot(an, res["warmup_s"], a.target_mb, title)
    svg_path = Path(a.svg) if a.svg else (HERE / "soak_rss.svg" if a.append_results else Path(res["run_dir"]) / "soak_rss.svg")
    if svg:
        svg_path.write_text(svg, encoding="utf-8")
        print(f"plot: {svg_path}")
    if a.append_results:
        sys.path.insert(0, str(HERE))
        from _results import record
        record("bench_soak.py", lines, section=(SECTION, SECTION_INTRO))
        print(f"recorded in {RESULTS}")
    return 0 if an["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
