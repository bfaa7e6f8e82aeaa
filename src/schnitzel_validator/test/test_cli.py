"""`schnitzel validate` and `schnitzel plugins`: exit codes, formats, and no traceback for any input."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import sch_fixture_plugins as fx
from schnitzel_validator import cli

HERE = Path(__file__).parent
VALID = HERE / "fixtures" / "valid" / "lobby.yaml"
INVALID = HERE / "fixtures" / "invalid" / "031_qos_reliable_on_best_effort.yaml"


@pytest.fixture
def invoke(monkeypatch):
    monkeypatch.setattr(cli, "load_registry", fx.registry)
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    cli.register(app)

    @app.callback()
    def _root():
        pass

    runner = CliRunner()

    def _run(*args):
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert "Traceback" not in result.output
        return result
    return _run


def test_valid_file_exits_0(invoke):
    r = invoke("validate", VALID)
    assert r.exit_code == 0 and r.output.strip().endswith("lobby.yaml: valid")


def test_invalid_file_exits_1_with_location_code_and_hint(invoke):
    r = invoke("validate", INVALID)
    assert r.exit_code == 1
    lines = r.output.splitlines()
    assert lines[0].startswith(f"{INVALID}:12:10: SCH503 ")
    assert lines[1].startswith("    hint: ")


def test_json_format(invoke):
    r = invoke("validate", INVALID, "--format", "json")
    assert r.exit_code == 1
    data = json.loads(r.output)
    assert data["valid"] is False and data["file"] == str(INVALID)
    assert [(e["code"], e["line"], e["column"], e["edge"]) for e in data["errors"]] == \
        [("SCH503", 12, 10, "cam.frames -> det.image")]
    r = invoke("validate", VALID, INVALID, "--format", "json")
    data = json.loads(r.output)
    assert r.exit_code == 1 and [f["valid"] for f in data["files"]] == [True, False]


def test_bad_format_value_is_a_usage_error(invoke):
    r = invoke("validate", VALID, "--format", "xml")
    assert r.exit_code == 2


@pytest.mark.parametrize("content, code, exit_code", [
    (b"", "SCH101", 1),
    (b"key: [unclosed\n", "SCH002", 2),
    (b"\x00\x01\x02\xff\xfe binary", "SCH002", 2),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "SCH002", 2),
    (b"just a string\n", "SCH101", 1),
    (b"schnitzel: 1\nname: x\nnodes: {}\n", "SCH104", 1),
    (b"[" * 100000 + b"]" * 100000, "SCH004", 1),
])
def test_garbage_never_tracebacks(invoke, tmp_path, content, code, exit_code):
    p = tmp_path / "g.yaml"
    p.write_bytes(content)
    r = invoke("validate", p, "--format", "json")
    assert r.exit_code == exit_code
    assert json.loads(r.output)["errors"][0]["code"] == code


def test_unreadable_inputs_exit_2(invoke, tmp_path):
    r = invoke("validate", tmp_path / "missing.yaml")
    assert r.exit_code == 2 and "SCH001" in r.output
    r = invoke("validate", tmp_path)
    assert r.exit_code == 2 and "SCH001" in r.output
    r = invoke("validate", VALID, tmp_path / "missing.yaml")
    assert r.exit_code == 2                       # the worst file decides


def test_huge_file(invoke, tmp_path):
    nodes = "".join(f"  - {{id: r{i}, plugin: router}}\n" for i in range(3000))
    edges = "".join(f"  - {{from: r{i}.a, to: r{i + 1}.in}}\n" for i in range(2999))
    p = tmp_path / "huge.yaml"
    p.write_text("schnitzel: 1\nname: huge\nnodes:\n  - {id: t, plugin: ticker}\n" + nodes +
                 "  - {id: s, plugin: log_sink}\nedges:\n  - {from: t.out, to: r0.in}\n" + edges +
                 "  - {from: r2999.a, to: s.in}\n" + "# padding\n" * 50000)
    r = invoke("validate", p)
    assert r.exit_code == 0, r.output


def test_internal_error_is_reported_not_raised(invoke, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("kaboom")
    monkeypatch.setattr(cli, "validate_path", boom)
    r = invoke("validate", VALID)
    assert r.exit_code == 2 and "SCH000" in r.output and "kaboom" in r.output


def test_plugins_list_and_show(invoke):
    r = invoke("plugins")
    assert r.exit_code == 0
    assert any(line.startswith("camera ") and "source" in line for line in r.output.splitlines())
    assert any(line.startswith("future ") and "REFUSED" in line and "2.0.0" in line for line in r.output.splitlines())
    data = json.loads(invoke("plugins", "--format", "json").output)
    cam = next(p for p in data["plugins"] if p["name"] == "camera")
    assert cam["category"] == "source" and cam["version"] == "1.2.0" and cam["ok"]
    assert cam["ports"] == [{"name": "frames", "direction": "out", "kinds": ["video.frame"], "profile": "any",
                             "msg_type": "schnitzel_msgs/msg/StreamPacket", "qos": "frames", "description": ""}]
    r = invoke("plugins", "show", "camera", "--format", "json")
    shown = json.loads(r.output)
    assert r.exit_code == 0
    schema = shown["params"]
    assert schema["required"] == ["uri"] and schema["additionalProperties"] is False
    assert schema["properties"]["fps"] == {"type": "number", "minimum": 0.1, "maximum": 120, "default": 15.0}
    assert schema["properties"]["encoding"]["enum"] == ["rgb8", "bgr8", "mono8"]
    r = invoke("plugins", "show", "camera")
    assert r.exit_code == 0 and "frames" in r.output and "uri" in r.output and "required" in r.output


def test_plugins_show_unknown_suggests(invoke):
    r = invoke("plugins", "show", "camra")
    assert r.exit_code == 1 and "did you mean camera" in r.output


def test_real_cli_subprocess_no_traceback(tmp_path):
    """The installed entry (real registry): garbage in, one clear message and exit 2 out."""
    p = tmp_path / "bin.yaml"
    p.write_bytes(os.urandom(2000) + b"\x00")
    proc = subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", "validate", str(p)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr and "SCH002" in proc.stdout


def test_stdin_and_strict(invoke, monkeypatch):
    from typer.testing import CliRunner
    warn = (HERE / "fixtures" / "invalid" / "039_warnings_only.yaml").read_text()
    app = typer.Typer(add_completion=False)
    cli.register(app)

    @app.callback()
    def _root():
        pass
    runner = CliRunner()
    r = runner.invoke(app, ["validate", "-"], input=warn)
    assert r.exit_code == 0 and "<stdin>:7:10: SCH610 warning:" in r.output
    r = runner.invoke(app, ["validate", "--strict", "-"], input=warn)
    assert r.exit_code == 1
    r = runner.invoke(app, ["validate", "-"], input="schnitzel: [\n")
    assert r.exit_code == 2 and "<stdin>" in r.output


def test_validate_prints_each_edges_delivery_guarantee(invoke):
    r = invoke("validate", VALID)
    assert r.exit_code == 0
    info = [line for line in r.output.splitlines() if line.startswith("info: edge ")]
    assert info and all(": " in line for line in info)
    data = json.loads(invoke("validate", VALID, "--format", "json").output)
    assert {d["edge"] for d in data["delivery"]} == {line[len("info: edge "):].split(": ")[0] for line in info}
