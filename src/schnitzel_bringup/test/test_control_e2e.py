"""One run with a controller (docs/autonomic.md): it moves a live knob through the parameter
service, an operator's pin wins over it, a forced mode sets its knobs (a text one included)
together, and every decision is in the audit log and the report."""
import json
import os
import signal
import subprocess
import sys
import textwrap

from schnitzel_core.testing import wait_for

GRAPH = textwrap.dedent("""\
    schnitzel: 1
    name: ctrl_e2e
    nodes:
      - {id: src, plugin: synthetic_source, params: {mode: pattern, rate_hz: 30, width: 32, height: 24}}
      - {id: det, plugin: synthetic_model, params: {latency_ms: 80}}
      - {id: out, plugin: stdout_sink}
    edges:
      - {from: src.out, to: det.in}
      - {from: det.out, to: out.in}
    controllers:
      - name: fps
        knobs:
          - {node: src, param: rate_hz, min: 2, max: 30, max_step: 10}
          - {node: det, param: label, values: [object, thing], max_step: 0}   # only the mode moves it
        objectives: [{node: det, metric: drop_rate, max: 0.05}]
        guardrails: {cooldown_s: 1, dwell_s: 1}
        modes:
          slow: {set: {src.rate_hz: 3, det.label: thing}, enter_after_s: 1000}
    """)


def _env():
    return dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", *args], capture_output=True,
                          text=True, timeout=60, env=_env())


def _audit(run_dir):
    try:
        text = (run_dir / "control-audit.jsonl").read_text(encoding="utf-8")
    except OSError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_controller_moves_a_knob_and_an_override_wins(tmp_path):
    g = tmp_path / "g.yaml"
    g.write_text(GRAPH, encoding="utf-8")
    run_dir, report = tmp_path / "run", tmp_path / "report.json"
    proc = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(g), "--duration", "120",
                             "--run-dir", str(run_dir), "--report", str(report), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        # 30 Hz into an 80 ms model drops most frames: the controller lowers the source's rate
        assert wait_for(lambda: any(r["rule"] == "aimd:decrease" for r in _audit(run_dir)), timeout=60), \
            (run_dir / "controller.log").read_text() if (run_dir / "controller.log").exists() else "no log"
        bad = _cli("control", "pin", "ctrl_e2e", "nope", "src.rate_hz", "5")
        assert bad.returncode == 1 and "no controller 'nope'" in bad.stderr and "fps" in bad.stderr
        pin = _cli("control", "pin", str(g), "fps", "src.rate_hz", "5")
        assert pin.returncode == 0, pin.stderr
        assert "pinned at 5" in pin.stdout
        assert _cli("control", "suspend", "ctrl_e2e", "fps").returncode == 0
        assert _cli("control", "resume", "ctrl_e2e", "fps").returncode == 0
        assert _cli("control", "release", "ctrl_e2e", "fps", "src.rate_hz").returncode == 0
        # with the knob back, the controller moves it again, from the value the operator set
        released = lambda: next((i for i, r in enumerate(_audit(run_dir)) if r["rule"] == "override:release"), None)
        wait_for(lambda: released() is not None, timeout=10)
        after = lambda: [r for r in _audit(run_dir)[released():] if r["rule"].startswith("aimd:")
                         and r["knob"] == "src.rate_hz"]
        assert wait_for(after, timeout=60), _audit(run_dir)
        assert after()[0]["old"] == 5.0
        # a forced mode sets its knobs together (the text knob through its ROS parameter too)
        assert _cli("control", "mode", "ctrl_e2e", "fps").returncode == 2     # a name or --release
        mode = _cli("control", "mode", "ctrl_e2e", "fps", "slow")
        assert mode.returncode == 0 and "mode 'slow' forced" in mode.stdout, mode.stderr
        assert "det.label object -> thing" in mode.stdout, mode.stdout
        assert _cli("control", "mode", "ctrl_e2e", "fps", "--release").returncode == 0
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    records = _audit(run_dir)
    rules = [r["rule"] for r in records]
    pinned_at = rules.index("override:pin")
    released_at = rules.index("override:release")
    # nothing but the operator touched the knob while it was pinned
    assert all(r["rule"].startswith("override:") or r["rule"] == "judged" for r in records[pinned_at:released_at]
               if r["knob"] == "src.rate_hz"), rules
    rate = [r for r in records if r["knob"] == "src.rate_hz" and not r["rule"].startswith("override")]
    assert all(2.0 <= r["new"] <= 30.0 for r in rate)
    assert all(r["new"] in ("object", "thing") for r in records if r["knob"] == "det.label")
    forced = next(r for r in records if r["rule"] == "override:mode")
    left = next(r for r in records if r["rule"] == "override:mode_release")
    assert (forced["knob"], forced["old"], forced["new"]) == ("mode", None, "slow")
    assert (left["old"], left["new"]) == ("slow", None)
    rate_before = forced["changes"]["src.rate_hz"][0]
    assert forced["changes"]["src.rate_hz"][1] == 3.0 and left["changes"]["src.rate_hz"] == [3.0, rate_before]
    assert forced["changes"]["det.label"] == ["object", "thing"] and left["changes"]["det.label"] == ["thing", "object"]
    first = records[0]
    assert first["knob"] == "src.rate_hz" and first["old"] == 30.0 and "det.drop_rate" in first["metrics"]
    rep = json.loads(report.read_text(encoding="utf-8"))
    ctl = rep["control"]["controllers"]["fps"]
    assert ctl["overrides"] == 6 and ctl["changes"] >= 2 and not ctl["pinned"], err
    assert ctl["mode"] is None and not ctl["mode_forced"]
    assert [d["rule"] for d in rep["control"]["decisions"]] == rules
