"""`schnitzel compile GRAPH -o DIR` with the installed plugins."""
import ast
import json

import pytest

pytest.importorskip("schnitzel_validator")

from schnitzel_bringup.cli import main  # noqa: E402

GOOD = """\
schnitzel: 1
name: cli_demo
containers: [{id: a}, {id: b, restart: never}]
nodes:
  - {id: src, plugin: synthetic_source, container: a, params: {mode: counter, rate_hz: 5}}
  - {id: smp, plugin: sampler, container: b, params: {n: 2}}
  - {id: show, plugin: stdout_sink, container: b}
edges:
  - {from: src.out, to: smp.in}
  - {from: smp.out, to: show.in}
"""


def test_compile_writes_plan_and_launch_file(tmp_path, capsys):
    g = tmp_path / "demo.yaml"
    g.write_text(GOOD)
    assert main(["compile", str(g), "-o", str(tmp_path / "out")]) == 0
    plan = json.loads((tmp_path / "out" / "cli_demo.plan.json").read_text())
    launch = (tmp_path / "out" / "cli_demo.launch.py").read_text()
    ast.parse(launch)
    assert "cli_demo.plan.json" in launch
    assert plan["start_order"] == ["show", "smp", "src"]
    assert {e["src"]: e["transport"] for e in plan["edges"]} == {"src.out": "dds", "smp.out": "inproc"}
    assert plan["nodes"][1]["params"]["n"] == 2
    assert plan["nodes"][0]["package"] == "schnitzel_nodes"
    assert "ros2 launch" in capsys.readouterr().out


def test_compile_invalid_graph_writes_nothing(tmp_path, capsys):
    g = tmp_path / "bad.yaml"
    g.write_text(GOOD.replace("plugin: sampler", "plugin: samplr"))
    assert main(["compile", str(g), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "samplr" in err and "nothing was written" in err
    assert not (tmp_path / "out").exists()


def test_compile_missing_file(tmp_path, capsys):
    assert main(["compile", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
