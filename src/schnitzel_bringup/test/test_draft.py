"""`schnitzel draft`: a scripted fake OpenAI-compatible server drives the validator-in-the-loop drafting.

No DDS here except the one `--from --yes` case that must reach `schnitzel apply` (and finds no
manager). The fake server (fake_llm.py) runs on 127.0.0.1 for the duration of each test.
"""
import copy
import io
import json
import os
import subprocess
import sys

import pytest
import yaml

from schnitzel_bringup.cli import main
from schnitzel_bringup.draft import check_tests, parse_answer
from schnitzel_core.registry import load_registry
from schnitzel_validator import validate_path, validate_text

sys.path.insert(0, os.path.dirname(__file__))
from fake_llm import FakeLLM, answer  # noqa: E402

KEY = "sk-test-Zq8vN3-never-show-me"

GOOD = {
    "schnitzel": 1, "name": "dock", "description": "count things",
    "nodes": [
        {"id": "src", "plugin": "synthetic_source", "params": {"mode": "counter", "rate_hz": 5}},
        {"id": "policy", "plugin": "rules"},
        {"id": "out", "plugin": "stdout_sink"},
    ],
    "edges": [{"from": "src.out", "to": "policy.in"}, {"from": "policy.out", "to": "out.in"}],
}
TESTS = {"schnitzel_test": 1, "cases": [{
    "name": "a packet passes the rules",
    "inputs": [{"at": "policy.in", "packets": [{"kind": "count", "payload": {"n": 1}}]}],
    "expect": [{"at": "policy.out", "count": 1, "packets": [{"kind": "count"}]}]}]}


def bad_plugin():          # SCH301: unknown plugin, with a did-you-mean hint
    g = copy.deepcopy(GOOD)
    g["nodes"][1]["plugin"] = "rulez"
    return g


def bad_port():            # an edge from a port rules does not have
    g = copy.deepcopy(GOOD)
    g["edges"][1]["from"] = "policy.result"
    return g


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for k in ("SCHNITZEL_LLM_BASE_URL", "SCHNITZEL_LLM_MODEL", "SCHNITZEL_LLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))


def run(capsys, *args):
    code = main(["draft", *args])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def last_user_message(req):
    return [m for m in req["body"]["messages"] if m["role"] == "user"][-1]["content"]


# ---------------------------------------------------------------- the happy path
def test_a_valid_graph_at_once_is_written_with_its_tests_and_a_summary(tmp_path, capsys):
    out = tmp_path / "dock.yaml"
    with FakeLLM([answer(GOOD, "Counts packets and prints them.", TESTS)]) as srv:
        code, stdout, stderr = run(capsys, "count things at the dock", "-o", str(out),
                                   "--base-url", srv.base_url, "--model", "fake-7b")
    assert code == 0, stderr
    assert len(srv.requests) == 1
    body = srv.requests[0]["body"]
    assert body["model"] == "fake-7b"
    # the prompt carries the catalogue: plugin names, ports with kinds, parameter JSON Schemas
    system = body["messages"][0]["content"]
    assert "- synthetic_source (source)" in system and '"rate_hz":{"type":"number"' in system
    assert "count things at the dock" in body["messages"][1]["content"]
    # constrained output: the answer schema restricts plugins to the installed ones
    rf = body["response_format"]
    assert rf["type"] == "json_schema"
    enum = rf["json_schema"]["schema"]["properties"]["graph"]["properties"]["nodes"]["items"]["properties"]["plugin"]["enum"]
    assert "rules" in enum and "rulez" not in enum
    assert validate_path(out).valid
    tests = yaml.safe_load((tmp_path / "dock.test.yaml").read_text())
    assert tests["schnitzel_test"] == 1 and tests["graph"] == "dock.yaml"
    assert tests["cases"][0]["expect"][0] == {"at": "policy.out", "count": 1, "packets": [{"kind": "count"}]}
    # the drafted tests are a `schnitzel test` file: its own parser accepts them
    from schnitzel_bringup.graphtest.spec import parse as parse_test_file
    assert [c.name for c in parse_test_file(tmp_path / "dock.test.yaml").cases] == ["a packet passes the rules"]
    assert "takes data from src (synthetic_source" in stdout and "delivers to out (stdout_sink" in stdout
    assert "Counts packets and prints them." in stdout
    assert "round 1: prompt" in stderr and "valid" in stderr


def test_an_invalid_graph_is_repaired_in_two_rounds_with_the_validators_errors_fed_back(tmp_path, capsys):
    out, log = tmp_path / "dock.yaml", tmp_path / "draft.jsonl"
    script = [answer(bad_plugin(), tests=TESTS), answer(bad_port(), tests=TESTS), answer(GOOD, tests=TESTS)]
    with FakeLLM(script) as srv:
        code, stdout, stderr = run(capsys, "count things", "-o", str(out), "--base-url", srv.base_url,
                                   "--model", "m", "--log", str(log))
    assert code == 0, stderr
    assert len(srv.requests) == 3
    first_errors = validate_text(parse_answer(json.dumps({"graph": bad_plugin()})).graph_text).errors
    sch301 = next(i for i in first_errors if i.code == "SCH301")
    repair1 = last_user_message(srv.requests[1])
    # code, line, message and hint of each error go back, with the numbered YAML they refer to
    assert f"SCH301 (graph line {sch301.line + 2})" in repair1   # +2: the header comment's lines
    assert "rulez" in repair1 and "hint:" in repair1
    assert f"{sch301.line + 2:>3}:     plugin: rulez" in repair1
    repair2 = last_user_message(srv.requests[2])
    assert "policy.result" in repair2
    rounds = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert [r["valid"] for r in rounds] == [False, False, True]
    assert rounds[0]["errors"][0]["code"] == "SCH301" and rounds[0]["errors"][0]["line"] == sch301.line + 2
    assert rounds[0]["prompt_chars"] < min(rounds[1]["prompt_chars"], rounds[2]["prompt_chars"])
    # each repair round carries the request, the last answer and its problems, not the whole history
    assert [m["role"] for m in srv.requests[2]["body"]["messages"]] == ["system", "user", "assistant", "user"]
    assert "rulez" not in json.dumps(srv.requests[2]["body"]["messages"])
    assert all(r["seconds"] >= 0 and r["prompt_tokens"] for r in rounds)
    assert validate_path(out).valid
    assert "round 2:" in stderr and "round 3:" in stderr


def test_a_model_that_never_converges_fails_clearly_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "dock.yaml"
    with FakeLLM([answer(bad_plugin(), tests=TESTS)]) as srv:
        code, stdout, stderr = run(capsys, "count things", "-o", str(out), "--base-url", srv.base_url,
                                   "--model", "m", "--rounds", "2")
    assert code == 1
    assert len(srv.requests) == 3                       # the first answer and 2 repair rounds
    assert "no valid graph after 3 answer(s)" in stderr and "nothing was written" in stderr
    assert "SCH301" in stderr and "rulez" in stderr     # the last errors
    assert list(tmp_path.iterdir()) == []
    assert "Traceback" not in stderr


def test_tests_that_name_a_missing_port_are_sent_back_too(tmp_path, capsys):
    bad_tests = copy.deepcopy(TESTS)
    bad_tests["cases"][0]["expect"][0]["at"] = "policy.in"    # an input port, not an output
    with FakeLLM([answer(GOOD, tests=bad_tests), answer(GOOD, tests=TESTS)]) as srv:
        code, _, stderr = run(capsys, "x", "-o", str(tmp_path / "g.yaml"), "--base-url", srv.base_url, "--model", "m")
    assert code == 0, stderr
    repair = last_user_message(srv.requests[1])
    assert "DRAFT201 (tests)" in repair and "no output port 'in'" in repair


def test_check_tests_names_each_problem():
    graph = validate_text(parse_answer(json.dumps({"graph": GOOD})).graph_text).graph
    reg = load_registry()
    assert check_tests(TESTS, graph, reg) == []
    bad = {"schnitzel_test": 2, "cases": [{"name": "c", "inputs": [{"at": "nope.in", "packets": [{"payload": 1}]}],
                                           "expect": [{"at": "out.in", "count": -1, "when": 3}]}]}
    msgs = [p.message for p in check_tests(bad, graph, reg)]
    assert any("schnitzel_test must be 1" in m for m in msgs)
    assert any("no node 'nope'" in m for m in msgs)
    assert any("packet 1 needs a kind" in m for m in msgs)
    assert any("stdout_sink node 'out' has no output port 'in'" in m for m in msgs)
    assert any("count must be an integer >= 0 or {min, max}" in m for m in msgs)
    assert any("unknown keys ['when']" in m for m in msgs)
    assert check_tests(None, graph, reg)[0].code == "DRAFT201"


# ---------------------------------------------------------------- a bad server
def test_a_malformed_server_answer_fails_clearly_and_writes_nothing(tmp_path, capsys):
    with FakeLLM([{"status": 200, "body": "<html>proxy error</html>"}]) as srv:
        code, _, stderr = run(capsys, "x", "-o", str(tmp_path / "g.yaml"), "--base-url", srv.base_url, "--model", "m")
    assert code == 1
    assert "is not an OpenAI chat completion" in stderr and "proxy error" in stderr
    assert list(tmp_path.iterdir()) == [] and "Traceback" not in stderr


def test_a_malformed_model_answer_is_sent_back_and_repaired(tmp_path, capsys):
    script = [answer(raw="Sure! Here is your graph: nodes: cam -> det"), answer(GOOD, tests=TESTS)]
    with FakeLLM(script) as srv:
        code, _, stderr = run(capsys, "x", "-o", str(tmp_path / "g.yaml"), "--base-url", srv.base_url, "--model", "m")
    assert code == 0, stderr
    assert "DRAFT101 (answer): the answer is not a JSON object" in last_user_message(srv.requests[1])


def test_an_answer_in_a_code_fence_with_the_graph_as_yaml_text_is_accepted(tmp_path, capsys):
    raw = "```json\n" + json.dumps({"graph": yaml.safe_dump(GOOD), "summary": "s", "tests": TESTS}) + "\n```"
    with FakeLLM([answer(raw=raw)]) as srv:
        code, _, stderr = run(capsys, "x", "-o", str(tmp_path / "g.yaml"), "--base-url", srv.base_url, "--model", "m")
    assert code == 0, stderr


def test_a_server_that_does_not_answer_in_time_fails_clearly(tmp_path, capsys):
    with FakeLLM([dict(answer(GOOD, tests=TESTS), sleep=30)]) as srv:
        code, _, stderr = run(capsys, "x", "-o", str(tmp_path / "g.yaml"), "--base-url", srv.base_url,
                              "--model", "m", "--timeout", "0.5")
    assert code == 1
    assert f"no answer from {srv.base_url}/chat/completions within 0.5 s" in stderr
    assert list(tmp_path.iterdir()) == [] and "Traceback" not in stderr


def test_a_server_without_constrained_output_is_asked_again_without_it(tmp_path, capsys):
    with FakeLLM([answer(bad_plugin(), tests=TESTS), answer(GOOD, tests=TESTS)], reject_schema=True) as srv:
        code, _, stderr = run(capsys, "x", "-o", str(tmp_path / "g.yaml"), "--base-url", srv.base_url, "--model", "m")
    assert code == 0, stderr
    # round 1: refused with response_format (400), asked again without; round 2 does not try again
    assert ["response_format" in r["body"] for r in srv.requests] == [True, False, False]


def test_an_unreachable_server_fails_clearly(tmp_path, capsys):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                      # nothing listens there now
    code, _, stderr = run(capsys, "x", "-o", str(tmp_path / "g.yaml"), "--base-url", f"http://127.0.0.1:{port}/v1",
                          "--model", "m")
    assert code == 1 and "cannot reach the model server" in stderr and "Traceback" not in stderr


# ---------------------------------------------------------------- the key
def test_the_api_key_is_sent_but_never_appears_in_logs_output_or_files(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SCHNITZEL_LLM_API_KEY", KEY)
    leaky = copy.deepcopy(GOOD)
    leaky["description"] = "AUTH"                       # the server echoes the Authorization header here
    content = json.dumps({"graph": leaky, "summary": "key: AUTH", "tests": TESTS})
    out, log = tmp_path / "g.yaml", tmp_path / "draft.jsonl"
    with FakeLLM([{"content": json.dumps({"graph": bad_plugin(), "summary": "AUTH", "tests": "AUTH"}),
                   "echo_auth": True},
                  {"content": content, "echo_auth": True}]) as srv:
        code, stdout, stderr = run(capsys, "x", "-o", str(out), "--base-url", srv.base_url, "--model", "m",
                                   "--log", str(log))
    assert code == 0, stderr
    assert all(r["headers"]["Authorization"] == f"Bearer {KEY}" for r in srv.requests)
    # the key never goes back to the model either (repair rounds quote the answer)
    assert all(KEY not in json.dumps(r["body"]) for r in srv.requests)
    with FakeLLM([{"status": 401, "body": f'{{"error": "invalid key {KEY}"}}'}]) as srv:
        code2, stdout2, stderr2 = run(capsys, "x", "-o", str(tmp_path / "h.yaml"), "--base-url", srv.base_url,
                                      "--model", "m", "--log", str(log))
    assert code2 == 1 and "refused the request (HTTP 401)" in stderr2 and "SCHNITZEL_LLM_API_KEY" in stderr2
    for text in (stdout, stderr, stdout2, stderr2):
        assert KEY not in text
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["draft.jsonl", "g.test.yaml", "g.yaml"]
    for p in tmp_path.iterdir():
        assert KEY not in p.read_text()
    assert "***" in out.read_text()                   # the echo was masked, not dropped


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("args,msg", [
    (["count", "-o", "g.yaml", "--model", "m"], "no model server: pass --base-url"),
    (["count", "-o", "g.yaml", "--base-url", "http://127.0.0.1:9/v1"], "no model: pass --model"),
    (["count", "-o", "g.yaml", "--base-url", "ftp://x", "--model", "m"], "is not an http(s) URL"),
    (["  ", "-o", "g.yaml", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"], "the request is empty"),
    (["count", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"], "-o/--output is required"),
    (["count", "-o", "g.json", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"], "must end in .yaml"),
    (["count", "-o", "exists.yaml", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"], "exists; pass --force"),
    (["count", "--from", "nope.yaml", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"],
     "--from nope.yaml: no such file"),
    (["count", "-o", "g.yaml", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--rounds", "-1"],
     "--rounds must be >= 0"),
])
def test_bad_arguments_exit_2_naming_the_problem(tmp_path, capsys, monkeypatch, args, msg):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exists.yaml").write_text("x: 1\n")
    code, _, stderr = run(capsys, *args)
    assert code == 2 and msg in stderr and "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.yaml"]


def test_the_command_is_registered_and_reads_its_config_from_the_environment(tmp_path):
    with FakeLLM([answer(GOOD, tests=TESTS)]) as srv:
        env = dict(os.environ, SCHNITZEL_LLM_BASE_URL=srv.base_url, SCHNITZEL_LLM_MODEL="env-model")
        res = subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", "draft", "count", "-o",
                              str(tmp_path / "g.yaml")], capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    assert srv.requests[0]["body"]["model"] == "env-model"
    assert (tmp_path / "g.test.yaml").is_file()


# ---------------------------------------------------------------- changing a running graph
NEW_VERSION = copy.deepcopy(GOOD)
NEW_VERSION["nodes"].append({"id": "echo", "plugin": "stdout_sink"})
NEW_VERSION["edges"].append({"from": "policy.out", "to": "echo.in"})


def _running(tmp_path):
    cur = tmp_path / "dock.yaml"
    cur.write_text(yaml.safe_dump(GOOD, sort_keys=False))
    return cur


def test_from_a_running_graph_writes_the_new_version_shows_the_diff_and_applies_nothing_unconfirmed(
        tmp_path, capsys, monkeypatch):
    cur = _running(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    with FakeLLM([answer(NEW_VERSION, tests=TESTS)]) as srv:
        code, stdout, stderr = run(capsys, "also print the events a second time", "--from", str(cur),
                                   "--base-url", srv.base_url, "--model", "m")
    assert code == 0, stderr
    user = srv.requests[0]["body"]["messages"][1]["content"]
    assert "name: dock" in user and "also print the events a second time" in user   # the running graph went along
    new = tmp_path / "dock.draft.yaml"
    assert validate_path(new).valid and (tmp_path / "dock.draft.test.yaml").is_file()
    assert "add node echo: plugin stdout_sink" in stdout
    assert "add edge policy.out -> echo.in" in stdout
    assert "load node echo in container main" in stdout
    assert "Apply" in stdout and "not applied" in stdout and f"schnitzel apply {cur} {new}" in stdout


def test_from_a_running_graph_a_renamed_or_unchanged_version_goes_back_to_the_model(tmp_path, capsys):
    cur = _running(tmp_path)
    renamed = dict(NEW_VERSION, name="other")
    with FakeLLM([answer(renamed, tests=TESTS), answer(GOOD, tests=TESTS), answer(NEW_VERSION, tests=TESTS)]) as srv:
        code, _, stderr = run(capsys, "add a second printer", "--from", str(cur), "--base-url", srv.base_url,
                              "--model", "m")
    assert code == 0, stderr
    assert "DRAFT301" in last_user_message(srv.requests[1]) and "'other'" in last_user_message(srv.requests[1])
    assert "DRAFT302" in last_user_message(srv.requests[2])


def test_from_with_yes_hands_the_validated_version_to_apply(tmp_path, capsys):
    # no graph is running: apply's "no manager" answer (exit 3) shows it was reached, after validation
    cur = _running(tmp_path)
    with FakeLLM([answer(NEW_VERSION, tests=TESTS)]) as srv:
        code, stdout, stderr = run(capsys, "add a second printer", "--from", str(cur), "--base-url", srv.base_url,
                                   "--model", "m", "--yes", "--wait", "0.2")
    assert code == 3, stderr
    assert "no lifecycle manager answers on /dock/_manager/apply_graph" in stderr
    assert "Apply" not in stdout.split("Applying would:")[1]     # not asked
