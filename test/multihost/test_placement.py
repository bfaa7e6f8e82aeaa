"""Placement on hosts (docs/multi-host.md): hosts:, the SCH7xx checks, one plan, launch file and
DDS settings per host, and `schnitzel run --host` picking that host's share. Pure logic: no DDS."""
import json
import runpy
import sys
import types

import pytest

from schnitzel_core.graph_loader import parse_graph
from schnitzel_core.registry import load_registry
from schnitzel_validator import validate_text

from schnitzel_bringup.compiler import compile_graph
from schnitzel_bringup.hosts import HostError, dds_env, host_share
from schnitzel_bringup.launch_gen import write_outputs

from graphs import THREE_HOSTS

#: Two sites, each with a robot sending over the inter-site edge to the cloud's sink.
SITES = """
schnitzel: 1
name: sites
hosts:
  - {name: cloud, address: 10.1.0.1, role: manager, site: cloud}
  - {name: robot, address: 10.2.0.1, site: r1}
containers:
  - {id: edge, host: robot}
  - {id: agg, host: cloud}
nodes:
  - {id: gen, plugin: synthetic_source, container: edge}
  - {id: q, plugin: durable_queue, container: edge, params: {path: /tmp/q.db}}
  - {id: out, plugin: jsonl_sink, container: agg, params: {path: /tmp/o.jsonl}}
edges:
  - {from: gen.out, to: q.in}
  - {from: q.out, to: out.in}
"""


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def codes(text, registry):
    return sorted({i.code for i in validate_text(text, file="g.yaml", registry=registry, env={}).issues})


def test_hosts_are_read_with_positions():
    g, issues = parse_graph(THREE_HOSTS, file="g.yaml", env={})
    assert not issues
    assert [(h.name, h.address, h.role) for h in g.hosts] == [
        ("base", "10.0.0.1", "manager"), ("cam", "10.0.0.2", "worker"), ("relay", "10.0.0.3", "worker")]
    assert g.host_of("gen") == "cam" and g.host("cam").key_pos["address"].line == 6


def test_bad_host_role_is_a_shape_error():
    g, issues = parse_graph(THREE_HOSTS.replace("role: manager", "role: boss"), file="g.yaml", env={})
    assert [(i.code, i.line) for i in issues] == [("SCH106", 5)]


def test_valid_placements(registry):
    assert codes(THREE_HOSTS, registry) == []
    assert codes(SITES, registry) == []


@pytest.mark.parametrize("change, code", [
    (("{id: mid, host: relay,", "{id: mid, host: rely,"), "SCH701"),          # undeclared host
    ((", role: manager}", "}"), "SCH702"),                                     # no manager host
    (('10.0.0.3}"}', '10.0.0.3}", role: manager}'), "SCH702"),                     # two manager hosts
    (('{name: relay, address: "${env:SZ_RELAY_ADDR:-10.0.0.3}"}', "{name: relay}"), "SCH703"),  # unreachable
    (("{name: cam,", "{name: base,"), "SCH706"),                              # declared twice
    (("{from: gen.out, to: thin.in}", "{from: gen.out, to: thin.in, transport: shm}"), "SCH507"),
    (("{from: gen.out, to: thin.in}", "{from: gen.out, to: thin.in, transport: inproc}"), "SCH506"),
])
def test_placement_errors(registry, change, code):
    text = THREE_HOSTS.replace(*change)
    assert text != THREE_HOSTS
    assert code in codes(text, registry)


def test_inter_site_edge_needs_a_durable_queue_on_the_sending_side(registry):
    # the sink's input comes straight from the source on the other site: a link cut would lose it
    text = SITES.replace("plugin: jsonl_sink, container: agg, params: {path: /tmp/o.jsonl}",
                         "plugin: stdout_sink, container: agg").replace("{from: q.out, to: out.in}",
                                                                         "{from: gen.out, to: out.in}")
    assert text.count("stdout_sink") == 1 and "{from: gen.out, to: out.in}" in text
    assert "SCH704" in codes(text, registry)
    assert "SCH705" in codes(SITES.replace("{from: q.out, to: out.in}", "{from: q.out, to: out.in, transport: dds}"),
                             registry)


def test_discovery_server_and_zenoh_client_need_their_host_and_router(registry):
    assert "SCH707" in codes(THREE_HOSTS.replace("hosts:", "discovery: {mode: server}\nhosts:"), registry)
    assert codes(THREE_HOSTS.replace("hosts:", "discovery: {mode: server, server: base}\nhosts:"), registry) == []
    assert "SCH707" in codes(SITES.replace("hosts:", "zenoh: {mode: client}\nhosts:"), registry)


def _plan(text, registry):
    g, issues = parse_graph(text, file="g.yaml", env={})
    assert not [i for i in issues if i.severity == "error"]
    return compile_graph(g, registry)


def test_auto_between_sites_is_zenoh_with_a_key_from_graph_and_edge(registry):
    plan = _plan(SITES, registry)
    edge = {e.src: e for e in plan.edges}["q.out"]
    assert (edge.transport, edge.key) == ("zenoh", "schnitzel/sites/q/out/out/in")
    assert {e.src: e.transport for e in plan.edges}["gen.out"] == "inproc"
    assert _plan(THREE_HOSTS, registry).edges[0].transport == "dds"


def test_dds_settings_per_host(registry):
    plan = _plan(SITES.replace("site: r1}", "site: r1}\n  - {name: robot2, address: 10.3.0.1, site: r2}"), registry)
    # a robot lists the manager host (and its own site's hosts), not the other robot
    assert dds_env(plan, "robot") == {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
                                      "ROS_STATIC_PEERS": "10.1.0.1"}
    assert dds_env(plan, "cloud")["ROS_STATIC_PEERS"] == "10.2.0.1;10.3.0.1"
    srv = _plan(THREE_HOSTS.replace("hosts:", "discovery: {mode: server, server: base, port: 11900}\nhosts:"),
                registry)
    assert dds_env(srv, "cam")["ROS_DISCOVERY_SERVER"] == "10.0.0.1:11900"
    assert "ROS_STATIC_PEERS" not in dds_env(srv, "cam")
    assert dds_env(srv, "base")["ROS_SUPER_CLIENT"] == "TRUE" and "ROS_SUPER_CLIENT" not in dds_env(srv, "cam")
    with pytest.raises(HostError, match="host 'nope' is not declared.*base, cam, relay"):
        host_share(srv, "nope")


def _fake_launch(monkeypatch):
    made = []

    def recorder(kind):
        class R:
            def __init__(self, *args, **kwargs):
                self.kind, self.args, self.kwargs = kind, args, kwargs
                made.append(self)
        return R

    def mod(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, m)
        return m

    class LD:
        def __init__(self, entities):
            self.entities = entities
    mod("launch", LaunchDescription=LD)
    mod("launch.actions", SetEnvironmentVariable=recorder("env"), ExecuteProcess=recorder("process"))
    mod("launch_ros")
    mod("launch_ros.actions", ComposableNodeContainer=recorder("container"), Node=recorder("manager"))
    mod("launch_ros.descriptions", ComposableNode=recorder("node"))
    mod("launch_ros.parameter_descriptions", ParameterValue=lambda v, value_type=None: v)
    return made


def test_compile_writes_one_plan_launch_and_env_per_host(registry, tmp_path, monkeypatch):
    plan = _plan(THREE_HOSTS, registry)
    out = write_outputs(plan, tmp_path)
    assert sorted(out["hosts"]) == ["base", "cam", "relay"]
    cam = out["hosts"]["cam"]
    share = json.loads(cam["plan"].read_text())
    assert share["host"] == "cam" and len(share["containers"]) == 3   # the manager needs them all
    assert share["dds_env"]["ROS_STATIC_PEERS"] == "10.0.0.1;10.0.0.3"   # one site: every other host
    assert "ROS_STATIC_PEERS='10.0.0.1;10.0.0.3'" in cam["env"].read_text()
    _fake_launch(monkeypatch)
    for host, want_containers, want_manager in (("cam", ["sense"], False), ("base", ["store"], True)):
        ld = runpy.run_path(str(out["hosts"][host]["launch"]))["generate_launch_description"]()
        kinds = [e.kind for e in ld.entities]
        assert [e.kwargs["name"] for e in ld.entities if e.kind == "container"] == want_containers
        assert ("manager" in kinds) is want_manager
        env = {e.args[0]: e.args[1] for e in ld.entities if e.kind == "env"}
        assert env["FASTDDS_BUILTIN_TRANSPORTS"] == "UDPv4" and kinds[0] == "env"


def test_the_discovery_server_host_launches_the_server_and_no_other_host_does(registry, tmp_path, monkeypatch):
    plan = _plan(THREE_HOSTS.replace("hosts:", "discovery: {mode: server, server: relay, port: 11900}\nhosts:"),
                 registry)
    out = write_outputs(plan, tmp_path)
    assert json.loads(out["hosts"]["relay"]["plan"].read_text())["discovery_server"] == {
        "address": "10.0.0.3", "port": "11900"}
    _fake_launch(monkeypatch)
    for host in ("base", "cam", "relay"):
        ld = runpy.run_path(str(out["hosts"][host]["launch"]))["generate_launch_description"]()
        procs = [e.kwargs for e in ld.entities if e.kind == "process"]
        if host == "relay":
            assert procs == [{"cmd": ["fastdds", "discovery", "-i", "0", "-l", "10.0.0.3", "-p", "11900"],
                              "name": "fastdds_discovery_server", "output": "screen"}]
        else:
            assert procs == [], host
    # one graph on one machine (the plain <graph>.launch.py): no server of its own either
    ld = runpy.run_path(str(out["launch"]))["generate_launch_description"]()
    assert [e for e in ld.entities if e.kind == "process"] == []


def test_run_host_starts_only_that_hosts_share(registry, tmp_path, monkeypatch):
    from schnitzel_bringup import runner as runmod

    started = []
    monkeypatch.setattr(runmod.Child, "start", lambda self: started.append((self.name, self.env)))
    monkeypatch.setattr(runmod.Child, "poll", lambda self: None)
    share = host_share(_plan(THREE_HOSTS, registry), "relay")
    r = runmod.Runner(share, str(tmp_path / "p.json"), str(tmp_path), duration=0.0, live=False,
                      out=lambda s: None, host="relay")
    assert not r.runs_manager
    result = r.run()
    assert [n for n, _ in started] == ["container mid"]            # no manager on a worker host
    assert started[0][1]["ROS_STATIC_PEERS"] == "10.0.0.1;10.0.0.2" and result["stopped_by"] == "duration"
    base = runmod.Runner(host_share(_plan(THREE_HOSTS, registry), "base"), "p", str(tmp_path), host="base")
    assert base.runs_manager


def test_zenoh_edge_in_ports_json_and_session_settings(registry):
    plan = _plan(SITES, registry)
    key = "schnitzel/sites/q/out/out/in"
    q, out = plan.node("q").ports, plan.node("out").ports
    assert q["out"]["out"]["zenoh_keys"] == [key] and q["out"]["out"]["transports"] == ["zenoh"]
    assert out["in"]["in"][0]["key"] == key and out["in"]["in"][0]["transport"] == "zenoh"
    # peer mode (default): listen on the own host's address, connect to the other hosts'
    assert q["zenoh"] == {"mode": "peer", "listen": ["tcp/10.2.0.1:7447"], "connect": ["tcp/10.1.0.1:7447"]}
    client = _plan(SITES.replace("hosts:", "zenoh: {mode: client, router: tcp/10.9.0.1:7447}\nhosts:"), registry)
    assert client.node("out").ports["zenoh"] == {"mode": "client", "connect": ["tcp/10.9.0.1:7447"], "listen": []}
    assert "zenoh" not in plan.node("gen").ports        # no zenoh edge: no session
    # two containers of one host with zenoh edges: one port each, every one connects to the others
    two = _plan(SITES.replace("  - {id: agg, host: cloud}", "  - {id: agg, host: cloud}\n  - {id: agg2, host: cloud}")
                .replace("  - {id: out, plugin: jsonl_sink,", "  - {id: q2, plugin: durable_queue, container: edge, "
                         "params: {path: /tmp/q2.db}}\n  - {id: out2, plugin: jsonl_sink, container: agg2, "
                         "params: {path: /tmp/o2.jsonl}}\n  - {id: out, plugin: jsonl_sink,")
                .replace("  - {from: q.out, to: out.in}", "  - {from: q.out, to: out.in}\n  - {from: gen.out, to: q2.in}"
                         "\n  - {from: q2.out, to: out2.in}"), registry)
    assert two.node("out").ports["zenoh"]["listen"] == ["tcp/10.1.0.1:7447"]
    assert two.node("out2").ports["zenoh"] == {"mode": "peer", "listen": ["tcp/10.1.0.1:7448"],
                                               "connect": ["tcp/10.2.0.1:7447", "tcp/10.1.0.1:7447"]}


def test_one_machine_runs_meet_on_loopback(registry):
    """`schnitzel run` without --host and <graph>.launch.py: every zenoh session on 127.0.0.1, each
    listening on its own port and connecting to the others (the later one reaches the earlier)."""
    from schnitzel_bringup.hosts import on_one_machine

    local = on_one_machine(_plan(SITES, registry))
    assert local.node("q").ports["zenoh"] == {"mode": "peer", "listen": ["tcp/127.0.0.1:7447"],
                                             "connect": ["tcp/127.0.0.1:7448"]}
    assert local.node("out").ports["zenoh"] == {"mode": "peer", "listen": ["tcp/127.0.0.1:7448"],
                                               "connect": ["tcp/127.0.0.1:7447"]}
    plan = _plan(THREE_HOSTS, registry)
    assert on_one_machine(plan) is plan          # no zenoh edge: nothing to change


def test_run_host_starts_the_discovery_server_on_its_host(registry, tmp_path, monkeypatch):
    from schnitzel_bringup import runner as runmod

    started = []
    monkeypatch.setattr(runmod.Child, "start", lambda self: started.append(self.cmd))
    monkeypatch.setattr(runmod.Child, "poll", lambda self: None)
    monkeypatch.setattr(runmod.shutil, "which", lambda name: "/x/" + name)
    plan = _plan(THREE_HOSTS.replace("hosts:", "discovery: {mode: server, server: relay, port: 11900}\nhosts:"),
                 registry)
    for host, want in (("relay", [["/x/fast-discovery-server", "42", "-l", "10.0.0.3", "-p", "11900"]]), ("cam", [])):
        started.clear()
        r = runmod.Runner(host_share(plan, host), "p", str(tmp_path), duration=0.0, live=False,
                          out=lambda s: None, host=host)
        r.run()
        assert [c for c in started if "42" in c] == want
