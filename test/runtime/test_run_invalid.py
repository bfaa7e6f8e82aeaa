"""`schnitzel run` of an invalid graph: exit 1, the validator's errors, and no process started."""
import os
import stat
import subprocess
import time

from rt_helpers import schnitzel_cmd

BAD = """\
schnitzel: 1
name: broken
nodes:
  - id: src
    plugin: synthetic_source
    params: {mode: counter, rate_hz: 5}
  - id: sink
    plugin: no_such_plugin_sz
edges:
  - {from: src.out, to: sink.in}
"""


def _shim(bin_dir, name, record):
    # Stands in front of the real executable on PATH and records that it was started.
    path = bin_dir / name
    path.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {record}\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_invalid_graph_exits_1_with_errors_and_starts_nothing(tmp_path, tagged):
    graph = tmp_path / "broken.yaml"
    graph.write_text(BAD)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "started.txt"
    for exe in ("schnitzel_container", "schnitzel_manager"):
        _shim(bin_dir, exe, record)
    env = dict(tagged.env)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(schnitzel_cmd("run", str(graph), "--run-dir", str(run_dir), "--duration", "5"),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = set()
    while proc.poll() is None:  # watch the process table while it runs
        for pid, cmd in tagged.processes().items():
            if pid != proc.pid:
                seen.add(cmd)
        time.sleep(0.02)
    out, err = proc.communicate()
    assert proc.returncode == 1, (out, err)
    assert "SCH301" in err and "no_such_plugin_sz" in err and f"{graph}:8:" in err
    assert "nothing was started" in err
    assert "Traceback" not in err
    assert not record.exists(), record.read_text()
    assert not [c for c in seen if "schnitzel_container" in c or "manager" in c], seen
    assert not run_dir.exists()
    assert tagged.processes() == {}


def test_missing_graph_file_is_a_clear_usage_error(tmp_path, tagged):
    res = subprocess.run(schnitzel_cmd("run", str(tmp_path / "nope.yaml")), env=tagged.env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2
    assert "does not exist" in res.stderr and "Traceback" not in res.stderr
