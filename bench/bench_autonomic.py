"""The autonomic controller against static settings under a load change (docs/autonomic.md).

Scenario: ``synthetic_source -> synthetic_stage -> stdout_sink``, the source in a container of its
own (a camera process; frames cross DDS into the analysis container). The stage (a simulated analysis
step whose input queues, at most 20 frames) spends 40 ms per frame on a quiet scene (capacity 25
frames/s); after ``--quiet-s`` the scene turns busy for ``--busy-s`` (100 ms per frame: capacity
10 frames/s; the bench sets the stage's live ``latency_ms`` through its parameter service, as the
world would change it), then quiet again for ``--after-s``. Frames sent faster than the stage
works queue up, so the latency grows with the queue while the throughput stays at capacity.
SLO: p95 latency from the source stamp to the sink <= 150 ms, judged each second on the sink's
heartbeat ``latency_p95_recent_ms`` (the last 2 s), the same figure for every run.

Runs, one after the other in this session (same machine, same scenario):

- ``naive``: the source's rate left at 30 frames/s;
- ``best static``: 20 frames/s, the highest rate that meets the SLO on the quiet scene with 20 %
  headroom (sized beforehand on the quiet scene, as an operator would);
- ``worst-case static``: 8 frames/s, sized for the busy scene (meets the SLO, wastes the quiet
  scene's capacity);
- ``controller``: an AIMD controller on the source's ``rate_hz`` (2..22) with the SLO as objective.

Reported per run: SLO-violation seconds, throughput (frames analysed by the model per second),
CPU of the graph's container (% of one core; the stage sleeps, so this is the framework's own cost), reversals of the knob per 60 s; a plot of latency
and knob over time (``bench/autonomic.svg``). Target (issue 14): the controller has <= 1/3 of the
best static setting's violation seconds at >= 0.9x its throughput, with <= 1 reversal per 60 s.

    python bench/bench_autonomic.py                  # ~9 minutes; records in bench/RESULTS.md
    python bench/bench_autonomic.py --no-record      # print only
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

SLO_MS = 150.0
QUIET_MS, BUSY_MS = 40.0, 100.0
SECTION = ("## Autonomic control", "The controller against static settings under a load change (bench_autonomic.py).")
GRAPH = """schnitzel: 1
name: bench_autonomic
containers: [{{id: camera}}, {{id: analysis}}]
nodes:
  - {{id: src, plugin: synthetic_source, container: camera, params: {{mode: pattern, rate_hz: {rate}, width: 32, height: 24}}}}
  - id: det
    container: analysis
    plugin: synthetic_stage
    params: {{latency_ms: {quiet}}}
    inputs: {{in: {{max_queued: 20}}}}
  - {{id: out, plugin: stdout_sink, container: analysis, params: {{max_payload_chars: 20}}}}
edges:
  - {{from: src.out, to: det.in}}
  - {{from: det.out, to: out.in}}
"""
CONTROLLER = """controllers:
  - name: fps
    policy: aimd
    policy_params: {{{policy_params}}}
    knobs: [{{node: src, param: rate_hz, min: 2, max: 22}}]
    objectives: [{{node: out, metric: latency_p95_ms, max: {slo}}}]
    guardrails: {{{guardrails}}}
"""
RUNS = [("naive", 30.0, False), ("best static", 20.0, False), ("worst-case static", 8.0, False),
        ("controller", 22.0, True)]


def cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def read_status(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


class ParamSetter:
    """Sets the model's latency_ms (the scene) through its parameter service."""

    def __init__(self) -> None:
        import rclpy
        from rclpy.context import Context

        self.ctx = Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node(f"bench_autonomic_{os.getpid()}", context=self.ctx)

    def set(self, node: str, name: str, value: float) -> bool:
        from rcl_interfaces.srv import SetParameters
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter

        client = self.node.create_client(SetParameters, f"/bench_autonomic/{node}/set_parameters")
        try:
            if not client.wait_for_service(timeout_sec=5.0):
                return False
            req = SetParameters.Request(parameters=[Parameter(name, value=float(value)).to_parameter_msg()])
            ex = SingleThreadedExecutor(context=self.ctx)
            ex.add_node(self.node)
            fut = client.call_async(req)
            ex.spin_until_future_complete(fut, timeout_sec=5.0)
            ex.remove_node(self.node)
            return bool(fut.done() and fut.result() and fut.result().results[0].successful)
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        import rclpy

        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)


def one_run(label: str, rate: float, control: bool, a: argparse.Namespace, setter: ParamSetter,
            work: Path) -> Dict[str, Any]:
    d = work / label.replace(" ", "_")
    d.mkdir(parents=True)
    text = GRAPH.format(rate=rate, quiet=QUIET_MS) + (
        CONTROLLER.format(slo=SLO_MS, policy_params=a.policy_params, guardrails=a.guardrails) if control else "")
    (d / "graph.yaml").write_text(text, encoding="utf-8")
    run_dir = d / "run"
    total = a.fill_s + a.quiet_s + a.busy_s + a.after_s
    proc = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(d / "graph.yaml"),
                             "--duration", str(total + 120), "--run-dir", str(run_dir), "-q"],
                            stdout=subprocess.DEVNULL, stderr=open(d / "run.err", "w"), start_new_session=True)
    status_path = run_dir / "status.json"
    try:
        deadline = time.monotonic() + 120
        while True:
            st = read_status(status_path)
            if st and st.get("state") == "active" and st["nodes"]["out"]["packets_in"] > 0:
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{label}: the graph did not start; see {d}")
            time.sleep(0.2)
        t0 = time.monotonic()
        pid = int(st["nodes"]["det"]["pid"])
        samples: List[Dict[str, Any]] = []
        phase = "fill"
        start: Optional[Dict[str, Any]] = None
        while True:
            t = time.monotonic() - t0
            if phase == "fill" and t >= a.fill_s:
                phase = "quiet"
            if phase == "quiet" and t >= a.fill_s + a.quiet_s:
                if not setter.set("det", "latency_ms", BUSY_MS):
                    raise RuntimeError(f"{label}: could not make the scene busy")
                phase = "busy"
            if phase == "busy" and t >= a.fill_s + a.quiet_s + a.busy_s:
                if not setter.set("det", "latency_ms", QUIET_MS):
                    raise RuntimeError(f"{label}: could not make the scene quiet")
                phase = "after"
            if t >= total:
                break
            st = read_status(status_path) or {}
            nodes = st.get("nodes", {})
            p95 = (nodes.get("out", {}).get("counters") or {}).get("latency_p95_recent_ms")
            s = {"t": round(t, 2), "phase": phase, "p95": float(p95) if p95 is not None else None,
                 "analysed": int(nodes.get("det", {}).get("packets_out", 0)), "cpu_s": cpu_s(pid)}
            if phase != "fill" and start is None:
                start = s
            samples.append(s)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t0 - t)))
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    judged = [s for s in samples if s["phase"] != "fill"]
    end = judged[-1]
    span = end["t"] - start["t"]
    knob = [(0.0, rate), (end["t"], rate)]
    reversals = 0
    if control:
        records = [json.loads(line) for line in (run_dir / "control-audit.jsonl").read_text().splitlines()
                   if line.strip()] if (run_dir / "control-audit.jsonl").exists() else []
        wall0 = time.time() - (time.monotonic() - t0)
        knob = [(0.0, rate)]
        last_dir = 0
        for r in records:
            if r["ref"] is not None and r["rule"] != "rollback":
                continue
            knob.append((r["wall"] - wall0, r["new"]))
            direction = 1 if r["new"] > r["old"] else -1
            if last_dir == -direction:
                reversals += 1
            last_dir = direction
        knob.append((end["t"], knob[-1][1]))
    return {
        "label": label, "rate": rate, "control": control,
        "violation_s": sum(1 for s in judged if s["p95"] is None or s["p95"] > SLO_MS),
        "judged_s": len(judged),
        "throughput": (end["analysed"] - start["analysed"]) / span if span > 0 else 0.0,
        "cpu_pct": 100.0 * (end["cpu_s"] - start["cpu_s"]) / span if span > 0 else 0.0,
        "reversals": reversals, "reversals_per_min": reversals * 60.0 / span if span > 0 else 0.0,
        "samples": samples, "knob": knob,
    }


COLOURS = {"naive": "#d62728", "best static": "#1f77b4", "worst-case static": "#7f7f7f", "controller": "#2ca02c"}


def svg_plot(runs: List[Dict[str, Any]], a: argparse.Namespace) -> str:
    W, H, L, R, T, B, GAP = 760, 470, 60, 150, 30, 40, 40
    ph = (H - T - B - GAP) / 2
    tmax = a.fill_s + a.quiet_s + a.busy_s + a.after_s
    pmax = max([SLO_MS * 1.6] + [s["p95"] for r in runs for s in r["samples"] if s["p95"] is not None])
    kmax = 32.0

    def x(t: float) -> float:
        return L + (W - L - R) * t / tmax

    def y(v: float, top: float, vmax: float) -> float:
        return top + ph - ph * min(v, vmax) / vmax

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
         '<rect width="100%" height="100%" fill="white"/>',
         f'<text x="{L}" y="18" font-size="13">bench_autonomic: p95 latency at the sink (top) and source rate (bottom)</text>']
    b0, b1 = x(a.fill_s + a.quiet_s), x(a.fill_s + a.quiet_s + a.busy_s)
    for top, vmax, unit in ((T, pmax, "p95 ms (last 2 s)"), (T + ph + GAP, kmax, "rate_hz")):
        o.append(f'<rect x="{b0:.1f}" y="{top}" width="{b1 - b0:.1f}" height="{ph:.1f}" fill="#fbe9d0"/>')
        o.append(f'<rect x="{L}" y="{top}" width="{W - L - R}" height="{ph:.1f}" fill="none" stroke="#333"/>')
        o.append(f'<text x="8" y="{top + 12}">{unit}</text>')
        for v in (0, vmax / 2, vmax):
            o.append(f'<text x="{L - 4}" y="{y(v, top, vmax) + 4:.1f}" text-anchor="end">{v:.0f}</text>')
    o.append(f'<text x="{(b0 + b1) / 2:.1f}" y="{T + 12}" text-anchor="middle">busy scene</text>')
    ys = y(SLO_MS, T, pmax)
    o.append(f'<line x1="{L}" x2="{W - R}" y1="{ys:.1f}" y2="{ys:.1f}" stroke="#000" stroke-dasharray="4 3"/>')
    o.append(f'<text x="{W - R + 4}" y="{ys + 4:.1f}">SLO {SLO_MS:.0f} ms</text>')
    for t in range(0, int(tmax) + 1, 20):
        o.append(f'<text x="{x(t):.1f}" y="{H - B + 14}" text-anchor="middle">{t}</text>')
    o.append(f'<text x="{(L + W - R) / 2:.0f}" y="{H - 8}" text-anchor="middle">seconds since the graph was active</text>')
    for i, r in enumerate(runs):
        c = COLOURS.get(r["label"], "#000")
        pts = " ".join(f"{x(s['t']):.1f},{y(s['p95'], T, pmax):.1f}" for s in r["samples"] if s["p95"] is not None)
        o.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{pts}"/>')
        top = T + ph + GAP
        steps = []
        for j, (t, v) in enumerate(r["knob"]):
            if j:
                steps.append(f"{x(t):.1f},{y(r['knob'][j - 1][1], top, kmax):.1f}")
            steps.append(f"{x(t):.1f},{y(v, top, kmax):.1f}")
        o.append(f'<polyline fill="none" stroke="{c}" stroke-width="1.5" points="{" ".join(steps)}"/>')
        o.append(f'<rect x="{W - R + 8}" y="{T + 40 + 16 * i}" width="10" height="10" fill="{c}"/>')
        o.append(f'<text x="{W - R + 22}" y="{T + 49 + 16 * i}">{r["label"]}</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fill-s", type=float, default=4.0, help="seconds before judging (the 2 s window fills)")
    ap.add_argument("--quiet-s", type=float, default=25.0)
    ap.add_argument("--busy-s", type=float, default=60.0)
    ap.add_argument("--after-s", type=float, default=30.0)
    ap.add_argument("--policy-params", default="increase_step: 0.5, decrease_factor: 0.6, headroom: 0.6",
                    help="the controller's AIMD settings (YAML flow mapping body)")
    ap.add_argument("--guardrails", default="cooldown_s: 6, dwell_s: 6, max_changes_per_min: 8",
                    help="the controller's guardrails (YAML flow mapping body)")
    ap.add_argument("--only", default="", help="comma-separated run labels (default: all)")
    ap.add_argument("--svg", default=str(HERE / "autonomic.svg"))
    ap.add_argument("--no-record", action="store_true", help="print only; bench/RESULTS.md unchanged")
    a = ap.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    work = Path(tempfile.mkdtemp(prefix="bench-autonomic-"))
    setter = ParamSetter()
    runs = []
    try:
        for label, rate, control in RUNS:
            if a.only and label not in a.only.split(","):
                continue
            r = one_run(label, rate, control, a, setter, work)
            print(f"{label:18s} violations {r['violation_s']:3d} s / {r['judged_s']} s  throughput "
                  f"{r['throughput']:5.2f}/s  cpu {r['cpu_pct']:5.1f} %  reversals {r['reversals']}", flush=True)
            runs.append(r)
    finally:
        setter.close()
    (work / "runs.json").write_text(json.dumps(runs, indent=1), encoding="utf-8")
    Path(a.svg).write_text(svg_plot(runs, a), encoding="utf-8")
    by = {r["label"]: r for r in runs}
    lines = [f"Scenario: quiet {a.quiet_s:.0f} s (stage {QUIET_MS:.0f} ms/frame) -> busy {a.busy_s:.0f} s "
             f"({BUSY_MS:.0f} ms/frame) -> quiet {a.after_s:.0f} s; SLO p95 source->sink <= {SLO_MS:.0f} ms, "
             "judged each second on the sink's last-2-s p95. Plot: [autonomic.svg](autonomic.svg).", "",
             "| run | rate_hz | SLO violation s | throughput (frames analysed/s) | CPU % of one core | reversals per 60 s |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        rate = "2..22 (AIMD)" if r["control"] else f"{r['rate']:g}"
        lines.append(f"| {r['label']} | {rate} | {r['violation_s']} of {r['judged_s']} | {r['throughput']:.2f} | "
                     f"{r['cpu_pct']:.1f} | {r['reversals_per_min']:.2f} |")
    if "controller" in by and "best static" in by:
        c, b = by["controller"], by["best static"]
        vr = c["violation_s"] / b["violation_s"] if b["violation_s"] else float("inf")
        tr = c["throughput"] / b["throughput"] if b["throughput"] else 0.0
        ok = vr <= 1 / 3 and tr >= 0.9 and c["reversals_per_min"] <= 1.0
        lines += ["", f"Controller vs best static: violation seconds x{vr:.2f} (target <= 0.33), throughput "
                  f"x{tr:.2f} (target >= 0.9), {c['reversals_per_min']:.2f} reversals per 60 s (target <= 1): "
                  f"{'target met' if ok else 'target NOT met'}."]
    from _results import publish
    publish("bench_autonomic.py", lines, save=not a.no_record, section=SECTION)
    print(f"plot: {a.svg}; runs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
