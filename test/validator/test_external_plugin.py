"""A plugin shipped as its own distribution is found and validated with no change to the core;
one written for an incompatible plugin API is refused with both versions named.

The package (test/fixtures/schnitzel_testplugin) is pip-installed into a temporary target and
made visible only through PYTHONPATH of the subprocesses, as a user's `pip install` would.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from schnitzel_core.plugin import PLUGIN_API_VERSION

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "test" / "fixtures" / "schnitzel_testplugin"


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("testplugin")
    src = tmp / "src"
    shutil.copytree(PKG, src)   # build outside the repo: no build/ or egg-info left in the tree
    target = tmp / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                           "--no-index", "--quiet", "--target", str(target), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(target)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env, tmp


def schnitzel(env, *args):
    proc = subprocess.run([sys.executable, "-m", "schnitzel_bringup.cli", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def test_installed_plugin_is_listed_and_the_incompatible_one_refused(plugin_env):
    env, _tmp = plugin_env
    proc = schnitzel(env, "plugins", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    plugins = {p["name"]: p for p in json.loads(proc.stdout)["plugins"]}
    good = plugins["people_counter"]
    assert good["ok"] and good["category"] == "policy" and good["version"] == "0.3.0"
    assert good["dist"].replace("_", "-").lower() == "schnitzel-testplugin"
    assert [p["name"] for p in good["ports"]] == ["in", "counts"]
    bad = plugins["fancy_future"]
    assert not bad["ok"] and "2.0.0" in bad["error"] and PLUGIN_API_VERSION in bad["error"]
    shown = json.loads(schnitzel(env, "plugins", "show", "people_counter", "--format", "json").stdout)
    assert shown["params"]["properties"]["min_score"]["maximum"] == 1.0


def test_graph_using_the_plugin_validates(plugin_env):
    env, tmp = plugin_env
    g = tmp / "counter.yaml"
    g.write_text("schnitzel: 1\nname: counting\nnodes:\n  - id: count\n    plugin: people_counter\n"
                 "    params: {label: person, min_score: 0.6}\n")
    proc = schnitzel(env, "validate", g, "--format", "json")
    out = json.loads(proc.stdout)
    assert proc.returncode == 0 and out["valid"], proc.stdout
    assert {w["code"] for w in out["warnings"]} <= {"SCH610", "SCH611"}   # nothing feeds it, nothing reads it
    # its parameter schema is enforced like a built-in's
    g.write_text("schnitzel: 1\nname: counting\nnodes:\n  - id: count\n    plugin: people_counter\n"
                 "    params: {min_score: 3}\n")
    proc = schnitzel(env, "validate", g, "--format", "json")
    assert proc.returncode == 1 and [e["code"] for e in json.loads(proc.stdout)["errors"]] == ["SCH313"]
    # without the package on the path the same graph names an unknown plugin
    plain = dict(env)
    plain["PYTHONPATH"] = os.pathsep.join(p for p in env["PYTHONPATH"].split(os.pathsep)[1:])
    proc = schnitzel(plain, "validate", g, "--format", "json")
    assert proc.returncode == 1 and json.loads(proc.stdout)["errors"][0]["code"] == "SCH301"


def test_graph_using_the_incompatible_plugin_is_refused(plugin_env):
    env, tmp = plugin_env
    g = tmp / "future.yaml"
    g.write_text("schnitzel: 1\nname: future\nnodes:\n  - {id: f, plugin: fancy_future}\n")
    proc = schnitzel(env, "validate", g)
    assert proc.returncode == 1
    first = proc.stdout.splitlines()[0]
    assert "SCH303" in first and "2.0.0" in first and PLUGIN_API_VERSION in first
