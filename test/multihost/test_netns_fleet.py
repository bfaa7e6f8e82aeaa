"""examples/fleet across network namespaces, through its own test file (docs/testing-graphs.md).

`schnitzel test examples/fleet/graph.test.yaml` runs the example's chaos profile: each of the
three hosts' shares (`schnitzel run --host NAME`) in its own namespace, the Zenoh router in the
cloud host's, the reference backend on this machine's end of the bridge; `cut_link` takes robot1's
link to the aggregator down for 5 s. The fault must have fired, no packet the robots' queues saw
acknowledged may be missing from the backend, both queues' backlogs drain, and the graph goes
ok -> degraded -> ok. No namespace of the run is left behind. Skips, saying why, where network
namespaces cannot be made.
"""
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from schnitzel_bringup.graphtest.netns import namespaces, unavailable

WHY = unavailable()
pytestmark = pytest.mark.skipif(WHY is not None, reason=WHY or "")
FLEET = Path(__file__).resolve().parents[2] / "examples" / "fleet" / "graph.test.yaml"


def test_fleet_example_robot_uplink_cut_loses_nothing(ros_env, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.cli", "test", str(FLEET), "-k", "uplink",
                             "--junit", str(tmp_path / "j.xml")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=ros_env)
    try:
        out, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:      # Ctrl-C: the harness stops the run and deletes its namespaces
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
        pytest.fail(f"schnitzel test did not finish in 240 s\n{out}")
    assert "Traceback" not in out, out
    left = [ns for ns in namespaces() if ns.startswith(f"sz{proc.pid}-")]
    assert not left, f"namespaces left behind: {left}\n{out}"
    assert proc.returncode == 0 and "PASS chaos: robot1's uplink" in out, out
    assert "fired: cut_link robot1 at 4 s: robot1's link down for 5 s" in out, out
    line = out.split("set check backend:")[1].split("\n")[0]
    assert "lost 0, unexpected 0" in line and " ok 0," not in line, out
    for q in ("q1", "q2"):      # each robot's backlog reached the backend: nothing left queued
        queue = out.split(f"queue {q}: ")[1].split("\n")[0]
        emitted, delivered = int(queue.split(" emitted")[0]), int(queue.split(", ")[1].split(" delivered")[0])
        assert emitted > 0 and delivered == emitted and "0 still queued" in queue, queue
    assert "status: ok -> degraded -> ok" in out, out
