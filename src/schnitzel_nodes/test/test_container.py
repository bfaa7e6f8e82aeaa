"""The container process over real DDS: load by service, drive the standard lifecycle and
parameter services, packets over DDS, failure isolation, status, diagnostics, shutdown."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from schnitzel_msgs.msg import NodeStatus, StreamPacket  # noqa: E402
from schnitzel_msgs.srv import ListNodes, UnloadNode  # noqa: E402

from test_container_support import (Boom, FailConfigure, Marker, RosClient, Scale, Ticker, ports_json, ref,  # noqa: E402
                                    start_container, stop_process, unique_graph)
from schnitzel_core.testing import wait_for  # noqa: E402

CID = "c1"


@pytest.fixture(scope="module")
def client():
    # One client participant for the module: a fresh one per test costs seconds of rediscovery.
    c = RosClient()
    yield c
    c.close()


@pytest.fixture(scope="module")
def env(client):
    graph = unique_graph("tc")
    proc = start_container(graph, CID)
    yield graph, client, proc
    stop_process(proc)


def out_edge(graph, node, port="out", transports=("dds",), qos="events"):
    return {port: {"topic": f"/{graph}/{node}/{port}", "qos": qos, "transports": list(transports)}}


def in_edge(graph, node, port="out", transport="dds", qos="events", into="in"):
    return {into: [{"topic": f"/{graph}/{node}/{port}", "qos": qos, "transport": transport}]}


def payloads(msgs):
    return [json.loads(bytes(m.payload)) for m in msgs]


def bring_up(client, graph, *names):
    for name in names:
        assert client.transition(f"/{graph}/{name}", "configure"), name
        assert client.transition(f"/{graph}/{name}", "activate"), name


def test_load_lifecycle_and_packets_over_dds(env):
    graph, c, _ = env
    r = c.load(graph, CID, ref(Ticker), "src", {"period_s": 0.01},
               {"ports_json": ports_json(out_edge(graph, "src", transports=("dds",)))})
    assert r.success, r.error_message
    assert r.full_node_name == f"/{graph}/src"
    r = c.load(graph, CID, ref(Scale), "sc", {"factor": 3},
               {"ports_json": ports_json(out_edge(graph, "sc"), in_edge(graph, "src"))})
    assert r.success, r.error_message
    assert c.state(f"/{graph}/sc") == "unconfigured"
    got = c.subscribe(StreamPacket, f"/{graph}/sc/out", 100)
    bring_up(c, graph, "sc", "src")
    assert c.state(f"/{graph}/src") == "active"
    assert wait_for(lambda: len(got) >= 10, 10), "no packets over DDS"
    for msg, value in zip(got, payloads(got)):
        assert value == {"n": 3 * msg.seq, "label": "a"}
        assert msg.kind == "telemetry"
    listing = c.call(ListNodes, f"/{graph}/_containers/{CID}/list_nodes", ListNodes.Request())
    states = dict(zip(listing.full_node_names, listing.states))
    assert states[f"/{graph}/src"] == "active" and states[f"/{graph}/sc"] == "active"
    # deactivate stops the flow
    assert c.transition(f"/{graph}/src", "deactivate")
    time.sleep(0.3)
    n = len(got)
    time.sleep(0.3)
    assert len(got) == n
    assert c.transition(f"/{graph}/src", "activate")
    assert wait_for(lambda: len(got) > n, 5)


def test_parameter_set_changes_behaviour_and_out_of_range_is_refused(env):
    graph, c, _ = env
    r = c.load(graph, CID, ref(Ticker), "psrc", {"period_s": 0.01},
               {"ports_json": ports_json(out_edge(graph, "psrc", transports=("inproc",)))})
    assert r.success, r.error_message
    r = c.load(graph, CID, ref(Scale), "psc", {"factor": 2, "tags": ["x"]},
               {"ports_json": ports_json(out_edge(graph, "psc"), in_edge(graph, "psrc", transport="inproc")),
                "autostart": "activate"})
    assert r.success, r.error_message
    got = c.subscribe(StreamPacket, f"/{graph}/psc/out", 100)
    bring_up(c, graph, "psrc")
    node = f"/{graph}/psc"
    assert c.get_param(node, "factor") == 2
    assert c.get_param(node, "tags") == '["x"]'   # list params travel as JSON text
    res = c.set_param(node, "factor", 7)
    assert res.successful, res.reason
    assert c.get_param(node, "factor") == 7
    n0 = len(got)
    assert wait_for(lambda: any(v["n"] == 7 * m.seq for m, v in zip(got[n0:], payloads(got[n0:]))), 5)
    # refused, with the reason, and the running value is unchanged
    res = c.set_param(node, "factor", 1000)
    assert not res.successful and "factor" in res.reason and "100" in res.reason
    res = c.set_param(node, "factor", "seven")
    assert not res.successful and "factor" in res.reason
    res = c.set_param(node, "label", "b")
    assert not res.successful and "not live" in res.reason
    assert c.get_param(node, "factor") == 7
    n1 = len(got)
    assert wait_for(lambda: len(got) > n1 + 3, 5)
    assert all(v["n"] == 7 * m.seq for m, v in zip(got[n1:], payloads(got[n1:])))
    # a non-live param is accepted while inactive and used from the next configure
    for t in ("deactivate", "cleanup"):
        assert c.transition(node, t)
    res = c.set_param(node, "label", "b")
    assert res.successful, res.reason
    bring_up(c, graph, "psc")
    n2 = len(got)
    assert wait_for(lambda: any(v["label"] == "b" for v in payloads(got[n2:])), 5)


def test_failing_node_goes_to_error_and_does_not_stop_others(env):
    graph, c, _ = env
    assert c.load(graph, CID, ref(Ticker), "fsrc", {"period_s": 0.01},
                  {"ports_json": ports_json(out_edge(graph, "fsrc", transports=("inproc",)))}).success
    r = c.load(graph, CID, ref(Boom), "boom", {},
               {"ports_json": ports_json(out_edge(graph, "boom"), in_edge(graph, "fsrc", transport="inproc")),
                "max_consecutive_errors": "5"})
    assert r.success, r.error_message
    assert c.load(graph, CID, ref(Scale), "fok", {},
                  {"ports_json": ports_json(out_edge(graph, "fok"), in_edge(graph, "fsrc", transport="inproc"))}).success
    statuses = c.subscribe(NodeStatus, f"/{graph}/_status/nodes", 100)
    diags = c.subscribe(DiagnosticArray, "/diagnostics", 50)
    got = c.subscribe(StreamPacket, f"/{graph}/fok/out", 100)
    bring_up(c, graph, "boom", "fok", "fsrc")
    assert wait_for(lambda: any(s.node_id == "boom" and s.state == "error" for s in statuses), 10)
    boom = [s for s in statuses if s.node_id == "boom" and s.state == "error"][-1]
    assert boom.errors >= 5 and "boom on" in boom.last_error
    listing = c.call(ListNodes, f"/{graph}/_containers/{CID}/list_nodes", ListNodes.Request())
    assert dict(zip(listing.full_node_names, listing.states))[f"/{graph}/boom"] == "error"
    # the sibling fed by the same source keeps working
    n = len(got)
    assert wait_for(lambda: len(got) > n + 5, 5)
    assert c.state(f"/{graph}/fok") == "active"

    def levels():
        out = {}
        for arr in diags:
            for st in arr.status:
                out[st.name] = st
        return out
    assert wait_for(lambda: f"{graph}/boom" in levels() and f"{graph}/fok" in levels(), 5)
    assert wait_for(lambda: levels()[f"{graph}/boom"].level == DiagnosticStatus.ERROR, 3)
    ok = levels()[f"{graph}/fok"]
    assert ok.level == DiagnosticStatus.OK
    values = {kv.key: kv.value for kv in ok.values}
    assert int(values["packets_in"]) > 0 and int(values["scaled"]) > 0
    # status carries counters, pid and latency from the source stamp
    fok = [s for s in statuses if s.node_id == "fok"][-1]
    assert fok.packets_in > 0 and fok.pid > 0 and fok.container == CID
    assert 0 < fok.latency_p50_ms <= fok.latency_p99_ms < 1000
    assert {kv.key for kv in fok.counters} >= {"scaled"}
    # configure brings an errored node back (the manager's restart path)
    assert c.transition(f"/{graph}/boom", "configure")
    assert c.state(f"/{graph}/boom") == "inactive"


def test_refused_transition_reason_is_published_at_once_also_under_the_ros_name(env):
    """A replacement runs as <id>__r<N> with option node_id=<id>: its status carries the graph id
    (what the manager tracks) and, as a twin, its ROS name, with the reason of a refused
    configure (published right after the reply; not timed here, the machine is shared)."""
    graph, c, _ = env
    statuses = c.subscribe(NodeStatus, f"/{graph}/_status/nodes", 100)
    r = c.load(graph, CID, ref(FailConfigure), "fc__r1", {}, {"node_id": "fc"})
    assert r.success, r.error_message
    time.sleep(0.2)
    n = len(statuses)
    assert not c.transition(f"/{graph}/fc__r1", "configure")
    assert wait_for(lambda: any(s.node_id == "fc__r1" and "model.onnx not found" in s.last_error
                                for s in statuses[n:]), 5)
    mine = [s for s in statuses[n:] if s.node_id in ("fc", "fc__r1")]
    assert {s.node_id for s in mine} == {"fc", "fc__r1"}
    assert all(s.state == "unconfigured" and "FileNotFoundError" in s.last_error for s in mine)


def test_bad_load_requests_fail_with_the_reason(env):
    graph, c, _ = env
    r = c.load(graph, CID, "no_such_plugin_xyz", "x1")
    assert not r.success and "no_such_plugin_xyz" in r.error_message
    r = c.load(graph, CID, ref(Scale), "x2", {"factr": 3})
    assert not r.success and "unknown parameter 'factr'" in r.error_message and "factor" in r.error_message
    r = c.load(graph, CID, ref(Scale), "x3", {"factor": 0})
    assert not r.success and "minimum" in r.error_message
    r = c.load(graph, CID, ref(Scale), "x4", {}, {"ports_json": "{not json"})
    assert not r.success and "ports_json" in r.error_message
    r = c.load(graph, CID, ref(Scale), "x5", {}, {"ports_json": json.dumps({"out": {"nope": {"topic": "/a"}}})})
    assert not r.success and "nope" in r.error_message
    r = c.load(graph, CID, ref(Scale), "bad name!")
    assert not r.success and "name" in r.error_message
    assert c.load(graph, CID, ref(Scale), "x6").success
    r = c.load(graph, CID, ref(Scale), "x6")
    assert not r.success and "already loaded" in r.error_message
    listing = c.call(ListNodes, f"/{graph}/_containers/{CID}/list_nodes", ListNodes.Request())
    assert not any(n.split("/")[-1] in ("x1", "x2", "x3", "x4", "x5") for n in listing.full_node_names)
    # unload by name, then it is gone; unloading again says why not
    res = c.call(UnloadNode, f"/{graph}/_containers/{CID}/unload_node", UnloadNode.Request(node_name="x6"))
    assert res.success, res.error_message
    res = c.call(UnloadNode, f"/{graph}/_containers/{CID}/unload_node", UnloadNode.Request(node_name="x6"))
    assert not res.success and "x6" in res.error_message


def test_sigterm_shuts_every_node_down_and_exits_zero(tmp_path, client):
    marks = tmp_path / "marks.txt"
    graph = unique_graph("ts")
    proc = start_container(graph, "c9")
    c = client
    try:
        assert c.load(graph, "c9", ref(Ticker), "s", {"period_s": 0.005},
                      {"ports_json": ports_json(out_edge(graph, "s", transports=("inproc",))),
                       "autostart": "activate"}).success
        assert c.load(graph, "c9", ref(Scale), "t", {},
                      {"ports_json": ports_json(out_edge(graph, "t"), in_edge(graph, "s", transport="inproc")),
                       "autostart": "activate"}).success
        assert c.load(graph, "c9", ref(Marker), "m", {"path": str(marks)}, {"autostart": "activate"}).success
        # large-payload malloc tuning is in effect (the container re-executed itself, same PID)
        if "GLIBC_TUNABLES" not in os.environ and os.environ.get("SCHNITZEL_MALLOC_TUNING") != "0":
            with open(f"/proc/{proc.pid}/environ", "rb") as f:
                assert b"glibc.malloc.mmap_threshold=" in f.read()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert time.monotonic() - t0 < 5
        out = proc.stdout.read()
        assert "stopped all nodes" in out and "Traceback" not in out
        # the logic was deactivated and cleaned up, not just killed
        assert marks.read_text().split() == ["configure", "activate", "deactivate", "cleanup"]
    finally:
        stop_process(proc)


def test_cli_rejects_bad_arguments_without_traceback():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "schnitzel_nodes.container", "--graph", "bad graph", "--container", "c"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "invalid --graph" in r.stderr and "Traceback" not in r.stderr


def test_cli_reports_a_bad_blackboard_without_traceback(tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "schnitzel_nodes.container", "--graph", "g", "--container", "c",
                        "--state-backend", "sqlite", "--state-path", str(tmp_path / "missing" / "s.db")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "blackboard" in r.stderr and "does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "schnitzel_nodes.container", "--graph", "g", "--container", "c",
                        "--state-backend", "etcd"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "no state backend named 'etcd'" in r.stderr


def test_composition_interfaces_services(client):
    ci = pytest.importorskip("composition_interfaces.srv",
                             reason="composition_interfaces is not installed (not in the ROS 2 PyPI wheels)")
    graph = unique_graph("tcomp")
    proc = start_container(graph, "cc")
    c = client
    try:
        from rclpy.parameter import Parameter
        req = ci.LoadNode.Request(package_name="schnitzel_nodes", plugin_name=ref(Scale), node_name="sc",
                                  node_namespace=f"/{graph}")
        req.parameters = [Parameter("factor", value=4).to_parameter_msg()]
        req.extra_arguments = [Parameter("autostart", value="configure").to_parameter_msg()]
        res = c.call(ci.LoadNode, f"/{graph}/_containers/cc/_container/load_node", req)
        assert res.success, res.error_message
        assert res.full_node_name == f"/{graph}/sc"
        assert c.get_param(f"/{graph}/sc", "factor") == 4
        assert c.state(f"/{graph}/sc") == "inactive"
        lst = c.call(ci.ListNodes, f"/{graph}/_containers/cc/_container/list_nodes", ci.ListNodes.Request())
        assert list(lst.full_node_names) == [f"/{graph}/sc"]
        un = c.call(ci.UnloadNode, f"/{graph}/_containers/cc/_container/unload_node",
                    ci.UnloadNode.Request(unique_id=res.unique_id))
        assert un.success
    finally:
        stop_process(proc)


def test_composition_request_mapping_without_composition_interfaces():
    """The ros2 component / launch_ros mapping (plugin_name, parameters, extra_arguments, remap_rules),
    exercised on the handler directly so it is checked even where composition_interfaces is absent."""
    from types import SimpleNamespace

    from rclpy.parameter import Parameter

    from test_container_support import InprocBox

    box = InprocBox()
    try:
        req = SimpleNamespace(
            package_name="schnitzel_nodes", plugin_name=f"schnitzel_nodes::{ref(Scale)}", node_name="sc",
            node_namespace=f"/{box.graph}", log_level=0,
            remap_rules=[f"/{box.graph}/sc/in:=/{box.graph}/elsewhere"],
            parameters=[Parameter("factor", value=4).to_parameter_msg(),
                        Parameter("tags", value='["a","b"]').to_parameter_msg()],
            extra_arguments=[Parameter("autostart", value="configure").to_parameter_msg()])
        res = box.container._comp_load(req, SimpleNamespace())
        assert res.success, res.error_message
        assert res.full_node_name == f"/{box.graph}/sc"
        a = box.container.nodes[res.unique_id]
        assert a.state_label() == "inactive"
        assert a.logic.params["factor"] == 4 and a.logic.params["tags"] == ["a", "b"]
        # the remap rule moved the default input topic
        assert a.count_subscribers(f"/{box.graph}/elsewhere") == 1
        # schnitzel's launch files also pass the params as exact JSON in extra_arguments
        exact = SimpleNamespace(**{**req.__dict__, "node_name": "sc3", "remap_rules": [], "extra_arguments": [
            Parameter("parameters_json", value='{"factor": 9, "tags": ["z"]}').to_parameter_msg()]})
        res3 = box.container._comp_load(exact, SimpleNamespace())
        assert res3.success, res3.error_message
        assert box.container.nodes[res3.unique_id].get_parameter("factor").value == 9
        bad = SimpleNamespace(**{**req.__dict__, "node_name": "sc2", "remap_rules": ["nonsense"]})
        res = box.container._comp_load(bad, SimpleNamespace())
        assert not res.success and "from:=to" in res.error_message
        lst = box.container._comp_list(None, SimpleNamespace())
        assert list(lst.full_node_names) == [f"/{box.graph}/sc", f"/{box.graph}/sc3"]
    finally:
        box.close()


def test_container_honours_launch_ros_node_renaming(client):
    """launch_ros starts a container with `--ros-args -r __node:=NAME -r __ns:=NS` and then
    calls NS/NAME/_container/*; our services must follow the renamed node."""
    graph = unique_graph("tr")
    proc = start_container(graph, "c0", "--ros-args", "-r", "__node:=renamed", "-r", f"__ns:=/{graph}/launch")
    c = client
    try:
        from schnitzel_msgs.srv import LoadNode
        req = LoadNode.Request(plugin=ref(Scale), node_name="sc", node_namespace=f"/{graph}")
        res = c.call(LoadNode, f"/{graph}/launch/renamed/load_node", req)
        assert res.success, res.error_message
        assert res.full_node_name == f"/{graph}/sc"   # loaded nodes keep their own names
    finally:
        stop_process(proc)


def test_builtin_plugins_by_name_deliver_and_ack_through_the_container(tmp_path):
    """Registered plugins (synthetic_source -> durable_queue -> jsonl_sink), inproc edges: every
    packet lands in the file and the sink's DeliveryAcks reach the queue, which empties."""
    from schnitzel_core.registry import load_registry
    from rclpy.lifecycle import TransitionCallbackReturn as T

    from test_container_support import InprocBox

    reg = load_registry()
    missing = [n for n in ("synthetic_source", "durable_queue", "jsonl_sink") if not (reg.get(n) and reg.get(n).ok)]
    if missing:
        pytest.skip(f"built-in plugins not installed: {missing}")
    box = InprocBox()
    try:
        def topic(n):
            return f"/{box.graph}/{n}/out"

        def load(plugin, name, params, outs=None, ins=None):
            return box.container.load(plugin, name, "", params, None, {"ports_json": ports_json(outs, ins)})
        inproc_out = {"qos": "events", "transports": ["inproc"]}
        src = load("synthetic_source", "src", {"mode": "counter", "rate_hz": 200.0, "count": 40},
                   {"out": {"topic": topic("src"), **inproc_out}})
        q = load("durable_queue", "q", {"path": str(tmp_path / "q.db"), "sinks": ["sink"]},
                 {"out": {"topic": topic("q"), **inproc_out}},
                 {"in": [{"topic": topic("src"), "qos": "events", "transport": "inproc"}]})
        sink = load("jsonl_sink", "sink", {"path": str(tmp_path / "out.jsonl")}, None,
                    {"in": [{"topic": topic("q"), "qos": "events", "transport": "inproc"}]})
        for a in (sink, q, src):
            assert a.trigger_configure() == T.SUCCESS, a.stats.last_error
            assert a.trigger_activate() == T.SUCCESS, a.stats.last_error
        out = tmp_path / "out.jsonl"
        assert wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 40, 15)

        def counters(a):
            return {kv.key: kv.value for kv in a.status_msg().counters}
        assert wait_for(lambda: counters(q).get("acked") == "40" and counters(q).get("depth") == "0", 10), counters(q)
        assert len(out.read_text().splitlines()) == 40
        assert all(a.status_msg().errors == 0 for a in (src, q, sink))
    finally:
        box.close()


def test_multithreaded_executor_container_serves_the_same(client):
    graph = unique_graph("tm")
    proc = start_container(graph, "cm", "--executor", "multi")
    c = client
    try:
        got = c.subscribe(StreamPacket, f"/{graph}/sc/out", 100)
        assert c.load(graph, "cm", ref(Scale), "sc", {"factor": 5},
                      {"ports_json": ports_json(out_edge(graph, "sc"), in_edge(graph, "src", transport="inproc")),
                       "autostart": "activate"}).success
        assert c.load(graph, "cm", ref(Ticker), "src", {"period_s": 0.01},
                      {"ports_json": ports_json(out_edge(graph, "src", transports=("inproc",))),
                       "autostart": "activate"}).success
        assert wait_for(lambda: len(got) >= 10, 10)
        assert all(v["n"] == 5 * m.seq for m, v in zip(got, payloads(got)))
        assert c.set_param(f"/{graph}/sc", "factor", 6).successful
        n = len(got)
        assert wait_for(lambda: any(v["n"] == 6 * m.seq for m, v in zip(got[n:], payloads(got[n:]))), 5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        stop_process(proc)
