"""A Zenoh edge between two sites, each a network namespace (docs/multi-host.md).

The robot's durable queue sends over Zenoh (client mode through a router on the cloud host, or
peer mode) to the cloud's JSONL sink. The robot's link is cut while the source is still sending:
nothing the source produced is lost (every key reaches the sink's file once the link is back: the
queue keeps unacknowledged rows and sends them again), and the sink's acknowledgements cross back
over Zenoh, emptying the queue. The peer cases find each other over DDS through a Fast DDS discovery
server (`discovery: {mode: server}`) that the cloud host's run starts. A third case also delays
every packet on the robot's link by 100 ms and loses 5 % of them, each direction, from the first
delivery on: with `tc netem` on both ends of the link where the kernel has sch_netem, else with
the user-space link emulator (schnitzel_bringup.graphtest.linkem: the robot's veth end leaves the
bridge and linkem passes every Ethernet frame between it and the bridge, losing each with
probability 5 % and delaying the rest 100 ms, in order; it reports how many frames it passed and
dropped, and the test checks it saw traffic and dropped some). Each case prints the sink's latency.
Skips, saying why, where network namespaces cannot be made.
"""
import json
import os
import sys
import time

import pytest

from schnitzel_core.testing import jsonl_rows, wait_for

from graphs import ZENOH_SITES
from schnitzel_bringup.graphtest.netns import Sandbox, namespaces, unavailable

WHY = unavailable()
pytestmark = pytest.mark.skipif(WHY is not None, reason=WHY or "")
COUNT = 120       # 6 s of packets at 20 Hz
# 10 s, as issue 15 asks (it costs the suite about 5 s per case over a 5 s cut); SZ_CUT_S=15 (past
# Zenoh's 10 s lease, so the session itself drops and reconnects) passes in both modes too
CUT_S = float(os.environ.get("SZ_CUT_S", "10"))


def _status(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _keys(path):
    return {r["idempotency_key"] for r in jsonl_rows(path) if "idempotency_key" in r}


@pytest.fixture
def sandbox():
    box = Sandbox(["cloud", "robot"], subnet=100 + int(os.environ.get("ROS_DOMAIN_ID", "51")) % 100)
    yield box
    box.close()
    assert not [ns for ns in namespaces() if ns.startswith(box.prefix)], "a namespace was left behind"


@pytest.mark.parametrize("mode, impaired", [("client", False), ("peer", False), ("peer", True)],
                         ids=["client", "peer", "peer-100ms-5pct-loss"])
def test_link_cut_between_sites_loses_nothing(sandbox, spawn, tmp_path, mode, impaired):
    graph = tmp_path / "fleetlet.yaml"
    # client: through the router on the cloud host; peer: the two sites connect directly
    # peer cases: DDS (the manager's reach) through a Fast DDS discovery server on the cloud host,
    # which `schnitzel run --host cloud` starts
    graph.write_text(ZENOH_SITES if mode == "client" else ZENOH_SITES.replace(
        'zenoh: {mode: client, router: "tcp/${env:SZ_CLOUD_ADDR:-10.0.0.1}:7447"}',
        "zenoh: {mode: peer}\ndiscovery: {mode: server, server: cloud}"))
    data = tmp_path / "data"
    data.mkdir()
    env = dict(spawn.env, SZ_CLOUD_ADDR=sandbox.addr["cloud"], SZ_ROBOT_ADDR=sandbox.addr["robot"],
               SZ_COUNT=str(COUNT), SZ_DATA=str(data))
    procs = {}
    if mode == "client":
        procs["router"] = spawn(sandbox.exec_argv("cloud", [sys.executable, "-m", "schnitzel_bringup.zenoh_router",
                                                            "--listen", f"tcp/{sandbox.addr['cloud']}:7447"]),
                                env=env, name="router")
    for host in ("robot", "cloud"):
        procs[host] = spawn(sandbox.exec_argv(host, [sys.executable, "-m", "schnitzel_bringup.cli", "run",
                                                     str(graph), "--host", host, "-q",
                                                     "--run-dir", str(tmp_path / host)]),
                            env=env, name=f"run-{host}")
    out = data / "out.jsonl"
    status = tmp_path / "cloud" / "status.json"

    def diag():
        logs = "\n".join(f"--- {h}\n{spawn.output(p)[-2500:]}" for h, p in procs.items())
        for f in sorted(tmp_path.glob("*/container-*.log")):
            logs += f"\n--- {f}\n{f.read_text(errors='replace')[-2500:]}"
        return logs + f"\n--- keys {len(_keys(out))}\n{json.dumps(_status(status), indent=1)[-2000:]}"

    assert wait_for(lambda: len(_keys(out)) >= 5, timeout=60, step=0.2), diag()
    how, impaired_p95 = "", ""
    if impaired:
        how = sandbox.impair("robot", delay_ms=100, loss_pct=5)
        # 2.5 s of packets over the impaired link, then the sink's p95 of the last 2 s: all of them
        n = len(_keys(out))
        assert wait_for(lambda: len(_keys(out)) >= n + 50, timeout=30, step=0.2), diag()
        impaired_p95 = ((_status(status).get("nodes", {}).get("out", {}).get("counters") or {})
                        .get("latency_p95_recent_ms", "?"))
    sandbox.link("robot", up=False)
    # what crossed just before the cut may still be on its way to the sink's file (the impaired
    # link delays 100 ms, the sink's p95 there is ~0.5 s): count from 1 s into the cut
    wait_for(lambda: False, timeout=1.0, step=0.5)
    cut_at = len(_keys(out))
    wait_for(lambda: False, timeout=CUT_S - 1.0, step=0.5)    # the link stays down CUT_S seconds
    during = len(_keys(out))
    sandbox.link("robot", up=True)
    up_at = time.monotonic()
    # reported, not asserted (timing belongs to bench/): the first packet after the link returns
    wait_for(lambda: len(_keys(out)) > during, timeout=40, step=0.05)
    resumed_s = time.monotonic() - up_at
    assert wait_for(lambda: len(_keys(out)) >= COUNT, timeout=40, step=0.2), diag()
    keys = _keys(out)
    sink = _status(status).get("nodes", {}).get("out", {})
    frames = sandbox.impair_stats("robot")
    print(f"\nzenoh {mode}{' (100 ms, 5 % loss)' if impaired else ''}: {len(keys)}/{COUNT} packets, "
          f"delivery resumed {resumed_s:.1f} s after the {CUT_S:g} s cut ended; sink "
          f"latency p50 {sink.get('latency_p50_ms', 0):.1f} ms, p95 {sink.get('latency_p95_ms', 0):.1f} ms"
          + (f"\n  link: {how}; {frames or 'netem'}; sink latency p95 over the last 2 s on the impaired link, "
             f"before the cut: {impaired_p95} ms" if impaired else ""))
    if impaired and "linkem" in how:        # the emulated link carried the traffic and lost some of it
        assert frames.get("frames", 0) > 200 and frames.get("dropped", 0) > 0, frames
    assert len(keys) == COUNT, diag()                         # every packet the source sent arrived
    assert during - cut_at <= 2, diag()                       # nothing crossed while the link was down
    # the sink's acknowledgements came back over Zenoh: the queue empties
    assert wait_for(lambda: int(float(((_status(status).get("nodes", {}).get("q", {}) or {})
                                       .get("counters") or {}).get("depth", -1))) == 0,
                    timeout=30, step=0.3), diag()
