"""`schnitzel draft --from RUNNING.yaml --yes` changes a running graph: the one end-to-end run.

A scripted fake model (src/schnitzel_bringup/test/fake_llm.py) answers with a new version that
adds a delivery branch; draft validates it, shows the diff and hands it to `schnitzel apply`,
and the new sink starts receiving while the graph keeps running.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from schnitzel_core.testing import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src" / "schnitzel_bringup" / "test"))
from fake_llm import FakeLLM, answer  # noqa: E402

V1 = {
    "schnitzel": 1, "name": "draft_live",
    "nodes": [
        {"id": "counter", "plugin": "synthetic_source", "params": {"mode": "counter", "rate_hz": 20}},
        {"id": "queue", "plugin": "durable_queue", "params": {"path": "${env:DRAFT_DIR}/q.db", "sinks": ["out"]}},
        {"id": "out", "plugin": "jsonl_sink", "params": {"path": "${env:DRAFT_DIR}/out.jsonl", "fsync": "never"}},
    ],
    "edges": [{"from": "counter.out", "to": "queue.in"}, {"from": "queue.out", "to": "out.in"}],
}
V2 = json.loads(json.dumps(V1))
V2["nodes"] += [
    {"id": "queue_b", "plugin": "durable_queue", "params": {"path": "${env:DRAFT_DIR}/b.db", "sinks": ["out_b"]}},
    {"id": "out_b", "plugin": "jsonl_sink", "params": {"path": "${env:DRAFT_DIR}/b.jsonl", "fsync": "never"}},
]
V2["edges"] += [{"from": "counter.out", "to": "queue_b.in"}, {"from": "queue_b.out", "to": "out_b.in"}]
TESTS = {"schnitzel_test": 1, "cases": [{"name": "every count reaches the second file",
                                         "inputs": [{"at": "queue_b.in", "packets": [{"kind": "count"}]}],
                                         "expect": [{"at": "queue_b.out", "count": 1}]}]}


def _lines(path):
    try:
        return path.read_text().splitlines()
    except OSError:
        return []


def test_draft_from_a_running_graph_with_yes_applies_the_new_version(tmp_path, spawn, ros_env):
    env = dict(ros_env, DRAFT_DIR=str(tmp_path))
    cur = tmp_path / "draft_live.yaml"
    cur.write_text(yaml.safe_dump(V1, sort_keys=False))
    run_dir = tmp_path / "run"
    runner = spawn([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(cur), "--run-dir", str(run_dir),
                    "--quiet"], env=env)

    def active():
        try:
            return json.loads((run_dir / "status.json").read_text()).get("state") == "active"
        except (OSError, ValueError):
            return False

    assert wait_for(active, 120), spawn.output(runner)[-3000:]
    assert wait_for(lambda: len(_lines(tmp_path / "out.jsonl")) >= 5, 30), spawn.output(runner)[-3000:]
    with FakeLLM([answer(V2, "Counts and writes every count to two files.", TESTS)]) as srv:
        res = subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", "draft", "also write every count to a "
                              "second file", "--from", str(cur), "--base-url", srv.base_url, "--model", "m", "--yes"],
                             env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "add node out_b" in res.stdout and "applied: the running graph is now" in res.stdout
    assert (tmp_path / "draft_live.draft.yaml").is_file()
    assert wait_for(lambda: len(_lines(tmp_path / "b.jsonl")) >= 5, 30), spawn.output(runner)[-3000:]
    n = len(_lines(tmp_path / "out.jsonl"))
    assert wait_for(lambda: len(_lines(tmp_path / "out.jsonl")) >= n + 5, 15), "the first branch stopped"
    assert runner.poll() is None
