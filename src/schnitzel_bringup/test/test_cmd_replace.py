"""`schnitzel replace` / `schnitzel apply`: argument handling and refusals that need no manager."""
import os
import subprocess
import sys
import textwrap

import pytest

from schnitzel_bringup.cmd_replace import CliError, parse_param_args, resolve_graph

GRAPH = textwrap.dedent("""
    schnitzel: 1
    name: cmdtest
    nodes:
      - id: src
        plugin: synthetic_source
        params: {mode: counter, rate_hz: 5}
      - id: policy
        plugin: rules
      - id: out
        plugin: stdout_sink
    edges:
      - {from: src.out, to: policy.in}
      - {from: policy.out, to: out.in}
""")


def _cli(*args, cwd=None):
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    return subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=cwd)


def test_params_from_key_values_and_files_later_wins(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("rules: []\ndefault: drop\n")
    assert parse_param_args([str(f), "default=emit", "n=3", 'd={"a": [1, 2]}', "s=hello world"]) == {
        "rules": [], "default": "emit", "n": 3, "d": {"a": [1, 2]}, "s": "hello world"}
    assert parse_param_args([]) is None


@pytest.mark.parametrize("arg,msg", [("=3", "the key before '=' is empty"),
                                     ("missing.yaml", "neither a file nor key=value")])
def test_bad_params_are_refused_clearly(arg, msg):
    with pytest.raises(CliError, match=msg) as e:
        parse_param_args([arg])
    assert e.value.code == 2


def test_a_params_file_must_hold_a_mapping(tmp_path):
    f = tmp_path / "list.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(CliError, match="must hold a mapping"):
        parse_param_args([str(f)])


def test_graph_argument_is_a_name_or_a_file(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text(GRAPH)
    name, g = resolve_graph(str(f))
    assert name == "cmdtest" and g.node("policy").plugin == "rules"
    assert resolve_graph("lobby") == ("lobby", None)
    with pytest.raises(CliError, match="neither a graph file nor a graph name"):
        resolve_graph("no/such/file.yaml")


def test_apply_with_an_invalid_graph_exits_1_with_the_validators_errors_and_sends_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(GRAPH.replace("plugin: rules", "plugin: rulez"))
    res = _cli("apply", "cmdtest", str(bad), "--wait", "0.1")
    assert res.returncode == 1
    assert "SCH301" in res.stderr and "rulez" in res.stderr and "nothing was changed" in res.stderr
    assert "no lifecycle manager" not in res.stderr     # refused before any service call
    assert "Traceback" not in res.stderr


def test_apply_dry_run_between_two_files_prints_the_difference_and_plan(tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text(GRAPH)
    new = tmp_path / "new.yaml"
    new.write_text(GRAPH.replace("plugin: stdout_sink", "plugin: stdout_sink\n    params: {prefix: '>'}"))
    res = _cli("apply", str(old), str(new), "--dry-run")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ['change node out: params.prefix: added = ">"',
                                       '  1. set params of out in place: prefix=">" (live parameters)']


def test_replace_refuses_an_invalid_change_locally_when_given_the_graph_file(tmp_path):
    f = tmp_path / "g.yaml"
    f.write_text(GRAPH)
    res = _cli("replace", str(f), "policy", "--params", "default=sometimes", "--wait", "0.1")
    assert res.returncode == 1 and "nothing was changed" in res.stderr and "default" in res.stderr
    res = _cli("replace", str(f), "nope", "--wait", "0.1")
    assert res.returncode == 2 and "has no node 'nope'" in res.stderr


def test_replace_without_a_running_manager_exits_3(tmp_path):
    res = _cli("replace", f"nobody_{os.getpid()}", "policy", "--plugin", "map", "--wait", "0.5")
    assert res.returncode == 3, res.stderr
    assert "no lifecycle manager answers on" in res.stderr and "Traceback" not in res.stderr
