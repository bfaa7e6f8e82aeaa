"""The replacement protocol over real ROS services against a real container (no manager).

The test plays the lifecycle manager's part with schnitzel_bringup.replace.RosTransport: it
loads a compiled graph into a `schnitzel_container` process, then replaces the policy node
while a source sends 100 packets/s. Checks: the container keeps its PID, no sequence number
is missing downstream, duplicates carry the same idempotency key, the new policy shows, and a
replacement whose configure raises leaves the old node serving.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List

import pytest

pytestmark = pytest.mark.slow

GRAPH = """
schnitzel: 1
name: {name}
containers: [{{id: main}}]
nodes:
  - id: counter
    plugin: synthetic_source
    params: {{mode: counter, rate_hz: 100, stream_id: counter}}
  - id: policy
    plugin: {policy}
  - id: queue
    plugin: durable_queue
    params: {{path: "{dir}/queue.db", sinks: [out]}}
  - id: out
    plugin: jsonl_sink
    params: {{path: "{dir}/out.jsonl", fsync: never}}
edges:
  - {{from: counter.out, to: policy.in}}
  - {{from: policy.out, to: queue.in}}
  - {{from: queue.out, to: out.in}}
"""
RULES = ('rules\n    params:\n      rules: [{when: "payload.n >= 0", action: emit, set_meta: {policy: v1}}]\n'
         '      default: drop')


def _records(path: Path) -> List[dict]:
    out = []
    try:
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    except OSError:
        pass
    return out


def _wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


@pytest.fixture
def live(tmp_path):
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.signals import SignalHandlerOptions
    from schnitzel_core.graph_loader import load_graph
    from schnitzel_core.registry import load_registry

    from schnitzel_bringup.compiler import compile_graph
    from schnitzel_bringup.replace import NodeRef, ReplaceProtocol, RosTransport, load_from_plan_node

    name = f"hsl{os.getpid()}"
    reg = load_registry()

    def graph_for(policy: str):
        text = GRAPH.format(name=name, policy=policy, dir=tmp_path)
        (tmp_path / "g.yaml").write_text(text)
        return load_graph(text, file=str(tmp_path / "g.yaml"))

    def plan_for(policy: str):
        return compile_graph(graph_for(policy), reg)

    plan = plan_for(RULES)
    graph = graph_for(RULES)
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    log = open(tmp_path / "container.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "schnitzel_nodes.container", "--graph", name,
                             "--container", "main"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    ctx = Context()
    rclpy.init(context=ctx, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(f"hsl_test_{os.getpid()}", context=ctx)
    ex = MultiThreadedExecutor(context=ctx)
    ex.add_node(node)
    spin = threading.Thread(target=ex.spin, daemon=True)
    spin.start()
    transport = RosTransport(node, name)
    refs = {}
    try:
        for n in plan.nodes:    # start order: sinks first
            full, uid = transport.load_node("main", n.plugin, n.id, n.namespace, n.parameters_json(),
                                            n.load_options(name), {}, 60)
            refs[n.id] = NodeRef(n.id, "main", n.id, n.namespace, uid, n.plugin, dict(n.params),
                                 n.load_options(name), bool(reg.get(n.plugin).spec.stateful))
        for tr in ("configure", "activate"):
            for n in plan.nodes:
                transport.change_state(n.full_name, tr, 30)
        yield {"plan": plan, "graph": graph, "ctx": ctx, "env": env, "transport": transport, "refs": refs, "plan_for": plan_for, "proc": proc, "dir": tmp_path,
               "name": name, "proto": ReplaceProtocol(transport, timeout_s=15), "reg": reg,
               "load": lambda pn: load_from_plan_node(pn, name, reg.get(pn.plugin).spec)}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)


def _check_stream(records):
    seqs = [r["seq"] for r in records]
    assert seqs
    missing = sorted(set(range(min(seqs), max(seqs) + 1)) - set(seqs))
    assert missing == [], f"missing downstream: {missing[:20]}"
    keys = {}
    for r in records:
        keys.setdefault(r["seq"], set()).add(r["idempotency_key"])
    assert all(len(k) == 1 for k in keys.values())
    return len(seqs) - len(set(seqs))


def test_replace_policy_in_a_real_container_at_100_per_second(live):
    out = live["dir"] / "out.jsonl"
    assert _wait(lambda: len(_records(out)) >= 100, 30), (live["dir"] / "container.log").read_text()[-3000:]
    pid = live["proc"].pid
    new_plan = live["plan_for"]('map\n    params: {constants: {policy: v2}}')
    t0 = time.time_ns()
    res = live["proto"].replace(live["refs"]["policy"], live["load"](new_plan.node("policy")))
    assert res.success, "\n".join(res.step_lines()) + "\n" + res.message
    assert res.serving.full_name == f"/{live['name']}/policy__r1"
    assert _wait(lambda: any(r["payload"].get("policy") == "v2" for r in _records(out)), 10)
    time.sleep(1.0)
    assert live["proc"].poll() is None and live["proc"].pid == pid
    listed = live["transport"].list_nodes("main", 10)
    assert f"/{live['name']}/policy" not in listed and f"/{live['name']}/policy__r1" in listed
    # stop the source, let the queue drain into the sink, then check the whole stream
    live["transport"].change_state(f"/{live['name']}/counter", "deactivate", 10)
    time.sleep(1.5)
    records = _records(out)
    dups = _check_stream(records)
    first_v2 = min(r["stamp_ns"] for r in records if r["payload"].get("policy") == "v2")
    assert first_v2 - t0 <= 1e9, f"new behaviour {(first_v2 - t0) / 1e9:.2f} s after the command"
    print("\n".join(res.step_lines()), f"\nduplicates: {dups}")


def test_replacement_whose_configure_raises_keeps_the_old_node(live):
    out = live["dir"] / "out.jsonl"
    assert _wait(lambda: len(_records(out)) >= 50, 30)
    bad_plan = live["plan_for"]('map\n    params: {fields: {x: 5}}')   # map's configure raises
    res = live["proto"].replace(live["refs"]["policy"], live["load"](bad_plan.node("policy")))
    assert not res.success and res.rolled_back, res.message
    assert "failed to configure" in res.message and "ConfigError: field path must be non-empty text" in res.message, res.message
    n = len(_records(out))
    assert _wait(lambda: len(_records(out)) >= n + 50, 10), "the old node stopped serving"
    listed = live["transport"].list_nodes("main", 10)
    assert f"/{live['name']}/policy" in listed and not any("__r" in x for x in listed)
    live["transport"].change_state(f"/{live['name']}/counter", "deactivate", 10)
    time.sleep(1.5)
    records = _records(out)
    _check_stream(records)
    assert all(r["meta"].get("policy") == "v1" for r in records)


def test_cli_replace_and_apply_through_the_hot_swap_server(live):
    """The same services the manager will serve (HotSwapServer), driven by the real CLI."""
    from schnitzel_bringup.replace import HotSwapServer

    out = live["dir"] / "out.jsonl"
    assert _wait(lambda: len(_records(out)) >= 50, 30)
    changes = []
    server = HotSwapServer(live["plan"], live["reg"], graph=live["graph"], context=live["ctx"],
                           on_change=changes.append)
    name = live["name"]
    cli = [sys.executable, "-m", "schnitzel_bringup.cli"]
    try:
        res = subprocess.run(cli + ["replace", name, "policy", "--plugin", "map", "--params",
                                    'constants={"policy": "v2"}'],
                             capture_output=True, text=True, timeout=120, env=live["env"])
        assert res.returncode == 0, res.stdout + res.stderr
        assert " load /%s/policy__r1: ok" % name in res.stdout and " unload /%s/policy: ok" % name in res.stdout
        assert changes and changes[-1]["serving"]["policy"].node_name == "policy__r1"
        assert _wait(lambda: any(r["payload"].get("policy") == "v2" for r in _records(out)), 10)
        # a live-parameter change through the same service: set in place, no new node
        res = subprocess.run(cli + ["replace", name, "policy", "--params", 'constants={"policy": "v3"}'],
                             capture_output=True, text=True, timeout=120, env=live["env"])
        assert res.returncode == 0 and "in place" in res.stdout, res.stdout + res.stderr
        assert " set_parameters /%s/policy__r1: ok" % name in res.stdout
        assert _wait(lambda: any(r["payload"].get("policy") == "v3" for r in _records(out)), 10)
        # apply: add a second delivery branch while the first keeps running
        new = live["dir"] / "v2.yaml"
        text = (live["dir"] / "g.yaml").read_text().replace("plugin: rules", "plugin: map").replace(
            """    params:
      rules: [{when: "payload.n >= 0", action: emit, set_meta: {policy: v1}}]
      default: drop""", """    params: {constants: {policy: v3}}""")
        text = text.replace("edges:", f"""  - id: queue_b
    plugin: durable_queue
    params: {{path: "{live['dir']}/b.db", sinks: [out_b]}}
  - id: out_b
    plugin: jsonl_sink
    params: {{path: "{live['dir']}/b.jsonl", fsync: never}}
edges:
  - {{from: policy.out, to: queue_b.in}}
  - {{from: queue_b.out, to: out_b.in}}""")
        new.write_text(text)
        res = subprocess.run(cli + ["apply", name, str(new)], capture_output=True, text=True, timeout=120,
                             env=live["env"])
        assert res.returncode == 0, res.stdout + res.stderr
        assert "add node out_b" in res.stdout and "add node queue_b" in res.stdout
        assert _wait(lambda: len(_records(live["dir"] / "b.jsonl")) >= 20, 15)
        assert live["proc"].poll() is None
    finally:
        server.close()
    live["transport"].change_state(f"/{name}/counter", "deactivate", 10)
    time.sleep(1.5)
    _check_stream(_records(out))
