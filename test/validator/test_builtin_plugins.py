"""Every plugin installed with schnitzel is usable and declares itself consistently.

`schnitzel plugins` must list no REFUSED built-in and no spec problems: a broken declaration
would otherwise surface as confusing errors in every graph that uses the plugin.
"""
from schnitzel_core.registry import load_registry
from schnitzel_core.plugin import PLUGIN_API_VERSION


def test_builtin_plugins_are_usable_and_consistent():
    reg = load_registry()
    builtin = [e for e in reg.entries() if e.dist.replace("_", "-").lower() == "schnitzel-nodes"]
    assert builtin, "the built-in plugins (schnitzel_nodes) are not installed: run scripts/setup.sh"
    problems = {e.name: e.error or e.warnings for e in builtin if e.error or e.warnings}
    assert problems == {}
    for e in builtin:
        assert reg.load_class(e.name).spec.api_version.split(".")[0] == PLUGIN_API_VERSION.split(".")[0]
