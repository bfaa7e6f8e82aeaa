"""One owner per queue file (issue 20, defect 1): a second `schnitzel run` on a durable_queue
path that a running graph holds fails at bring-up with a message naming the file and the
holder's PID; it sends nothing (its source never starts, its sink file stays empty)."""
import os
import subprocess
import sys
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from _faults import graph_pids, stop_graph, wait_until  # noqa: E402

GRAPH = """\
schnitzel: 1
name: {name}
nodes:
  - {{id: src, plugin: synthetic_source, params: {{mode: counter, rate_hz: 20}}}}
  - {{id: q, plugin: durable_queue, params: {{path: {db}}}}}
  - {{id: out, plugin: jsonl_sink, params: {{path: {out}}}}}
edges:
  - {{from: src.out, to: q.in}}
  - {{from: q.out, to: out.in}}
"""


def test_second_run_on_the_same_queue_file_is_refused_and_sends_nothing(tmp_path, ros_env):
    db = tmp_path / "q.db"
    first, second = f"own_{uuid.uuid4().hex[:8]}", f"own_{uuid.uuid4().hex[:8]}"
    out1, out2 = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    (tmp_path / "first.yaml").write_text(GRAPH.format(name=first, db=db, out=out1))
    (tmp_path / "second.yaml").write_text(GRAPH.format(name=second, db=db, out=out2))
    log = open(tmp_path / "first.log", "wb")
    runner = subprocess.Popen([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(tmp_path / "first.yaml"),
                               "--quiet"], env=ros_env, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        assert wait_until(lambda: out1.exists() and out1.stat().st_size > 0, 90), \
            (tmp_path / "first.log").read_text(errors="replace")
        holder = graph_pids(first)
        res = subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", "run", str(tmp_path / "second.yaml"),
                              "--duration", "8", "--run-dir", str(tmp_path / "run2")],
                             env=ros_env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        text = res.stdout + res.stderr
        assert res.returncode != 0, text
        assert f"durable store {db} is in use by process" in text, text
        pid = int(text.split("is in use by process ")[1].split()[0])
        assert pid in holder, (pid, holder)
        assert "Traceback" not in text
        assert text.count("is in use by process") == 1, text   # told once
        logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "run2").rglob("*.log"))
        assert "is in use by process" in logs and "Traceback" not in logs   # the container's log: no traceback either
        assert not out2.exists() or out2.stat().st_size == 0   # nothing was sent
        assert runner.poll() is None   # the owner keeps running
    finally:
        stop_graph(runner, first)
        stop_graph(subprocess.Popen(["true"]), second)
