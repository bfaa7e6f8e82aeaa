"""Hot replacement end to end (issue 7): `schnitzel run` a graph, then change it while it runs.

Each test runs a real graph (containers + the lifecycle manager, which serves
`/<graph>/_manager/replace_node` and `apply_graph` once the graph is active) and calls
`schnitzel replace` / `schnitzel apply` while a source keeps sending.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest
from schnitzel_core.testing import wait_for

TAG_VAR = "SZ_RUNTIME_TAG"
pytestmark = pytest.mark.slow


# ---------------------------------------------------------------- helpers
def _tagged_processes(tag: str) -> Dict[int, str]:
    found = {}
    needle = f"{TAG_VAR}={tag}".encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if needle not in (d / "environ").read_bytes().split(b"\0"):
                continue
            if (d / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                continue
            found[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


def _cli(*args: str) -> List[str]:
    return [sys.executable, "-m", "schnitzel_bringup.cli", *args]


def _lines(path: Path) -> List[dict]:
    out = []
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass   # a line being written
    return out


class Graph:
    """One `schnitzel run` of a graph file, tagged so its processes can be found and reaped."""

    def __init__(self, tmp: Path, env: Dict[str, str], text: str, name: str, run_args: Sequence[str] = ()) -> None:
        self.dir = tmp
        self.run_args = list(run_args)
        self.name = name
        self.tag = uuid.uuid4().hex
        self.env = {**env, TAG_VAR: self.tag, "HOT_SWAP_DIR": str(tmp)}
        self.file = tmp / f"{name}.yaml"
        self.file.write_text(text)
        self.run_dir = tmp / "run"
        self.log = tmp / "runner.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(_cli("run", str(self.file), "--run-dir", str(self.run_dir), "--quiet",
                                              *self.run_args),
                                         env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        ok = wait_for(lambda: (self.status() or {}).get("state") == "active", 120)
        assert ok, f"graph {self.name} did not become active\n{self.output()}"

    def status(self) -> Optional[dict]:
        try:
            return json.loads((self.run_dir / "status.json").read_text())
        except (OSError, ValueError):
            return None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def container_pids(self) -> List[int]:
        return sorted(p for p, c in _tagged_processes(self.tag).items() if "schnitzel_container" in c)

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(_cli(*args), env=self.env, capture_output=True, text=True, timeout=timeout,
                              cwd=self.dir)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in _tagged_processes(self.tag):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def graph_factory(tmp_path):
    made: List[Graph] = []
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")

    def make(text: str, name: str, run_args: Sequence[str] = ()) -> Graph:
        g = Graph(tmp_path, env, text, name, run_args)
        made.append(g)
        return g

    yield make
    for g in made:
        g.stop()


def _step_time_ns(stdout: str, step: str) -> int:
    """UTC timestamp of the first reported step named ``step`` (ReplaceNode.steps)."""
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[1] == step:
            t = dt.datetime.strptime(parts[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
            return int(t.timestamp() * 1e9)
    raise AssertionError(f"no step {step!r} in:\n{stdout}")


def _graph(name: str, policy: str, rate: float = 100.0, sinks: str = "out", extra_nodes: str = "",
           extra_edges: str = "", container: str = "{id: main}") -> str:
    return f"""
schnitzel: 1
name: {name}
containers: [{container}]
nodes:
  - id: counter
    plugin: synthetic_source
    params: {{mode: counter, rate_hz: {rate}, stream_id: counter}}
{policy}
  - id: queue
    plugin: durable_queue
    params: {{path: "${{env:HOT_SWAP_DIR}}/queue.db", sinks: [{sinks}]}}
  - id: out
    plugin: jsonl_sink
    params: {{path: "${{env:HOT_SWAP_DIR}}/out.jsonl", fsync: never}}
{extra_nodes}
edges:
  - {{from: counter.out, to: policy.in}}
  - {{from: policy.out, to: queue.in}}
  - {{from: queue.out, to: out.in}}
{extra_edges}
"""


RULES_V1 = """  - id: policy
    plugin: rules
    params:
      rules: [{when: "payload.n >= 0", action: emit, set_meta: {policy: v1}}]
      default: drop"""


def _assert_no_gap_and_same_keys(records: List[dict]) -> int:
    seqs = [r["seq"] for r in records]
    assert seqs, "nothing reached the sink"
    missing = sorted(set(range(min(seqs), max(seqs) + 1)) - set(seqs))
    assert missing == [], f"sequence numbers missing downstream: {missing[:20]}"
    keys: Dict[int, set] = {}
    for r in records:
        keys.setdefault(r["seq"], set()).add(r["idempotency_key"])
    assert all(len(k) == 1 for k in keys.values()), "a duplicate carries another idempotency key"
    return len(seqs) - len(set(seqs))


# ---------------------------------------------------------------- tests
def test_policy_replaced_at_100_per_second_keeps_the_container_and_misses_nothing(graph_factory):
    g = graph_factory(_graph("hs_policy", RULES_V1), "hs_policy")
    g.start()
    out = g.dir / "out.jsonl"
    assert wait_for(lambda: len(_lines(out)) >= 100, 30), g.output()
    pids_before = g.container_pids()
    assert len(pids_before) == 1
    res = g.cli("replace", "hs_policy", "policy", "--plugin", "map", "--params", 'constants={"policy": "v2"}')
    assert res.returncode == 0, res.stdout + res.stderr
    command_at = _step_time_ns(res.stdout, "load")
    assert wait_for(lambda: any(r["payload"].get("policy") == "v2" for r in _lines(out)), 10), g.output()
    time.sleep(1.0)
    assert g.container_pids() == pids_before, "a container was restarted"
    g.stop()
    records = _lines(out)
    dups = _assert_no_gap_and_same_keys(records)
    first_v2 = min(r["stamp_ns"] for r in records if r["payload"].get("policy") == "v2")
    assert first_v2 - command_at <= 1e9, f"new behaviour after {(first_v2 - command_at) / 1e9:.2f} s"
    old = [r for r in records if r["meta"].get("policy") == "v1"]
    new = [r for r in records if r["payload"].get("policy") == "v2"]
    assert old and new and max(r["seq"] for r in old) >= min(r["seq"] for r in new) - 1
    print(f"replaced in place; {dups} duplicate(s) with the same key; {len(records)} records")


def test_a_recorded_run_is_replaced_in_place_and_the_recording_goes_on(graph_factory):
    """`schnitzel run --record`: the replacement is compiled the way the recorded plan was (ports
    exposed on DDS, recorder edges), so it is accepted, and what the new node sends is recorded."""
    from schnitzel_core import recording as rec

    g = graph_factory(_graph("hs_rec", RULES_V1, rate=50.0), "hs_rec")
    mcap = g.dir / "run.mcap"
    g.run_args = ["--record", str(mcap)]
    g.start()
    out = g.dir / "out.jsonl"
    assert wait_for(lambda: len(_lines(out)) >= 50, 30), g.output()
    res = g.cli("replace", "hs_rec", "policy", "--plugin", "map", "--params", 'constants={"policy": "v2"}')
    assert res.returncode == 0, res.stdout + res.stderr
    assert wait_for(lambda: any(r["payload"].get("policy") == "v2" for r in _lines(out)), 10), g.output()
    time.sleep(0.5)
    g.stop()
    _assert_no_gap_and_same_keys(_lines(out))
    recorded = [rec.decode_packet(m.data) for m in rec.read_messages(str(mcap), ["/hs_rec/policy/out"])]
    assert any(p.meta.get("policy") == "v1" for p in recorded)
    assert any(p.json().get("policy") == "v2" for p in recorded), "the replacement's output was not recorded"


def test_replacement_whose_configure_raises_rolls_back_and_loses_nothing(graph_factory):
    g = graph_factory(_graph("hs_fail", RULES_V1, rate=50.0), "hs_fail")
    g.start()
    out = g.dir / "out.jsonl"
    assert wait_for(lambda: len(_lines(out)) >= 20, 30), g.output()
    pids = g.container_pids()
    # map's configure raises: a field's source must be a path (text), not a number
    res = g.cli("replace", "hs_fail", "policy", "--plugin", "map", "--params", 'fields={"x": 5}')
    assert res.returncode == 1, res.stdout + res.stderr
    assert "failed to configure" in res.stderr and "ConfigError" in res.stderr, res.stderr
    n = len(_lines(out))
    assert wait_for(lambda: len(_lines(out)) >= n + 20, 15), "the old node stopped serving"
    assert g.container_pids() == pids
    g.stop()
    records = _lines(out)
    _assert_no_gap_and_same_keys(records)
    assert all(r["meta"].get("policy") == "v1" for r in records)   # the old node served throughout


def test_live_value_the_node_refuses_is_refused_by_replace_and_changes_nothing(graph_factory):
    """`schnitzel replace … k=v` takes the live path (set in place); a value the plugin's check
    refuses (a rule expression that does not parse) is refused before anything changes."""
    g = graph_factory(_graph("hs_refuse", RULES_V1, rate=50.0), "hs_refuse")
    g.start()
    out = g.dir / "out.jsonl"
    assert wait_for(lambda: len(_lines(out)) >= 20, 30), g.output()
    res = g.cli("replace", "hs_refuse", "policy", "--params", 'rules=[{"when": "payload.n >>> 0", "action": "emit"}]')
    assert res.returncode == 1, res.stdout + res.stderr
    assert "refused" in res.stderr and "syntax error" in res.stderr, res.stderr
    assert "in place" not in res.stdout, res.stdout
    n = len(_lines(out))
    assert wait_for(lambda: len(_lines(out)) >= n + 20, 15), "the node stopped serving"
    node = g.status()["nodes"]["policy"]
    assert node["errors"] == 0 and node["state"] == "active", node     # the node never saw the value
    # the manager still holds the old rules: a valid live change goes through from there
    res = g.cli("replace", "hs_refuse", "policy", "--params",
                'rules=[{"when": "payload.n >= 0", "action": "emit", "set_meta": {"policy": "v3"}}]')
    assert res.returncode == 0 and "in place" in res.stdout, res.stdout + res.stderr
    assert wait_for(lambda: any(r["meta"].get("policy") == "v3" for r in _lines(out)), 10), g.output()
    g.stop()
    _assert_no_gap_and_same_keys(_lines(out))


def test_apply_invalid_graph_changes_nothing(graph_factory):
    g = graph_factory(_graph("hs_invalid", RULES_V1, rate=20.0), "hs_invalid")
    g.start()
    out = g.dir / "out.jsonl"
    assert wait_for(lambda: len(_lines(out)) >= 5, 30), g.output()
    before = g.status()["nodes"]
    bad = g.dir / "bad.yaml"
    bad.write_text(g.file.read_text().replace("plugin: rules", "plugin: no_such_plugin"))
    res = g.cli("apply", "hs_invalid", str(bad))
    assert res.returncode == 1 and "SCH301" in res.stderr and "nothing was changed" in res.stderr, res.stderr
    n = len(_lines(out))
    assert wait_for(lambda: len(_lines(out)) >= n + 10, 15), "the graph stopped after a refused apply"
    assert sorted(g.status()["nodes"]) == sorted(before)


def test_apply_adds_a_sink_and_removes_another_and_the_rest_keeps_its_rate(graph_factory):
    # an extra delivery branch policy -> queue_a -> out_a becomes policy -> queue_b -> out_b
    extra = """  - id: queue_a
    plugin: durable_queue
    params: {path: "${env:HOT_SWAP_DIR}/a.db", sinks: [out_a]}
  - id: out_a
    plugin: jsonl_sink
    params: {path: "${env:HOT_SWAP_DIR}/a.jsonl", fsync: never}"""
    edges = """  - {from: policy.out, to: queue_a.in}
  - {from: queue_a.out, to: out_a.in}"""
    text = _graph("hs_apply", RULES_V1, rate=50.0, extra_nodes=extra, extra_edges=edges)
    g = graph_factory(text, "hs_apply")
    g.start()
    out = g.dir / "out.jsonl"
    assert wait_for(lambda: len(_lines(out)) >= 50 and len(_lines(g.dir / "a.jsonl")) >= 10, 30), g.output()
    new = g.dir / "hs_apply_v2.yaml"
    v2 = text
    for a, b in (("queue_a", "queue_b"), ("out_a", "out_b"), ("/a.db", "/b.db"), ("/a.jsonl", "/b.jsonl")):
        v2 = v2.replace(a, b)
    new.write_text(v2)
    pids = g.container_pids()
    t0 = time.time_ns()
    res = g.cli("apply", "hs_apply", str(new))
    assert res.returncode == 0, res.stdout + res.stderr
    for change in ("add node out_b", "add node queue_b", "remove node out_a", "remove node queue_a"):
        assert change in res.stdout, res.stdout
    assert wait_for(lambda: len(_lines(g.dir / "b.jsonl")) >= 20, 15), g.output()
    t1 = time.time_ns()
    a_after = len(_lines(g.dir / "a.jsonl"))
    time.sleep(1.0)
    assert len(_lines(g.dir / "a.jsonl")) == a_after, "the removed sink still receives packets"
    assert g.container_pids() == pids
    g.stop()
    records = _lines(out)
    _assert_no_gap_and_same_keys(records)
    # the untouched branch kept its rate while the graph changed: no 1 s window during the
    # apply with fewer than half the expected packets
    stamps = sorted(r["stamp_ns"] for r in records if t0 - 1e9 <= r["stamp_ns"] <= t1)
    for start in range(t0, t1 - int(1e9), int(2.5e8)):
        n = sum(1 for st in stamps if start <= st < start + 1e9)
        assert n >= 25, f"only {n} packets in the second from {start} (50/s expected)"


def test_stateful_dedup_replaced_mid_stream_keeps_its_state(graph_factory):
    dedup = """  - id: policy
    plugin: dedup
    params: {key_fields: [stream_id], cooldown_s: 600, max_keys: 1000}"""
    g = graph_factory(_graph("hs_state", dedup, rate=50.0), "hs_state")
    g.start()
    out = g.dir / "out.jsonl"
    assert wait_for(lambda: len(_lines(out)) >= 1, 30), g.output()
    time.sleep(1.0)
    assert len(_lines(out)) == 1          # one key: everything after the first is suppressed
    # max_keys is not live: this is a real replacement, state must travel old -> blackboard -> new
    res = g.cli("replace", "hs_state", "policy", "--params", "max_keys=2000")
    assert res.returncode == 0, res.stdout + res.stderr
    assert " activate " in res.stdout and " unload " in res.stdout, res.stdout
    time.sleep(2.0)
    g.stop()
    assert len(_lines(out)) == 1, "the new node emitted an event the old one had already suppressed"


def test_a_container_restarted_after_a_replacement_gets_the_current_graph(graph_factory):
    g = graph_factory(_graph("hs_restart", RULES_V1, rate=50.0, container="{id: main, restart_backoff_s: 0.2}"),
                      "hs_restart")
    g.start()
    out = g.dir / "out.jsonl"
    assert wait_for(lambda: len(_lines(out)) >= 20, 30), g.output()
    res = g.cli("replace", "hs_restart", "policy", "--plugin", "map", "--params", 'constants={"policy": "v2"}')
    assert res.returncode == 0, res.stdout + res.stderr
    assert wait_for(lambda: any(r["payload"].get("policy") == "v2" for r in _lines(out)), 10), g.output()
    assert g.status()["nodes"]["policy"]["plugin"] == "map"
    [pid] = g.container_pids()
    killed_at = time.time_ns()
    os.kill(pid, signal.SIGKILL)
    # the runner starts the container again; the manager loads the graph as it is now (map, v2)
    assert wait_for(lambda: len([r for r in _lines(out) if r["stamp_ns"] > killed_at]) >= 20, 40), g.output()
    assert g.container_pids() != [pid]
    after = [r for r in _lines(out) if r["stamp_ns"] > killed_at]
    assert all(r["payload"].get("policy") == "v2" and "policy" not in r["meta"] for r in after), after[:3]
    # the next change starts from the node loaded after the restart
    res = g.cli("replace", "hs_restart", "policy", "--params", 'constants={"policy": "v3"}')
    assert res.returncode == 0, res.stdout + res.stderr
    assert wait_for(lambda: any(r["payload"].get("policy") == "v3" for r in _lines(out)), 10), g.output()
