"""`schnitzel test` tests itself: a passing case, a failing case and its diff, bad input (exit 2
with file:line and a fix), JUnit XML parsed back, the in-process fast path giving the same
outputs as the real runtime, every example's test file, `schnitzel init`, the fault proxy's
toxics, and two real-runtime chaos runs: one that must catch a deliberately lossy sink
(test/fixtures/schnitzel_testplugin: lossy_jsonl_sink) and one whose three faults must fire
without a packet lost."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COUNTER = HERE / "counter.yaml"


def schnitzel(*args, env=None, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out
    return proc.returncode, out


def write(tmp: Path, text: str, name: str = "g.test.yaml") -> Path:
    p = tmp / name
    p.write_text(text.replace("GRAPH", str(COUNTER)), encoding="utf-8")
    return p


CASE = """\
schnitzel_test: 1
graph: GRAPH
cases:
  - name: even counts are tagged
    inputs:
      - at: policy.in
        packets:
          - {kind: telemetry, payload: {n: 0}}
          - {kind: telemetry, payload: {n: 1}, stamp: 0.5}
    expect:
      - at: policy.out
        count: 2
        packets:
          - {payload.n: 0, meta.parity: PARITY0}
          - {payload.n: 1, meta.parity: {exists: false}, stamp: 0.5}
        order: stamp
        within_s: 0
"""


def test_a_passing_case_and_its_junit_xml(tmp_path):
    f = write(tmp_path, CASE.replace("PARITY0", "even"))
    rc, out = schnitzel("test", f, "--junit", tmp_path / "j.xml")
    assert rc == 0, out
    assert "PASS even counts are tagged" in out and "1 passed, 0 failed" in out
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "1" and suite.get("failures") == "0"
    (case,) = suite.findall("testcase")
    assert case.get("name") == "even counts are tagged" and case.find("failure") is None


def test_a_failing_case_prints_expected_vs_got_and_which_packet(tmp_path):
    f = write(tmp_path, CASE.replace("PARITY0", "odd"))
    rc, out = schnitzel("test", f, "--junit", tmp_path / "j.xml")
    assert rc == 1, out
    assert "FAIL even counts are tagged" in out
    assert f"{f}:14: at policy.out: packet #0: expected" in out            # which file:line, which packet
    assert '"meta.parity": "odd"' in out and '"parity": "even"' in out      # expected vs got
    assert 'differs: meta.parity: "even" != "odd"' in out
    assert "0 passed, 1 failed" in out
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite.get("failures") == "1"
    failure = suite.find("testcase").find("failure")
    assert failure is not None and "differs: meta.parity" in failure.text


@pytest.mark.parametrize("text,line,fix", [
    (CASE.replace("order: stamp", "sorted: stamp"), 16, "use one of: at, count"),
    (CASE.replace("at: policy.in", "at: policy"), 6, "write e.g. `at: policy.in`"),
    (CASE.replace("graph: GRAPH", "graph: nope.yaml"), 2, "relative to this test file"),
    (CASE.replace("count: 2", "count: lots"), 12, "count: {min: 1, max: 5}"),
    (CASE + "chaos:\n  - {name: x, duration_s: 5, faults: [{do: explode}], check: {}}\n", 19, "kill_container"),
    (CASE + "chaos:\n  - {name: x, duration_s: 5, faults: [{do: cut_link}], check: {}}\n", 19,
     "add `host: <name of a host from the graph>`"),
    (CASE.replace("  - name", "  -name", 1), 5, "fix the YAML syntax"),
    (CASE.replace("- {kind: telemetry, payload: {n: 0}}", "- 5"), 8, "write a packet as `key: value` lines"),
])
def test_bad_input_exits_2_with_file_line_and_fix(tmp_path, text, line, fix):
    f = write(tmp_path, text)
    rc, out = schnitzel("test", f)
    assert rc == 2, out
    assert f"{f}:{line}:" in out and "fix:" in out and fix in out, out


def test_a_port_the_plugin_does_not_have_is_a_case_error_not_a_crash(tmp_path):
    f = write(tmp_path, CASE.replace("PARITY0", "even").replace("at: policy.out", "at: policy.nope"))
    rc, out = schnitzel("test", f)
    assert rc == 1 and "ERROR even counts are tagged" in out and "no output port 'nope'" in out, out


def test_inproc_fast_path_gives_the_same_outputs_as_the_real_runtime(ros_env):
    """hot_swap's case on both paths: the same packets (keys, stamps, payloads, meta) come out."""
    from schnitzel_bringup.graphtest.conditions import view
    from schnitzel_bringup.graphtest.driver import load
    from schnitzel_bringup.graphtest.inproc import run_case as inproc
    from schnitzel_bringup.graphtest.runtime import run_case as runtime
    from schnitzel_bringup.graphtest.spec import parse

    tf = parse(ROOT / "examples" / "hot_swap" / "graph.test.yaml")
    graph, registry = load(tf)
    case = tf.cases[0]
    old = dict(os.environ)
    os.environ.update(ros_env)
    try:
        fast, _ = inproc(graph, registry, case)
        real, _ = runtime(tf, graph, registry, case)
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert len(fast["policy.out"]) == 3
    assert [view(p) for p in fast["policy.out"]] == [view(p) for p in real["policy.out"]]


def test_every_example_ships_a_test_file_that_passes(tmp_path):
    dirs = sorted(d for d in (ROOT / "examples").iterdir() if d.is_dir())
    assert dirs
    for d in dirs:
        assert list(d.glob("*.test.yaml")) or list(d.glob("tests/*.yaml")), f"{d} has no test file"
    rc, out = schnitzel("test", ROOT / "examples", "--no-chaos", "--junit", tmp_path / "j.xml")
    assert rc == 0, out
    suites = ET.parse(tmp_path / "j.xml").getroot().findall("testsuite")
    assert len(suites) == len(dirs) and all(s.get("failures") == "0" and s.get("errors") == "0" for s in suites)


def test_init_creates_a_graph_whose_test_file_passes(tmp_path):
    rc, out = schnitzel("init", "my_robot", "--dir", tmp_path / "my_robot")
    assert rc == 0, out
    rc, out = schnitzel("validate", tmp_path / "my_robot" / "graph.yaml")
    assert rc == 0, out
    rc, out = schnitzel("test", tmp_path / "my_robot")
    assert rc == 0 and "1 passed" in out, out
    rc, out = schnitzel("init", "my_robot", "--dir", tmp_path / "my_robot")
    assert rc == 2 and "already holds a graph" in out


def _echo_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=lambda c=c: [c.sendall(d) for d in iter(lambda: c.recv(1024), b"")],
                             daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return srv


def _roundtrip(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"ping")
        return s.recv(16)


def test_fault_proxy_toxics_latency_reset_refuse_and_heal():
    from schnitzel_bringup.graphtest.proxy import FaultProxy

    srv = _echo_server()
    proxy = FaultProxy(srv.getsockname()[1])
    try:
        assert _roundtrip(proxy.port) == b"ping"
        proxy.set_toxic("latency", latency_ms=50)
        assert _roundtrip(proxy.port) == b"ping" and proxy.affected["latency"] >= 1
        held = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        held.sendall(b"a")
        proxy.set_toxic(None)
        assert held.recv(4) == b"a"
        proxy.set_toxic("reset")                    # the open connection is reset ...
        with pytest.raises(ConnectionResetError):
            held.sendall(b"b")
            held.recv(4)
        with pytest.raises((ConnectionResetError, ConnectionAbortedError)):
            _roundtrip(proxy.port)                  # ... and so is a new one
        assert proxy.affected["reset"] >= 2
        proxy.set_toxic("refuse")
        with pytest.raises(ConnectionRefusedError):
            _roundtrip(proxy.port)
        proxy.set_toxic(None)
        assert _roundtrip(proxy.port) == b"ping"
    finally:
        proxy.close()
        srv.close()


def test_a_fault_that_never_fired_fails_the_profile(tmp_path, monkeypatch):
    from schnitzel_bringup.graphtest import chaos
    from schnitzel_bringup.graphtest.driver import load
    from schnitzel_bringup.graphtest.spec import parse

    f = write(tmp_path, "schnitzel_test: 1\ngraph: GRAPH\nchaos:\n  - name: kill nothing\n    duration_s: 1\n"
                        "    faults: [{at: 0, do: kill_container, container: nope}]\n    check: {}\n")
    tf = parse(f)
    graph, _ = load(tf)
    monkeypatch.setattr(chaos.Run, "prepare", lambda self: tmp_path / "g.yaml")

    def execute(self, gfile):   # the run itself is not needed: the container is not there
        self._fire(0, tf.chaos[0].faults[0])
        return {}
    monkeypatch.setattr(chaos.Run, "execute", execute)
    monkeypatch.setattr(chaos, "check", lambda run, rep: ([], []))
    res = chaos.run_profile(tf, graph, tf.chaos[0])
    for note in res.notes:   # a failed profile keeps its run directory: remove it here
        if "files kept in " in note:
            shutil.rmtree(note.split("files kept in ")[1], ignore_errors=True)
    assert res.status == "fail"
    assert any(f"{f}:6: fault kill_container did not fire: kill_container nope: no running process" in d
               for d in res.details), res.details


def test_a_fault_this_machine_cannot_make_skips_with_the_reason(tmp_path):
    f = write(tmp_path, "schnitzel_test: 1\ngraph: GRAPH\nchaos:\n  - name: cut\n    duration_s: 5\n"
                        "    faults: [{at: 1, do: cut_link, host: base}]\n    check: {no_loss: [file]}\n")
    rc, out = schnitzel("test", f)
    assert rc == 0 and "SKIP chaos: cut" in out and "no link between hosts to cut" in out, out


def test_cut_link_naming_a_host_the_graph_does_not_declare_is_bad_input(tmp_path):
    fleet = (ROOT / "examples" / "fleet" / "graph.test.yaml").read_text()
    f = tmp_path / "fleet.test.yaml"
    f.write_text(fleet.replace("graph: graph.yaml", f"graph: {ROOT / 'examples' / 'fleet' / 'graph.yaml'}")
                 .replace("host: robot1", "host: robot9"))
    line = next(i for i, t in enumerate(f.read_text().splitlines(), 1) if "robot9" in t)
    rc, out = schnitzel("test", f)
    assert rc == 2, out
    assert f"{f}:{line}:" in out and "cut_link: the graph declares no host 'robot9'" in out, out
    assert "fix: use one of its hosts: cloud, robot1, robot2" in out, out


def test_cut_link_skips_saying_why_where_namespaces_are_not_permitted(monkeypatch):
    """examples/fleet (three hosts) on a machine where `ip netns add` is refused: SKIP with the
    reason, nothing started (the real run is test/multihost/test_netns_fleet.py)."""
    from schnitzel_bringup.graphtest import chaos
    from schnitzel_bringup.graphtest.driver import load
    from schnitzel_bringup.graphtest.spec import parse

    tf = parse(ROOT / "examples" / "fleet" / "graph.test.yaml")
    graph, _ = load(tf)
    prof = next(p for p in tf.chaos if any(f.do == "cut_link" for f in p.faults))
    monkeypatch.setattr(chaos.netns, "unavailable", lambda: "network namespaces need root (ip netns add)")
    monkeypatch.setattr(chaos.Backend, "start", lambda self: pytest.fail("nothing may start"))
    res = chaos.run_profile(tf, graph, prof)
    assert res.status == "skip", (res.status, res.details)
    assert res.details == ["cut_link: each host's share must run in its own network namespace, and network "
                           "namespaces need root (ip netns add)"]


def test_the_test_files_tmp_is_each_chaos_runs_own_directory(tmp_path):
    """`env: {X: "{tmp}/..."}` of the file: each chaos run its own fresh directory (a durable queue
    there never finds an earlier run's keys in its ledger and takes every packet for a duplicate)."""
    from schnitzel_bringup.graphtest import chaos
    from schnitzel_bringup.graphtest.driver import load
    from schnitzel_bringup.graphtest.spec import parse

    f = write(tmp_path, "schnitzel_test: 1\ngraph: GRAPH\nenv: {SCHNITZEL_DATA: \"{tmp}\", Q: \"{tmp}/q.db\"}\n"
                        "chaos:\n  - name: kill\n    duration_s: 5\n"
                        "    faults: [{at: 1, do: kill_container, container: main}]\n    check: {}\n")
    tf = parse(f)
    graph, _ = load(tf)
    runs = [chaos.Run(tf, graph, tf.chaos[0]) for _ in range(2)]
    try:
        for run in runs:
            run.prepare()
            assert run.env["SCHNITZEL_DATA"] == str(run.work / "data") and run.env["Q"] == str(run.work / "data/q.db")
        assert runs[0].env["Q"] != runs[1].env["Q"]
    finally:
        for run in runs:
            run.cleanup()
            shutil.rmtree(run.work, ignore_errors=True)


@pytest.fixture(scope="module")
def lossy_env(tmp_path_factory):
    """The test plugin package (with lossy_jsonl_sink) pip-installed into a temporary target."""
    tmp = tmp_path_factory.mktemp("lossy")
    src = tmp / "src"
    shutil.copytree(ROOT / "test" / "fixtures" / "schnitzel_testplugin", src)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "--target", str(tmp / "site"), str(src)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return tmp / "site"


def test_chaos_profile_catches_a_lossy_sink(tmp_path, ros_env, lossy_env):
    graph = COUNTER.read_text().replace("plugin: jsonl_sink", "plugin: lossy_jsonl_sink") \
        .replace("fsync: never}", "fsync: never, lose_every: 7}").replace("name: gt_counter", "name: gt_lossy")
    (tmp_path / "lossy.yaml").write_text(graph)
    f = tmp_path / "lossy.test.yaml"
    f.write_text("schnitzel_test: 1\ngraph: lossy.yaml\nchaos:\n  - name: freeze the source\n    duration_s: 6\n"
                 "    backend: reference\n    faults: [{at: 2, do: drop_source, node: counter, for_s: 1}]\n"
                 "    check: {no_loss: [backend, file], duplicates: same_key}\n")
    env = dict(ros_env, PYTHONPATH=os.pathsep.join([str(lossy_env), ros_env.get("PYTHONPATH", "")]))
    rc, out = schnitzel("test", f, "--junit", tmp_path / "j.xml", env=env)
    if "files kept in " in out:   # a failed profile keeps its run directory for the user: not ours to keep
        shutil.rmtree(out.split("files kept in ")[1].split()[0], ignore_errors=True)
    assert rc == 1, out
    assert "fired: drop_source counter" in out
    assert "no_loss: file lost" in out and "acknowledged packet(s)" in out, out
    assert "set check backend:" in out and "lost 0, unexpected 0" in out.split("set check backend:")[1].split("\n")[0]
    failure = ET.parse(tmp_path / "j.xml").getroot().find("testsuite/testcase/failure")
    assert failure is not None and "no_loss: file lost" in failure.text


def test_chaos_backend_faults_fire_and_nothing_is_lost(ros_env):
    rc, out = schnitzel("test", HERE / "backend_chaos.test.yaml", env=ros_env)
    assert rc == 0, out
    for fired in ("fired: stop_backend at 2 s", "fired: proxy reset at 7 s", "fired: drop_source counter at 10 s"):
        assert fired in out, out
    for sink in ("backend", "file"):
        line = out.split(f"set check {sink}:")[1].split("\n")[0]
        assert "lost 0, unexpected 0" in line and "ok 0," not in line, out
    assert "status: ok -> " in out and "degraded" in out
    queue = out.split("queue queue: ")[1].split("\n")[0]          # the tapped emitted set, all taken in
    emitted, delivered = int(queue.split(" emitted")[0]), int(queue.split(", ")[1].split(" delivered")[0])
    assert emitted > 0 and emitted == delivered and "never taken in" not in queue, queue


def test_conditions_operators_counts_order_and_within():
    from schnitzel_core.packet import Packet

    from schnitzel_bringup.graphtest.conditions import evaluate
    from schnitzel_bringup.graphtest.spec import BASE_STAMP_NS, Expect

    def pk(seq, n, stamp_s, **meta):
        return Packet.from_json("s", seq, "telemetry", {"n": n, "tags": ["a", "b"]},
                                stamp_ns=BASE_STAMP_NS + int(stamp_s * 1e9), meta=meta)

    got = [pk(0, 1.0, 0.0, zone="dock"), pk(1, 3.0, 0.1), pk(2, 2.0, 0.2)]
    inputs = [pk(0, 0, 0.0), pk(1, 0, 0.05), pk(2, 0, 0.2)]
    ok = Expect("x.out", count={"min": 3, "max": 3},
                all={"payload.n": {"min": 1, "max": 3, "ne": 4}, "payload.tags": {"contains": "a"},
                     "kind": {"in": ["telemetry", "event"]}, "payload.tags.1": "b"},
                packets=[{"meta.zone": "dock", "stamp": 0.0}, {"meta.zone": {"exists": False}}],
                packet_lines=[7, 8], order="seq", within_s=0.05, line=5)
    assert evaluate(ok, got, inputs) == []
    bad = Expect("x.out", count=2, all={"payload.n": {"max": 2}}, packets=[{}, {}, {}, {"seq": 3}],
                 packet_lines=[7, 8, 9, 10], order="payload.n", within_s=0.01, line=5)
    fails = evaluate(bad, got, inputs)
    text = "\n".join(f"{line}: {t}" for line, t in fails)
    assert "5: count: expected 2, got 3" in text
    assert "10: packet #3: expected {\"seq\": 3}, got nothing (only 3 packets came out)" in text
    assert "5: packet #1 (s/0/1): payload.n: 3.0 fails max: 2" in text
    assert "5: order: packet #2 has payload.n = 2.0 after 3.0" in text
    assert "within_s: packet #1 (s/0/1) is +0.050 s from its input's stamp (limit 0.01 s)" in text


def test_a_recording_feeds_a_case_with_its_packets_as_recorded(tmp_path):
    """Inputs from an MCAP recording (schnitzel run --record): stamps and keys as recorded."""
    from schnitzel_core.packet import Packet
    from schnitzel_core.recording import Recorder

    sent = [Packet.from_json("counter", i, "telemetry", {"n": i}, stamp_ns=1_700_000_000_000_000_000 + i * 10**8)
            for i in range(4)]
    with Recorder(str(tmp_path / "run.mcap")) as rec:
        rec.add_topic("/gt_counter/counter/out")
        for p in sent:
            rec.write_packet("/gt_counter/counter/out", p, log_time_ns=p.stamp_ns)
    text = """\
schnitzel_test: 1
graph: GRAPH
cases:
  - name: a recorded run through the rules
    inputs:
      - at: policy.in
        fixture: run.mcap
    expect:
      - at: policy.out
        count: 4
        packets:
          - {payload.n: 0, meta.parity: even, seq: 0}
          - {payload.n: 1, meta.parity: {exists: false}}
        all: {stream_id: counter}
        order: stamp
        within_s: 0
"""
    f = write(tmp_path, text)
    rc, out = schnitzel("test", f)
    assert rc == 0, out
    assert "PASS a recorded run through the rules" in out
    # a recording that is not there is bad input with the line and a fix, not a traceback
    rc, out = schnitzel("test", write(tmp_path, text.replace("run.mcap", "gone.mcap"), "bad.test.yaml"))
    assert rc == 2 and "gone.mcap" in out and "bad.test.yaml:7" in out, out


def test_two_runs_starting_together_never_share_a_sandbox_subnet():
    """free_subnet holds what it picks (a lock per subnet) until that Sandbox closes."""
    if not shutil.which("ip"):
        pytest.skip("no `ip` here")
    from schnitzel_bringup.graphtest import netns
    mine = netns.free_subnet(40)
    try:
        code = "from schnitzel_bringup.graphtest import netns; print(netns.free_subnet(40))"
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert int(other.stdout) != mine
    finally:
        netns._SUBNET_LOCKS.pop(mine).close()


def test_resume_is_judged_per_named_queue_so_one_queue_cannot_stand_in_for_another():
    """Two robots' queues: robot2's keeps delivering through robot1's link cut; what counts is
    that robot1's queue resumes within T once the link is back (the sinks' total cannot show it)."""
    from schnitzel_bringup.graphtest.invariants import judge_resume

    end = 10.0
    total = [(t / 2, 10 * t) for t in range(41)]               # the sink's total grows all along
    quick = [(t / 2, 5 * t) for t in range(41)]                # q2: never interrupted
    late = [(t / 2, 50 if t / 2 <= end + 6 else 50 + t) for t in range(41)]   # q1: back 6.5 s after
    fails, notes = judge_resume(total, {"q1": late, "q2": quick}, end, 5.0, {"q1": set(), "q2": set()})
    assert fails == ["resume_within_s: queue q1 resumed 6.5 s after the faults ended (limit 5 s)"], fails
    assert "resume q2: deliveries resumed 0.5 s after the faults ended" in notes
    stuck = [(t / 2, 50) for t in range(41)]
    fails, _ = judge_resume(total, {"q1": stuck}, end, 5.0, {"q1": {"k1", "k2"}})
    assert fails == ["resume_within_s: queue q1 delivered nothing after the faults ended (at 10.0 s) and "
                     "still holds 2 row(s)"]
    fails, notes = judge_resume(total, {"q1": stuck}, end, 5.0, {"q1": set()})   # nothing left to send
    assert fails == [] and notes == ["resume q1: nothing left to deliver after the faults ended"]
    fails, notes = judge_resume(total, {}, end, 5.0, {})                         # no queue named: the sinks
    assert fails == [] and notes == ["resume: deliveries resumed 0.5 s after the faults ended"]
