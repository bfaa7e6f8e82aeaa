"""`schnitzel draft --synthesize` and `schnitzel plugins prune`: model-written plugins are staged, their
spec read and their unit test run in subprocesses with a time limit, and registered only after the
test passes and a person approves. The fake model server is fake_llm.py; no DDS."""
import copy
import io
import json
import os
import subprocess
import sys

import pytest
import yaml

from schnitzel_bringup.cli import main
from schnitzel_bringup.synth import load_records, write_records

sys.path.insert(0, os.path.dirname(__file__))
from fake_llm import FakeLLM  # noqa: E402

MODULE = '''
from schnitzel_core.plugin import NodeLogic, PluginSpec, Category, In, Out, Param
from schnitzel_core.packet import Packet


class Scale(NodeLogic):
    spec = PluginSpec(name="scale_value", category=Category.TRANSFORM, version="0.1.0",
                      ports=(In("in", ("*",)), Out("out", ("*",))),
                      params=(Param("factor", "number", 2.0, description="multiplier"),),
                      description="multiplies payload.value by factor")

    def on_packet(self, port, packet):
        v = packet.json()
        v["value"] = v["value"] * self.params["factor"]
        self.emit("out", Packet.from_json(packet.stream_id, packet.seq, packet.kind, v))
'''
TEST = '''
from schnitzel_core.packet import Packet
from schnitzel_core.testing import LogicHarness
from schnitzel_synth_scale_value import Scale


def test_scales():
    h = LogicHarness(Scale, {"factor": 3})
    out = h.send("in", Packet.from_json("s", 1, "reading", {"value": 2}))
    assert out[0].json() == {"value": 6}
'''
GRAPH = {
    "schnitzel": 1, "name": "scaled",
    "nodes": [
        {"id": "src", "plugin": "synthetic_source", "params": {"mode": "counter", "rate_hz": 5}},
        {"id": "scale", "plugin": "scale_value", "params": {"factor": 3}},
        {"id": "out", "plugin": "stdout_sink"},
    ],
    "edges": [{"from": "src.out", "to": "scale.in"}, {"from": "scale.out", "to": "out.in"}],
}
TESTS = {"schnitzel_test": 1, "cases": [{
    "name": "values are tripled",
    "inputs": [{"at": "scale.in", "packets": [{"kind": "reading", "payload": {"value": 2}}]}],
    "expect": [{"at": "scale.out", "count": 1, "packets": [{"payload.value": 6}]}]}]}


def reply(module=MODULE, test=TEST, graph=GRAPH):
    return {"content": json.dumps({"graph": graph, "summary": "triples values", "tests": TESTS,
                                   "plugins": [{"name": "scale_value", "module": module, "test": test}]})}


@pytest.fixture
def root(tmp_path, monkeypatch):
    for k in ("SCHNITZEL_LLM_BASE_URL", "SCHNITZEL_LLM_MODEL", "SCHNITZEL_LLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    r = (tmp_path / "plugins").resolve()
    monkeypatch.setenv("SCHNITZEL_PLUGIN_DIR", str(r))
    # on sys.path already: registering must not write a .pth into this environment's site-packages
    monkeypatch.syspath_prepend(str(r))
    return r


def draft(capsys, monkeypatch, url, out, *extra, stdin=""):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(["draft", "triple every value", "-o", str(out), "--base-url", url, "--model", "m", "--synthesize",
                 *extra])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def repair_text(req):
    return [m for m in req["body"]["messages"] if m["role"] == "user"][-1]["content"]


def test_a_synthesized_plugin_is_registered_only_after_its_test_passes_and_approval(root, tmp_path, capsys,
                                                                                     monkeypatch):
    out = tmp_path / "scaled.yaml"
    failing = TEST.replace('{"value": 6}', '{"value": 7}')
    script = [reply(module="def broken(:\n"), reply(test=failing),
              reply(module=MODULE.replace('version="0.1.0",', 'version="0.1.0", api_version="9.0.0",')), reply()]
    with FakeLLM(script) as srv:
        code, stdout, stderr = draft(capsys, monkeypatch, srv.base_url, out, stdin="y\n")
    assert code == 0, stderr
    first = srv.requests[0]["body"]
    assert "schnitzel_synth_NAME.py" in first["messages"][0]["content"]
    assert "plugins" in first["response_format"]["json_schema"]["schema"]["properties"]
    # round 1: the module does not import; round 2: its test fails; round 3: a plugin API this
    # runtime does not implement -- each went back to the model
    assert "DRAFT401 (plugins): plugin scale_value: the module cannot be loaded" in repair_text(srv.requests[1])
    assert "SyntaxError" in repair_text(srv.requests[1])
    r2 = repair_text(srv.requests[2])
    assert "DRAFT402 (plugins): plugin scale_value: its test failed" in r2 and "assert" in r2
    assert "DRAFT401 (plugins): plugin scale_value: api_version '9.0.0' cannot run here" in repair_text(srv.requests[3])
    assert "Register plugin scale_value" in stdout and "registered plugin scale_value" in stdout
    assert (root / "schnitzel_synth_scale_value.py").read_text() == MODULE
    assert (root / "tests" / "test_schnitzel_synth_scale_value.py").read_text() == TEST
    eps = (root / "schnitzel_synthesized-0.0.0.dist-info" / "entry_points.txt").read_text()
    assert "scale_value = schnitzel_synth_scale_value:Scale" in eps
    rec = load_records(root)["scale_value"]
    assert rec["request"] == "triple every value" and rec["class"] == "Scale"
    assert not (root / ".pending").exists()
    # another process with the plugin folder on its path finds the plugin and validates the graph with it
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", "validate", str(out)],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stdout + res.stderr


def test_a_plugin_that_is_not_approved_registers_and_writes_nothing(root, tmp_path, capsys, monkeypatch):
    out = tmp_path / "scaled.yaml"
    with FakeLLM([reply()]) as srv:
        code, stdout, stderr = draft(capsys, monkeypatch, srv.base_url, out, stdin="n\n")
    assert code == 1
    assert "plugin scale_value was not approved; nothing was written or registered" in stderr
    assert not out.exists() and not (tmp_path / "scaled.test.yaml").exists()
    assert not root.exists() or sorted(p.name for p in root.iterdir()) == []


def test_a_test_that_hangs_is_stopped_at_the_time_limit(root, tmp_path, capsys, monkeypatch):
    hang = "import time\n\n\ndef test_hang():\n    time.sleep(120)\n"
    with FakeLLM([reply(test=hang)]) as srv:
        code, _, stderr = draft(capsys, monkeypatch, srv.base_url, tmp_path / "g.yaml", "--rounds", "0",
                                "--synth-timeout", "3", stdin="y\n")
    assert code == 1
    assert "DRAFT403" in stderr and "its test did not finish within 3 s" in stderr
    assert not (tmp_path / "g.yaml").exists() and load_records(root) == {}
    assert not (root / ".pending").exists()


def test_without_the_flag_a_new_plugin_is_only_an_unknown_plugin(root, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    with FakeLLM([reply()]) as srv:
        code = main(["draft", "x", "-o", str(tmp_path / "g.yaml"), "--base-url", srv.base_url, "--model", "m",
                     "--rounds", "0"])
    err = capsys.readouterr().err
    assert code == 1 and "SCH301" in err and "scale_value" in err
    assert "schnitzel_synth" not in srv.requests[0]["body"]["messages"][0]["content"]
    assert not root.exists()


def test_prune_lists_synthesized_plugins_and_removes_the_unused_ones(root, tmp_path, capsys, monkeypatch):
    root.mkdir(parents=True)
    (root / "tests").mkdir()
    records = {}
    for name in ("kept_one", "old_one"):
        (root / f"schnitzel_synth_{name}.py").write_text("# module\n")
        (root / "tests" / f"test_schnitzel_synth_{name}.py").write_text("# test\n")
        records[name] = {"module": f"schnitzel_synth_{name}", "class": "X", "file": f"schnitzel_synth_{name}.py",
                         "test": f"tests/test_schnitzel_synth_{name}.py", "created": "2026-12-07T05:00:00+00:00"}
    write_records(root, records)
    graphs = tmp_path / "graphs"
    (graphs / "sub").mkdir(parents=True)
    g = copy.deepcopy(GRAPH)
    g["nodes"][1]["plugin"] = "kept_one"
    (graphs / "sub" / "uses.yaml").write_text(yaml.safe_dump(g))
    (graphs / "notes.yaml").write_text("just: a list\n")
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code = main(["plugins", "prune", str(graphs)])
    stdout = capsys.readouterr().out
    assert code == 0
    assert f"kept_one (created 2026-12-07T05:00:00+00:00): used by {graphs / 'sub' / 'uses.yaml'}" in stdout
    assert "old_one (created 2026-12-07T05:00:00+00:00): unused" in stdout and "removed old_one" in stdout
    assert sorted(load_records(root)) == ["kept_one"]
    assert not (root / "schnitzel_synth_old_one.py").exists()
    assert not (root / "tests" / "test_schnitzel_synth_old_one.py").exists()
    eps = (root / "schnitzel_synthesized-0.0.0.dist-info" / "entry_points.txt").read_text()
    assert "kept_one" in eps and "old_one" not in eps
    # nothing unused now: nothing asked, nothing removed
    assert main(["plugins", "prune", str(graphs)]) == 0
    assert "nothing to prune" in capsys.readouterr().out
    assert main(["plugins", "prune", str(tmp_path / "missing")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_an_unwritable_plugin_folder_is_a_clear_error(root, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder\n")
    monkeypatch.setenv("SCHNITZEL_PLUGIN_DIR", str(blocker / "plugins"))
    with FakeLLM([reply()]) as srv:
        code, _, stderr = draft(capsys, monkeypatch, srv.base_url, tmp_path / "g.yaml")
    assert code == 2 and "cannot write to the plugin folder" in stderr and "SCHNITZEL_PLUGIN_DIR" in stderr
    assert "Traceback" not in stderr and not (tmp_path / "g.yaml").exists()
