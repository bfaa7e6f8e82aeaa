"""One graph on three hosts, each host a network namespace (docs/multi-host.md).

`schnitzel run --host NAME` runs each host's share in its own namespace, over UDP only
(FASTDDS_BUILTIN_TRANSPORTS=UDPv4 from the compiled DDS settings). The test checks: the graph
comes up and packets cross both hosts; cutting the relay host's link degrades the graph and the
restored link brings it back to ok; killing the relay host's runner (its containers die with it)
degrades it again and a restarted runner is brought up again without touching the other hosts.
Skips, saying why, where network namespaces cannot be made.
"""
import json
import os
import signal
import sys

import pytest

from schnitzel_core.testing import wait_for

from graphs import THREE_HOSTS
from schnitzel_bringup.graphtest.netns import Sandbox, namespaces, unavailable

WHY = unavailable()
pytestmark = pytest.mark.skipif(WHY is not None, reason=WHY or "")


def _status(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


@pytest.fixture
def sandbox():
    box = Sandbox(["base", "cam", "relay"], subnet=int(os.environ.get("ROS_DOMAIN_ID", "51")) % 250)
    yield box
    box.close()
    assert not [ns for ns in namespaces() if ns.startswith(box.prefix)], "a namespace was left behind"


def test_three_hosts_link_cut_and_host_restart(sandbox, spawn, tmp_path):
    graph = tmp_path / "trio.yaml"
    graph.write_text(THREE_HOSTS)
    env = dict(spawn.env, SZ_BASE_ADDR=sandbox.addr["base"], SZ_CAM_ADDR=sandbox.addr["cam"],
               SZ_RELAY_ADDR=sandbox.addr["relay"])

    def run(host):
        argv = [sys.executable, "-m", "schnitzel_bringup.cli", "run", str(graph), "--host", host, "-q",
                "--run-dir", str(tmp_path / host)]
        return spawn(sandbox.exec_argv(host, argv), env=env, name=f"run-{host}")

    procs = {h: run(h) for h in ("cam", "relay", "base")}
    status = tmp_path / "base" / "status.json"

    def sink_in():
        return int(_status(status).get("nodes", {}).get("out", {}).get("packets_in", 0) or 0)

    def reads(want, more_than=0):
        s = _status(status)
        return s.get("state") == "active" and s.get("status") == want and sink_in() > more_than

    def diag():
        return "\n".join(f"--- {h}\n{spawn.output(p)[-3000:]}" for h, p in procs.items()) + \
            f"\n--- status\n{json.dumps(_status(status), indent=1)[-3000:]}"

    assert wait_for(lambda: reads("ok"), timeout=60, step=0.2), diag()
    s = _status(status)
    assert s["hosts"] == {"base": "up", "cam": "up", "relay": "up"}

    # the relay host's link is cut: its node's heartbeats stop, the graph reads degraded
    sandbox.link("relay", up=False)
    assert wait_for(lambda: _status(status).get("status") == "degraded", timeout=20, step=0.2), diag()
    before = sink_in()
    sandbox.link("relay", up=True)
    assert wait_for(lambda: reads("ok", before), timeout=30, step=0.2), diag()

    # the relay host dies (its containers die with the runner) and comes back
    os.killpg(procs["relay"].pid, signal.SIGKILL)
    procs["relay"].wait(timeout=10)
    assert wait_for(lambda: _status(status).get("status") == "degraded", timeout=20, step=0.2), diag()
    before = sink_in()
    procs["relay"] = run("relay")
    assert wait_for(lambda: reads("ok", before) and _status(status)["containers"]["mid"]["restarts"] >= 1,
                    timeout=40, step=0.2), diag()
    s = _status(status)
    # the other hosts were not touched: their containers were never re-loaded
    assert s["containers"]["sense"]["restarts"] == 0 and s["containers"]["store"]["restarts"] == 0
    assert s["hosts"]["relay"] == "up"
    # stop the manager host first: its ordered tear-down finds every host still up
    spawn.kill_group(procs["base"])
