"""`schnitzel run` tells the truth about a run, end to end:

- a camera that never connects (an RTSP URL nothing listens on) makes the run `degraded` once it
  has sent nothing for its grace period (graph setting `runtime: source_grace_s`), with the
  reason on /diagnostics, in the status line and in the report (exit 3); the graph's
  `runtime: state_backend` reaches the container (its sqlite blackboard file is created);
- Ctrl-C (a real SIGINT) while the graph is still starting is a cancel: exit 130, "cancelled",
  no error, and nothing left running.
"""
import json
import signal
import socket
import time

from rt_helpers import output, read_status, start_run
from schnitzel_core.testing import wait_for

DEAD_CAMERA = """\
schnitzel: 1
name: {name}
runtime: {{source_grace_s: 2, state_backend: sqlite, state_path: board.db}}
nodes:
  - {{id: cam, plugin: video_source, params: {{uri: "rtsp://127.0.0.1:{port}/cam", reconnect_max_s: 1.0}}}}
  - {{id: out, plugin: stdout_sink}}
edges:
  - {{from: cam.frames, to: out.in}}
"""

WHY = "source cam has sent nothing since its activation (grace 2 s)"


def _closed_port() -> int:
    with socket.socket() as s:      # bound and closed again: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _diagnostics(graph: str, stop):
    """The manager's graph-level DiagnosticStatus messages on /diagnostics until ``stop()``."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    ctx = Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("diag_probe", context=ctx)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    got = []
    node.create_subscription(DiagnosticArray, "/diagnostics",
                             lambda m: got.extend(s for s in m.status if s.name == graph), 50)
    try:
        deadline = time.monotonic() + 90
        while not stop(got) and time.monotonic() < deadline:
            ex.spin_once(timeout_sec=0.1)
    finally:
        node.destroy_node()
        ex.shutdown()
        rclpy.shutdown(context=ctx)
    return got


def test_a_camera_that_never_connects_makes_the_run_degraded_with_the_reason(tmp_path, tagged):
    graph = tmp_path / "deadcam.yaml"
    graph.write_text(DEAD_CAMERA.format(name="deadcam", port=_closed_port()))
    run_dir = tmp_path / "run"
    report = tmp_path / "report.json"
    runner = start_run(graph, run_dir, tagged.env, "--report", str(report))
    try:
        diags = _diagnostics("deadcam", lambda got: any(d.level == d.WARN for d in got))
        warn = [d for d in diags if d.level == d.WARN]
        assert warn and warn[0].message == f"degraded: {WHY}", (diags, output(runner))
        assert wait_for(lambda: WHY in output(runner), 15), output(runner)   # the status line says why
        runner.send_signal(signal.SIGINT)
        runner.wait(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    log = output(runner)
    assert runner.returncode == 3, log
    assert "schnitzel run: degraded" in log and f"problem: {WHY}" in log, log
    rep = json.loads(report.read_text())
    assert rep["status"] == "degraded" and WHY in rep["problems"]
    assert rep["totals"]["source_packets_out"] == 0
    assert any(e["event"] == f"health: {WHY}" for e in rep["events"])
    assert "degraded" in [s["status"] for s in rep["timeline"] if s["state"] == "active"]
    assert wait_for(lambda: tagged.processes() == {}, 10), tagged.processes()
    assert (tmp_path / "board.db").is_file()    # runtime.state_backend reached the container (its blackboard)


def test_ctrl_c_during_start_up_is_a_cancel_not_a_failure(tmp_path, tagged):
    graph = tmp_path / "cancel.yaml"
    graph.write_text(DEAD_CAMERA.format(name="cancelme", port=_closed_port()))
    run_dir = tmp_path / "run"
    report = tmp_path / "report.json"
    runner = start_run(graph, run_dir, tagged.env, "--report", str(report))
    try:
        # the manager is up and waiting for the containers: the graph is not active yet
        assert wait_for(lambda: (read_status(run_dir) or {}).get("state") == "waiting_containers", 60, step=0.02), \
            output(runner)
        runner.send_signal(signal.SIGINT)          # Ctrl-C
        runner.wait(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
    log = output(runner)
    assert runner.returncode == 130, log
    assert "schnitzel run: cancelled" in log, log
    assert "never became active" not in log and "problem:" not in log and "Traceback" not in log, log
    rep = json.loads(report.read_text())
    assert rep["status"] == "cancelled" and rep["problems"] == [] and rep["stopped_by"] == "signal:SIGINT"
    assert not any(" active: " in e["event"] for e in rep["events"])   # it was cancelled before that
    assert wait_for(lambda: tagged.processes() == {}, 10), tagged.processes()
