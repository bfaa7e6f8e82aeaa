"""scripts/demo.sh, the README's first command (here with --no-setup: the suite's setup already
ran): it runs the edge_camera graph against a reference backend it starts and stops itself,
and prints a summary a person reads at a glance, with where the report, page and JSONL are."""
from __future__ import annotations

import json
import re
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.sh"


def test_demo_runs_and_summarises(ros_env, tmp_path):
    out = tmp_path / "demo"
    env = {k: v for k, v in ros_env.items() if not k.startswith("SCHNITZEL_")}
    r = subprocess.run([str(DEMO), "--no-setup", "--duration", "8", "--out", str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text[-5000:]
    for label in ("frames in", "detections", "events", "delivered", "duplicates absorbed", "queue depth",
                  "latency p50 / p99", "run report", "report page", "events JSONL", "SCHNITZEL_CAMERA=rtsp://",
                  "SCHNITZEL_BACKEND_URL="):
        assert label in text, f"the summary lacks {label!r}:\n{text[-3000:]}"
    assert re.search(r"backend == JSONL\s+yes", text), text[-3000:]

    rep = json.loads((out / "report.json").read_text())
    frames = rep["nodes"]["cam"]["packets_out"]
    assert frames > 0 and re.search(rf"frames in\s+{frames} ", text)
    html = (out / "report.html").read_text()
    assert 'id="plot-rates"' in html and 'id="plot-queue"' in html
    assert (out / "events.jsonl").is_file() and (out / "queue.db").is_file()

    # the backend it started is gone again
    url = re.search(r"http://127\.0\.0\.1:(\d+)/events", text)
    assert url, text[-3000:]
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", urlsplit(url.group(0)).port)) != 0, "the demo left its backend running"


def test_demo_refuses_bad_arguments():
    for args, message in ((["--duration", "soon"], "needs a number of seconds"), (["--frobnicate"], "unknown argument")):
        r = subprocess.run([str(DEMO), "--no-setup", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and message in r.stderr, (r.returncode, r.stderr)
