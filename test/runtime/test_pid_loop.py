"""examples/pid_loop: a feedback cycle through a delay node runs under `schnitzel run` (not only
validates) and the PID settles the simulated plant within the time its graph file states."""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GRAPH = ROOT / "examples" / "pid_loop" / "graph.yaml"
SETPOINT = 2.0
SETTLE_S = 4.0        # plant time, as stated in the graph file (80 steps of 50 ms)


def test_pid_loop_runs_and_settles(spawn, ros_env, tmp_path):
    proc = spawn([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(GRAPH), "--duration", "7",
                  "--run-dir", str(tmp_path / "run"), "--report", str(tmp_path / "report.json"), "-q"],
                 env=ros_env, name="schnitzel_run")
    proc.wait(timeout=150)
    assert proc.returncode == 0, spawn.output(proc)[-4000:]
    samples = []
    for line in (tmp_path / "run" / "container-main.log").read_text(encoding="utf-8").splitlines():
        if '"kind":"sensor.plant"' not in line:
            continue
        pkt = json.loads(line[line.index("{"):])
        body = pkt["payload"] if isinstance(pkt["payload"], dict) else json.loads(pkt["payload"])
        samples.append((body["t"], body["value"]))
    # the loop went round: one plant step per setpoint tick, well past the settling time
    assert len(samples) >= SETTLE_S / 0.05 + 20, samples[-5:]
    late = [(t, y) for t, y in samples if t > SETTLE_S]
    assert late and all(abs(y - SETPOINT) <= 0.02 * SETPOINT for t, y in late), late[:10]
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["totals"]["errors"] == 0
