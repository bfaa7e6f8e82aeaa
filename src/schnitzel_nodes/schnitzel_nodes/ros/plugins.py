"""Find a plugin's NodeLogic class by name.

- A registered name ("zones") is looked up in the entry point group
  ``schnitzel.plugins`` through ``schnitzel_core.registry`` (cached; re-read
  once when a name is missing, so a plugin installed after start is found).
- ``"package.module:Class"`` imports that class directly: for tests and for
  plugins not (yet) installed as a distribution.
"""
from __future__ import annotations

import importlib
import threading
from typing import Optional

from schnitzel_core.plugin import NodeLogic, PluginSpec
from schnitzel_core.registry import PluginError, Registry, load_registry

_lock = threading.Lock()
_cached: Optional[Registry] = None


def _registry(refresh: bool = False) -> Registry:
    global _cached
    with _lock:
        if _cached is None or refresh:
            _cached = load_registry()
        return _cached


def resolve_plugin(name: str, registry: Optional[Registry] = None) -> type:
    """The NodeLogic class for ``name``; raises PluginError saying why it cannot be used."""
    name = (name or "").strip()
    if not name:
        raise PluginError("no plugin name given")
    if "::" in name:  # "package::plugin" as ros2 component / launch_ros write it
        name = name.split("::")[-1]
    if ":" in name:
        mod_name, _, cls_name = name.partition(":")
        try:
            mod = importlib.import_module(mod_name)
        except Exception as exc:  # noqa: BLE001 - any import failure is the plugin's problem
            raise PluginError(f"plugin {name!r}: cannot import module {mod_name!r}: {exc}") from None
        cls = getattr(mod, cls_name, None)
        if not (isinstance(cls, type) and issubclass(cls, NodeLogic)
                and isinstance(getattr(cls, "spec", None), PluginSpec)):
            raise PluginError(f"plugin {name!r}: {cls_name!r} is not a NodeLogic class with a spec")
        return cls
    if registry is not None:
        return registry.load_class(name)
    reg = _registry()
    if name not in reg:
        reg = _registry(refresh=True)
    return reg.load_class(name)


__all__ = ["PluginError", "resolve_plugin"]
