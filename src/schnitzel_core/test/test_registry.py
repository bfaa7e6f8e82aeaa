"""The plugin registry: entry points, API compatibility (semver caret), clear refusals."""
import sys
import textwrap
from importlib import metadata

import pytest

from schnitzel_core import registry as regmod
from schnitzel_core.plugin import PLUGIN_API_VERSION, Category, In, NodeLogic, Out, PluginSpec
from schnitzel_core.registry import (PluginError, Registry, api_compatible, load_registry, parse_version,
                                     satisfies)


class Good(NodeLogic):
    spec = PluginSpec(name="good", category=Category.TRANSFORM, version="1.0.0", ports=(In("in"), Out("out")))


class Newer(NodeLogic):
    spec = PluginSpec(name="newer", category=Category.TRANSFORM, version="1.0.0", api_version="1.99.0")


class NextMajor(NodeLogic):
    spec = PluginSpec(name="next_major", category=Category.TRANSFORM, version="1.0.0", api_version="2.0.0")


class NoSpec(NodeLogic):
    pass


def test_api_caret_rule():
    assert api_compatible("1.0.0", "1.0.0")
    assert api_compatible("1.0.5", "1.2.0")        # patch levels don't matter
    assert api_compatible("1.1.0", "1.2.0")        # older minor on a newer runtime
    assert not api_compatible("1.3.0", "1.2.0")    # plugin needs features the runtime lacks
    assert not api_compatible("2.0.0", "1.2.0")
    assert not api_compatible("0.9.0", "1.0.0")
    assert api_compatible("0.3.1", "0.3.0") and not api_compatible("0.2.0", "0.3.0")   # 0.x: minor is major
    with pytest.raises(ValueError):
        parse_version("one")


@pytest.mark.parametrize("version, constraint, ok", [
    ("1.2.3", "^1.2", True), ("1.9.0", "^1.2", True), ("2.0.0", "^1.2", False), ("1.1.9", "^1.2", False),
    ("0.2.5", "^0.2", True), ("0.3.0", "^0.2", False),
    ("1.2.9", "~1.2.3", True), ("1.3.0", "~1.2", False),
    ("1.2.3", "1.2.3", True), ("1.2.4", "1.2.3", False), ("1.2.7", "1.2", True), ("1.9.0", "1", True),
    ("1.5.0", ">=1.1,<2", True), ("2.0.0", ">=1.1,<2", False), ("1.0.0", ">1.0.0", False),
    ("1.0.0", "<=1.0.0", True), ("1.0.0", "==1.0.0", True),
])
def test_version_constraints(version, constraint, ok):
    assert satisfies(version, constraint) is ok


@pytest.mark.parametrize("bad", ["latest", "^", "1.2.3.4", ">=1,,<2", "*"])
def test_bad_constraints_are_refused(bad):
    with pytest.raises(ValueError):
        regmod.check_constraint(bad)


def test_from_classes_and_refusals():
    reg = Registry.from_classes([Good, Newer, NextMajor, NoSpec])
    assert reg.names() == ["NoSpec", "good", "newer", "next_major"]
    assert reg.load_class("good") is Good
    assert reg.get("good").ok and reg.get("good").spec is Good.spec
    for name, newer in (("newer", "1.99.0"), ("next_major", "2.0.0")):
        e = reg.get(name)
        assert e.api_incompatible and e.spec is not None
        with pytest.raises(PluginError) as ei:
            reg.load_class(name)
        assert newer in str(ei.value) and PLUGIN_API_VERSION in str(ei.value)   # both versions named
    with pytest.raises(PluginError, match="spec"):
        reg.load_class("NoSpec")
    with pytest.raises(PluginError, match="did you mean good"):
        reg.load_class("goood")
    assert reg.get("missing") is None


def _write_dist(root, dist, module, body, entries):
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist}-1.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0.0\n")
    lines = "\n".join(f"{n} = {v}" for n, v in entries)
    (info / "entry_points.txt").write_text(f"[schnitzel.plugins]\n{lines}\n")


def test_load_registry_reads_entry_points(tmp_path, monkeypatch):
    _write_dist(tmp_path, "sch_reg_probe", "sch_reg_probe_mod", """
        from schnitzel_core.plugin import Category, NodeLogic, Out, PluginSpec
        class Src(NodeLogic):
            spec = PluginSpec(name="probe_src", category=Category.SOURCE, version="3.1.0", ports=(Out("out"),))
        class Misnamed(NodeLogic):
            spec = PluginSpec(name="other_name", category=Category.SOURCE, version="1.0.0")
        NOT_A_CLASS = 3
    """, [("probe_src", "sch_reg_probe_mod:Src"), ("probe_broken", "sch_reg_probe_missing:Nope"),
          ("probe_misnamed", "sch_reg_probe_mod:Misnamed"), ("probe_value", "sch_reg_probe_mod:NOT_A_CLASS")])
    monkeypatch.syspath_prepend(str(tmp_path))
    reg = load_registry()
    e = reg.get("probe_src")
    assert e is not None and e.ok and e.dist == "sch_reg_probe" and e.spec.version == "3.1.0"
    assert reg.load_class("probe_src").__name__ == "Src"
    broken = reg.get("probe_broken")
    assert not broken.ok and "failed to import" in broken.error and "sch_reg_probe" in broken.error
    assert "other_name" in reg.get("probe_misnamed").error
    assert "NodeLogic" in reg.get("probe_value").error
    sys.modules.pop("sch_reg_probe_mod", None)


def test_entry_points_group_is_the_contract():
    assert regmod.ENTRY_POINT_GROUP == "schnitzel.plugins"
    # every installed entry is either usable or says why not
    for e in load_registry().entries():
        assert e.ok or e.error


def test_spec_problems_are_listed_not_refused():
    from schnitzel_core.plugin import Param

    class Sloppy(NodeLogic):
        spec = PluginSpec(name="sloppy", category=Category.SOURCE, version="one",
                          ports=(In("in"), Out("out", qos="fast"), Out("out"), Out("x", kinds=())),
                          params=(Param("n", "int", 1.5), Param("m", "float", 5, maximum=2),
                                  Param("e", "str", "c", enum=("a", "b")), Param("t", "text", ""),
                                  Param("n", "int", 1)))
    e = Registry.from_classes([Sloppy]).get("sloppy")
    assert e.ok     # still usable: graphs cannot fix these, the plugin author can
    text = "\n".join(e.warnings)
    for fragment in ("version:", "input port 'in'", "unknown QoS preset 'fast'", "port 'out' is declared twice",
                     "declares no kinds", "default 1.5 is not of type int", "outside [None, 2]",
                     "not one of ['a', 'b']", "unknown type 'text'", "param 'n' is declared twice"):
        assert fragment in text, fragment
    assert Registry.from_classes([Good]).get("good").warnings == []
