"""The graph's ``runtime:`` settings (docs/runtime.md, "Settings"): validated with the file, line and
fix, compiled into the plan (health thresholds) and the containers' command line (the blackboard)."""
import pytest
from schnitzel_core.graph_loader import GraphLoadError, load_graph, parse_graph
from schnitzel_core.registry import Registry

from schnitzel_bringup.compiler import compile_graph

from _plugins import ALL
from test_compiler import ONE

REG = Registry.from_classes(ALL)


def _plan(text, file="g.yaml"):
    return compile_graph(load_graph(text, file=file), REG)


def test_defaults_and_given_values_reach_the_plan():
    plan = _plan(ONE)
    assert plan.runtime == {"source_grace_s": 5.0, "source_grace": {}, "delivery_stall_s": 5.0,
                            "state_backend": "memory", "state_path": "", "metrics_port": 0,
                            "metrics_host": "127.0.0.1", "ui_port": 0, "ui_host": "127.0.0.1"}
    assert plan.containers[0].arguments == ["--graph", "lobby", "--container", "main"]
    plan = _plan(ONE + "runtime: {source_grace_s: 8, source_grace: {src: 30}, delivery_stall_s: 2.5}\n")
    assert plan.source_grace_s("src") == 30.0 and plan.source_grace_s("map") == 8.0
    assert plan.delivery_stall_s == 2.5
    plan = _plan(ONE + "runtime: {metrics_port: 9464}\n")
    assert plan.runtime["metrics_port"] == 9464 and plan.runtime["metrics_host"] == "127.0.0.1"


def test_state_backend_is_a_graph_setting_every_container_gets(tmp_path):
    g = tmp_path / "g.yaml"
    g.write_text(ONE + "runtime:\n  state_backend: sqlite\n  state_path: state/board.db\n")
    plan = compile_graph(load_graph(g), REG)
    want = str(tmp_path / "state" / "board.db")        # relative to the graph file
    assert plan.containers[0].arguments[-4:] == ["--state-backend", "sqlite", "--state-path", want]
    assert plan.runtime["state_backend"] == "sqlite" and plan.runtime["state_path"] == want


@pytest.mark.parametrize("runtime, code, below, words", [
    ("runtime: {source_grace: 5}", "SCH104", 0, "runtime.source_grace must be a mapping"),
    ("runtime: {source_grace_s: -1}", "SCH106", 0, "runtime.source_grace_s must be a number of seconds >= 0"),
    ("runtime: {delivery_stall: 5}", "SCH103", 0, "unknown key 'delivery_stall' in runtime"),
    ("runtime:\n  source_grace: {cam: 3}", "SCH106", 1, "runtime.source_grace names node 'cam'"),
    ("runtime:\n  state_backend: redis", "SCH106", 1, "'redis' is not an installed state backend"),
    ("runtime:\n  state_backend: sqlite", "SCH102", 1, "needs runtime.state_path"),
    ("runtime:\n  metrics_port: 70000", "SCH106", 1, "runtime.metrics_port must be a TCP port 0-65535"),
    ("runtime:\n  metrics_port: http", "SCH104", 1, "runtime.metrics_port must be a TCP port 0-65535"),
    ("runtime:\n  ui_port: -1", "SCH106", 1, "runtime.ui_port must be a TCP port 0-65535"),
])
def test_bad_runtime_settings_name_the_file_the_line_and_the_fix(runtime, code, below, words):
    line = ONE.count("\n") + 1 + below            # the `runtime:` line, or the one below it
    graph, issues = parse_graph(ONE + runtime + "\n", file="g.yaml")
    errors = [i for i in issues if i.code == code]
    assert errors, issues
    e = errors[0]
    assert words in e.message and e.file == "g.yaml" and e.line == line and e.hint, e
    with pytest.raises(GraphLoadError):
        load_graph(ONE + runtime + "\n", file="g.yaml")
